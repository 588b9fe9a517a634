#include "vm/arch.hpp"

namespace kgate::vm {

const ArchTraits& traits(Arch a) {
  // q35: see VmSpec::machine. virt: the arm64 machine meant for guests with no firmware
  // needs; its serial port is a PL011 (ttyAMA0).
  static constexpr ArchTraits x86{"qemu-system-x86_64", "qemu-system-x86", "q35", "max", "ttyS0"};
  static constexpr ArchTraits arm64{"qemu-system-aarch64", "qemu-system-arm", "virt", "cortex-a57",
                                    "ttyAMA0"};
  return a == Arch::arm64 ? arm64 : x86;
}

}  // namespace kgate::vm
