#include "run/loader_image.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/files.hpp"
#include "core/strings.hpp"
#include "image/initramfs.hpp"

namespace kgate::run {
namespace {

using nlohmann::json;

// Bump when the segment's layout changes, so that old cached segments are not reused.
constexpr const char* segment_version = "kgate.image-root/1";
// The guest holds the whole tree in memory; an image larger than this is not a loader kgate boots.
constexpr std::uint64_t max_tree_bytes = std::uint64_t{2} << 30;
constexpr const char* default_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::vector<std::string> components(std::string_view path) {
  return split_nonempty(path, '/');
}

// The tree, its dropped links and its size, written beside the tree when it is unpacked.
Status write_meta(const fs::path& dir, const kernel::OciImage& img, std::uint64_t bytes) {
  json links = json::object();
  for (const auto& [name, target] : img.dropped_link_targets) links[name] = target;
  json meta = {{"manifest", img.manifest_digest}, {"bytes", bytes}, {"links", links}};
  return write_file_atomic(dir / "meta.json", meta.dump(1) + "\n");
}

Status read_meta(const fs::path& dir, kernel::OciImage& img, std::uint64_t& bytes) {
  auto text = read_file(dir / "meta.json");
  if (!text) return std::unexpected(text.error());
  json meta = json::parse(*text, nullptr, false);
  if (!meta.is_object() || meta.value("manifest", "") != img.manifest_digest || !meta["bytes"].is_number() ||
      !meta["links"].is_object())
    return fail(FailureClass::infra, (dir / "meta.json").string() + " is not the record of this image");
  bytes = meta["bytes"].get<std::uint64_t>();
  for (const auto& [name, target] : meta["links"].items())
    if (target.is_string()) img.dropped_link_targets[name] = target.get<std::string>();
  return {};
}

}  // namespace

Result<LoaderImage> prepare_loader_image(kernel::Cache& cache, const spec::ImageSource& source, vm::Arch arch,
                                         bool refresh, const Deadline& deadline) {
  LoaderImage out;
  out.source = source;
  fs::path layout = source.layout;
  std::string ref = source.ref, pinned;
  if (!source.remote.empty()) {
    auto parsed = kernel::parse_oci_reference(source.remote);
    if (!parsed) return std::unexpected(parsed.error());
    pinned = parsed->digest;
    ref = kernel::oci_layout_ref(*parsed);
    layout = cache.root() / "oci" / pinned.substr(7);
    if (refresh || !path_exists(layout / "index.json")) {
      auto lock = cache.lock("pull-" + pinned.substr(7), deadline);
      if (!lock) return std::unexpected(lock.error());
      if (auto s = make_dirs(layout.parent_path()); !s) return std::unexpected(s.error());
      auto pulling = TempDir::create("pull", layout.parent_path());
      if (!pulling) return std::unexpected(pulling.error());
      auto pulled = kernel::pull_oci(source.remote, pulling->path() / "layout", deadline);
      if (!pulled) return std::unexpected(pulled.error());
      if (auto s = install_dir(*pulled, layout, true); !s) return std::unexpected(s.error());
    }
  }
  const std::string arch_name(vm::arch_name(arch));
  auto verified = kernel::verify_oci_layout(layout, ref, pinned, arch_name);
  if (!verified) return std::unexpected(verified.error());
  out.image = std::move(*verified);

  const std::string hex = out.image.manifest_digest.substr(7);
  const fs::path dir = cache.root() / "images" / hex;
  auto lock = cache.lock("image-" + hex, deadline);
  if (!lock) return std::unexpected(lock.error());
  const std::string key = sha256_hex(std::string(segment_version) + "\n" + out.image.manifest_digest);
  auto seg = cache.get_ref("image-root", key);
  if (!seg) return std::unexpected(seg.error());
  if (!refresh && *seg && path_exists(dir / "root") && path_exists(cache.blob_path(**seg))) {
    if (auto s = read_meta(dir, out.image, out.segment.bytes); s) {
      auto path = cache.verified_blob(**seg);
      if (!path) return std::unexpected(path.error());
      out.segment.path = *path;
      out.segment.sha256 = **seg;
      out.image.root = dir / "root";
      return out;
    }
  }

  // Unpacked beside its place and renamed into it: a tree is complete or absent.
  if (auto s = make_dirs(dir.parent_path()); !s) return std::unexpected(s.error());
  auto staging = TempDir::create("unpack", dir.parent_path());
  if (!staging) return std::unexpected(staging.error());
  auto unpacked =
      kernel::unpack_oci_layout(layout, ref, pinned, arch_name, staging->path() / "root", deadline);
  if (!unpacked) return std::unexpected(unpacked.error());
  auto entries = image::tree_entries(staging->path() / "root", "kgate/root", unpacked->dropped_link_targets,
                                     max_tree_bytes);
  if (!entries) return std::unexpected(std::move(entries.error()).context("image " + source.text()));
  auto segment = pack_segment(cache, std::move(*entries));
  if (!segment) return std::unexpected(segment.error());
  out.segment = std::move(*segment);
  if (auto s = write_meta(staging->path(), *unpacked, out.segment.bytes); !s)
    return std::unexpected(s.error());
  if (auto s = install_dir(staging->path(), dir, true); !s) return std::unexpected(s.error());
  if (auto s = cache.set_ref("image-root", key, out.segment.sha256); !s) return std::unexpected(s.error());
  out.image.dropped_link_targets = unpacked->dropped_link_targets;
  out.image.dropped_links = unpacked->dropped_links;
  out.image.root = dir / "root";
  out.unpacked = true;
  return out;
}

Result<fs::path> file_in_image(const LoaderImage& img, const std::string& guest_path) {
  const fs::path& root = img.image.root;
  auto missing = [&](const std::string& why) {
    return fail(FailureClass::usage, guest_path + " " + why + " in the image " + img.source.text());
  };
  std::vector<std::string> todo = components(guest_path), done;
  std::reverse(todo.begin(), todo.end());
  int hops = 0;
  while (!todo.empty()) {
    std::string part = std::move(todo.back());
    todo.pop_back();
    if (part == ".") continue;
    if (part == "..") {
      if (!done.empty()) done.pop_back();
      continue;
    }
    std::string rel;
    for (const auto& d : done) rel += d + "/";
    rel += part;
    std::string target;
    if (auto link = img.image.dropped_link_targets.find(rel); link != img.image.dropped_link_targets.end()) {
      target = link->second;
    } else {
      std::error_code ec;
      const auto st = fs::symlink_status(root / rel, ec);
      if (!fs::exists(st)) return missing("does not exist");
      if (!fs::is_symlink(st)) {
        done.push_back(std::move(part));
        continue;
      }
      target = fs::read_symlink(root / rel, ec).string();
      if (ec) return missing("is a link that cannot be read");
    }
    if (++hops > 40) return missing("is a loop of symbolic links");
    if (target.starts_with('/')) done.clear();
    auto more = components(target);
    for (auto it = more.rbegin(); it != more.rend(); ++it) todo.push_back(*it);
  }
  fs::path host = root;
  for (const auto& d : done) host /= d;
  std::error_code ec;
  if (!fs::is_regular_file(fs::symlink_status(host, ec))) return missing("is not a regular file");
  return host;
}

Result<std::string> find_in_image(const LoaderImage& img, const std::string& name,
                                  const std::vector<std::string>& env) {
  if (name.starts_with('/')) {
    if (auto f = file_in_image(img, name); !f) return std::unexpected(f.error());
    return name;
  }
  std::string path = default_path;
  for (const auto& e : env)
    if (e.starts_with("PATH=")) path = e.substr(5);
  for (const std::string& dir : split_nonempty(path, ':')) {
    if (!dir.starts_with('/')) continue;
    const std::string candidate = (dir.ends_with('/') ? dir : dir + "/") + name;
    auto f = file_in_image(img, candidate);
    if (!f) continue;
    struct stat st {};
    if (::stat(f->c_str(), &st) == 0 && (st.st_mode & 0111)) return candidate;
  }
  return fail(FailureClass::usage, "\"" + name + "\" is not an executable on the PATH (" + path +
                                       ") of the image " + img.source.text());
}

}  // namespace kgate::run
