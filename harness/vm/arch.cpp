#include "vm/arch.hpp"

namespace kgate::vm {

std::string_view arch_name(Arch a) {
  return a == Arch::arm64 ? "arm64" : "x86_64";
}

std::optional<Arch> parse_arch(std::string_view name) {
  if (name == "x86_64" || name == "x86" || name == "amd64") return Arch::x86_64;
  if (name == "arm64" || name == "aarch64") return Arch::arm64;
  return std::nullopt;
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

const ArchTraits& traits(Arch a) {
  // q35: see VmSpec::machine. virt: the arm64 machine meant for guests with no firmware
  // needs; its serial port is a PL011 (ttyAMA0).
  static constexpr ArchTraits x86{"qemu-system-x86_64", "qemu-system-x86", "q35", "max", "ttyS0"};
  static constexpr ArchTraits arm64{"qemu-system-aarch64", "qemu-system-arm", "virt", "cortex-a57",
                                    "ttyAMA0"};
  return a == Arch::arm64 ? arm64 : x86;
}

}  // namespace kgate::vm
