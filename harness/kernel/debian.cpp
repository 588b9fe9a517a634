#include "kernel/debian.hpp"

#include "core/arch.hpp"
#include "core/subprocess.hpp"

namespace kgate::kernel {
namespace {

Result<std::string> apt_show(const std::string& package, const Deadline& deadline) {
  auto cap = run_capture({"apt-cache", "show", "--no-all-versions", package}, deadline);
  if (!cap) return std::unexpected(std::move(cap.error()).context("apt-cache show " + package));
  if (cap->status != 0 || cap->out.empty()) {
    return fail(FailureClass::infra,
                "apt-cache knows no package '" + package + "' (" + describe_status(cap->status) +
                    "): run 'apt-get update' (scripts/setup.sh does; another arch's package needs 'dpkg "
                    "--add-architecture ARCH' first), or boot a kernel file with --kernel PATH");
  }
  return cap->out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

std::string stanza_field(std::string_view stanza, std::string_view field) {
  size_t pos = 0;
  while (pos < stanza.size()) {
    size_t end = stanza.find('\n', pos);
    if (end == std::string_view::npos) end = stanza.size();
    std::string_view line = stanza.substr(pos, end - pos);
    if (line.empty()) break;  // only the first stanza
    if (line.size() > field.size() && line.substr(0, field.size()) == field && line[field.size()] == ':') {
      return trim(line.substr(field.size() + 1));
    }
    pos = end + 1;
  }
  return {};
}

std::string depends_with_prefix(std::string_view depends, std::string_view prefix) {
  size_t pos = 0;
  while (pos <= depends.size()) {
    size_t end = depends.find_first_of(",|", pos);
    if (end == std::string_view::npos) end = depends.size();
    std::string item = trim(depends.substr(pos, end - pos));
    std::string name = item.substr(0, item.find_first_of(" (:"));
    if (name.starts_with(prefix)) return name;
    pos = end + 1;
  }
  return {};
}

std::string debian_arch(std::string_view arch) {
  auto a = parse_arch(arch);
  return a ? std::string(kgate::debian_arch(*a)) : std::string(arch);
}

Result<DebianPackage> resolve_package(const DebianPackageSource& source, std::string_view deb_arch,
                                      const Deadline& deadline) {
  const std::string qualifier = ":" + std::string(deb_arch);
  auto meta = apt_show(source.metapackage + qualifier, deadline);
  if (!meta) return std::unexpected(meta.error());
  std::string depends = stanza_field(*meta, "Depends");
  std::string name = depends_with_prefix(depends, source.package_prefix);
  if (name.empty()) {
    return fail(FailureClass::infra, source.metapackage + " depends on no package starting with '" +
                                         source.package_prefix + "' (Depends: " + depends + ")");
  }
  return resolve_named_package(name, deb_arch, deadline);
}

Result<DebianPackage> resolve_named_package(const std::string& name, std::string_view deb_arch,
                                            const Deadline& deadline) {
  auto stanza = apt_show(name + ":" + std::string(deb_arch), deadline);
  if (!stanza) return std::unexpected(stanza.error());
  DebianPackage pkg{name, std::string(deb_arch), stanza_field(*stanza, "Version"),
                    stanza_field(*stanza, "SHA256")};
  if (pkg.version.empty() || pkg.sha256.size() != 64) {
    return fail(FailureClass::infra, "apt-cache show " + name + " gave no Version or SHA256");
  }
  return pkg;
}

Result<fs::path> download_package(const DebianPackage& pkg, const fs::path& dir, const Deadline& deadline) {
  const std::string spec = pkg.name + ":" + pkg.arch + "=" + pkg.version;
  auto cap = run_capture({"apt-get", "download", "-q", spec}, deadline, dir);
  if (!cap) return std::unexpected(std::move(cap.error()).context("apt-get download " + pkg.name));
  if (cap->status != 0) {
    return fail(FailureClass::infra,
                "apt-get download " + spec + " " + describe_status(cap->status) + ": " + cap->err);
  }
  for (const auto& ent : fs::directory_iterator(dir)) {
    if (ent.path().extension() != ".deb") continue;
    auto sha = sha256_file(ent.path());
    if (!sha) return std::unexpected(sha.error());
    if (*sha != pkg.sha256) {
      return fail(FailureClass::digest_mismatch, "downloaded " + ent.path().filename().string() +
                                                     " has sha256 " + *sha + ", the archive index says " +
                                                     pkg.sha256);
    }
    return ent.path();
  }
  return fail(FailureClass::infra, "apt-get download " + pkg.name + " left no .deb in " + dir.string());
}

Status unpack_package(const fs::path& deb, const fs::path& dest, const Deadline& deadline) {
  auto cap = run_capture({"dpkg-deb", "-x", deb.string(), dest.string()}, deadline);
  if (!cap) return std::unexpected(std::move(cap.error()).context("dpkg-deb -x " + deb.string()));
  if (cap->status != 0) {
    return fail(FailureClass::infra,
                "dpkg-deb -x " + deb.string() + " " + describe_status(cap->status) + ": " + cap->err);
  }
  return {};
}

}  // namespace kgate::kernel
