// What `kgate kernels list` and `kgate cache prune` see of the cache (kernel/cache.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernel/cache.hpp"
#include "kernel/catalog.hpp"

namespace kgate::kernel {

// One catalog entry and what the cache holds for it.
struct CachedKernel {
  std::string entry, arch, source;  // source: the catalog's ("debian-package linux-image-amd64", "oci REF")
  std::string pin;                  // an OCI entry's digest (catalog or lock); "" unpinned or not OCI
  bool cached = false;              // a record of what it resolved to is in the cache
  std::string release, image_sha256, resolved;  // from that record
  std::uint64_t bytes = 0;                      // its unpacked package and kernel image
  std::optional<std::chrono::system_clock::time_point> last_used;
};
std::vector<CachedKernel> list_kernels(const Cache& cache, const Catalog& catalog);

struct PruneReport {
  std::vector<std::string> removed;  // paths under the cache root, relative
  std::uint64_t bytes = 0;           // freed
  std::size_t kept = 0;              // blobs, trees, refs and records kept
};

// Removes what neither a catalog entry's record nor a recent use references: entry records of
// names the catalog no longer has, unused for `keep`; blobs, unpacked trees and refs that no kept
// record or ref names and that were not used for `keep`. Run on a Cache opened exclusively (no
// run holds anything meanwhile). `dry_run` removes nothing and reports the same.
Result<PruneReport> prune_cache(const Cache& cache, const Catalog& catalog, std::chrono::seconds keep,
                                bool dry_run);

}  // namespace kgate::kernel
