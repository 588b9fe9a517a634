#pragma once

#include <string>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "kernel/catalog.hpp"

namespace kgate::kernel {

// A Debian binary package as apt knows it (its candidate version).
struct DebianPackage {
  std::string name;
  std::string version;
  std::string sha256;  // of the .deb, from the archive's signed index
};

// Fields of one "apt-cache show" stanza; pure, for tests.
std::string stanza_field(std::string_view stanza, std::string_view field);
// The first package named in a Depends line that starts with `prefix`.
std::string depends_with_prefix(std::string_view depends, std::string_view prefix);

// Resolves the metapackage to the image package it depends on, with apt-cache.
Result<DebianPackage> resolve_package(const DebianPackageSource& source, const Deadline& deadline);
// Downloads the package into `dir` with apt-get and checks its sha256.
Result<fs::path> download_package(const DebianPackage& pkg, const fs::path& dir, const Deadline& deadline);
// Unpacks a .deb into `dest` without installing it.
Status unpack_package(const fs::path& deb, const fs::path& dest, const Deadline& deadline);

}  // namespace kgate::kernel
