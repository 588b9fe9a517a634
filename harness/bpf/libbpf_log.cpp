#include "bpf/libbpf_log.hpp"

#include <cstdarg>
#include <cstdio>

namespace kgate::bpf {

namespace {

std::mutex log_mutex;
std::string log_text;  // guarded by log_mutex, which the living LibbpfLog holds

int collect(libbpf_print_level level, const char* fmt, va_list args) {
  if (level != LIBBPF_WARN) return 0;
  char buf[1024];
  int n = std::vsnprintf(buf, sizeof buf, fmt, args);
  if (n > 0 && log_text.size() < 16384) log_text.append(buf, std::min<std::size_t>(n, sizeof buf - 1));
  return n;
}

}  // namespace

LibbpfLog::LibbpfLog() : lock_(log_mutex), previous_(libbpf_set_print(collect)) {
  log_text.clear();
}

LibbpfLog::~LibbpfLog() {
  libbpf_set_print(previous_);
}

const std::string& LibbpfLog::text() const {
  return log_text;
}

}  // namespace kgate::bpf
