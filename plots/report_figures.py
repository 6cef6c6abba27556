"""The report's pictures. Each draw_* function writes PNGs into the output folder and returns
Pictures (file name, section, caption); what it had to leave out goes into `notes`.

File names (all 1000x600 px):
  throughput_<case>.png                 ops/s vs threads, median and min-max of repetitions
  heatmap_vs_system_<allocator>.png     median ops/s / system's, case x threads
  syscalls_<case>.png                   futex calls and all syscalls per million ops
  mmap_<case>.png                       mmap / munmap / madvise per million ops
  rss.png                               peak RSS per allocator and case
  resident_vs_live_<case>.png           final resident memory against live bytes (footprint)
  hwcounters_<case>.png                 hardware counters per op, only those measured
  callgrind_instructions_per_op.png     deterministic instruction counts (link = callgrind)
<case> is the workload with '/' made '_' (micro/foo -> micro_foo), plus `__<params>` when one
workload was run with several parameter sets.
"""

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import EngFormatter, FixedFormatter, FixedLocator, NullLocator

import report_data as data
import report_style as style

PREFIXES = ("throughput_", "heatmap_vs_system_", "syscalls_", "mmap_", "hwcounters_",
            "resident_vs_live_")
SINGLES = ("rss.png", "callgrind_instructions_per_op.png", "index.html")
LOG_RANGE = 20.0  # medians spread wider than this many times -> log axis


@dataclass
class Picture:
    file: str
    section: str
    caption: str


def is_report_file(name):
    """True for the files a report writes (and a new report replaces)."""
    return name in SINGLES or (name.endswith(".png") and name.startswith(PREFIXES))


class Context:
    def __init__(self, dataset, out_dir):
        self.dataset = dataset
        self.out_dir = out_dir
        self.notes = []
        self.pictures = []
        self.slugs = data.case_slugs(data.cases(dataset.ok))
        self.machine = self.describe_machines(dataset.trials)

    @staticmethod
    def describe_machines(trials):
        found = data.machines(trials)
        if len(found) == 1:
            host, cpu, kernel = next(iter(found))
            return f"{host} · {cpu} · Linux {kernel}"
        return f"{len(found)} machines (see report)"

    def save(self, fig, name, section, caption):
        style.save(fig, f"{self.out_dir}/{name}")
        self.pictures.append(Picture(name, section, caption))

    def title(self, what, case):
        workload, params = case
        machine = self.describe_machines(
            [t for t in self.dataset.trials if data.case_of(t) == case])
        return f"{workload} — {what}\nparams: {params or '(default)'} · {machine}"


def _wide_range(values):
    positive = [v for v in values if v > 0]
    return len(positive) >= 2 and max(positive) / min(positive) > LOG_RANGE


def _thread_axis(ax, threads):
    threads = sorted(threads)
    if len(threads) > 1 and threads[0] > 0 and threads[-1] / threads[0] >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(threads)
    ax.set_xticklabels([str(t) for t in threads])
    ax.minorticks_off()


def draw_throughput(ctx):
    trials = ctx.dataset.throughput
    series_of = data.series_index(trials)
    stats = data.group(trials, series_of, lambda t: t["ops_per_sec"])
    for case in data.cases(trials):
        keys = [k for k in stats if k[0] == case]
        if len({k[1] for k in keys}) == 1:
            _throughput_bars(ctx, case, {k[2]: stats[k] for k in keys}, keys[0][1])
            continue
        fig, axes = style.new_figure()
        ax = axes[0][0]
        reps = set()
        for series in data.sorted_series(k[2] for k in keys):
            points = sorted((k[1], stats[k]) for k in keys if k[2] == series)
            x = [p[0] for p in points]
            med = np.array([p[1].median for p in points])
            low = np.array([p[1].low for p in points])
            high = np.array([p[1].high for p in points])
            reps.update(p[1].n for p in points)
            colour = style.allocator_colour(series.allocator)
            ax.plot(x, med, color=colour, marker=style.allocator_marker(series.allocator),
                    linestyle=style.series_linestyle(series), label=series.label)
            ax.errorbar(x, med, yerr=[med - low, high - med], fmt="none", ecolor=colour,
                        capsize=4, linewidth=1)
            if len(x) > 1:
                ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)
        _thread_axis(ax, {k[1] for k in keys})
        values = [stats[k].low for k in keys] + [stats[k].high for k in keys]
        if _wide_range(values):
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0, top=max(values) * 1.08)
        ax.yaxis.set_major_formatter(EngFormatter())
        ax.set_xlabel("threads")
        ax.set_ylabel("throughput (operations / s)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best", fontsize=9)
        n = "/".join(str(r) for r in sorted(reps))
        ax.set_title(f"median of {n} repetition(s); band and bars: min–max", fontsize=9)
        fig.suptitle(ctx.title("throughput vs threads", case), fontsize=11)
        ctx.save(fig, f"throughput_{ctx.slugs[case]}.png", "Throughput",
                 f"{data.case_label(case)}: throughput against thread count")


def _throughput_bars(ctx, case, by_series, threads):
    """A case run at one thread count only: one bar per allocator instead of a lone point."""
    series_list = data.sorted_series(by_series)
    fig, axes = style.new_figure()
    ax = axes[0][0]
    x = range(len(series_list))
    med = np.array([by_series[s].median for s in series_list])
    low = np.array([by_series[s].low for s in series_list])
    high = np.array([by_series[s].high for s in series_list])
    ax.bar(x, med, width=0.6, color=[style.allocator_colour(s.allocator) for s in series_list])
    ax.errorbar(x, med, yerr=[med - low, high - med], fmt="none", ecolor="black", capsize=4)
    ax.set_xticks(list(x))
    ax.set_xticklabels([s.label for s in series_list])
    if _wide_range(list(low) + list(high)):
        ax.set_yscale("log")
    ax.yaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel(f"allocator ({threads} thread{'s' if threads != 1 else ''})")
    ax.set_ylabel("throughput (operations / s)")
    ax.grid(True, axis="y", alpha=0.3)
    reps = "/".join(str(n) for n in sorted({by_series[s].n for s in series_list}))
    ax.set_title(f"median of {reps} repetition(s); bars: min–max", fontsize=9)
    fig.suptitle(ctx.title(f"throughput at {threads} thread(s)", case), fontsize=11)
    ctx.save(fig, f"throughput_{ctx.slugs[case]}.png", "Throughput",
             f"{data.case_label(case)}: throughput per allocator at {threads} thread(s)")


def draw_heatmaps(ctx, summary_rows):
    rows = [r for r in summary_rows if r.ratio is not None and r.series.allocator != data.BASELINE]
    if not any(r.series.allocator == data.BASELINE for r in summary_rows):
        ctx.notes.append("No `system` throughput rows: no ratios and no heatmaps.")
        return
    no_base = sorted({data.case_label(r.case) for r in summary_rows if r.ratio is None})
    if no_base:
        ctx.notes.append("No `system` baseline (same workload, params and threads) for: "
                         + ", ".join(no_base) + " — those cells have no ratio.")
    for series in data.sorted_series(r.series for r in rows):
        mine = [r for r in rows if r.series == series]
        case_list = data.cases([{"workload": r.case[0], "params": r.case[1]} for r in mine])
        threads = sorted({r.threads for r in mine})
        grid = np.full((len(case_list), len(threads)), np.nan)
        for r in mine:
            grid[case_list.index(r.case), threads.index(r.threads)] = r.ratio
        extreme = max(max(abs(math.log(v)) for v in grid[~np.isnan(grid)]), math.log(1.25))
        norm = LogNorm(vmin=math.exp(-extreme), vmax=math.exp(extreme))
        fig, axes = style.new_figure()
        ax = axes[0][0]
        ax.set_facecolor("#e0e0e0")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", norm=norm, aspect="auto")
        font = 10 if grid.size <= 60 else 7
        for i in range(len(case_list)):
            for j in range(len(threads)):
                v = grid[i, j]
                dark = not np.isnan(v) and abs(math.log(v)) > 0.7 * extreme
                ax.text(j, i, "—" if np.isnan(v) else f"{v:.3g}", ha="center", va="center",
                        fontsize=font, color="white" if dark else "black")
        ax.set_xticks(range(len(threads)))
        ax.set_xticklabels([str(t) for t in threads])
        ax.set_yticks(range(len(case_list)))
        ax.set_yticklabels([data.case_label(c) for c in case_list],
                           fontsize=9 if len(case_list) <= 20 else 6)
        ax.set_xlabel("threads")
        ax.set_ylabel("workload [params]")
        bar = fig.colorbar(image, ax=ax, label="median ops/s ÷ system median ops/s (ratio)")
        ticks = np.exp(np.linspace(-extreme, extreme, 7))
        bar.ax.yaxis.set_major_locator(FixedLocator(ticks))
        bar.ax.yaxis.set_major_formatter(FixedFormatter([f"{t:.3g}" for t in ticks]))
        bar.ax.yaxis.set_minor_locator(NullLocator())
        fig.suptitle(f"{series.label}: throughput relative to system (>1 is faster)\n"
                     f"{ctx.machine}", fontsize=11)
        ctx.save(fig, f"heatmap_vs_system_{data.slug(series.label)}.png", "Relative to system",
                 f"{series.label}: median throughput ÷ system's, per workload and thread count")


def _grouped_bars(ax, stats, case, series_list, threads, ylabel):
    """Bars per thread count, one per series; a missing value leaves a gap, never a zero."""
    width = 0.8 / max(len(series_list), 1)
    drawn = []
    for i, series in enumerate(series_list):
        xs, meds, lows, highs = [], [], [], []
        for j, t in enumerate(threads):
            s = stats.get((case, t, series))
            if s is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            meds.append(s.median)
            lows.append(s.median - s.low)
            highs.append(s.high - s.median)
        if not xs:
            continue
        colour = style.allocator_colour(series.allocator)
        ax.bar(xs, meds, width=width, color=colour, label=series.label,
               hatch="//" if series.split and series.link == "static" else None)
        ax.errorbar(xs, meds, yerr=[lows, highs], fmt="none", ecolor="black", capsize=2,
                    linewidth=0.8)
        drawn.extend(meds)
    ax.set_xticks(range(len(threads)))
    ax.set_xticklabels([str(t) for t in threads])
    ax.set_xlabel("threads")
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    positive = [v for v in drawn if v > 0]
    if _wide_range(drawn):
        ax.set_yscale("symlog", linthresh=min(positive))
    return drawn


def _metric_figures(ctx, metrics, unit, scale, prefix, section, what, skip_note):
    trials = ctx.dataset.throughput
    series_of = data.series_index(trials)
    stats = {column: data.group(trials, series_of,
                                lambda t, c=column: data.per_op(t, c, scale))
             for column, _ in metrics}
    for case in data.cases(trials):
        present = [(c, label) for c, label in metrics
                   if any(k[0] == case for k in stats[c])]
        missing = [label for c, label in metrics if (c, label) not in present]
        if not present:
            ctx.notes.append(f"{data.case_label(case)}: {skip_note} all NA — no {prefix} plot.")
            continue
        if missing:
            ctx.notes.append(f"{data.case_label(case)}: {', '.join(missing)} not measured "
                             f"(NA) — left out of {prefix}_{ctx.slugs[case]}.png.")
        case_trials = [t for t in trials if data.case_of(t) == case]
        series_list = data.sorted_series(series_of[id(t)] for t in case_trials)
        threads = sorted({t["threads"] for t in case_trials})
        fig, axes = style.new_figure(1, len(present))
        for ax, (column, label) in zip(axes[0], present):
            _grouped_bars(ax, stats[column], case, series_list, threads, f"{label} {unit}")
            ax.set_title(label, fontsize=10)
        handles, labels = axes[0][0].get_legend_handles_labels()
        axes[0][-1].legend(handles, labels, fontsize=8, loc="best")
        fig.suptitle(ctx.title(what, case), fontsize=11)
        ctx.save(fig, f"{prefix}_{ctx.slugs[case]}.png", section,
                 f"{data.case_label(case)}: {what} (median; bars: min–max of repetitions)")


def draw_syscalls(ctx):
    _metric_figures(ctx, data.SYSCALL_METRICS, "per million ops", 1e6, "syscalls",
                    "System calls", "futex calls and all syscalls per million operations",
                    "futex and syscall counts")
    _metric_figures(ctx, data.MMAP_METRICS, "per million ops", 1e6, "mmap",
                    "Memory mapping calls", "mmap / munmap / madvise per million operations",
                    "mmap/munmap/madvise counts")


def draw_hw_counters(ctx):
    trials = ctx.dataset.throughput
    available = []
    for column, label in data.HW_COUNTERS:
        if column in ctx.dataset.absent_columns and all(t[column] is None for t in trials):
            ctx.notes.append(f"Hardware counter `{column}`: column not in the CSV — not plotted.")
        elif all(t[column] is None for t in trials):
            ctx.notes.append(f"Hardware counter `{column}`: every value is NA — not plotted.")
        else:
            available.append((column, label))
    if available:
        _metric_figures(ctx, tuple(available), "", 1.0, "hwcounters", "Hardware counters",
                        "hardware counters per operation", "hardware counters")


def draw_rss(ctx):
    trials = [t for t in ctx.dataset.throughput if t["max_rss_kb"] is not None]
    if not trials:
        ctx.notes.append("Peak RSS (`max_rss_kb`) is NA everywhere — no RSS plot.")
        return
    series_of = data.series_index(trials)
    stats = data.group(trials, series_of, lambda t: t["max_rss_kb"] / 1024.0)
    # Per case and series: the thread count whose median peak RSS is largest.
    peak = {}
    for (case, threads, series), s in stats.items():
        if (case, series) not in peak or s.median > peak[(case, series)].median:
            peak[(case, series)] = s
    case_list = data.cases(trials)
    series_list = data.sorted_series(k[1] for k in peak)
    fig, axes = style.new_figure()
    ax = axes[0][0]
    width = 0.8 / len(series_list)
    values = []
    for i, series in enumerate(series_list):
        xs, meds, lows, highs = [], [], [], []
        for j, case in enumerate(case_list):
            s = peak.get((case, series))
            if s is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            meds.append(s.median)
            lows.append(s.median - s.low)
            highs.append(s.high - s.median)
        ax.bar(xs, meds, width=width, color=style.allocator_colour(series.allocator),
               label=series.label, hatch="//" if series.split and series.link == "static" else None)
        ax.errorbar(xs, meds, yerr=[lows, highs], fmt="none", ecolor="black", capsize=2,
                    linewidth=0.8)
        values.extend(meds)
    ax.set_xticks(range(len(case_list)))
    ax.set_xticklabels([data.case_label(c) for c in case_list], rotation=20, ha="right",
                       fontsize=9 if len(case_list) <= 10 else 7)
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_xlabel("workload [params]")
    if _wide_range(values):
        ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("median over repetitions at the thread count with the largest peak; "
                 "bars: min–max", fontsize=9)
    fig.suptitle(f"Peak resident set size per allocator and workload\n{ctx.machine}", fontsize=11)
    ctx.save(fig, "rss.png", "Memory", "Peak RSS (max_rss_kb) per allocator and workload")


def _note_missing_resident(ctx, trials):
    """A note for each case of a workload that should report live bytes and resident memory."""
    expected = [c for c in data.cases(trials) if c[0] in data.RESIDENT_WORKLOADS]
    absent = [c for c in data.RESIDENT_COLUMNS if c in ctx.dataset.absent_columns]
    for case in expected:
        if any(data.resident_per_live_byte(t) is not None for t in trials
               if data.case_of(t) == case):
            continue
        why = (f"column(s) {', '.join(absent)} not in the CSV (written before the schema had "
               "them)" if absent else "`live_bytes` / `final_rss_kb` NA in every row")
        ctx.notes.append(f"{data.case_label(case)}: {why} — no resident-vs-live plot.")


def draw_resident_vs_live(ctx):
    """Per case: final resident MiB against live MiB, median per allocator and thread count."""
    trials = ctx.dataset.throughput
    _note_missing_resident(ctx, trials)
    measured = [t for t in trials if data.resident_per_live_byte(t) is not None]
    series_of = data.series_index(measured)
    mib = 1024.0 * 1024.0
    live = data.group(measured, series_of, lambda t: t["live_bytes"] / mib)
    resident = data.group(measured, series_of, lambda t: t["final_rss_kb"] / 1024.0)
    for case in data.cases(measured):
        keys = sorted((k for k in live if k[0] == case), key=lambda k: k[1])
        fig, axes = style.new_figure()
        ax = axes[0][0]
        # One range for both axes keeps the ideal line at 45 degrees; it is zoomed to the points
        # (which sit together near the workload's total) so that allocators can be told apart.
        low = min(min(live[k].low, resident[k].low) for k in keys)
        high = max(max(live[k].high, resident[k].high) for k in keys)
        pad = 0.08 * (high - low) or 0.05 * high
        bottom, top = max(0.0, low - pad), high + pad
        ax.plot([bottom, top], [bottom, top], color="#999999", linestyle="--", linewidth=1,
                label="ideal: resident = live")
        for i, series in enumerate(data.sorted_series(k[2] for k in keys)):
            mine = [k for k in keys if k[2] == series]  # by thread count
            x = np.array([live[k].median for k in mine])
            y = np.array([resident[k].median for k in mine])
            colour = style.allocator_colour(series.allocator)
            ax.errorbar(x, y, xerr=[x - [live[k].low for k in mine],
                                    [live[k].high for k in mine] - x],
                        yerr=[y - [resident[k].low for k in mine],
                              [resident[k].high for k in mine] - y],
                        color=colour, marker=style.allocator_marker(series.allocator),
                        markersize=10, linestyle=style.series_linestyle(series), linewidth=1,
                        capsize=3, label=series.label)
            for k, xi, yi in zip(mine, x, y):
                # Series apart vertically, so labels of points that nearly coincide stay readable.
                ax.annotate(f"{k[1]} thr", (xi, yi), textcoords="offset points",
                            xytext=(8, 8 - 9 * (i % 3)), fontsize=7, color=colour)
        ax.set_xlim(bottom, top)
        ax.set_ylim(bottom, top)
        ax.set_xlabel("live bytes held by the workload (MiB)")
        ax.set_ylabel("final resident memory, VmRSS (MiB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        reps = "/".join(str(n) for n in sorted({live[k].n for k in keys}))
        ax.set_title(f"median of {reps} repetition(s) per thread count; bars: min–max",
                     fontsize=9)
        fig.suptitle(ctx.title("final resident memory against live bytes", case), fontsize=11)
        ctx.save(fig, f"resident_vs_live_{ctx.slugs[case]}.png", "Memory",
                 f"{data.case_label(case)}: final resident memory against live bytes "
                 "(the dashed line is no overhead)")


def callgrind_stats(dataset):
    """{(case, threads, series): Spread of instructions per op} from callgrind rows."""
    trials = [t for t in dataset.callgrind if data.per_op(t, "instructions") is not None]
    return data.group(trials, data.series_index(trials),
                      lambda t: data.per_op(t, "instructions"))


def draw_callgrind(ctx):
    if not ctx.dataset.callgrind:
        return
    stats = callgrind_stats(ctx.dataset)
    if not stats:
        ctx.notes.append("callgrind rows carry no instruction count — no instructions-per-op "
                         "plot.")
        return
    labels = sorted({(k[0], k[1]) for k in stats},
                    key=lambda ct: (data.workload_order(ct[0][0]), ct[0][1], ct[1]))
    series_list = data.sorted_series(k[2] for k in stats)
    fig, axes = style.new_figure()
    ax = axes[0][0]
    width = 0.8 / len(series_list)
    for i, series in enumerate(series_list):
        xs, meds = [], []
        for j, (case, threads) in enumerate(labels):
            s = stats.get((case, threads, series))
            if s is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                meds.append(s.median)
        ax.bar(xs, meds, width=width, color=style.allocator_colour(series.allocator),
               label=series.label)
        for x, m in zip(xs, meds):
            ax.annotate(f"{m:.1f}", (x, m), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([f"{data.case_label(c)}\n{t} thr" for c, t in labels], fontsize=8)
    ax.set_ylabel("instructions per operation (callgrind)")
    ax.set_xlabel("workload [params], threads")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.suptitle("Instructions per operation under valgrind --tool=callgrind "
                 f"(deterministic)\n{ctx.machine}", fontsize=11)
    ctx.save(fig, "callgrind_instructions_per_op.png", "Instructions per operation (callgrind)",
             "Deterministic instruction counts per operation (callgrind rows)")


def draw_all(ctx, summary_rows):
    draw_throughput(ctx)
    draw_heatmaps(ctx, summary_rows)
    draw_syscalls(ctx)
    draw_rss(ctx)
    draw_resident_vs_live(ctx)
    draw_hw_counters(ctx)
    draw_callgrind(ctx)
