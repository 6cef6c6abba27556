#!/usr/bin/python3
"""Turn hakbench result CSVs into PNGs and an index.html report.

usage: /usr/bin/python3 plots/report.py [--out DIR] CSV [CSV...]

The CSVs' rows are concatenated. DIR defaults to results/plots/<stem of the first CSV>/ in the
repository. Exit status: 0 on success, 2 when the input cannot make a report (missing file,
missing required column, no ok rows), with a message on stderr naming the problem.
See report_figures.py for the list of pictures and their file names.
"""

import argparse
import os
import sys

import report_data as data
import report_figures as figures
import report_html

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_out_dir(first_csv):
    stem = os.path.splitext(os.path.basename(first_csv))[0]
    return os.path.join(REPO, "results", "plots", stem)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("csv", nargs="+", metavar="CSV", help="hakbench result CSV(s)")
    args = parser.parse_args(argv)
    try:
        dataset = data.load(args.csv)
    except data.InputError as error:
        print(f"report.py: error: {error}", file=sys.stderr)
        return 2
    out_dir = args.out or default_out_dir(args.csv[0])
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):  # an earlier report's pictures would be linked by no one
        if figures.is_report_file(name):
            os.remove(os.path.join(out_dir, name))
    summary_rows = data.summary(dataset)
    ctx = figures.Context(dataset, out_dir)
    figures.draw_all(ctx, summary_rows)
    report_html.write(os.path.join(out_dir, "index.html"), dataset, summary_rows, ctx)
    print(f"report.py: {len(ctx.pictures)} picture(s) and index.html in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
