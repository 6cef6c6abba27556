// Allocation-free diagnostics (see log.h).
#include "common/log.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "common/options.h"

namespace hak {
namespace {

void write_formatted(const char* prefix, const char* format, va_list args) {
  // vsnprintf with plain %s/%d/%zu/%p conversions does not allocate in glibc.
  char buffer[512];
  int length = std::snprintf(buffer, sizeof buffer, "%s", prefix);
  int body = std::vsnprintf(buffer + length, sizeof buffer - length - 1, format, args);
  length += body < 0 ? 0 : body;
  if (length > static_cast<int>(sizeof buffer) - 2) length = sizeof buffer - 2;
  buffer[length++] = '\n';
  for (const char* p = buffer; length > 0;) {
    ssize_t written = ::write(STDERR_FILENO, p, length);
    if (written <= 0) break;
    p += written;
    length -= static_cast<int>(written);
  }
}

}  // namespace

void log_message(const char* format, ...) {
  va_list args;
  va_start(args, format);
  write_formatted("hakmem: ", format, args);
  va_end(args);
}

void fatal(const char* format, ...) {
  va_list args;
  va_start(args, format);
  write_formatted("hakmem: fatal: ", format, args);
  va_end(args);
  std::abort();
}

void refuse_foreign_free(const void* p) {
  if (options().check) fatal("free(%p): pointer was not allocated by hakmem", p);
  log_message("free(%p): pointer was not allocated by hakmem; ignored", p);
}

}  // namespace hak
