#!/usr/bin/python3
"""Writes fixture.csv, the small result CSV the plot tests run on (deterministic; committed).

Contents: 4 workloads (one micro/), 5 allocators plus an unknown one (`snmalloc`, random-mixed
only), 1-3 thread counts, 3 repetitions; one crashed and one timed-out trial; `cache_misses` and
`branch_misses` NA everywhere, `madvise_calls` NA for footprint; `live_bytes` and `final_rss_kb`
on the ok footprint rows only (NA elsewhere, as hakbench writes them); two callgrind rows.
Regenerate with: /usr/bin/python3 tests/plots/make_fixture.py
"""

import csv
import os
import random
import sys

# The schema is the report's: one list of columns, kept where the CSV is read.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plots"))
from report_data import COLUMNS  # noqa: E402

WORKLOADS = (  # name, params, thread counts, ops per trial
    ("larson", "min=8,max=1024,chunks=1000,rounds=5", (1, 2, 4), 4_000_000),
    ("random-mixed", "sizes=16-4096,ws=8192", (1, 2, 4), 2_000_000),
    ("footprint", "total=48MiB", (1, 4), 1_000_000),
    ("micro/tiny_pair", "size=32", (1,), 10_000_000),
)
# Final resident bytes per live byte of footprint, per allocator.
RESIDENT_PER_LIVE = {"system": 1.15, "hakmem": 1.35, "hakmem-static": 1.34, "jemalloc": 1.22,
                     "mimalloc": 1.30}
ALLOCATORS = (  # name, version, link, speed factor vs system, RSS factor
    ("system", "glibc-2.36", "preload", 1.00, 1.00),
    ("hakmem", "0.1.0", "preload", 1.60, 0.90),
    ("hakmem-static", "0.1.0", "static", 1.75, 0.90),
    ("jemalloc", "5.3.0", "preload", 1.30, 1.20),
    ("mimalloc", "2.0.9", "preload", 1.45, 1.10),
    ("snmalloc", "0.6.2", "preload", 1.20, 1.05),
)


def main():
    rng = random.Random(7)
    resident_rng = random.Random(11)  # its own stream: the other columns stay as they were
    rows = []
    minute = 0

    def row(**values):
        nonlocal minute
        minute += 1
        base = {c: "NA" for c in COLUMNS}
        base.update(timestamp=f"2026-11-22T20:{minute // 60:02d}:{minute % 60:02d}Z",
                    git_sha="3f2c1d0", host="fixture-host", cpu="Fixture CPU 2 cores @ 2.0GHz",
                    kernel="6.1.0-fixture-amd64", config="fixture")
        base.update({k: str(v) for k, v in values.items()})
        rows.append(base)

    for workload, params, thread_counts, ops in WORKLOADS:
        for threads in thread_counts:
            for rep in (1, 2, 3):
                for name, version, link, speed, rss in ALLOCATORS:
                    if name == "snmalloc" and workload != "random-mixed":
                        continue
                    common = dict(workload=workload, params=params, allocator=name,
                                  allocator_version=version, link=link, threads=threads, rep=rep)
                    if (name, workload, threads, rep) == ("hakmem", "larson", 4, 3):
                        row(**common, status="crashed")
                        continue
                    if (name, workload, threads, rep) == ("jemalloc", "random-mixed", 4, 2):
                        row(**common, status="timeout", seconds=60)
                        continue
                    scale = min(threads, 2) * (0.8 if workload == "larson" else 1.0)
                    ops_per_sec = round(5e6 * speed * scale * rng.uniform(0.93, 1.07))
                    seconds = ops / ops_per_sec
                    futex = 0 if threads == 1 else round(rng.uniform(10, 400) / speed)
                    mmaps = round(rng.uniform(20, 60) / speed)
                    max_rss_kb = round((70000 if workload == "footprint" else 9000)
                                       * rss * (1 + 0.1 * threads) * rng.uniform(0.98, 1.02))
                    resident = {}
                    if workload == "footprint":
                        live = 48 * 2**20 + 300_000 * threads
                        final = round(live / 1024 * RESIDENT_PER_LIVE[name]
                                      * resident_rng.uniform(0.99, 1.01))
                        assert final <= max_rss_kb, "resident at the end above the peak"
                        resident = dict(live_bytes=live, final_rss_kb=final)
                    row(**common, status="ok", ops=ops, seconds=f"{seconds:.6f}",
                        ops_per_sec=ops_per_sec,
                        max_rss_kb=max_rss_kb,
                        futex_calls=futex, syscalls=futex + 2 * mmaps + 40,
                        mmap_calls=mmaps, munmap_calls=mmaps // 2,
                        madvise_calls="NA" if workload == "footprint" else round(mmaps / 3),
                        task_clock_ms=round(seconds * 1000 * threads, 3),
                        context_switches=round(rng.uniform(1, 50)),
                        page_faults=round(rng.uniform(500, 5000)),
                        cycles=round(ops * rng.uniform(60, 90) / speed),
                        instructions=round(ops * rng.uniform(80, 120) / speed), **resident)
    for name, instructions in (("system", 61_000_000), ("hakmem", 23_500_000)):
        row(workload="micro/tiny_pair", params="size=32", allocator=name,
            allocator_version="glibc-2.36" if name == "system" else "0.1.0", link="callgrind",
            threads=1, rep=1, status="ok", ops=1_000_000, seconds="2.5", ops_per_sec=400000,
            max_rss_kb=150000, instructions=instructions)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{path}: {len(rows)} rows")


if __name__ == "__main__":
    main()
