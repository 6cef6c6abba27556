// CSV schema, writer and reader (see csv.h).
#include "csv.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace hakbench {

const std::array<std::string_view, kNumCols> kColumnNames = {
    "timestamp",   "git_sha",      "host",          "cpu",           "kernel",
    "config",      "workload",     "params",        "allocator",     "allocator_version",
    "link",        "threads",      "rep",           "status",        "ops",
    "seconds",     "ops_per_sec",  "max_rss_kb",    "futex_calls",   "syscalls",
    "mmap_calls",  "munmap_calls", "madvise_calls", "task_clock_ms", "context_switches",
    "page_faults", "cycles",       "instructions",  "cache_misses",  "branch_misses",
    "live_bytes",  "final_rss_kb"};

std::string csv_quote(std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) line += ',';
    line += csv_quote(fields[i]);
  }
  line += '\n';
  return line;
}

std::string header_line() {
  return csv_line(std::vector<std::string>(kColumnNames.begin(), kColumnNames.end()));
}

std::string row_line(const Row& row) {
  return csv_line(std::vector<std::string>(row.cells.begin(), row.cells.end()));
}

std::optional<std::size_t> Table::index_of(std::string_view name) const {
  for (std::size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  return std::nullopt;
}

Table parse_csv(std::string_view text, const std::string& what) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  bool in_quotes = false, field_started = false;
  std::size_t line = 1, record_line = 1;
  auto end_record = [&] {
    record.push_back(std::move(field));
    field.clear();
    // A blank line is not a record.
    if (!(record.size() == 1 && record[0].empty() && !field_started)) records.push_back(record);
    record.clear();
    field_started = false;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_quotes = true;
        field_started = true;
        break;
      case ',':
        record.push_back(std::move(field));
        field.clear();
        field_started = true;
        break;
      case '\r':
        break;
      case '\n':
        end_record();
        ++line;
        record_line = line;
        break;
      default:
        field += c;
        field_started = true;
    }
  }
  if (in_quotes)
    throw std::runtime_error(what + ": line " + std::to_string(record_line) +
                             ": unterminated quoted field");
  if (field_started || !field.empty() || !record.empty()) end_record();

  Table t;
  if (records.empty()) return t;
  t.header = std::move(records.front());
  for (std::size_t r = 1; r < records.size(); ++r) {
    if (records[r].size() != t.header.size())
      throw std::runtime_error(what + ": record " + std::to_string(r + 1) + " has " +
                               std::to_string(records[r].size()) + " fields, header has " +
                               std::to_string(t.header.size()));
    t.rows.push_back(std::move(records[r]));
  }
  return t;
}

Table read_csv_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_csv(ss.str(), path);
}

std::size_t schema_width(const std::vector<std::string>& header, const std::string& what) {
  for (std::size_t i = 0; i < std::min(header.size(), kNumCols); ++i)
    if (header[i] != kColumnNames[i])
      throw std::runtime_error(what + ": column " + std::to_string(i + 1) + " is '" + header[i] +
                               "', expected '" + std::string(kColumnNames[i]) + "'");
  if (header.size() > kNumCols)
    throw std::runtime_error(what + ": unexpected extra column '" + header[kNumCols] + "'");
  if (header.size() != kNumCols && header.size() != kPreviousNumCols)
    throw std::runtime_error(what + ": missing column '" +
                             std::string(kColumnNames[header.size()]) + "'");
  return header.size();
}

void require_current_schema(const std::vector<std::string>& header, const std::string& what) {
  if (schema_width(header, what) == kNumCols) return;
  std::string added;
  for (std::size_t i = kPreviousNumCols; i < kNumCols; ++i)
    added += (added.empty() ? "" : ", ") + std::string(kColumnNames[i]);
  throw std::runtime_error(what + ": header mismatch: the file has the previous " +
                           std::to_string(kPreviousNumCols) + "-column schema (without " + added +
                           "); appending would mix two schemas in one file. Convert it first: "
                           "hakbench merge -o NEW.csv " +
                           what);
}

std::vector<Row> schema_rows(const Table& table, const std::string& what) {
  const std::size_t width = schema_width(table.header, what);
  std::vector<Row> rows;
  rows.reserve(table.rows.size());
  for (const auto& r : table.rows) {
    Row row;
    std::copy_n(r.begin(), width, row.cells.begin());
    rows.push_back(std::move(row));
  }
  return rows;
}

CsvWriter::CsvWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error(path + ": cannot open for writing: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0)
    throw std::runtime_error(path + ": cannot stat: " + std::strerror(errno));
  if (st.st_size == 0) {
    write_line(header_line());
    return;
  }
  // Existing file: refuse to append to something that is not this schema.
  require_current_schema(read_csv_file(path).header, path);
}

CsvWriter::~CsvWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void CsvWriter::write(const Row& row) {
  write_line(row_line(row));
}

void CsvWriter::write_line(const std::string& line) {
  ssize_t n;
  do {
    n = ::write(fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(line.size()))
    throw std::runtime_error(path_ + ": short write: " +
                             (n < 0 ? std::string(std::strerror(errno)) : std::string("partial")));
}

}  // namespace hakbench
