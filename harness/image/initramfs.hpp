#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"
#include "image/cpio.hpp"
#include "image/modules.hpp"

namespace kgate::image {

struct InitramfsInputs {
  std::string agent;  // bytes of the static agent binary, becomes /init
  std::vector<std::pair<std::string, std::string>> modules;  // name, bytes (decompressed), in load order
};

// The uncompressed cpio a recipe (images/gate.json) makes of the agent (the input "agent") and the
// modules: pure and byte-stable. Module names must be distinct plain names (as resolve_closure gives
// them). A recipe expand_recipe refuses is class usage naming `origin`.
Result<std::string> build_initramfs_cpio(std::string_view recipe, std::string_view origin,
                                         const InitramfsInputs& inputs);

// The entries of a directory tree on the host placed under `prefix` ("kgate/root"; its parent
// directories are entries too): directories, regular files (a hard link as a copy) and symbolic links
// as they are, with their permission bits; `links` adds symbolic links (path relative to the tree ->
// target) where the tree has nothing. A device, FIFO or socket in the tree, or more than `max_bytes`
// of file data, is a usage error naming the path.
Result<std::vector<CpioEntry>> tree_entries(const fs::path& tree, const std::string& prefix,
                                            const std::map<std::string, std::string>& links,
                                            std::uint64_t max_bytes);

// The bytes of each module of a closure, decompressed, in the closure's order.
Result<std::vector<std::pair<std::string, std::string>>> read_modules(const std::vector<ModuleFile>& closure);

}  // namespace kgate::image
