#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::kernel {

// Where a kernel comes from. Only debian-package exists today; the fields are
// checked by type when the catalog is parsed.
struct DebianPackageSource {
  std::string metapackage;     // resolved with apt-cache to the real image package
  std::string package_prefix;  // the resolved name must start with this
};

struct CatalogEntry {
  std::string name;
  std::string description;
  std::string arch;
  DebianPackageSource source;
  std::vector<std::string> modules;  // what the agent needs loaded, closure resolved at build
};

struct Catalog {
  std::string default_entry;
  std::map<std::string, CatalogEntry> entries;

  Result<const CatalogEntry*> find(std::string_view name) const;
};

// Parses catalog JSON; `origin` names the file in errors. Unknown keys are
// errors (a typo must not silently drop a setting).
Result<Catalog> parse_catalog(std::string_view text, std::string_view origin);
Result<Catalog> load_catalog(const fs::path& path);

}  // namespace kgate::kernel
