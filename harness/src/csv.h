// CSV of trial results: the schema of DESIGN.md §3, an RFC 4180 writer that appends one whole
// row per write(2) (a killed sweep keeps only complete rows), and a reader for merge/compare.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hakbench {

// The columns, in schema order. `NA` is written where a value cannot be measured.
enum class Col : std::size_t {
  timestamp,
  git_sha,
  host,
  cpu,
  kernel,
  config,
  workload,
  params,
  allocator,
  allocator_version,
  link,
  threads,
  rep,
  status,
  ops,
  seconds,
  ops_per_sec,
  max_rss_kb,
  futex_calls,
  syscalls,
  mmap_calls,
  munmap_calls,
  madvise_calls,
  task_clock_ms,
  context_switches,
  page_faults,
  cycles,
  instructions,
  cache_misses,
  branch_misses,
  live_bytes,
  final_rss_kb,
  count_
};
inline constexpr std::size_t kNumCols = static_cast<std::size_t>(Col::count_);
// Files written before live_bytes and final_rss_kb were added have only the columns before them.
inline constexpr std::size_t kPreviousNumCols = static_cast<std::size_t>(Col::live_bytes);
extern const std::array<std::string_view, kNumCols> kColumnNames;
inline constexpr std::string_view kNA = "NA";

// One row of the schema; every cell starts as NA.
struct Row {
  std::array<std::string, kNumCols> cells;
  Row() { cells.fill(std::string(kNA)); }
  std::string& operator[](Col c) { return cells[static_cast<std::size_t>(c)]; }
  const std::string& operator[](Col c) const { return cells[static_cast<std::size_t>(c)]; }
};

// Quotes a field when it holds a comma, quote, CR or LF.
std::string csv_quote(std::string_view field);
// One line (with trailing '\n') of quoted fields.
std::string csv_line(const std::vector<std::string>& fields);
std::string header_line();
std::string row_line(const Row& row);

// A parsed CSV file with any header (compare must cope with files missing columns).
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  // Index of a column by name, or nullopt.
  std::optional<std::size_t> index_of(std::string_view name) const;
};

// Parses CSV text. Throws std::runtime_error naming `what` and the line on malformed input
// (unterminated quote, a row with the wrong number of fields).
Table parse_csv(std::string_view text, const std::string& what);
// Reads and parses a file; throws std::runtime_error if it cannot be read.
Table read_csv_file(const std::string& path);
// The number of schema columns `header` holds: kNumCols, or kPreviousNumCols for a file of the
// previous schema. Throws naming the first column that differs from both.
std::size_t schema_width(const std::vector<std::string>& header, const std::string& what);
// Throws unless `header` is the current schema: appending to a file of the previous one would
// mix two schemas in one file. The message says how to convert it (merge).
void require_current_schema(const std::vector<std::string>& header, const std::string& what);
// Converts a table whose header is the schema (current or previous) into rows; the columns a
// previous-schema file lacks are NA. Throws as schema_width does.
std::vector<Row> schema_rows(const Table& table, const std::string& what);

// Appends rows to a results file. A new or empty file gets the header first; an existing file
// must already have the current schema header (otherwise it throws instead of mixing formats).
class CsvWriter {
 public:
  explicit CsvWriter(const std::string& path);
  ~CsvWriter();
  CsvWriter(const CsvWriter&) = delete;
  CsvWriter& operator=(const CsvWriter&) = delete;
  // Writes the whole line with one write(2) on an O_APPEND descriptor.
  void write(const Row& row);
  const std::string& path() const { return path_; }

 private:
  void write_line(const std::string& line);
  std::string path_;
  int fd_ = -1;
};

}  // namespace hakbench
