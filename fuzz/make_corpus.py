#!/usr/bin/env python3
"""Writes the seed corpus of hakmem_fuzz (fuzz/corpus/): small programs in the target's encoding
(see the comment at the top of hakmem_fuzz.cpp), one per theme. Run from anywhere; rewrites the
seeds in place."""
import pathlib

MALLOC, FREE, REALLOC, ALIGNED, CALLOC, REMOTE_FREE, REMOTE_MALLOC, USABLE, COLLECT, RESTART = range(10)


def size(n):
    """The SIZE argument for exactly n bytes, in the cheapest range that encodes it."""
    if n < 256:
        return bytes([0x00, n])
    if n <= 1024:
        return bytes([0x40, n & 0xFF, n >> 8])
    if n >= 1025 and (n - 1025) % 4 == 0 and (n - 1025) // 4 < 65536:
        v = (n - 1025) // 4
        return bytes([0x80, v & 0xFF, v >> 8])
    assert n < 4 << 20
    return bytes([0xC0, n & 0xFF, (n >> 8) & 0xFF, n >> 16])


def op(code, *args):
    out = bytes([code])
    for a in args:
        out += a if isinstance(a, bytes) else bytes([a])
    return out


def tiny_classes():
    prog = b""
    for i, n in enumerate([1, 8, 16, 17, 48, 64, 100, 128, 255, 256, 512, 767, 1024, 0]):
        prog += op(MALLOC, i, size(n))
    for i in range(0, 14, 2):
        prog += op(FREE, i)
    for i in range(0, 14, 2):
        prog += op(MALLOC, i, size(32 * (i + 1)))
    return prog


def realloc_chain():
    prog = op(MALLOC, 3, size(24))
    for n in [40, 1024, 1025, 4097, 65537, 262145, 300001, 2 << 20, 1000, 17, 1, 0]:
        prog += op(REALLOC, 3, size(n)) if n else op(REALLOC, 3, size(0))
    return prog


def aligned():
    prog = b""
    for shift in range(21):
        prog += op(ALIGNED, shift % 32, shift, size(1 << min(shift, 10)))
    prog += op(ALIGNED, 31, 20, size(3 << 20))
    return prog


def calloc_reuse():
    prog = b""
    for i, n in enumerate([64, 1024, 8192, 262145]):
        prog += op(MALLOC, i, size(n)) + op(FREE, i)
        prog += op(CALLOC, i, 3, size(n)) + op(USABLE, i)
    return prog


def cross_thread():
    prog = b""
    for i in range(8):
        prog += op(REMOTE_MALLOC, i, size(16 << i))
    for i in range(8, 16):
        prog += op(MALLOC, i, size(33 * i)) + op(REMOTE_FREE, i)
    prog += op(RESTART)
    for i in range(8):
        prog += op(FREE, i)
    prog += op(MALLOC, 20, size(5000)) + op(REMOTE_FREE, 20) + op(COLLECT)
    return prog


def usable_and_collect():
    prog = b""
    for i, n in enumerate([1, 9, 100, 1025, 70000, 600000]):
        prog += op(MALLOC, i, size(n)) + op(USABLE, i)
    prog += op(COLLECT)
    for i in range(6):
        prog += op(FREE, i)
    prog += op(COLLECT)
    return prog


SEEDS = {
    "tiny_classes": tiny_classes(),
    "realloc_chain": realloc_chain(),
    "aligned": aligned(),
    "calloc_reuse": calloc_reuse(),
    "cross_thread": cross_thread(),
    "usable_and_collect": usable_and_collect(),
}

if __name__ == "__main__":
    corpus = pathlib.Path(__file__).resolve().parent / "corpus"
    corpus.mkdir(exist_ok=True)
    for name, data in SEEDS.items():
        (corpus / name).write_bytes(data)
        print(f"{corpus / name}: {len(data)} bytes")
