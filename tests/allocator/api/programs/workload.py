# A python3 workload for the LD_PRELOAD test: dicts, sorting, strings, lists of tuples, and
# threads that build and free their own structures concurrently. Prints deterministic results
# and a checksum over them (independent of PYTHONHASHSEED: only sorted or ordered data is hashed).
import hashlib
import threading

def build_and_sort(seed, n):
    table = {}
    x = seed
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        key = "k%016x" % x
        table[key] = (i, x % 1000003, str(x)[: (x % 40) + 1])
    by_value = sorted(table.items(), key=lambda kv: (kv[1][1], kv[0]))
    h = hashlib.sha256()
    for key, (i, v, s) in by_value[::97]:
        h.update(("%s:%d:%d:%s;" % (key, i, v, s)).encode())
    return len(table), sum(v for _, (_, v, _) in by_value), h.hexdigest()

results = {}

def worker(name, seed, n):
    # Each thread also churns through growing and shrinking lists and byte strings.
    chunks = [bytes([seed % 251]) * ((seed * 7919 + i * 40009) % 600000) for i in range(200)]
    del chunks[::2]
    results[name] = build_and_sort(seed, n) + (sum(len(c) for c in chunks),)

main = build_and_sort(12345, 400000)
threads = [threading.Thread(target=worker, args=("t%d" % t, 1000 + t, 60000)) for t in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()

words = " ".join("w%d" % (i * 7919 % 100000) for i in range(200000)).split()
counts = {}
for w in words:
    counts[w] = counts.get(w, 0) + 1
top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]

print("main", main[0], main[1])
for name in sorted(results):
    print(name, results[name][0], results[name][1], results[name][3])
print("words", len(words), len(counts), top)
total = hashlib.sha256()
total.update(repr((main, sorted(results.items()), top)).encode())
print("checksum", total.hexdigest())
