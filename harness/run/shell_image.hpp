// The tools of the guest shell (`--shell`, images/shell.json): the recipe's Debian packages for
// the guest's arch, downloaded with apt and unpacked once into the cache, and its programs with
// their library closures packed as one initramfs segment. Only a run that asks for a shell
// builds it; the gate's own image does not change.
#pragma once

#include <nlohmann/json.hpp>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "kernel/cache.hpp"
#include "run/initramfs_cache.hpp"
#include "vm/arch.hpp"

namespace kgate::run {

// Where the shell's tools are in the guest, and its profile.
inline constexpr const char* guest_shell_bin = "/kgate/shell/bin";

struct ShellImage {
  Segment segment;
  nlohmann::json packages = nlohmann::json::array();  // [{name, version, sha256}] as unpacked
  bool fetched = false;  // false: the packages and the segment came from the cache
};

// The packages are resolved and downloaded (each .deb checked against apt's index) on first use
// for an arch and recipe, or again with `refresh`; later runs take the unpacked tree and the
// segment from the cache without asking apt.
Result<ShellImage> prepare_shell_image(kernel::Cache& cache, vm::Arch arch, bool refresh,
                                       const Deadline& deadline);

}  // namespace kgate::run
