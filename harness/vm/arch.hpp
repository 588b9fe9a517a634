#pragma once

#include <string_view>

#include "core/arch.hpp"

namespace kgate::vm {

// The arch and its names live in core (core/arch.hpp); here, what QEMU needs of each.
using kgate::Arch;
using kgate::arch_name;
using kgate::host_arch;
using kgate::parse_arch;

// Per-arch QEMU facts, plain data.
struct ArchTraits {
  std::string_view qemu;     // default binary, found on PATH
  std::string_view package;  // the Debian package that ships it
  std::string_view machine;  // -M
  // -cpu under TCG. arm64: cortex-a57, because Debian's arm64 kernel signs return addresses
  // with pointer authentication everywhere, and QEMU's default (QARMA) algorithm behind
  // -cpu max costs 6-7 s a boot against 1.75 s on cortex-a57 (no pauth) and 2.4 s with
  // -cpu max,pauth-impdef=on (see docs/perf.md).
  std::string_view tcg_cpu;
  std::string_view console;  // the kernel's name for the first serial port
};
const ArchTraits& traits(Arch a);

}  // namespace kgate::vm
