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
  std::string arch;  // Debian's: amd64, arm64
  std::string version;
  std::string sha256;  // of the .deb, from the archive's signed index
};

// Fields of one "apt-cache show" stanza; pure, for tests.
std::string stanza_field(std::string_view stanza, std::string_view field);
// The first package named in a Depends line that starts with `prefix`.
std::string depends_with_prefix(std::string_view depends, std::string_view prefix);

// Debian's name for a catalog arch: x86_64 -> amd64, arm64 -> arm64.
std::string debian_arch(std::string_view arch);

// Resolves the metapackage to the image package it depends on, with apt-cache. Both names
// are asked for as <name>:<deb_arch>, so a foreign arch's kernel comes through dpkg
// multiarch (dpkg --add-architecture arm64 and apt-get update; scripts/setup.sh does both).
Result<DebianPackage> resolve_package(const DebianPackageSource& source, std::string_view deb_arch,
                                      const Deadline& deadline);
// The candidate of one package for `deb_arch`, with apt-cache.
Result<DebianPackage> resolve_named_package(const std::string& name, std::string_view deb_arch,
                                            const Deadline& deadline);
// Downloads the package into `dir` with apt-get and checks its sha256.
Result<fs::path> download_package(const DebianPackage& pkg, const fs::path& dir, const Deadline& deadline);
// Unpacks a .deb into `dest` without installing it.
Status unpack_package(const fs::path& deb, const fs::path& dest, const Deadline& deadline);

}  // namespace kgate::kernel
