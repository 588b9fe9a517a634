#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "image/modules.hpp"

namespace kgate::image {

struct InitramfsInputs {
  std::string agent;  // bytes of the static agent binary, becomes /init
  std::vector<std::pair<std::string, std::string>> modules;  // name, bytes (decompressed), in load order
};

// The uncompressed cpio: directories dev proc sys tmp run etc etc/kgate lib lib/modules (0755),
// dev/console (char 5:1, 0600), init (the agent, 0755), lib/modules/<name>.ko (0644) per module,
// and etc/kgate/modules (0644) listing the module names in load order, one per line. Pure and
// byte-stable. Module names must be distinct plain names (as resolve_closure gives them).
std::string build_initramfs_cpio(const InitramfsInputs& inputs);

// The bytes of each module of a closure, decompressed, in the closure's order.
Result<std::vector<std::pair<std::string, std::string>>> read_modules(const std::vector<ModuleFile>& closure);

}  // namespace kgate::image
