#include "kernel/cache_admin.hpp"

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <set>

#include "core/strings.hpp"

namespace kgate::kernel {

namespace {

using nlohmann::json;
using Clock = std::chrono::system_clock;

std::optional<Clock::time_point> mtime(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return std::nullopt;
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

std::uint64_t size_of(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(fs::symlink_status(p, ec))) return fs::file_size(p, ec);
  std::uint64_t total = 0;
  for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) total += it->file_size(ec);
  }
  return total;
}

// A record's string field; "" when absent or not a string (a record edited by hand).
std::string str(const json& rec, const char* key) {
  auto it = rec.find(key);
  return it != rec.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The unpacked tree a record names: an OCI image's or a build's "tree", else the package's.
std::string tree_of(const json& rec) {
  const std::string tree = str(rec, "tree");
  return tree.empty() ? str(rec, "package_sha256") : tree;
}

std::optional<json> read_record(const fs::path& p) {
  auto text = read_file(p);
  if (!text) return std::nullopt;
  json j = json::parse(*text, nullptr, false);
  return j.is_object() ? std::optional<json>(j) : std::nullopt;
}

// Every sha256 a record names (the package tree, the image, the config, ...).
void digests_in(const json& j, std::set<std::string>& out) {
  if (j.is_string() && is_sha256_hex(j.get<std::string>())) out.insert(j.get<std::string>());
  if (j.is_structured())
    for (const auto& v : j) digests_in(v, out);
}

std::string source_words(const CatalogEntry& e) {
  if (e.source.type == "debian-package") return "debian-package " + e.source.metapackage;
  if (e.source.type == "oci") return "oci " + e.source.reference;
  if (e.source.type == "kernel-org") return "kernel-org linux-" + e.source.release;
  return "oci-layout " + e.source.path.string() + (e.source.ref.empty() ? "" : ":" + e.source.ref);
}

}  // namespace

std::vector<CachedKernel> list_kernels(const Cache& cache, const Catalog& catalog) {
  std::vector<CachedKernel> out;
  for (const auto& [name, e] : catalog.entries) {
    CachedKernel k;
    k.entry = name;
    k.arch = e.arch;
    k.source = source_words(e);
    k.pin = e.source.digest;
    const fs::path record = cache.entry_path(name);
    if (auto rec = read_record(record)) {
      k.cached = true;
      k.release = str(*rec, "release");
      k.image_sha256 = str(*rec, "image_sha256");
      k.resolved = str(*rec, "source");
      k.last_used = mtime(record);
      if (const std::string tree = tree_of(*rec); is_sha256_hex(tree))
        k.bytes += size_of(cache.tree_path(tree));
      if (is_sha256_hex(k.image_sha256)) k.bytes += size_of(cache.blob_path(k.image_sha256));
    }
    out.push_back(std::move(k));
  }
  return out;
}

Result<PruneReport> prune_cache(const Cache& cache, const Catalog& catalog, std::chrono::seconds keep,
                                bool dry_run) {
  const fs::path& root = cache.root();
  const auto cutoff = Clock::now() - keep;
  auto recent = [&](const fs::path& p) {
    auto t = mtime(p);
    return t && *t >= cutoff;
  };
  PruneReport report;
  auto remove = [&](const fs::path& p) -> Status {
    report.bytes += size_of(p);
    report.removed.push_back(p.lexically_relative(root).string());
    if (dry_run) return {};
    std::error_code ec;
    fs::remove_all(p, ec);
    if (ec) return fail(FailureClass::infra, "remove " + p.string() + ": " + ec.message());
    return {};
  };
  std::error_code ec;
  // 1. Entry records: a catalog entry's, or one used recently, is kept, with all it names.
  std::set<std::string> live;
  for (const auto& f : fs::directory_iterator(root / "entries", ec)) {
    const std::string name = f.path().stem().string();
    if (catalog.entries.contains(name) || recent(f.path())) {
      if (auto rec = read_record(f.path())) digests_in(*rec, live);
      ++report.kept;
    } else if (auto st = remove(f.path()); !st) {
      return std::unexpected(st.error());
    }
  }
  // 2. Refs (refs/<kind>/<key> holds a blob digest): kept when recent or when they lead from or to
  // something live; what a kept ref names is live too.
  std::vector<std::pair<fs::path, std::string>> stale_refs;
  for (auto it = fs::recursive_directory_iterator(root / "refs", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::string target = read_file(it->path()).value_or("");
    while (!target.empty() && target.back() == '\n') target.pop_back();
    const std::string key = it->path().filename().string();
    // refs/initramfs/<key>.modules goes with refs/initramfs/<key>, which each use stamps.
    const fs::path stamped =
        key.ends_with(".modules") ? it->path().parent_path() / key.substr(0, key.size() - 8) : it->path();
    if (key.ends_with(".modules") && fs::exists(stamped)) {
      if (recent(stamped))
        ++report.kept;
      else
        stale_refs.emplace_back(it->path(), "");
      continue;
    }
    if (recent(it->path()) || live.contains(key) || live.contains(target)) {
      live.insert(target);
      ++report.kept;
    } else {
      stale_refs.emplace_back(it->path(), target);
    }
  }
  for (const auto& [path, _] : stale_refs)
    if (auto st = remove(path); !st) return std::unexpected(st.error());
  // 3. Unpacked packages and blobs: live, or used recently (a blob's seal is stamped at each use).
  for (const auto& t : fs::directory_iterator(root / "trees", ec)) {
    if (live.contains(t.path().filename().string()) || recent(t.path())) {
      ++report.kept;
    } else if (auto st = remove(t.path()); !st) {
      return std::unexpected(st.error());
    }
  }
  // Pulled OCI layouts (oci/<digest hex>, the tree's name too), loader images (images/<hex>) and
  // long logs: kept while live or used recently.
  for (const char* dir : {"oci", "images", "logs"}) {
    std::error_code dir_ec;
    for (const auto& d : fs::directory_iterator(root / dir, dir_ec)) {
      if (live.contains(d.path().filename().string()) || recent(d.path())) {
        ++report.kept;
      } else if (auto st = remove(d.path()); !st) {
        return std::unexpected(st.error());
      }
    }
  }
  for (const auto& b : fs::directory_iterator(root / "blobs" / "sha256", ec)) {
    const std::string name = b.path().filename().string();
    if (!is_sha256_hex(name)) continue;  // seals go with their blob
    const fs::path seal = b.path().string() + ".seal";
    if (live.contains(name) || recent(seal) || recent(b.path())) {
      ++report.kept;
      continue;
    }
    if (auto st = remove(b.path()); !st) return std::unexpected(st.error());
    if (fs::exists(seal))
      if (auto st = remove(seal); !st) return std::unexpected(st.error());
  }
  return report;
}

}  // namespace kgate::kernel
