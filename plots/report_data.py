"""Reading hakbench result CSVs (DESIGN.md section 3) and the statistics the report shows.

A trial is one CSV row, parsed into a dict: numeric columns become float (or None for `NA`, an
empty cell or a column the file does not have), everything else stays a string. Only `ok` trials
are measured; every other status is kept so the report can list it.

Vocabulary used throughout plots/:
  case    (workload, params): one picture per case; runs with other parameters are other cases.
  series  one line or bar colour: an allocator, split by link mode only when the same allocator
          was measured with more than one (`hakmem (static)` next to `hakmem (preload)`).
"""

import csv
import math
import os
import statistics
from dataclasses import dataclass, field

COLUMNS = (
    "timestamp", "git_sha", "host", "cpu", "kernel", "config", "workload", "params", "allocator",
    "allocator_version", "link", "threads", "rep", "status", "ops", "seconds", "ops_per_sec",
    "max_rss_kb", "futex_calls", "syscalls", "mmap_calls", "munmap_calls", "madvise_calls",
    "task_clock_ms", "context_switches", "page_faults", "cycles", "instructions", "cache_misses",
    "branch_misses", "live_bytes", "final_rss_kb",
)
# Without these a row cannot be placed on any picture; every other column may be absent.
REQUIRED = ("workload", "allocator", "link", "threads", "status", "ops", "ops_per_sec")
NUMERIC = frozenset(COLUMNS[COLUMNS.index("threads"):]) - {"status"}
NA_TOKENS = frozenset({"", "NA", "N/A", "nan", "NaN"})

# Hardware counters, drawn per operation and only where measured.
HW_COUNTERS = (
    ("instructions", "instructions / op"),
    ("cycles", "cycles / op"),
    ("cache_misses", "cache misses / op"),
    ("branch_misses", "branch misses / op"),
)
SYSCALL_METRICS = (("futex_calls", "futex calls"), ("syscalls", "all syscalls"))
MMAP_METRICS = (("mmap_calls", "mmap"), ("munmap_calls", "munmap"), ("madvise_calls", "madvise"))
# Reported by workloads that read their own resident memory; files of the previous schema lack
# them, and a workload listed here without them gets a note instead of a picture.
RESIDENT_COLUMNS = ("live_bytes", "final_rss_kb")
RESIDENT_WORKLOADS = ("footprint",)

BASELINE = "system"
CALLGRIND = "callgrind"
KNOWN_ALLOCATORS = ("system", "hakmem", "hakmem-static", "jemalloc", "tcmalloc", "mimalloc")
KNOWN_WORKLOADS = ("larson", "random-mixed", "bg-spill", "producer-consumer", "cache-scratch",
                   "footprint")


class InputError(Exception):
    """The input cannot make a report; the message names the file and the problem."""


@dataclass
class Dataset:
    sources: list
    trials: list = field(default_factory=list)        # every row, any status
    absent_columns: set = field(default_factory=set)  # optional columns some file lacks

    @property
    def ok(self):
        return [t for t in self.trials if t["status"] == "ok"]

    @property
    def failed(self):
        return [t for t in self.trials if t["status"] != "ok"]

    @property
    def throughput(self):
        """ok trials that measured throughput (callgrind rows count instructions, not speed)."""
        return [t for t in self.ok if t["link"] != CALLGRIND and t["ops_per_sec"] is not None]

    @property
    def callgrind(self):
        return [t for t in self.ok if t["link"] == CALLGRIND]

    @property
    def ok_without_throughput(self):
        return [t for t in self.ok if t["link"] != CALLGRIND and t["ops_per_sec"] is None]


def _parse_number(text, path, line, column):
    text = text.strip()
    if text in NA_TOKENS:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}: line {line}: column '{column}' is not a number: {text!r}")
    return value if math.isfinite(value) else None


def _read_one(path, dataset):
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        if not header:
            raise InputError(f"{path}: empty file (no header row)")
        header = [h.strip() for h in header]
        reader.fieldnames = header
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(f"{path}: missing required column(s): {', '.join(missing)} "
                             f"(header has: {', '.join(header)})")
        dataset.absent_columns.update(c for c in COLUMNS if c not in header)
        for raw in reader:
            line = reader.line_num
            if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
                continue  # blank line
            trial = {"source": path, "line": line}
            for column in COLUMNS:
                text = raw.get(column)
                if text is None:
                    text = ""
                if column in NUMERIC:
                    trial[column] = _parse_number(text, path, line, column)
                else:
                    trial[column] = text.strip()
            if trial["status"] == "ok":
                if trial["threads"] is None:
                    raise InputError(f"{path}: line {line}: ok row without a thread count")
                if trial["ops_per_sec"] is None and trial["ops"] and trial["seconds"]:
                    trial["ops_per_sec"] = trial["ops"] / trial["seconds"]
            if trial["threads"] is not None:
                trial["threads"] = int(trial["threads"])
            dataset.trials.append(trial)


def load(paths):
    """Read and concatenate the CSVs; raise InputError when they cannot make a report."""
    if not paths:
        raise InputError("no CSV given")
    dataset = Dataset(sources=list(paths))
    for path in paths:
        _read_one(path, dataset)
    if not dataset.ok:
        raise InputError(f"no rows with status 'ok' in {', '.join(paths)} "
                         f"({len(dataset.trials)} row(s) read)")
    return dataset


# ---- ordering and naming ----------------------------------------------------------------------

def allocator_order(name):
    if name in KNOWN_ALLOCATORS:
        return (0, KNOWN_ALLOCATORS.index(name), "")
    return (1, 0, name)


def workload_order(name):
    if name in KNOWN_WORKLOADS:
        return (0, KNOWN_WORKLOADS.index(name), "")
    if name.startswith("micro/"):
        return (1, 0, name)
    return (2, 0, name)


def case_of(trial):
    return (trial["workload"], trial["params"])


def cases(trials):
    return sorted({case_of(t) for t in trials}, key=lambda c: (workload_order(c[0]), c[1]))


def case_label(case):
    workload, params = case
    return f"{workload} [{params}]" if params else workload


def slug(text):
    out = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in text)
    return out.strip("_.") or "x"


def case_slugs(all_cases):
    """File-name stem per case: the workload, plus the params when one workload has several."""
    per_workload = {}
    for workload, params in all_cases:
        per_workload.setdefault(workload, []).append(params)
    names, used = {}, set()
    for case in all_cases:
        workload, params = case
        name = slug(workload)
        if len(per_workload[workload]) > 1:
            name += "__" + slug(params or "default")
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        names[case] = name
    return names


@dataclass(frozen=True, order=True)
class Series:
    allocator: str
    link: str
    split: bool  # True when the allocator appears with several link modes

    @property
    def label(self):
        return f"{self.allocator} ({self.link})" if self.split else self.allocator

    def sort_key(self):
        return (allocator_order(self.allocator), self.link)


def series_index(trials):
    """Map each trial (by id) to its Series."""
    links = {}
    for t in trials:
        links.setdefault(t["allocator"], set()).add(t["link"])
    return {id(t): Series(t["allocator"], t["link"], len(links[t["allocator"]]) > 1)
            for t in trials}


def sorted_series(series):
    return sorted(set(series), key=Series.sort_key)


# ---- statistics -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    n: int


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def per_op(trial, column, scale=1.0):
    value, ops = trial[column], trial["ops"]
    if value is None or not ops:
        return None
    return value / ops * scale


def resident_per_live_byte(trial):
    """Final resident bytes per live byte, or None where either is not measured."""
    live, resident = trial["live_bytes"], trial["final_rss_kb"]
    if live is None or resident is None or live <= 0:
        return None
    return resident * 1024.0 / live


def group(trials, series_of, value):
    """{(case, threads, series): Spread of value(trial)} over the trials with a value."""
    buckets = {}
    for t in trials:
        key = (case_of(t), t["threads"], series_of[id(t)])
        buckets.setdefault(key, []).append(value(t))
    out = {}
    for key, values in buckets.items():
        s = spread(values)
        if s is not None:
            out[key] = s
    return out


@dataclass
class SummaryRow:
    case: tuple
    threads: int
    series: Series
    throughput: Spread
    ratio: float  # median / system median at the same case and threads; None without a baseline
    resident_per_live: float  # median final_rss_kb * 1024 / live_bytes; None where not measured


def summary(dataset):
    """One row per case x threads x series: median ops/s, its ratio to `system`, and the median
    resident bytes per live byte where the workload reports them.

    The baseline is the median over every `system` throughput trial of that case and thread
    count (all link modes pooled: glibc is glibc however the harness launched it).
    """
    trials = dataset.throughput
    series_of = series_index(trials)
    stats = group(trials, series_of, lambda t: t["ops_per_sec"])
    resident = group(trials, series_of, resident_per_live_byte)
    base_values = {}
    for t in trials:
        if t["allocator"] == BASELINE:
            base_values.setdefault((case_of(t), t["threads"]), []).append(t["ops_per_sec"])
    baseline = {k: statistics.median(v) for k, v in base_values.items()}
    rows = []
    for (case, threads, series), s in stats.items():
        base = baseline.get((case, threads))
        ratio = s.median / base if base else None
        per_live = resident.get((case, threads, series))
        rows.append(SummaryRow(case, threads, series, s, ratio,
                               per_live.median if per_live else None))
    rows.sort(key=lambda r: (workload_order(r.case[0]), r.case[1], r.threads, r.series.sort_key()))
    return rows


def machines(trials):
    """{(host, cpu, kernel): row count}."""
    out = {}
    for t in trials:
        key = (t["host"] or "?", t["cpu"] or "?", t["kernel"] or "?")
        out[key] = out.get(key, 0) + 1
    return out


def distinct(trials, column):
    out = {}
    for t in trials:
        out[t[column] or "?"] = out.get(t[column] or "?", 0) + 1
    return out
