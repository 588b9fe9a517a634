#pragma once

#include <string>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "kernel/cache.hpp"
#include "kernel/catalog.hpp"

namespace kgate::kernel {

// A kernel ready to boot: every file verified against its digest.
struct PreparedKernel {
  std::string source;          // "debian-package linux-image-6.1.0-56-amd64 6.1.192-2" or "file /path"
  std::string release;         // from the package's file names ("6.1.0-56-amd64"); empty for a bare file
  std::string package_sha256;  // the .deb, or empty
  fs::path image;              // what the catalog or user supplied (bzImage or vmlinux)
  std::string image_sha256;
  bool image_is_elf = false;
  fs::path boot;  // what QEMU boots: the extracted vmlinux (PVH) when possible; arm64: the Image
  std::string boot_sha256;
  bool pvh = false;        // boot is an ELF with a PVH entry note
  fs::path config;         // empty if none shipped
  fs::path modules_dir;    // <tree>/lib/modules/<release>; empty if none
  std::string modules_id;  // identifies the module set (the package digest)
};

// Resolves a catalog entry through the cache, fetching it when absent (or when
// `refresh`). A warm call reads one small record and checks digests; it runs no
// apt command.
Result<PreparedKernel> prepare_entry(Cache& cache, const CatalogEntry& entry, bool refresh,
                                     const Deadline& deadline);
// One canonical line per catalog entry's source: a cache record made for another is stale.
std::string source_spec(const CatalogEntry& e);

// A kernel file the user handed us (--kernel): for x86_64 a bzImage or an uncompressed
// vmlinux, for arm64 an uncompressed Image; with an optional modules directory.
Result<PreparedKernel> prepare_file(Cache& cache, const fs::path& image, const fs::path& modules_dir,
                                    bool refresh = false, std::string_view arch = "x86_64");

}  // namespace kgate::kernel
