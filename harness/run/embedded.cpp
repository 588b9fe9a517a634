#include "run/embedded.hpp"

#include <elf.h>

#include <string>

// The symbols scripts/embed-blob.sh defines for each blob of harness/run/meson.build.
#define KGATE_BLOB(name)                                     \
  extern "C" const char _binary_kgate_##name##_blob_start[]; \
  extern "C" const char _binary_kgate_##name##_blob_end[];
KGATE_BLOB(agent_x86)
KGATE_BLOB(probe_x86)
KGATE_BLOB(canary_x86)
KGATE_BLOB(agent_arm64)
KGATE_BLOB(probe_arm64)
KGATE_BLOB(canary_arm64)
KGATE_BLOB(patterns)
KGATE_BLOB(image_gate)
KGATE_BLOB(image_shell)
#undef KGATE_BLOB

namespace kgate::run {
namespace {
std::string_view blob(const char* start, const char* end) {
  return {start, static_cast<size_t>(end - start)};
}
#define KGATE_BLOB_VIEW(name) blob(_binary_kgate_##name##_blob_start, _binary_kgate_##name##_blob_end)
}  // namespace

std::string_view agent_binary(vm::Arch arch) {
  return arch == vm::Arch::arm64 ? KGATE_BLOB_VIEW(agent_arm64) : KGATE_BLOB_VIEW(agent_x86);
}
std::string_view probe_object(vm::Arch arch) {
  return arch == vm::Arch::arm64 ? KGATE_BLOB_VIEW(probe_arm64) : KGATE_BLOB_VIEW(probe_x86);
}
std::string_view canary_object(vm::Arch arch) {
  return arch == vm::Arch::arm64 ? KGATE_BLOB_VIEW(canary_arm64) : KGATE_BLOB_VIEW(canary_x86);
}
std::expected<std::string_view, Error> agent_or_why(vm::Arch arch, std::string_view agent) {
  if (agent.starts_with(ELFMAG)) return agent;
  return std::unexpected(Error(
      FailureClass::infra,
      "this kgate has no " + std::string(arch_name(arch)) +
          " guest agent: it was built where the aarch64 cross compiler or Debian's " +
          std::string(arch_name(arch)) +
          " libbpf, libelf, libzstd and zlib were missing. Run scripts/setup.sh --arm64 (it installs them "
          "and rebuilds build/), or build with meson option -Darm64=enabled"));
}
std::expected<std::string_view, Error> built_agent(vm::Arch arch) {
  return agent_or_why(arch, agent_binary(arch));
}
std::string_view console_patterns() {
  return KGATE_BLOB_VIEW(patterns);
}
std::string_view gate_image_recipe() {
  return KGATE_BLOB_VIEW(image_gate);
}
std::string_view shell_image_recipe() {
  return KGATE_BLOB_VIEW(image_shell);
}
#undef KGATE_BLOB_VIEW

}  // namespace kgate::run
