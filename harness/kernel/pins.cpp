#include "kernel/pins.hpp"

#include <sys/wait.h>

#include <map>
#include <sstream>

#include "core/strings.hpp"
#include "core/subprocess.hpp"

namespace kgate::kernel {

fs::path kernel_pins_path(const fs::path& catalog) {
  return catalog.parent_path() / "kernels.lock";
}

Result<std::vector<KernelPin>> parse_kernel_pins(std::string_view text, std::string_view origin) {
  std::vector<KernelPin> pins;
  std::map<std::pair<std::string, std::string>, int> seen;
  int n = 0;
  for (std::string_view line : split_lines(text)) {
    ++n;
    if (line.empty() || line.front() == '#') continue;
    std::istringstream words{std::string(line)};
    KernelPin p;
    std::string extra;
    p.line = n;
    if (!(words >> p.entry >> p.arch >> p.reference >> p.digest) || (words >> extra))
      return fail(FailureClass::usage,
                  strprintf("%.*s: line %d: want '<entry> <arch> <reference> sha256:<hex>'",
                            static_cast<int>(origin.size()), origin.data(), n));
    if (!known_arch(p.arch) || !p.digest.starts_with("sha256:") || !is_sha256_hex(p.digest.substr(7)))
      return fail(FailureClass::usage, strprintf("%.*s: line %d: '%s %s' is not an arch and a sha256 digest",
                                                 static_cast<int>(origin.size()), origin.data(), n,
                                                 p.arch.c_str(), p.digest.c_str()));
    if (auto [at, fresh] = seen.emplace(std::pair{p.entry, p.arch}, n); !fresh)
      return fail(FailureClass::usage,
                  strprintf("%.*s: line %d: %s %s is pinned on line %d too", static_cast<int>(origin.size()),
                            origin.data(), n, p.entry.c_str(), p.arch.c_str(), at->second));
    pins.push_back(std::move(p));
  }
  return pins;
}

std::string render_kernel_pins(const std::vector<KernelPin>& pins) {
  std::string out =
      "# kgate kernels pin: the manifest digest each OCI catalog entry's reference pointed at when pinned.\n"
      "# The catalog beside this file boots these digests; `kgate kernels pin --check` says which moved.\n";
  for (const auto& p : pins) out += p.entry + " " + p.arch + " " + p.reference + " " + p.digest + "\n";
  return out;
}

std::string pin_reference(const CatalogEntry& e) {
  if (e.source.type == "oci") return e.source.reference;
  if (e.source.type == "oci-layout") return e.source.ref.empty() ? "-" : e.source.ref;
  return "";
}

Status apply_kernel_pins(Catalog& catalog, const std::vector<KernelPin>& pins, std::string_view origin) {
  for (const auto& p : pins) {
    const std::string where =
        strprintf("%.*s: line %d: ", static_cast<int>(origin.size()), origin.data(), p.line);
    auto it = catalog.entries.find(p.entry);
    if (it == catalog.entries.end() || pin_reference(it->second).empty())
      return fail(FailureClass::usage, where + p.entry + " is no OCI entry of the catalog: pin again");
    CatalogEntry& e = it->second;
    if (e.arch != p.arch)
      return fail(FailureClass::usage, where + p.entry + " is " + e.arch + ", not " + p.arch);
    if (pin_reference(e) != p.reference)
      return fail(FailureClass::usage, where + p.entry + " was pinned at " + p.reference +
                                           ", the catalog now names " + pin_reference(e) +
                                           ": run `kgate kernels pin " + p.entry + "`");
    if (!e.source.digest.empty() && e.source.digest != p.digest)
      return fail(FailureClass::usage, where + p.entry + ": the catalog pins " + e.source.digest +
                                           " and the lock " + p.digest + ": keep one");
    e.source.digest = p.digest;
  }
  return {};
}

std::vector<std::string> skopeo_inspect_argv(const fs::path& skopeo, const CatalogEntry& e) {
  const std::string source = e.source.type == "oci" ? "docker://" + e.source.reference
                                                    : "oci:" + e.source.path.string() +
                                                          (e.source.ref.empty() ? "" : ":" + e.source.ref);
  return {skopeo.string(), "inspect", "--format",        "{{.Digest}}",
          "--override-os", "linux",   "--override-arch", e.arch == "arm64" ? "arm64" : "amd64",
          source};
}

Result<std::string> resolve_pin(const CatalogEntry& e, const Deadline& deadline) {
  if (pin_reference(e).empty())
    return fail(FailureClass::usage,
                e.name + " is a " + e.source.type + " entry: only OCI entries are pinned");
  const fs::path skopeo = find_program("skopeo");
  if (skopeo.empty())
    return fail(FailureClass::infra, "skopeo is not installed (not found on PATH): apt-get install skopeo");
  auto cap = run_capture(skopeo_inspect_argv(skopeo, e), deadline);
  if (!cap) return std::unexpected(std::move(cap.error()).context("skopeo inspect " + pin_reference(e)));
  const std::string digest(first_line(cap->out));
  if (!WIFEXITED(cap->status) || WEXITSTATUS(cap->status) != 0)
    return fail(FailureClass::infra, "skopeo inspect " + skopeo_inspect_argv(skopeo, e).back() + " " +
                                         describe_status(cap->status) + ": " +
                                         std::string(first_line(cap->err)));
  if (!digest.starts_with("sha256:") || !is_sha256_hex(digest.substr(7)))
    return fail(FailureClass::infra, "skopeo inspect printed '" + digest + "', not a sha256 digest");
  return digest;
}

}  // namespace kgate::kernel
