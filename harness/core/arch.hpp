// The guest architectures kgate boots and builds gate objects for, and their names. Every
// module that spells an arch (catalog, matrix, Debian and OCI fetches, digests, QEMU) parses
// it here; the QEMU facts of each are in vm/arch.hpp.
#pragma once

#include <optional>
#include <string_view>

namespace kgate {

enum class Arch { x86_64, arm64 };

// "x86_64" or "arm64": the names of the catalog's and matrix's "arch", --arch and the receipt.
std::string_view arch_name(Arch a);
// Those names, and the other common spellings of each (x86, amd64; aarch64).
std::optional<Arch> parse_arch(std::string_view name);
// Only the names arch_name() gives: what kgate's own files must say.
std::optional<Arch> parse_canonical_arch(std::string_view name);
// Debian's (and Go's, OCI's) name: "amd64", "arm64".
std::string_view debian_arch(Arch a);
// The arch kgate itself was built for: the only one KVM can run.
Arch host_arch();

}  // namespace kgate
