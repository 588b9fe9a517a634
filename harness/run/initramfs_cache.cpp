#include "run/initramfs_cache.hpp"

#include "core/compress.hpp"
#include "core/strings.hpp"
#include "image/initramfs.hpp"
#include "image/modules.hpp"
#include "run/embedded.hpp"

namespace kgate::run {
namespace {
// Bump when the initramfs layout changes, so old cached images are not reused; the recipe's text
// (images/gate.json) is in the key too.
constexpr const char* layout_version = "kgate.initramfs/2";
}  // namespace

Result<PreparedInitramfs> prepare_initramfs(kernel::Cache& cache, const kernel::PreparedKernel& kernel,
                                            const std::vector<std::string>& wanted_modules, bool refresh,
                                            vm::Arch arch) {
  PreparedInitramfs out;
  // The agent's digest is in the key: each arch's initramfs is its own.
  std::string_view agent = agent_binary(arch);
  out.agent_sha256 = sha256_hex(agent);
  std::string key_text = std::string(layout_version) + "\nrecipe " + sha256_hex(gate_image_recipe()) +
                         "\nagent " + out.agent_sha256 + "\nmodules " + kernel.modules_id + "\nwant";
  for (const auto& m : wanted_modules) key_text += " " + m;
  // A package's modules never change under its digest; a directory's may
  // (a developer rebuilds into the same path), so its modules' bytes go in the key.
  std::optional<std::vector<image::ModuleFile>> closure;
  if (!kernel.modules_dir.empty() && !wanted_modules.empty()) {
    if (kernel.modules_id.starts_with("dir ")) {
      auto resolved = image::resolve_closure(kernel.modules_dir, wanted_modules);
      if (!resolved) return std::unexpected(std::move(resolved.error()).context("resolve modules"));
      for (const auto& m : *resolved) {
        auto sha = sha256_file(m.path);
        if (!sha) return std::unexpected(sha.error());
        key_text += "\n" + m.name + " " + *sha;
      }
      closure = std::move(*resolved);
    }
  }
  std::string key = sha256_hex(key_text);

  // The module list rides along in the ref's sibling so a warm run can report it.
  fs::path list_path = cache.root() / "refs" / "initramfs" / (key + ".modules");
  auto ref = cache.get_ref("initramfs", key);
  if (!ref) return std::unexpected(ref.error());
  if (*ref && !refresh && path_exists(cache.blob_path(**ref))) {
    if (auto list = read_file(list_path)) {
      auto path = cache.verified_blob(**ref);
      if (!path) return std::unexpected(path.error());
      out.path = *path;
      out.sha256 = **ref;
      size_t pos = 0;
      while (pos < list->size()) {
        size_t end = list->find('\n', pos);
        if (end == std::string::npos) end = list->size();
        if (end > pos) out.modules.push_back(list->substr(pos, end - pos));
        pos = end + 1;
      }
      return out;
    }
  }

  image::InitramfsInputs inputs;
  inputs.agent = std::string(agent);
  if (!wanted_modules.empty()) {
    if (kernel.modules_dir.empty()) {
      return fail(
          FailureClass::usage,
          "this kernel comes with no modules directory, but the entry needs modules; pass --modules DIR "
          "or use a kernel with them built in");
    }
    if (!closure) {
      auto resolved = image::resolve_closure(kernel.modules_dir, wanted_modules);
      if (!resolved) return std::unexpected(std::move(resolved.error()).context("resolve modules"));
      closure = std::move(*resolved);
    }
    auto mods = image::read_modules(*closure);
    if (!mods) return std::unexpected(mods.error());
    inputs.modules = std::move(*mods);
  }
  for (const auto& [name, _] : inputs.modules) out.modules.push_back(name);
  auto cpio = image::build_initramfs_cpio(gate_image_recipe(), "images/gate.json", inputs);
  if (!cpio) return std::unexpected(cpio.error());
  auto packed = zstd_compress(*cpio, 6);
  if (!packed) return std::unexpected(packed.error());
  auto sha = cache.put_blob(*packed);
  if (!sha) return std::unexpected(sha.error());
  std::string list;
  for (const auto& m : out.modules) list += m + "\n";
  if (auto s = write_file_atomic(list_path, list); !s) return std::unexpected(s.error());
  if (auto s = cache.set_ref("initramfs", key, *sha); !s) return std::unexpected(s.error());
  out.path = cache.blob_path(*sha);
  out.sha256 = *sha;
  out.built = true;
  return out;
}

Result<Segment> pack_segment(kernel::Cache& cache, std::vector<image::CpioEntry> entries) {
  Segment out;
  for (const auto& e : entries) out.bytes += e.data.size();
  auto packed = zstd_compress(image::write_cpio(std::move(entries)), 3);
  if (!packed) return std::unexpected(packed.error());
  auto sha = cache.put_blob(*packed);
  if (!sha) return std::unexpected(sha.error());
  out.path = cache.blob_path(*sha);
  out.sha256 = *sha;
  return out;
}

Result<Segment> files_segment(kernel::Cache& cache, const std::vector<image::GuestFile>& files) {
  std::string key_text = "kgate.files/1";
  std::uint64_t bytes = 0;
  for (const auto& f : files) {
    key_text += strprintf("\n%s %o %s", f.path.c_str(), f.mode, sha256_hex(f.data).c_str());
    bytes += f.data.size();
  }
  const std::string key = sha256_hex(key_text);
  auto ref = cache.get_ref("files", key);
  if (!ref) return std::unexpected(ref.error());
  if (*ref && path_exists(cache.blob_path(**ref))) {
    auto path = cache.verified_blob(**ref);
    if (!path) return std::unexpected(path.error());
    return Segment{*path, **ref, bytes};
  }
  auto entries = image::file_list_entries(files);
  if (!entries) return std::unexpected(entries.error());
  auto segment = pack_segment(cache, std::move(*entries));
  if (!segment) return std::unexpected(segment.error());
  if (auto s = cache.set_ref("files", key, segment->sha256); !s) return std::unexpected(s.error());
  return segment;
}

Result<fs::path> initrd_with_segments(kernel::Cache& cache, const PreparedInitramfs& initramfs,
                                      const std::vector<Segment>& segments) {
  if (segments.empty()) return initramfs.path;
  std::string key_text = "kgate.initrd/1\n" + initramfs.sha256;
  for (const auto& s : segments) key_text += "\n" + s.sha256;
  const std::string key = sha256_hex(key_text);
  auto ref = cache.get_ref("initrd", key);
  if (!ref) return std::unexpected(ref.error());
  if (*ref && path_exists(cache.blob_path(**ref))) return cache.verified_blob(**ref);
  auto joined = read_file(initramfs.path);
  if (!joined) return std::unexpected(joined.error());
  for (const auto& s : segments) {
    auto bytes = read_file(s.path);
    if (!bytes) return std::unexpected(bytes.error());
    // Each archive starts 4-byte aligned; the kernel skips the zeros between them.
    joined->resize((joined->size() + 3) / 4 * 4, '\0');
    *joined += *bytes;
  }
  auto sha = cache.put_blob(*joined);
  if (!sha) return std::unexpected(sha.error());
  if (auto s = cache.set_ref("initrd", key, *sha); !s) return std::unexpected(s.error());
  return cache.blob_path(*sha);
}

}  // namespace kgate::run
