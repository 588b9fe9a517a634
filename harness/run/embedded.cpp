#include "run/embedded.hpp"

extern "C" {
extern const char _binary_kgate_agent_blob_start[];
extern const char _binary_kgate_agent_blob_end[];
extern const char _binary_kgate_probe_blob_start[];
extern const char _binary_kgate_probe_blob_end[];
extern const char _binary_kgate_canary_blob_start[];
extern const char _binary_kgate_canary_blob_end[];
extern const char _binary_kgate_patterns_blob_start[];
extern const char _binary_kgate_patterns_blob_end[];
}

namespace kgate::run {
namespace {
std::string_view blob(const char* start, const char* end) {
  return {start, static_cast<size_t>(end - start)};
}
}  // namespace

std::string_view agent_binary() {
  return blob(_binary_kgate_agent_blob_start, _binary_kgate_agent_blob_end);
}
std::string_view probe_object() {
  return blob(_binary_kgate_probe_blob_start, _binary_kgate_probe_blob_end);
}
std::string_view canary_object() {
  return blob(_binary_kgate_canary_blob_start, _binary_kgate_canary_blob_end);
}
std::string_view console_patterns() {
  return blob(_binary_kgate_patterns_blob_start, _binary_kgate_patterns_blob_end);
}

}  // namespace kgate::run
