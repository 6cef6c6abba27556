#!/usr/bin/python3
"""Tests of plots/report.py: runs it as the harness does, on the committed fixture.csv and on
variants of it, and checks the pictures and index.html it writes.

Expected values are computed here from the fixture with the csv module, not with report.py's code.
Run one group:  /usr/bin/python3 tests/plots/test_report.py FixtureReport
"""

import csv
import os
import shutil
import statistics
import struct
import subprocess
import tempfile
import unittest
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REPORT = os.path.join(REPO, "plots", "report.py")
FIXTURE = os.path.join(HERE, "fixture.csv")
PYTHON = "/usr/bin/python3"
WIDTH, HEIGHT = 1000, 600
HW_COLUMNS = ("cycles", "instructions", "cache_misses", "branch_misses")

CASES = ("larson", "random-mixed", "footprint", "micro_tiny_pair")
EXPECTED_PNGS = (
    {f"{kind}_{case}.png" for kind in ("throughput", "syscalls", "mmap", "hwcounters")
     for case in CASES}
    | {f"heatmap_vs_system_{a}.png"
       for a in ("hakmem", "hakmem-static", "jemalloc", "mimalloc", "snmalloc")}
    | {"rss.png", "callgrind_instructions_per_op.png", "resident_vs_live_footprint.png"}
)
RESIDENT_COLUMNS = ("live_bytes", "final_rss_kb")
# Share of strongly coloured pixels a picture must have; a scatter of ten markers colours less
# than bars do (its legend alone has ~0.1%).
MIN_COLOURED = {"resident_vs_live_footprint.png": 0.002}
HAKMEM_RED = (0xD6, 0x27, 0x28)  # the fixed colour of `hakmem` (plots/report_style.py)


def run_report(out_dir, *csvs):
    return subprocess.run([PYTHON, REPORT, "--out", out_dir, *csvs], capture_output=True,
                          text=True, timeout=300)


def read_fixture():
    with open(FIXTURE, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def png_size(path):
    """(width, height) from the PNG signature and IHDR chunk; fails on anything else."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise AssertionError(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


class Page(HTMLParser):
    """Collects links, image sources and the cell text of every table (by table id)."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.imgs, self.tables, self.notes = set(), set(), {}, []
        self._table, self._row, self._cell, self._in_notes, self._note = None, None, None, 0, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and "href" in attrs:
            self.hrefs.add(attrs["href"])
        elif tag == "img":
            self.imgs.add(attrs.get("src"))
        elif tag == "table":
            self._table = attrs.get("id", f"anon{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "ul" and attrs.get("id") == "notes":
            self._in_notes = 1
        elif tag == "li" and self._in_notes:
            self._note = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "li" and self._note is not None:
            self.notes.append(self._note)
            self._note = None
        elif tag == "ul":
            self._in_notes = 0

    def handle_data(self, text):
        if self._cell is not None:
            self._cell += text
        if self._note is not None:
            self._note += text


def parse_page(out_dir):
    page = Page()
    with open(os.path.join(out_dir, "index.html"), encoding="utf-8") as f:
        page.feed(f.read())
    return page


def table_dicts(page, table_id):
    rows = page.tables[table_id]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


class FixtureReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="hakmem-plots-")
        cls.result = run_report(cls.out, FIXTURE)
        cls.pngs = sorted(n for n in os.listdir(cls.out) if n.endswith(".png"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr)
        self.page = parse_page(self.out)

    def test_writes_exactly_the_expected_pictures(self):
        self.assertEqual(set(self.pngs), EXPECTED_PNGS)

    def test_pictures_are_valid_pngs_of_fixed_size_and_not_blank(self):
        for name in self.pngs:
            with self.subTest(png=name):
                path = os.path.join(self.out, name)
                self.assertEqual(png_size(path), (WIDTH, HEIGHT))
                pixels = matplotlib.image.imread(path)[..., :3]
                self.assertEqual(pixels.shape, (HEIGHT, WIDTH, 3))
                self.assertGreater(float(pixels.var()), 1e-3)
                # Something coloured was drawn, not only axes and text (which are grey/black).
                saturation = pixels.max(axis=2) - pixels.min(axis=2)
                self.assertGreater(float((saturation > 0.2).mean()), MIN_COLOURED.get(name, 0.005))

    def test_hakmem_has_its_fixed_colour_in_every_allocator_plot(self):
        red = np.array(HAKMEM_RED) / 255.0
        for name in ("throughput_larson.png", "syscalls_larson.png", "mmap_random-mixed.png",
                     "rss.png", "hwcounters_larson.png", "callgrind_instructions_per_op.png",
                     "resident_vs_live_footprint.png"):
            with self.subTest(png=name):
                pixels = matplotlib.image.imread(os.path.join(self.out, name))[..., :3]
                close = np.abs(pixels - red).max(axis=2) < 2.5 / 255
                self.assertGreater(int(close.sum()), 50)

    def test_index_links_and_shows_every_picture(self):
        for name in self.pngs:
            self.assertIn(name, self.page.hrefs)
            self.assertIn(name, self.page.imgs)

    def expected(self, workload, allocator, threads):
        """Median ops/s of the fixture's ok, non-callgrind rows, and its ratio to system's."""
        def median(alloc):
            return statistics.median(
                float(r["ops_per_sec"]) for r in read_fixture()
                if r["workload"] == workload and r["allocator"] == alloc and r["status"] == "ok"
                and r["link"] != "callgrind" and int(r["threads"]) == threads)
        return median(allocator), median(allocator) / median("system")

    def summary_cell(self, workload, allocator, threads):
        found = [r for r in table_dicts(self.page, "summary")
                 if (r["workload"], r["allocator"], r["threads"]) ==
                 (workload, allocator, str(threads))]
        self.assertEqual(len(found), 1, f"{workload}/{allocator}/{threads}: {found}")
        return found[0]

    def test_summary_shows_the_right_ratios(self):
        cells = (("larson", "hakmem", 4),          # one repetition crashed: median of two
                 ("random-mixed", "jemalloc", 4),  # one repetition timed out
                 ("random-mixed", "snmalloc", 1),  # an allocator the plots do not know
                 ("footprint", "hakmem-static", 1),
                 ("micro/tiny_pair", "mimalloc", 1))
        for workload, allocator, threads in cells:
            with self.subTest(cell=(workload, allocator, threads)):
                median, ratio = self.expected(workload, allocator, threads)
                row = self.summary_cell(workload, allocator, threads)
                self.assertAlmostEqual(float(row["ratio to system"]), ratio, delta=0.0006)
                self.assertEqual(float(row["median ops/s"].replace(",", "")), round(median))
        self.assertEqual(self.summary_cell("larson", "hakmem", 4)["reps"], "2")
        self.assertEqual(self.summary_cell("larson", "system", 2)["ratio to system"], "1.000")

    def test_summary_shows_resident_per_live_byte_for_footprint_only(self):
        for allocator, threads in (("hakmem", 4), ("system", 1), ("mimalloc", 4)):
            with self.subTest(cell=(allocator, threads)):
                expected = statistics.median(
                    float(r["final_rss_kb"]) * 1024 / float(r["live_bytes"])
                    for r in read_fixture()
                    if r["workload"] == "footprint" and r["allocator"] == allocator
                    and r["status"] == "ok" and int(r["threads"]) == threads)
                shown = self.summary_cell("footprint", allocator, threads)
                self.assertAlmostEqual(float(shown["resident per live byte"]), expected,
                                       delta=0.0006)
        self.assertGreater(float(self.summary_cell("footprint", "hakmem", 1)
                                 ["resident per live byte"]), 1.3)
        self.assertEqual(self.summary_cell("larson", "hakmem", 1)["resident per live byte"], "—")

    def test_resident_vs_live_picture_is_linked_and_draws_the_measured_points(self):
        name = "resident_vs_live_footprint.png"
        self.assertIn(name, self.page.hrefs)
        self.assertIn(name, self.page.imgs)
        self.assertEqual(png_size(os.path.join(self.out, name)), (WIDTH, HEIGHT))
        self.assertFalse([n for n in self.page.notes if "resident-vs-live" in n])

    def test_summary_covers_every_group_and_no_callgrind_row(self):
        groups = {(r["workload"], r["threads"], r["allocator"]) for r in read_fixture()
                  if r["status"] == "ok" and r["link"] != "callgrind"}
        rows = table_dicts(self.page, "summary")
        self.assertEqual({(r["workload"], r["threads"], r["allocator"]) for r in rows}, groups)
        self.assertEqual(len(rows), len(groups))
        self.assertNotIn("callgrind", {r["link"] for r in rows})

    def test_callgrind_rows_are_an_instructions_per_op_table(self):
        rows = {r["allocator"]: r for r in table_dicts(self.page, "callgrind")}
        self.assertEqual(set(rows), {"system", "hakmem"})
        self.assertEqual(rows["system"]["instructions / op (median)"], "61.0")
        self.assertEqual(rows["hakmem"]["instructions / op (median)"], "23.5")

    def test_failed_trials_are_listed(self):
        failed = table_dicts(self.page, "failed")
        expected = {(r["workload"], r["allocator"], r["threads"], r["rep"], r["status"])
                    for r in read_fixture() if r["status"] != "ok"}
        self.assertIn(("larson", "hakmem", "4", "3", "crashed"), expected)
        self.assertEqual({(r["workload"], r["allocator"], r["threads"], r["rep"], r["status"])
                          for r in failed}, expected)

    def test_machine_and_revision_are_shown(self):
        machines = table_dicts(self.page, "machines")
        self.assertEqual([(m["host"], m["cpu"], m["kernel"]) for m in machines],
                         [("fixture-host", "Fixture CPU 2 cores @ 2.0GHz",
                           "6.1.0-fixture-amd64")])
        self.assertEqual([r["git_sha"] for r in table_dicts(self.page, "revisions")],
                         ["3f2c1d0"])

    def test_na_counters_are_noted_not_plotted(self):
        notes = " ".join(self.page.notes)
        for column in ("cache_misses", "branch_misses"):
            self.assertIn(column, notes)
        self.assertNotIn("instructions`", notes)
        self.assertIn("madvise", notes)  # NA for footprint only

    def test_rerun_replaces_old_pictures_but_keeps_foreign_files(self):
        out = tempfile.mkdtemp(prefix="hakmem-plots-rerun-")
        try:
            for name in ("throughput_gone.png", "notes.txt"):
                open(os.path.join(out, name), "w").close()
            self.assertEqual(run_report(out, FIXTURE).returncode, 0)
            names = set(os.listdir(out))
            self.assertNotIn("throughput_gone.png", names)
            self.assertIn("notes.txt", names)
        finally:
            shutil.rmtree(out, ignore_errors=True)


class FixtureVariant(unittest.TestCase):
    """A variant of the fixture written to a temporary folder and reported on."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hakmem-plots-variant-")
        with open(FIXTURE, newline="") as f:
            self.columns = csv.DictReader(f).fieldnames

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def report(self, csv_path):
        """Runs the report on csv_path; returns its folder and the PNGs in it."""
        out = os.path.join(self.dir, "out")
        result = run_report(out, csv_path)
        self.assertEqual(result.returncode, 0, result.stderr)
        return out, {n for n in os.listdir(out) if n.endswith(".png")}


class NoHardwareCounters(FixtureVariant):
    def check(self, csv_path, expected_note):
        out, pngs = self.report(csv_path)
        self.assertFalse({n for n in pngs if n.startswith("hwcounters_")})
        self.assertNotIn("callgrind_instructions_per_op.png", pngs)
        self.assertIn("throughput_larson.png", pngs)
        notes = parse_page(out).notes
        for column in HW_COLUMNS:
            self.assertTrue(any(column in n and expected_note in n for n in notes),
                            f"no note for {column}: {notes}")

    def test_all_na_counters_give_no_counter_picture_and_a_note(self):
        rows = read_fixture()
        for r in rows:
            r.update({c: "NA" for c in HW_COLUMNS})
        path = os.path.join(self.dir, "nohw.csv")
        write_csv(path, rows, self.columns)
        self.check(path, "NA")

    def test_absent_counter_columns_give_a_note(self):
        path = os.path.join(self.dir, "nocols.csv")
        write_csv(path, read_fixture(), [c for c in self.columns if c not in HW_COLUMNS])
        self.check(path, "not in the CSV")


class PreviousSchema(FixtureVariant):
    """A CSV from before live_bytes and final_rss_kb: no resident picture, a note, no zeros."""

    def check(self, csv_path, expected_note):
        out, pngs = self.report(csv_path)
        self.assertEqual(pngs, EXPECTED_PNGS - {"resident_vs_live_footprint.png"})
        page = parse_page(out)
        notes = [n for n in page.notes if n.startswith("footprint") and "resident-vs-live" in n]
        self.assertEqual(len(notes), 1, page.notes)
        self.assertIn(expected_note, notes[0])
        footprint = [r for r in table_dicts(page, "summary") if r["workload"] == "footprint"]
        self.assertTrue(footprint)
        self.assertEqual({r["resident per live byte"] for r in footprint}, {"—"})

    def test_absent_columns_skip_the_picture_with_a_note(self):
        path = os.path.join(self.dir, "previous.csv")
        write_csv(path, read_fixture(), [c for c in self.columns if c not in RESIDENT_COLUMNS])
        self.check(path, "live_bytes, final_rss_kb not in the CSV")

    def test_na_values_skip_the_picture_with_a_note(self):
        rows = read_fixture()
        for r in rows:
            r["final_rss_kb"] = "NA"
        path = os.path.join(self.dir, "na.csv")
        write_csv(path, rows, self.columns)
        self.check(path, "NA in every row")


class BadInput(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hakmem-plots-bad-")
        with open(FIXTURE, newline="") as f:
            self.columns = csv.DictReader(f).fieldnames

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def assert_exit_2(self, result, *words):
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        for word in words:
            self.assertIn(word, result.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "out", "index.html")))

    def test_missing_required_column(self):
        for column in ("threads", "ops_per_sec", "status"):
            with self.subTest(column=column):
                path = os.path.join(self.dir, f"no_{column}.csv")
                write_csv(path, read_fixture(), [c for c in self.columns if c != column])
                self.assert_exit_2(run_report(os.path.join(self.dir, "out"), path),
                                   "missing required column", column, path)

    def test_missing_file(self):
        path = os.path.join(self.dir, "does-not-exist.csv")
        self.assert_exit_2(run_report(os.path.join(self.dir, "out"), FIXTURE, path),
                           "no such file", path)

    def test_no_ok_rows(self):
        path = os.path.join(self.dir, "all-crashed.csv")
        rows = [r for r in read_fixture() if r["status"] != "ok"]
        write_csv(path, rows, self.columns)
        self.assert_exit_2(run_report(os.path.join(self.dir, "out"), path), "no rows", "ok")

    def test_non_numeric_value(self):
        rows = read_fixture()
        rows[5]["ops_per_sec"] = "fast"
        path = os.path.join(self.dir, "garbled.csv")
        write_csv(path, rows, self.columns)
        self.assert_exit_2(run_report(os.path.join(self.dir, "out"), path),
                           "ops_per_sec", "'fast'", "line 7")


if __name__ == "__main__":
    unittest.main(verbosity=2)
