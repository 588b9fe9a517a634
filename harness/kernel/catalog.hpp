#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::kernel {

// Where a Debian package kernel comes from; the fields are
// checked by type when the catalog is parsed.
struct DebianPackageSource {
  std::string metapackage;     // resolved with apt-cache to the real image package
  std::string package_prefix;  // the resolved name must start with this
};

// Where a kernel comes from: a Debian package (resolved through its metapackage
// with apt), a remote OCI image (pulled with skopeo, by digest), or an OCI image
// layout directory. An OCI source without a digest pin is refused at fetch time.
// A kernel.org release built from source (`kgate kernels build`): its tarball by sha256, and a
// config fragment kept beside the catalog, on top of a base config.
struct KernelOrgSource {
  std::string release;  // "6.6.74"
  std::string
      tarball_sha256;  // 64 hex digits, as kernel.org's sha256sums.asc and buildroot's linux.hash give it
  fs::path tarball;    // a local copy (relative paths: to the catalog file); empty: fetched from url
  std::string url;     // default https://cdn.kernel.org/pub/linux/kernel/v<major>.x/linux-<release>.tar.xz
  fs::path config;     // the fragment (relative paths: to the catalog file)
  std::string config_sha256;        // of the fragment's bytes, read when the catalog is loaded
  std::string base = "tinyconfig";  // the make target the fragment is merged onto
};

struct KernelSource : DebianPackageSource, KernelOrgSource {
  std::string type;       // "debian-package", "oci", "oci-layout" or "kernel-org"
  std::string reference;  // oci: "ghcr.io/cilium/ci-kernels:6.6.157"
  fs::path path;          // oci-layout: the directory (relative paths: to the catalog file)
  std::string ref;        // oci-layout: the image's ref name in the layout (optional)
  std::string digest;     // oci, oci-layout: "sha256:<64 hex>"; empty: not pinned
};

// The arches a catalog entry may name: "x86_64" or "arm64".
bool known_arch(std::string_view arch);

struct CatalogEntry {
  std::string name;
  std::string description;
  std::string arch;  // "x86_64" or "arm64"; the guest kgate boots it as
  KernelSource source;
  std::vector<std::string> modules;  // what the agent needs loaded, closure resolved at build
};

struct Catalog {
  std::string default_entry;                        // "default": the entry `kgate run` boots
  std::map<std::string, std::string> arch_default;  // "defaults": arch -> entry, for run --arch
  std::map<std::string, CatalogEntry> entries;

  Result<const CatalogEntry*> find(std::string_view name) const;
  // The entry to boot for `arch` when none is named: "defaults"[arch], else "default" when it
  // has that arch; an error of class usage when there is none.
  Result<std::string> default_for(std::string_view arch) const;
};

// Parses catalog JSON; `origin` names the file in errors. Unknown keys are
// errors (a typo must not silently drop a setting).
Result<Catalog> parse_catalog(std::string_view text, std::string_view origin);
// Reads the file, resolves oci-layout paths against its directory and, with `pins`, applies the
// kernels.lock beside it (kernel/pins.hpp).
Result<Catalog> load_catalog(const fs::path& path, bool pins = true);

}  // namespace kgate::kernel
