// The CSV writer and reader: round trip of awkward fields, the schema header, append behaviour,
// files of the previous schema (read with NA in the new columns, never appended to), and refusal
// of malformed or foreign files.
#include "csv.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace hakbench {
namespace {

Row sample_row(const std::string& workload) {
  Row r;
  r[Col::timestamp] = "2026-01-01T00:00:00Z";
  r[Col::cpu] = "Intel(R) Xeon(R) CPU, \"special\" edition";
  r[Col::workload] = workload;
  r[Col::params] = "a=1;b=x,y";
  r[Col::allocator] = "system";
  r[Col::status] = "crashed:SIGSEGV";
  r[Col::host] = "line1\nline2";
  r[Col::ops_per_sec] = "12345.5";
  return r;
}

TEST(Csv, HeaderIsTheSchemaInOrder) {
  EXPECT_EQ(header_line(),
            "timestamp,git_sha,host,cpu,kernel,config,workload,params,allocator,"
            "allocator_version,link,threads,rep,status,ops,seconds,ops_per_sec,max_rss_kb,"
            "futex_calls,syscalls,mmap_calls,munmap_calls,madvise_calls,task_clock_ms,"
            "context_switches,page_faults,cycles,instructions,cache_misses,branch_misses,"
            "live_bytes,final_rss_kb\n");
}

TEST(Csv, QuotesOnlyWhenNeeded) {
  EXPECT_EQ(csv_quote("plain"), "plain");
  EXPECT_EQ(csv_quote("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_quote("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_quote("two\nlines"), "\"two\nlines\"");
}

TEST(Csv, WriterAndReaderRoundTrip) {
  test::ScratchDir dir;
  const std::string path = dir.file("r.csv");
  {
    CsvWriter w(path);
    w.write(sample_row("larson"));
  }
  {
    CsvWriter w(path);  // reopening appends without a second header
    w.write(sample_row("bg-spill"));
  }
  Table t = read_csv_file(path);
  auto rows = schema_rows(t, path);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].cells, sample_row("larson").cells);
  EXPECT_EQ(rows[1].cells, sample_row("bg-spill").cells);
  EXPECT_EQ(rows[1][Col::threads], "NA");
}

TEST(Csv, WriterRefusesAFileWithAnotherHeader) {
  test::ScratchDir dir;
  const std::string path = dir.write("other.csv", "a,b,c\n1,2,3\n");
  try {
    CsvWriter w(path);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("column 1 is 'a', expected 'timestamp'"),
              std::string::npos)
        << e.what();
  }
}

TEST(Csv, ReaderRejectsRaggedAndUnterminatedInput) {
  EXPECT_THROW(parse_csv("a,b\n1,2,3\n", "x.csv"), std::runtime_error);
  try {
    parse_csv("a,b\n\"1,2\n", "x.csv");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("x.csv: line 2: unterminated"), std::string::npos);
  }
}

TEST(Csv, ReaderToleratesCrlfAndMissingFinalNewline) {
  Table t = parse_csv("a,b\r\n1,\"x\"\"y\"\r\n2,3", "t");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0][1], "x\"y");
  EXPECT_EQ(t.rows[1][1], "3");
  EXPECT_EQ(*t.index_of("b"), 1u);
  EXPECT_FALSE(t.index_of("c"));
}

TEST(Csv, SchemaRowsNamesTheMissingColumn) {
  // The previous schema without its last column, branch_misses.
  std::vector<std::string> header(kColumnNames.begin(),
                                  kColumnNames.begin() + kPreviousNumCols - 1);
  try {
    schema_rows(parse_csv(csv_line(header), "short.csv"), "short.csv");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "short.csv: missing column 'branch_misses'");
  }
}

// The header and rows as a file from before live_bytes and final_rss_kb were added.
std::string previous_schema_text(const std::vector<Row>& rows) {
  auto previous = [](const auto& cells) {
    return std::vector<std::string>(cells.begin(), cells.begin() + kPreviousNumCols);
  };
  std::string text = csv_line(previous(kColumnNames));
  for (const auto& r : rows) text += csv_line(previous(r.cells));
  return text;
}

TEST(Csv, PreviousSchemaReadsWithNaInTheNewColumns) {
  ASSERT_EQ(kPreviousNumCols, 30u);
  Row r = sample_row("footprint");
  r[Col::live_bytes] = "123";
  r[Col::final_rss_kb] = "456";
  auto rows = schema_rows(parse_csv(previous_schema_text({r}), "old.csv"), "old.csv");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][Col::workload], "footprint");
  EXPECT_EQ(rows[0][Col::branch_misses], "NA");
  EXPECT_EQ(rows[0][Col::host], "line1\nline2");
  EXPECT_EQ(rows[0][Col::live_bytes], "NA");
  EXPECT_EQ(rows[0][Col::final_rss_kb], "NA");
}

TEST(Csv, WriterRefusesToAppendToAPreviousSchemaFile) {
  test::ScratchDir dir;
  const std::string path = dir.write("old.csv", previous_schema_text({sample_row("larson")}));
  const std::string before = test::read_file(path);
  try {
    CsvWriter w(path);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": header mismatch: the file has the previous "
                                                "30-column schema (without live_bytes, "
                                                "final_rss_kb)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(test::read_file(path), before);
}

TEST(Csv, AnyOtherHeaderIsRefused) {
  std::vector<std::string> header(kColumnNames.begin(), kColumnNames.end());
  auto refusal = [](const std::vector<std::string>& h) -> std::string {
    try {
      schema_rows(parse_csv(csv_line(h), "h.csv"), "h.csv");
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "accepted";
  };
  auto renamed = header;
  renamed[kPreviousNumCols] = "live_kb";
  EXPECT_EQ(refusal(renamed), "h.csv: column 31 is 'live_kb', expected 'live_bytes'");
  auto one_new_column = header;
  one_new_column.pop_back();
  EXPECT_EQ(refusal(one_new_column), "h.csv: missing column 'final_rss_kb'");
  auto extra = header;
  extra.push_back("peak_rss_kb");
  EXPECT_EQ(refusal(extra), "h.csv: unexpected extra column 'peak_rss_kb'");
  EXPECT_EQ(refusal(header), "accepted");
}

}  // namespace
}  // namespace hakbench
