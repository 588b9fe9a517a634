#include "arch.hpp"

namespace kgate {

std::string_view arch_name(Arch a) {
  return a == Arch::arm64 ? "arm64" : "x86_64";
}

std::optional<Arch> parse_arch(std::string_view name) {
  if (name == "x86_64" || name == "x86" || name == "amd64") return Arch::x86_64;
  if (name == "arm64" || name == "aarch64") return Arch::arm64;
  return std::nullopt;
}

std::optional<Arch> parse_canonical_arch(std::string_view name) {
  auto a = parse_arch(name);
  if (a && arch_name(*a) == name) return a;
  return std::nullopt;
}

std::string_view debian_arch(Arch a) {
  return a == Arch::arm64 ? "arm64" : "amd64";
}

Arch host_arch() {
#if defined(__aarch64__)
  return Arch::arm64;
#elif defined(__x86_64__)
  return Arch::x86_64;
#else
#error "kgate runs on x86_64 or arm64 hosts"
#endif
}

}  // namespace kgate
