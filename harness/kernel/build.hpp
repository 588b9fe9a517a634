// `kgate kernels build ENTRY`: a kernel-org catalog entry built from its tarball (checked against
// the entry's sha256) and config fragment, cached by both, and recorded so that runs boot it like
// any cached entry. It runs only where a user asks for it.
#pragma once

#include <functional>
#include <string>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "kernel/cache.hpp"
#include "kernel/catalog.hpp"

namespace kgate::kernel {

struct BuildOptions {
  fs::path tarball;  // overrides the entry's tarball and url
  int jobs = 1;      // make -j
  bool refresh = false;
  std::function<void(const std::string&)> progress;  // one line per step
};

struct BuiltKernel {
  std::string release;
  std::string key;  // the cache key: tarball, fragment, base, arch
  fs::path log;     // the build's whole output
  bool was_cached = false;
  double seconds = 0;
};

// The cache key of a build (pure).
std::string kernel_build_key(const CatalogEntry& e);

// The make and merge_config.sh argvs of a build, in order (pure, for tests): `src` the unpacked
// tree, `out` the build directory.
std::vector<std::vector<std::string>> kernel_build_steps(const CatalogEntry& e, const fs::path& src,
                                                         const fs::path& out, int jobs);

Result<BuiltKernel> build_kernel(Cache& cache, const CatalogEntry& e, const BuildOptions& opts,
                                 const Deadline& deadline);

}  // namespace kgate::kernel
