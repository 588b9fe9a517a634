#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace kgate::image {

namespace fs = std::filesystem;

struct ModuleFile {
  std::string name;  // normalized: '-' -> '_'
  fs::path path;     // may be compressed (.ko.xz, .ko.zst, .ko.gz)
};

// The module name a file or request stands for: "kernel/a/virtio-gpu.ko.xz" -> "virtio_gpu".
std::string module_name(std::string_view file_or_name);

// The bytes of a module file, decompressed when it is compressed.
Result<std::string> read_module(const fs::path& path);

// The first value of `key` in the .modinfo section of a module (its bytes already
// decompressed), read with libelf. Usage error if the bytes are not an ELF, have no
// .modinfo, or .modinfo has no such key.
Result<std::string> modinfo_field(std::string_view ko_bytes, std::string_view key);

// The modules named by .modinfo's "depends=a,b" (normalized); empty when the list is empty
// or absent. Usage error if the bytes are not an ELF or have no .modinfo.
Result<std::vector<std::string>> modinfo_depends(std::string_view ko_bytes);

// `wanted` and everything they depend on, dependencies first, inside modules_dir
// (<root>/lib/modules/<release>). The order is a depth-first post-order, so ties keep the
// order requested and listed. Modules named in modules.builtin are skipped. Dependencies
// come from modules.dep when it exists, else from each module's .modinfo, found by walking
// modules_dir/kernel. A module that is neither a file nor built in, and a cycle, are errors.
Result<std::vector<ModuleFile>> resolve_closure(const fs::path& modules_dir,
                                                const std::vector<std::string>& wanted);

}  // namespace kgate::image
