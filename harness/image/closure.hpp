// The files a dynamic executable needs in a guest that has none of its libraries: its ELF
// interpreter and the DT_NEEDED closure, resolved on the host the way the dynamic linker resolves
// them (DT_RUNPATH, else DT_RPATH, with $ORIGIN; then the arch's multiarch directories, which for
// another arch are those of Debian's :arm64 packages or a sysroot given).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace kgate::image {

struct ShippedLibrary {
  std::string name;              // the DT_NEEDED name, or the interpreter's path
  std::filesystem::path source;  // on the host
  std::string dest;              // absolute, in the guest
};

// The interpreter first, then every library in the order first needed. Empty for a static
// executable. `guest_path` is where the executable will be in the guest ($ORIGIN there);
// `sysroots` are searched before the host's own directories (their lib/<multiarch>, usr/lib/...).
// A library that cannot be found, or an executable for an arch kgate does not run, is a usage
// error naming what is missing and where it was looked for.
Result<std::vector<ShippedLibrary>> library_closure(const std::filesystem::path& executable,
                                                    const std::string& guest_path,
                                                    const std::vector<std::filesystem::path>& sysroots = {});

}  // namespace kgate::image
