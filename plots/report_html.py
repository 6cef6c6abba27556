"""index.html: the report page — data provenance, notes, summary table, every picture, failures."""

import datetime
import html

import report_data as data
import report_figures as figures
from report_style import HEIGHT_PX, WIDTH_PX

CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 2px 8px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eee; }
tr.baseline td { color: #666; }
td.faster { background: #e3f4e3; } td.slower { background: #fbe3e3; }
figure { display: inline-block; margin: 0.5em; }
figcaption { font-size: 0.85em; color: #444; }
.failed td { background: #fff3e0; }
"""

FAILED_COLUMNS = ("timestamp", "workload", "params", "allocator", "link", "threads", "rep",
                  "status", "git_sha", "host", "source")


def _e(value):
    return html.escape("" if value is None else str(value))


def _table(headers, rows, table_id=None, row_class=None):
    out = [f'<table id="{table_id}">' if table_id else "<table>", "<tr>"]
    out += [f"<th>{_e(h)}</th>" for h in headers]
    out.append("</tr>")
    for i, row in enumerate(rows):
        cls = row_class(i) if row_class else None
        out.append(f'<tr class="{cls}">' if cls else "<tr>")
        for cell in row:
            if isinstance(cell, tuple):  # (text, css class)
                out.append(f'<td class="{cell[1]}">{_e(cell[0])}</td>')
            else:
                out.append(f"<td>{_e(cell)}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "\n".join(out)


def _fmt_int(value):
    return "NA" if value is None else f"{value:,.0f}"


def _fmt_value(trial_value):
    if isinstance(trial_value, float) and trial_value.is_integer():
        return str(int(trial_value))
    return "NA" if trial_value is None else str(trial_value)


def _provenance(dataset):
    trials = dataset.trials
    parts = ["<h2>Data</h2>", "<p>Source CSV(s): "
             + ", ".join(f"<code>{_e(s)}</code>" for s in dataset.sources)
             + f" — {len(trials)} row(s), {len(dataset.ok)} ok, {len(dataset.failed)} not ok.</p>"]
    parts.append("<h3>Machine</h3>")
    parts.append(_table(("host", "cpu", "kernel", "rows"),
                        [(h, c, k, n) for (h, c, k), n in sorted(data.machines(trials).items())],
                        table_id="machines"))
    parts.append("<h3>Git revision(s)</h3>")
    parts.append(_table(("git_sha", "rows"), sorted(data.distinct(trials, "git_sha").items()),
                        table_id="revisions"))
    stamps = sorted(t["timestamp"] for t in trials if t["timestamp"])
    configs = ", ".join(sorted(data.distinct(trials, "config")))
    if stamps:
        parts.append(f"<p>Trials from {_e(stamps[0])} to {_e(stamps[-1])}; "
                     f"config(s): {_e(configs)}.</p>")
    versions = sorted({(t["allocator"], t["allocator_version"] or "?") for t in trials})
    parts.append("<h3>Allocators</h3>")
    parts.append(_table(("allocator", "version"), versions, table_id="allocators"))
    return "\n".join(parts)


def _summary_table(summary_rows):
    rows = []
    for r in summary_rows:
        workload, params = r.case
        ratio = ("—", "num") if r.ratio is None else (
            f"{r.ratio:.3f}" if r.ratio >= 0.1 else f"{r.ratio:.3g}",
            "num faster" if r.ratio > 1.0 else "num slower" if r.ratio < 1.0 else "num")
        per_live = "—" if r.resident_per_live is None else f"{r.resident_per_live:.3f}"
        rows.append((workload, params, (r.threads, "num"), r.series.allocator, r.series.link,
                     (r.throughput.n, "num"), (_fmt_int(r.throughput.median), "num"),
                     (_fmt_int(r.throughput.low), "num"), (_fmt_int(r.throughput.high), "num"),
                     ratio, (per_live, "num")))
    return _table(("workload", "params", "threads", "allocator", "link", "reps",
                   "median ops/s", "min ops/s", "max ops/s", "ratio to system",
                   "resident per live byte"), rows,
                  table_id="summary",
                  row_class=lambda i: "baseline" if summary_rows[i].series.allocator
                  == data.BASELINE else None)


def _callgrind_table(dataset):
    stats = figures.callgrind_stats(dataset)
    if not stats:
        return ""
    keys = sorted(stats, key=lambda k: (data.workload_order(k[0][0]), k[0][1], k[1],
                                        k[2].sort_key()))
    rows = [(k[0][0], k[0][1], (k[1], "num"), k[2].allocator, (stats[k].n, "num"),
             (f"{stats[k].median:.1f}", "num")) for k in keys]
    # Follows the callgrind picture, drawn last under the same heading whenever these stats exist.
    return ("<p>Deterministic counts from "
            "<code>link = callgrind</code> rows; not throughput measurements.</p>\n"
            + _table(("workload", "params", "threads", "allocator", "reps",
                      "instructions / op (median)"), rows, table_id="callgrind"))


def _trial_cells(trial):
    """The identifying cells of one trial; `source` is file:line so it can be found."""
    return tuple(f"{trial['source']}:{trial['line']}" if c == "source" else _fmt_value(trial[c])
                 for c in FAILED_COLUMNS)


def _failures(dataset):
    failed = dataset.failed
    parts = [f"<h2>Failed trials ({len(failed)})</h2>"]
    if failed:
        parts.append(_table(FAILED_COLUMNS, [_trial_cells(t) for t in failed],
                            table_id="failed", row_class=lambda i: "failed"))
    else:
        parts.append("<p>None: every trial finished with status ok.</p>")
    odd = dataset.ok_without_throughput
    if odd:
        parts.append(f"<h3>ok trials without a throughput value ({len(odd)})</h3>")
        parts.append(_table(FAILED_COLUMNS, [_trial_cells(t) for t in odd],
                            table_id="no-throughput"))
    return "\n".join(parts)


def _pictures(pictures):
    parts, section = [], None
    for p in pictures:
        if p.section != section:
            section = p.section
            parts.append(f"<h2>{_e(section)}</h2>")
        parts.append(f'<figure><a href="{_e(p.file)}"><img src="{_e(p.file)}" '
                     f'width="{WIDTH_PX // 2}" height="{HEIGHT_PX // 2}" alt="{_e(p.caption)}">'
                     f"</a><figcaption>{_e(p.caption)}</figcaption></figure>")
    return "\n".join(parts)


def write(path, dataset, summary_rows, ctx):
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = "".join(f"<li>{_e(n)}</li>" for n in ctx.notes)
    body = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>hakmem benchmark report</title>", f"<style>{CSS}</style></head><body>",
        "<h1>hakmem benchmark report</h1>",
        f"<p>Generated {generated} by plots/report.py. Ratios are median ops/s divided by the "
        "median ops/s of <code>system</code> (glibc) at the same workload, params and thread "
        "count. Resident per live byte is the median of final_rss_kb × 1024 ÷ live_bytes, for "
        "workloads that report them (footprint; 1 would be no overhead).</p>",
        _provenance(dataset),
        f'<h2>Notes</h2><ul id="notes">{notes}</ul>' if notes else "",
        "<h2>Summary</h2>", _summary_table(summary_rows),
        _pictures(ctx.pictures),
        _callgrind_table(dataset),
        _failures(dataset),
        "</body></html>",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(b for b in body if b) + "\n")
