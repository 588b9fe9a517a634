#include "kernel/prepare.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <functional>
#include <nlohmann/json.hpp>
#include <system_error>

#include "kernel/bzimage.hpp"
#include "kernel/debian.hpp"
#include "kernel/oci.hpp"

namespace kgate::kernel {
namespace {

using nlohmann::json;

// The boot image derived from an image blob, derived once and then found by its cache ref
// `kind`: `derive` returns the bytes to boot instead of the image (nullopt: the image boots
// as it is) or refuses the image.
using DeriveBoot = std::function<Result<std::optional<std::string>>(const std::string& image)>;
Result<std::string> derived_boot_blob(Cache& cache, const char* kind, const std::string& image_sha,
                                      bool refresh, const DeriveBoot& derive) {
  // A refresh derives the boot image again without reading the ref, which may be the corrupt
  // file it was asked to repair.
  if (!refresh) {
    auto ref = cache.get_ref(kind, image_sha);
    if (!ref) return std::unexpected(ref.error());
    // A ref whose blob was pruned is as good as absent: derive it again.
    if (*ref && path_exists(cache.blob_path(**ref))) return **ref;
  }
  auto path = cache.verified_blob(image_sha);
  if (!path) return std::unexpected(path.error());
  auto bytes = read_file(*path);
  if (!bytes) return std::unexpected(bytes.error());
  auto derived = derive(*bytes);
  if (!derived) return std::unexpected(derived.error());
  std::string boot_sha = image_sha;
  if (*derived) {
    auto sha = cache.put_blob(**derived);
    if (!sha) return std::unexpected(sha.error());
    boot_sha = *sha;
  }
  if (auto s = cache.set_ref(kind, image_sha, boot_sha); !s) return std::unexpected(s.error());
  return boot_sha;
}

// x86_64: a bzImage's vmlinux is extracted once and cached (it boots through PVH in 2.2 s
// against 5.2 s for the bzImage under TCG). A payload kgate cannot unpack (lz4, lzo, bzip2,
// lzma; Debian's cloud kernel is lz4) still boots: QEMU boots the bzImage itself, only slower.
Result<std::optional<std::string>> x86_boot_image(const std::string& image) {
  if (is_elf(image)) {
    if (auto s = check_elf_segments(image); !s)
      return std::unexpected(std::move(s.error()).context("vmlinux"));
    return std::nullopt;
  }
  auto vmlinux = extract_vmlinux(image);
  if (vmlinux && has_pvh_entry(*vmlinux)) return std::optional<std::string>(std::move(*vmlinux));
  return std::nullopt;
}

// arm64, whatever the source (catalog package, OCI image, --kernel file): an uncompressed
// Image boots as it is, a compressed one is decompressed once, and anything else is refused
// here, before a boot that would hang until its timeout. The ref records that the check
// passed, so a warm run does not read the image again.
Result<std::optional<std::string>> arm64_boot(const std::string& image) {
  return arm64_boot_image(image);
}

Status fill_boot(Cache& cache, PreparedKernel& k, bool refresh, std::string_view arch) {
  auto image = cache.verified_blob(k.image_sha256);
  if (!image) return std::unexpected(image.error());
  k.image = *image;
  auto boot_sha = arch == "arm64"
                      ? derived_boot_blob(cache, "arm64-image", k.image_sha256, refresh, arm64_boot)
                      : derived_boot_blob(cache, "vmlinux", k.image_sha256, refresh, x86_boot_image);
  if (!boot_sha) return std::unexpected(std::move(boot_sha.error()).context(k.source));
  auto boot = cache.verified_blob(*boot_sha);
  if (!boot) return std::unexpected(boot.error());
  k.boot = *boot;
  k.boot_sha256 = *boot_sha;
  // A bzImage whose vmlinux lacks the PVH note boots as itself; an ELF image is
  // only accepted with the note (prepare_file checks). arm64 boots an Image: no PVH.
  k.pvh = arch != "arm64" && (k.boot_sha256 != k.image_sha256 || k.image_is_elf);
  return {};
}

// A record field, or `fallback` when absent or not a string (a hand-edited or
// foreign record must not throw).
std::string field(const json& rec, const char* key, const std::string& fallback = {}) {
  auto it = rec.find(key);
  return it != rec.end() && it->is_string() ? it->get<std::string>() : fallback;
}

Result<PreparedKernel> from_record(Cache& cache, const json& rec, bool refresh, std::string_view arch) {
  PreparedKernel k;
  k.source = field(rec, "source");
  k.release = field(rec, "release");
  k.package_sha256 = field(rec, "package_sha256");
  k.image_sha256 = field(rec, "image_sha256");
  if (auto s = fill_boot(cache, k, refresh, arch); !s) return std::unexpected(s.error());
  if (std::string config = field(rec, "config_sha256"); !config.empty()) {
    auto p = cache.verified_blob(config);
    if (!p) return std::unexpected(p.error());
    k.config = *p;
  }
  // The unpacked tree the modules come from, named by the package's or image's digest.
  const std::string tree = field(rec, "tree", k.package_sha256);
  const std::string modules_rel = field(rec, "modules_rel", "lib/modules/" + k.release);
  if (!tree.empty() && !modules_rel.empty()) {
    // A tree removed from the cache by hand is pruned like a blob (ENOENT: fetched again), not
    // left for the module closure to report as a missing module.
    if (!path_exists(cache.tree_path(tree)))
      return fail(FailureClass::infra, "cached tree " + cache.tree_path(tree).string() + " is gone", ENOENT);
    k.modules_dir = cache.tree_path(tree) / modules_rel;
    k.modules_id = tree;
  }
  return k;
}

Result<json> fetch_oci(Cache& cache, const CatalogEntry& entry, bool refresh, const Deadline& deadline) {
  const KernelSource& src = entry.source;
  const std::string hex = src.digest.substr(7);
  fs::path layout = src.path;
  std::string ref = src.ref;
  std::string origin;
  if (src.type == "oci") {
    auto parsed = parse_oci_reference(src.reference + "@" + src.digest);
    if (!parsed) return std::unexpected(parsed.error());
    layout = cache.root() / "oci" / hex;
    ref = oci_layout_ref(*parsed);
    origin = "oci " + src.reference + "@" + src.digest;
    // Pulled beside the cached layout and swapped in whole: a refresh that fails (offline,
    // interrupted) leaves the layout it was refreshing as it was.
    if (refresh || !path_exists(layout / "index.json")) {
      if (auto s = make_dirs(layout.parent_path()); !s) return std::unexpected(s.error());
      auto pulling = TempDir::create("pull", layout.parent_path());
      if (!pulling) return std::unexpected(pulling.error());
      auto pulled = pull_oci(src.reference + "@" + src.digest, pulling->path() / "layout", deadline);
      if (!pulled) return std::unexpected(pulled.error());
      if (auto s = install_dir(*pulled, layout, true); !s) return std::unexpected(s.error());
    }
  } else {
    origin = "oci-layout " + src.path.string() + "@" + src.digest;
  }
  // Unpacked into a fresh directory, then renamed into place: a tree is complete or absent, and
  // a refresh replaces it only once the new one is complete.
  fs::path tree = cache.tree_path(hex);
  auto staging = TempDir::create("oci", cache.root() / "trees");
  if (!staging) return std::unexpected(staging.error());
  auto image = import_oci_layout(layout, ref, src.digest, entry.arch, staging->path() / "root", deadline);
  if (!image) return std::unexpected(image.error());
  if (auto s = install_dir(staging->path() / "root", tree, refresh); !s) return std::unexpected(s.error());
  auto rel = [&](const fs::path& p) {
    return p.empty() ? std::string() : fs::relative(p, image->root).string();
  };
  auto bytes = read_file(tree / rel(image->image));
  if (!bytes) return std::unexpected(bytes.error());
  auto image_sha = cache.put_blob(*bytes);
  if (!image_sha) return std::unexpected(image_sha.error());
  json rec = {{"entry", entry.name},
              {"source", origin},
              {"tree", hex},
              {"release", image->release},
              {"modules_rel", rel(image->modules_dir)},
              {"image_sha256", *image_sha},
              {"manifest_digest", image->manifest_digest}};
  if (!image->config.empty()) {
    auto config = read_file(tree / rel(image->config));
    if (!config) return std::unexpected(config.error());
    auto sha = cache.put_blob(*config);
    if (!sha) return std::unexpected(sha.error());
    rec["config_sha256"] = *sha;
  }
  return rec;
}

Result<json> fetch_debian(Cache& cache, const CatalogEntry& entry, bool refresh, const Deadline& deadline) {
  auto pkg = resolve_package(entry.source, debian_arch(entry.arch), deadline);
  if (!pkg) return std::unexpected(pkg.error());
  fs::path tree = cache.tree_path(pkg->sha256);
  // The unpacked tree was checked only when it was unpacked: a refresh unpacks a freshly
  // downloaded and verified package again. It is unpacked beside the final place and then
  // renamed (or, on a refresh, swapped) into it: a half-unpacked tree is never seen, and a
  // refresh that fails (offline, Ctrl-C, ENOSPC) leaves the tree it was refreshing usable.
  if (refresh || !path_exists(tree)) {
    auto tmp = TempDir::create("unpack", cache.root() / "trees");
    if (!tmp) return std::unexpected(tmp.error());
    auto deb = download_package(*pkg, tmp->path(), deadline);
    if (!deb) return std::unexpected(deb.error());
    fs::path root = tmp->path() / "root";
    if (auto s = unpack_package(*deb, root, deadline); !s) return std::unexpected(s.error());
    if (auto s = install_dir(root, tree, refresh); !s) return std::unexpected(s.error());
  }
  std::error_code ec;
  std::vector<std::string> releases;
  for (const auto& ent : fs::directory_iterator(tree / "boot", ec)) {
    std::string name = ent.path().filename().string();
    if (name.starts_with("vmlinuz-")) releases.push_back(name.substr(8));
  }
  if (releases.size() != 1) {
    return fail(FailureClass::infra, pkg->name + " ships " + std::to_string(releases.size()) +
                                         " /boot/vmlinuz-* files; kgate needs exactly one");
  }
  const std::string release = releases.front();
  auto image = read_file(tree / "boot" / ("vmlinuz-" + release));
  if (!image) return std::unexpected(image.error());
  // An arm64 image is checked where every source meets, in fill_boot.
  auto image_sha = cache.put_blob(*image);
  if (!image_sha) return std::unexpected(image_sha.error());
  json rec = {{"entry", entry.name},
              {"metapackage", entry.source.metapackage},
              {"package_prefix", entry.source.package_prefix},
              {"source", "debian-package " + pkg->name + " " + pkg->version},
              {"package", pkg->name},
              {"version", pkg->version},
              {"package_sha256", pkg->sha256},
              {"release", release},
              {"image_sha256", *image_sha}};
  if (auto config = read_file(tree / "boot" / ("config-" + release))) {
    auto sha = cache.put_blob(*config);
    if (!sha) return std::unexpected(sha.error());
    rec["config_sha256"] = *sha;
  }
  return rec;
}

}  // namespace

// One canonical line per source spec: a record made for another spec is stale. x86_64 is
// left unsaid, as before kgate booted other arches, so existing records stay warm.
std::string source_spec(const CatalogEntry& e) {
  const KernelSource& s = e.source;
  std::string spec =
      s.type == "debian-package" ? "debian-package " + s.metapackage + " " + s.package_prefix
      : s.type == "oci"          ? "oci " + s.reference + "@" + s.digest
      : s.type == "kernel-org"
          ? "kernel-org " + s.release + " " + s.tarball_sha256 + " " + s.base + " config " + s.config_sha256
          : "oci-layout " + s.path.string() + " " + s.ref + "@" + s.digest;
  return e.arch == "x86_64" ? spec : spec + " arch " + e.arch;
}

Result<PreparedKernel> prepare_entry(Cache& cache, const CatalogEntry& entry, bool refresh,
                                     const Deadline& deadline) {
  fs::path record_path = cache.entry_path(entry.name);
  auto cached = [&]() -> std::optional<json> {
    if (refresh) return std::nullopt;
    auto text = read_file(record_path);
    if (!text) return std::nullopt;
    json rec = json::parse(*text, nullptr, false);
    // A record made for another source spec (the catalog changed) is stale.
    if (!rec.is_object() || field(rec, "source_spec") != source_spec(entry)) return std::nullopt;
    return rec;
  };
  // A record whose files were pruned from the cache (ENOENT) is stale, not an error:
  // it is fetched again. A file that is there but wrong stays refused.
  auto warm = [&]() -> std::optional<Result<PreparedKernel>> {
    auto rec = cached();
    if (!rec) return std::nullopt;
    auto k = from_record(cache, *rec, false, entry.arch);
    if (!k && k.error().err() == ENOENT) return std::nullopt;
    // Last used now, the record and its unpacked package (what `kgate cache prune` keeps).
    ::utimensat(AT_FDCWD, record_path.c_str(), nullptr, 0);
    if (const std::string tree = field(*rec, "tree", field(*rec, "package_sha256")); !tree.empty())
      ::utimensat(AT_FDCWD, cache.tree_path(tree).c_str(), nullptr, 0);
    return with_context(std::move(k), "kernel " + entry.name);
  };
  if (auto k = warm()) return std::move(*k);
  // Cold: one process fetches; another that wanted the same entry finds it done.
  auto lock = cache.lock("entry-" + entry.name, deadline);
  if (!lock) return std::unexpected(lock.error());
  if (auto k = warm()) return std::move(*k);
  if (entry.source.type == "kernel-org") {
    // Built only where a user asks for it: minutes of compiling are never a side effect of a run.
    return fail(FailureClass::usage,
                "kernel " + entry.name + " (linux " + entry.source.release +
                    ") is built from source and not built here yet: run `kgate kernels build " + entry.name +
                    "` (minutes), then run again");
  }
  if (entry.source.type != "debian-package") {
    // An OCI kernel is booted by digest only: a tag can be moved under us.
    if (entry.source.digest.empty()) {
      return fail(
          FailureClass::usage,
          "kernel " + entry.name + " (" +
              (entry.source.type == "oci" ? entry.source.reference : entry.source.path.string()) +
              ") has no digest pin: run `kgate kernels pin " + entry.name +
              "` where the registry is reachable (it writes kernels.lock beside the catalog), or fill in "
              "\"digest\", or boot a kernel file with --kernel PATH");
    }
  }
  auto rec = entry.source.type == "debian-package" ? fetch_debian(cache, entry, refresh, deadline)
                                                   : fetch_oci(cache, entry, refresh, deadline);
  if (!rec) return std::unexpected(std::move(rec.error()).context("fetch kernel " + entry.name));
  (*rec)["source_spec"] = source_spec(entry);
  (*rec)["arch"] = entry.arch;
  if (auto s = write_file_atomic(record_path, rec->dump(2) + "\n"); !s) return std::unexpected(s.error());
  return with_context(from_record(cache, *rec, refresh, entry.arch), "kernel " + entry.name);
}

Result<PreparedKernel> prepare_file(Cache& cache, const fs::path& image, const fs::path& modules_dir,
                                    bool refresh, std::string_view arch) {
  auto bytes = read_file(image);
  if (!bytes)
    return std::unexpected(std::move(bytes.error()).context("read kernel").reclass(FailureClass::usage));
  PreparedKernel k;
  k.image_is_elf = is_elf(*bytes);
  if (arch != "arm64") {
    if (auto s = check_x86_kernel(*bytes); !s)
      return std::unexpected(std::move(s.error()).context(image.string()));
  }
  // An arm64 file is checked, and a compressed Image unpacked, in fill_boot.
  auto sha = cache.put_blob(*bytes);
  if (!sha) return std::unexpected(sha.error());
  k.source = "file " + absolute_path(image).string();
  k.image_sha256 = *sha;
  if (auto s = fill_boot(cache, k, refresh, arch); !s) return std::unexpected(s.error());
  if (!modules_dir.empty()) {
    k.modules_dir = absolute_path(modules_dir);
    k.modules_id = "dir " + k.modules_dir.string();
  }
  return k;
}

}  // namespace kgate::kernel
