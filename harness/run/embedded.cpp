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

std::string_view agent_binary() {
  return {_binary_kgate_agent_blob_start,
          static_cast<size_t>(_binary_kgate_agent_blob_end - _binary_kgate_agent_blob_start)};
}

std::string_view probe_object() {
  return {_binary_kgate_probe_blob_start,
          static_cast<size_t>(_binary_kgate_probe_blob_end - _binary_kgate_probe_blob_start)};
}

std::string_view canary_object() {
  return {_binary_kgate_canary_blob_start,
          static_cast<size_t>(_binary_kgate_canary_blob_end - _binary_kgate_canary_blob_start)};
}

std::string_view console_patterns() {
  return {_binary_kgate_patterns_blob_start,
          static_cast<size_t>(_binary_kgate_patterns_blob_end - _binary_kgate_patterns_blob_start)};
}

}  // namespace kgate::run
