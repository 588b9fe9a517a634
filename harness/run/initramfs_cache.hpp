#pragma once

#include <string>
#include <vector>

#include "core/error.hpp"
#include "kernel/cache.hpp"
#include "kernel/prepare.hpp"
#include "vm/arch.hpp"

namespace kgate::run {

struct PreparedInitramfs {
  fs::path path;
  std::string sha256;
  std::string agent_sha256;
  std::vector<std::string> modules;  // in load order
  bool built = false;                // false: taken from the cache
};

// The initramfs for a kernel's module set and this kgate's agent for `arch`, cached by
// the sha256 of those inputs: built once, then reused (and verified) by every run.
Result<PreparedInitramfs> prepare_initramfs(kernel::Cache& cache, const kernel::PreparedKernel& kernel,
                                            const std::vector<std::string>& wanted_modules, bool refresh,
                                            vm::Arch arch);

}  // namespace kgate::run
