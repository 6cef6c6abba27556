// The regression check on synthetic CSVs: an unchanged pair passes, a 20% drop of hakmem's
// throughput ratio to system fails, a 3% rise in callgrind instructions per op fails, a 15% rise
// of footprint's resident memory per live byte fails, a baseline of the previous schema skips
// that check with a note, one workload under two params is two cases (a regression in one is
// that case's alone, named with its params; the sweep's summary table keeps them apart too), a
// file without a params column still compares, unusable input is refused with its reason (and
// exit codes 0/1/2 from the CLI).
#include "compare.h"

#include <gtest/gtest.h>

#include <optional>

#include "summary.h"
#include "test_support.h"

namespace hakbench {
namespace {

struct Spec {
  double hak_tput = 2e6, sys_tput = 1e6;       // ops/s
  double hak_cpu_ms = 500, sys_cpu_ms = 1000;  // task clock per trial of 1e6 ops
  double hak_rss = 4000, sys_rss = 3000;
  double hak_futex = 50;     // per trial, on 1e6 ops
  double hak_instr = 150e6;  // callgrind, on 1e6 ops
  // footprint rows (threads 1, 3 reps, 64 MiB live) when set: hakmem's final RSS in KiB; system
  // holds 1.1 KiB per live KiB.
  std::optional<double> hak_final_rss_kb;
};

constexpr double kLiveBytes = 64 << 20;

Row row(const std::string& alloc, const std::string& link, const std::string& workload, int threads,
        int rep, double tput, double rss, double futex, double instr, double cpu_ms = 1000) {
  Row r;
  r[Col::config] = "ci";
  r[Col::workload] = workload;
  r[Col::allocator] = alloc;
  r[Col::link] = link;
  r[Col::threads] = std::to_string(threads);
  r[Col::rep] = std::to_string(rep);
  r[Col::status] = "ok";
  r[Col::ops] = "1000000";
  r[Col::ops_per_sec] = std::to_string(tput);
  if (link != "callgrind") {
    r[Col::max_rss_kb] = std::to_string(rss);
    r[Col::futex_calls] = std::to_string(futex);
    r[Col::task_clock_ms] = std::to_string(cpu_ms);
  } else {
    r[Col::instructions] = std::to_string(instr);
  }
  return r;
}

Table table_of(const Spec& s) {
  std::string text = header_line();
  for (const char* w : {"larson", "random-mixed"}) {
    for (int t : {1, 2}) {
      for (int rep = 1; rep <= 3; ++rep) {
        // A little spread between repetitions, as on a real machine.
        double wobble = 1 + 0.01 * (rep - 2);
        text += row_line(row("system", "libc", w, t, rep, s.sys_tput * wobble, s.sys_rss, 10, 0,
                             s.sys_cpu_ms / wobble));
        text += row_line(row("hakmem", "preload", w, t, rep, s.hak_tput * wobble, s.hak_rss,
                             s.hak_futex, 0, s.hak_cpu_ms / wobble));
      }
    }
    text += row_line(row("hakmem", "callgrind", w, 1, 1, 1e4, 0, 0, s.hak_instr));
  }
  for (int rep = 1; s.hak_final_rss_kb && rep <= 3; ++rep) {
    for (const char* alloc : {"system", "hakmem"}) {
      Row r = row(alloc, "preload", "footprint", 1, rep, 1e6, 1, 1, 0);
      r[Col::live_bytes] = std::to_string(kLiveBytes);
      double kb = std::string(alloc) == "system" ? kLiveBytes / 1024 * 1.1 : *s.hak_final_rss_kb;
      r[Col::final_rss_kb] = std::to_string(kb * (1 + 0.001 * (rep - 2)));
      text += row_line(r);
    }
  }
  // A crashed row never counts.
  Row bad = row("hakmem", "preload", "larson", 1, 4, 1, 1, 1, 0);
  bad[Col::status] = "crashed:SIGSEGV";
  text += row_line(bad);
  return parse_csv(text, "synthetic");
}

CompareResult run(const Spec& base, const Spec& now, CompareOptions o = {}) {
  return compare_tables(table_of(base), "base.csv", table_of(now), "new.csv", o);
}

const CompareLine* find(const CompareResult& r, const std::string& metric,
                        const std::string& workload, int threads) {
  for (const auto& l : r.lines)
    if (l.metric == metric && l.workload == workload && l.threads == threads) return &l;
  return nullptr;
}

TEST(Compare, UnchangedPairPasses) {
  CompareResult r = run({}, {});
  EXPECT_FALSE(r.regressed) << r.table();
  // 2 workloads × 2 thread counts × 4 metrics + 2 callgrind lines.
  EXPECT_EQ(r.lines.size(), 18u) << r.table();
  for (const auto& l : r.lines) EXPECT_EQ(l.verdict, "ok");
  const CompareLine* t = find(r, "throughput_ratio", "larson", 1);
  ASSERT_NE(t, nullptr);
  EXPECT_DOUBLE_EQ(t->base, 2.0);
  const CompareLine* i = find(r, "instructions_per_op", "larson", 1);
  ASSERT_NE(i, nullptr);
  EXPECT_DOUBLE_EQ(i->base, 150.0);
}

TEST(Compare, AbsoluteSlowdownOfBothAllocatorsIsNotARegression) {
  Spec slow;
  slow.hak_tput = 1.2e6;  // the whole machine 40% slower: ratio unchanged
  slow.sys_tput = 0.6e6;
  EXPECT_FALSE(run({}, slow).regressed);
}

TEST(Compare, TwentyPercentThroughputRatioDropFails) {
  Spec drop;
  drop.hak_tput = 1.6e6;
  CompareResult r = run({}, drop);
  EXPECT_TRUE(r.regressed);
  const CompareLine* t = find(r, "throughput_ratio", "random-mixed", 2);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->verdict, "REGRESSED");
  EXPECT_NEAR(t->change, -0.20, 1e-9);
  EXPECT_NE(r.table().find("REGRESSED"), std::string::npos);
}

TEST(Compare, TwentyPercentCpuThroughputRatioDropFails) {
  Spec slower;
  slower.hak_cpu_ms = 625;  // 1e6 ops in 625 ms instead of 500: ratio 2.0 -> 1.6
  CompareResult r = run({}, slower);
  EXPECT_TRUE(r.regressed);
  const CompareLine* c = find(r, "cpu_throughput_ratio", "larson", 1);
  ASSERT_NE(c, nullptr);
  EXPECT_DOUBLE_EQ(c->base, 2.0);
  EXPECT_NEAR(c->change, -0.20, 1e-9);
  EXPECT_EQ(c->verdict, "REGRESSED");
  EXPECT_EQ(find(r, "throughput_ratio", "larson", 1)->verdict, "ok");
}

TEST(Compare, TenPercentDropIsWithinTheDefaultTolerance) {
  Spec drop;
  drop.hak_tput = 1.8e6;
  EXPECT_FALSE(run({}, drop).regressed);
  CompareOptions strict;
  strict.tolerance["throughput_ratio"] = 0.05;
  EXPECT_TRUE(run({}, drop, strict).regressed);
}

TEST(Compare, ThreePercentInstructionRiseFails) {
  Spec more;
  more.hak_instr = 150e6 * 1.03;
  CompareResult r = run({}, more);
  EXPECT_TRUE(r.regressed);
  const CompareLine* i = find(r, "instructions_per_op", "larson", 1);
  ASSERT_NE(i, nullptr);
  EXPECT_EQ(i->verdict, "REGRESSED");
  EXPECT_EQ(find(r, "throughput_ratio", "larson", 1)->verdict, "ok");
  Spec slight;
  slight.hak_instr = 150e6 * 1.01;
  EXPECT_FALSE(run({}, slight).regressed);
}

TEST(Compare, RssAndFutexRegressions) {
  Spec fat;
  fat.hak_rss = 4000 * 1.3;
  EXPECT_EQ(find(run({}, fat), "rss_ratio", "larson", 2)->verdict, "REGRESSED");
  Spec locky;
  locky.hak_futex = 500;
  EXPECT_EQ(find(run({}, locky), "futex_per_mops", "larson", 2)->verdict, "REGRESSED");
  Spec better;
  better.hak_tput = 3e6;
  CompareResult r = run({}, better);
  EXPECT_FALSE(r.regressed);
  EXPECT_EQ(find(r, "throughput_ratio", "larson", 2)->verdict, "better");
}

// The table as a file written before live_bytes and final_rss_kb were added.
Table previous_schema(Table t) {
  t.header.resize(kPreviousNumCols);
  for (auto& r : t.rows) r.resize(kPreviousNumCols);
  return t;
}

bool has_note(const CompareResult& r, const std::string& text) {
  for (const auto& n : r.notes)
    if (n.find(text) != std::string::npos) return true;
  return false;
}

TEST(Compare, ResidentPerLiveByteRiseOfFifteenPercentFails) {
  Spec base, fat;
  base.hak_final_rss_kb = kLiveBytes / 1024 * 1.43;  // 1.3 times system's resident per live byte
  fat.hak_final_rss_kb = *base.hak_final_rss_kb * 1.15;
  CompareResult same = run(base, base);
  EXPECT_FALSE(same.regressed) << same.table();
  const CompareLine* l = find(same, "rss_per_live_byte", "footprint", 1);
  ASSERT_NE(l, nullptr) << same.table();
  EXPECT_NEAR(l->base, 1.3, 1e-9);
  EXPECT_DOUBLE_EQ(l->tolerance, 0.10);
  CompareResult r = run(base, fat);
  EXPECT_TRUE(r.regressed) << r.table();
  l = find(r, "rss_per_live_byte", "footprint", 1);
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->verdict, "REGRESSED");
  EXPECT_NEAR(l->change, 0.15, 1e-9);
  EXPECT_EQ(find(r, "throughput_ratio", "footprint", 1)->verdict, "ok");
  // The other checks keep their defaults.
  EXPECT_DOUBLE_EQ(find(r, "throughput_ratio", "larson", 1)->tolerance, 0.15);
  EXPECT_DOUBLE_EQ(find(r, "rss_ratio", "larson", 1)->tolerance, 0.20);
}

TEST(Compare, PreviousSchemaBaselineSkipsResidentCheckWithANote) {
  Spec now, fat;
  now.hak_final_rss_kb = kLiveBytes / 1024 * 1.43;
  fat.hak_final_rss_kb = kLiveBytes / 1024 * 5;  // would fail any resident check
  for (const Spec& s : {now, fat}) {
    CompareResult r =
        compare_tables(previous_schema(table_of(s)), "old.csv", table_of(s), "new.csv", {});
    EXPECT_FALSE(r.regressed) << r.table();
    EXPECT_EQ(find(r, "rss_per_live_byte", "footprint", 1), nullptr);
    EXPECT_TRUE(has_note(r,
                         "rss_per_live_byte: skipped: old.csv has no live_bytes, "
                         "final_rss_kb column(s)"))
        << r.table();
    EXPECT_NE(find(r, "throughput_ratio", "footprint", 1), nullptr);
  }
  // The other way round too: a new file without the columns is not a regression either.
  CompareResult back =
      compare_tables(table_of(now), "base.csv", previous_schema(table_of(fat)), "old.csv", {});
  EXPECT_FALSE(back.regressed);
  EXPECT_TRUE(has_note(back, "rss_per_live_byte: skipped: old.csv has no")) << back.table();
}

constexpr const char* kSmall = "iterations=2000000";
constexpr const char* kLarge = "iterations=2000000;max=32768";

// larson, and random-mixed under the params kSmall and (when `large`) kLarge, as a config that
// lists it twice; 3 reps at 1 thread, hakmem's throughput in the kLarge case scaled by
// `large_scale`.
Table two_params_table(double large_scale, bool large = true) {
  std::string text = header_line();
  auto add = [&](const std::string& workload, const std::string& params, double scale) {
    for (int rep = 1; rep <= 3; ++rep) {
      double wobble = 1 + 0.01 * (rep - 2);
      Row sys = row("system", "libc", workload, 1, rep, 1e6 * wobble, 3000, 10, 0);
      Row hak = row("hakmem", "preload", workload, 1, rep, 2e6 * scale * wobble, 4000, 50, 0);
      sys[Col::params] = hak[Col::params] = params;
      text += row_line(sys) + row_line(hak);
    }
  };
  add("larson", "seconds=1", 1);
  add("random-mixed", kSmall, 1);
  if (large) add("random-mixed", kLarge, large_scale);
  return parse_csv(text, "synthetic");
}

const CompareLine* find_case(const CompareResult& r, const std::string& metric,
                             const std::string& workload, const std::string& params) {
  for (const auto& l : r.lines)
    if (l.metric == metric && l.workload == workload && l.params == params) return &l;
  return nullptr;
}

// The line of the table that names `case_name` in its workload column, or "".
std::string table_row(const std::string& table, const std::string& metric,
                      const std::string& case_name) {
  std::size_t at = table.find("\n" + metric + " ");
  for (; at != std::string::npos; at = table.find("\n" + metric + " ", at + 1)) {
    std::string line = table.substr(at + 1, table.find('\n', at + 1) - at - 1);
    std::size_t name = line.find_first_not_of(' ', metric.size());
    if (line.compare(name, case_name.size() + 2, case_name + "  ") == 0) return line;
  }
  return "";
}

TEST(Compare, TwoParamsOfOneWorkloadAreComparedSeparately) {
  // Merged into one median, a 20% drop in one of the two cases would read as about 10%: within
  // the tolerance.
  CompareResult r =
      compare_tables(two_params_table(1), "base.csv", two_params_table(0.8), "new.csv", {});
  EXPECT_TRUE(r.regressed) << r.table();
  // 3 cases × 4 metrics (no callgrind rows).
  EXPECT_EQ(r.lines.size(), 12u) << r.table();
  const CompareLine* large = find_case(r, "throughput_ratio", "random-mixed", kLarge);
  ASSERT_NE(large, nullptr) << r.table();
  EXPECT_EQ(large->verdict, "REGRESSED");
  EXPECT_NEAR(large->change, -0.20, 1e-9);
  EXPECT_EQ(large->case_name, "random-mixed [iterations=2000000;max=32768]");
  const CompareLine* small = find_case(r, "throughput_ratio", "random-mixed", kSmall);
  ASSERT_NE(small, nullptr) << r.table();
  EXPECT_EQ(small->verdict, "ok");
  EXPECT_DOUBLE_EQ(small->base, 2.0);
  EXPECT_DOUBLE_EQ(small->change, 0);
  EXPECT_EQ(small->case_name, "random-mixed [iterations=2000000]");
  for (const auto& l : r.lines) {
    if (l.verdict == "REGRESSED") {
      EXPECT_EQ(l.params, kLarge) << r.table();
    }
  }
  // A workload with one params value keeps its bare name.
  EXPECT_EQ(find_case(r, "throughput_ratio", "larson", "seconds=1")->case_name, "larson");
  const std::string table = r.table();
  std::string line = table_row(table, "throughput_ratio", large->case_name);
  EXPECT_NE(line.find("REGRESSED"), std::string::npos) << table;
  line = table_row(table, "throughput_ratio", small->case_name);
  EXPECT_NE(line.find(" ok"), std::string::npos) << table;
  EXPECT_NE(table_row(table, "throughput_ratio", "larson"), "") << table;
}

// The summary printed after a sweep keeps the two cases apart too, named as compare names them;
// merged, random-mixed at 1 thread would show one median of both.
TEST(Summary, TwoParamsOfOneWorkloadAreTwoRows) {
  std::vector<Row> rows;
  for (const auto& cells : two_params_table(0.5).rows) {
    Row r;
    for (std::size_t i = 0; i < cells.size(); ++i) r.cells[i] = cells[i];
    rows.push_back(r);
  }
  std::string table = summary_table(rows);
  auto line_of = [&](const std::string& name) {
    std::size_t at = table.find("\n" + name + "  ");
    return at == std::string::npos ? "" : table.substr(at + 1, table.find('\n', at + 1) - at - 1);
  };
  std::string small = line_of("random-mixed [iterations=2000000]");
  std::string large = line_of("random-mixed [iterations=2000000;max=32768]");
  EXPECT_NE(small.find("2.00M (x2.00)"), std::string::npos) << table;
  EXPECT_NE(large.find("1.00M (x1.00)"), std::string::npos) << table;
  // A workload under one params value keeps its bare name.
  EXPECT_NE(line_of("larson"), "") << table;
  EXPECT_EQ(table.find("larson ["), std::string::npos) << table;
}

TEST(Compare, ParamsThatDifferBetweenFilesAreDifferentCases) {
  CompareResult r =
      compare_tables(two_params_table(1, false), "base.csv", two_params_table(1), "new.csv", {});
  EXPECT_FALSE(r.regressed) << r.table();
  EXPECT_EQ(find_case(r, "throughput_ratio", "random-mixed", kLarge), nullptr);
  EXPECT_TRUE(has_note(r,
                       "throughput_ratio random-mixed [iterations=2000000;max=32768] "
                       "threads=1: only in new.csv"))
      << r.table();
  // The workload has two params values across the files, so its common case is named too.
  const CompareLine* small = find_case(r, "throughput_ratio", "random-mixed", kSmall);
  ASSERT_NE(small, nullptr) << r.table();
  EXPECT_EQ(small->case_name, "random-mixed [iterations=2000000]");
  CompareResult back =
      compare_tables(two_params_table(1), "base.csv", two_params_table(1, false), "new.csv", {});
  EXPECT_TRUE(has_note(back,
                       "rss_ratio random-mixed [iterations=2000000;max=32768] "
                       "threads=1: only in base.csv"))
      << back.table();
}

Table without_column(Table t, const std::string& name) {
  const std::size_t i = *t.index_of(name);
  t.header.erase(t.header.begin() + i);
  for (auto& r : t.rows) r.erase(r.begin() + i);
  return t;
}

TEST(Compare, FileWithoutParamsColumnStillCompares) {
  Spec drop;
  drop.hak_tput = 1.6e6;
  Table base = without_column(table_of({}), "params");
  ASSERT_FALSE(base.index_of("params"));
  CompareResult same = compare_tables(base, "base.csv", base, "new.csv", {});
  EXPECT_FALSE(same.regressed) << same.table();
  EXPECT_EQ(same.lines.size(), 18u) << same.table();
  const CompareLine* t = find(same, "throughput_ratio", "larson", 1);
  ASSERT_NE(t, nullptr) << same.table();
  EXPECT_EQ(t->params, "");
  EXPECT_EQ(t->case_name, "larson");
  CompareResult r =
      compare_tables(base, "base.csv", without_column(table_of(drop), "params"), "new.csv", {});
  EXPECT_TRUE(r.regressed) << r.table();
  EXPECT_EQ(find(r, "throughput_ratio", "random-mixed", 2)->verdict, "REGRESSED");
}

TEST(Compare, MissingColumnIsUnusableWithTheReason) {
  std::string text = header_line();
  text.replace(text.find(",ops_per_sec"), 12, "");
  Table bad = parse_csv(text, "bad");
  try {
    compare_tables(table_of({}), "base.csv", bad, "new.csv", {});
    FAIL();
  } catch (const UnusableInput& e) {
    EXPECT_STREQ(e.what(), "new.csv: missing column(s): ops_per_sec");
  }
}

TEST(Compare, NoOverlapOrMissingAllocatorIsUnusable) {
  CompareOptions o;
  o.alloc = "hakmem-static";
  EXPECT_THROW(run({}, {}, o), UnusableInput);
  std::string other = header_line() +
                      row_line(row("system", "libc", "footprint", 8, 1, 1, 1, 1, 0)) +
                      row_line(row("hakmem", "preload", "footprint", 8, 1, 1, 1, 1, 0));
  try {
    compare_tables(table_of({}), "base.csv", parse_csv(other, "x"), "new.csv", {});
    FAIL();
  } catch (const UnusableInput& e) {
    EXPECT_NE(std::string(e.what()).find("no overlap"), std::string::npos) << e.what();
  }
}

TEST(Compare, ToleranceParsing) {
  EXPECT_EQ(parse_tolerance("throughput_ratio=0.1"),
            (std::pair<std::string, double>{"throughput_ratio", 0.1}));
  EXPECT_DOUBLE_EQ(parse_tolerance("instructions_per_op=5%").second, 0.05);
  EXPECT_THROW(parse_tolerance("speed=0.1"), std::invalid_argument);
  EXPECT_THROW(parse_tolerance("rss_ratio=lots"), std::invalid_argument);
  EXPECT_THROW(parse_tolerance("rss_ratio"), std::invalid_argument);
}

// The CLI: exit 0 / 1 / 2 and the reason on stderr.
TEST(Compare, CliExitCodes) {
  const std::string hakbench = test::env_path("HAKBENCH");
  ASSERT_FALSE(hakbench.empty());
  test::ScratchDir dir;
  auto write_table = [&](const std::string& name, const Spec& s) {
    Table t = table_of(s);
    std::string text = csv_line(t.header);
    for (auto& r : t.rows) text += csv_line(r);
    return dir.write(name, text);
  };
  Spec drop;
  drop.hak_tput = 1.6e6;
  std::string base = write_table("base.csv", {}), same = write_table("same.csv", {}),
              worse = write_table("worse.csv", drop);
  auto ok = test::run_command({hakbench, "compare", base, same});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("no regression"), std::string::npos) << ok.out;
  auto bad = test::run_command({hakbench, "compare", base, worse});
  EXPECT_EQ(bad.exit_code, 1) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("REGRESSED"), std::string::npos) << bad.out;
  auto loose =
      test::run_command({hakbench, "compare", base, worse, "--tolerance", "throughput_ratio=25%"});
  EXPECT_EQ(loose.exit_code, 0) << loose.out << loose.err;
  std::string missing = dir.write("missing.csv", "workload,threads\nlarson,1\n");
  auto unusable = test::run_command({hakbench, "compare", base, missing});
  EXPECT_EQ(unusable.exit_code, 2);
  EXPECT_NE(unusable.err.find("missing column(s): allocator, status, link, ops, ops_per_sec"),
            std::string::npos)
      << unusable.err;
  Spec with_footprint;
  with_footprint.hak_final_rss_kb = kLiveBytes / 1024 * 1.43;
  Table old = previous_schema(table_of(with_footprint));
  std::string old_text = csv_line(old.header);
  for (auto& r : old.rows) old_text += csv_line(r);
  std::string old_base = dir.write("old.csv", old_text),
              footprint = write_table("footprint.csv", with_footprint);
  auto skipped = test::run_command({hakbench, "compare", old_base, footprint});
  EXPECT_EQ(skipped.exit_code, 0) << skipped.out << skipped.err;
  EXPECT_NE(skipped.out.find("note: rss_per_live_byte: skipped: " + old_base +
                             " has no live_bytes, final_rss_kb column(s)"),
            std::string::npos)
      << skipped.out;
  EXPECT_NE(skipped.out.find("no regression"), std::string::npos) << skipped.out;
  auto checked = test::run_command({hakbench, "compare", footprint, footprint});
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  EXPECT_NE(checked.out.find("\nrss_per_live_byte "), std::string::npos) << checked.out;
  auto badtol = test::run_command({hakbench, "compare", base, same, "--tolerance", "speed=1"});
  EXPECT_EQ(badtol.exit_code, 2);
  EXPECT_NE(badtol.err.find("unknown metric 'speed'"), std::string::npos) << badtol.err;
}

}  // namespace
}  // namespace hakbench
