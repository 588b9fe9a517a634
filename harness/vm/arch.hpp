#pragma once

#include <optional>
#include <string_view>

namespace kgate::vm {

// A guest architecture kgate boots. The arch picks the QEMU binary, machine, TCG CPU
// model, console and virtio transport, and (in run/) the agent and BPF objects.
enum class Arch { x86_64, arm64 };

// "x86_64" or "arm64": the names of the catalog's "arch", --arch and the receipt.
std::string_view arch_name(Arch a);
// The catalog names, and the other common spellings of each (x86, amd64; aarch64).
std::optional<Arch> parse_arch(std::string_view name);
// The arch kgate itself was built for: the only one KVM can run.
Arch host_arch();

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
