#include "run/shell_image.hpp"

#include <sys/stat.h>

#include <cstdlib>

#include "core/files.hpp"
#include "image/closure.hpp"
#include "image/recipe.hpp"
#include "kernel/debian.hpp"
#include "run/embedded.hpp"

namespace kgate::run {
namespace {

using nlohmann::json;

// Bump when the tree's or the segment's layout changes, so that old cached ones are not reused.
constexpr const char* layout_version = "kgate.shell/1";
constexpr const char* recipe_origin = "images/shell.json";

// An unpacked package's absolute symbolic links (Debian's /lib64/ld-linux-x86-64.so.2) point into
// the tree instead of the host, so that every file the closure takes comes from the packages.
Status keep_links_inside(const fs::path& root) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_symlink(ec)) continue;
    const fs::path target = fs::read_symlink(it->path(), ec);
    if (ec || !target.is_absolute()) continue;
    fs::remove(it->path(), ec);
    if (!ec) fs::create_symlink(root / target.relative_path(), it->path(), ec);
    if (ec) return fail(FailureClass::infra, "relink " + it->path().string() + ": " + ec.message());
  }
  if (ec) return fail(FailureClass::infra, "walk " + root.string() + ": " + ec.message());
  return {};
}

// Downloads and unpacks every package into `staging`/root and records them in packages.json.
Result<json> fetch_packages(const std::vector<std::string>& names, const std::string& deb_arch,
                            const fs::path& staging, const Deadline& deadline) {
  json packages = json::array();
  for (const auto& name : names) {
    auto pkg = kernel::resolve_named_package(name, deb_arch, deadline);
    if (!pkg) return std::unexpected(std::move(pkg.error()).context("the guest shell's package " + name));
    const fs::path dl = staging / "debs" / name;
    if (auto s = make_dirs(dl); !s) return std::unexpected(s.error());
    auto deb = kernel::download_package(*pkg, dl, deadline);
    if (!deb) return std::unexpected(deb.error());
    if (auto s = kernel::unpack_package(*deb, staging / "root", deadline); !s)
      return std::unexpected(s.error());
    packages.push_back(
        {{"name", pkg->name}, {"arch", pkg->arch}, {"version", pkg->version}, {"sha256", pkg->sha256}});
  }
  std::error_code ec;
  fs::remove_all(staging / "debs", ec);
  if (auto s = keep_links_inside(staging / "root"); !s) return std::unexpected(s.error());
  if (auto s = write_file_atomic(staging / "packages.json", packages.dump(2) + "\n"); !s)
    return std::unexpected(s.error());
  return packages;
}

// The recipe's programs read from the tree, each with its library closure found there.
Result<image::RecipeInputs> program_inputs(const image::RecipeNeeds& needs, const fs::path& root) {
  image::RecipeInputs inputs;
  for (const auto& from : needs.programs) {
    const fs::path source = root / from;
    auto data = read_file(source);
    if (!data) return std::unexpected(std::move(data.error()).context("the guest shell's " + from));
    image::RecipeProgram program{std::move(*data), {}};
    auto libs = image::library_closure(source, "/" + from, {root});
    if (!libs) return std::unexpected(std::move(libs.error()).context("the guest shell's " + from));
    for (const auto& lib : *libs) {
      auto bytes = read_file(lib.source);
      if (!bytes) return std::unexpected(bytes.error());
      // The interpreter must be executable; the libraries keep the mode they have anyway.
      program.libraries.push_back({lib.dest, 0755, std::move(*bytes)});
    }
    inputs.programs.emplace(from, std::move(program));
  }
  return inputs;
}

}  // namespace

Result<ShellImage> prepare_shell_image(kernel::Cache& cache, vm::Arch arch, bool refresh,
                                       const Deadline& deadline) {
  const std::string_view recipe = shell_image_recipe();
  auto needs = image::recipe_needs(recipe, recipe_origin);
  if (!needs) return std::unexpected(needs.error());
  const std::string deb_arch = kernel::debian_arch(vm::arch_name(arch));
  const std::string key =
      sha256_hex(std::string(layout_version) + "\n" + deb_arch + "\n" + std::string(recipe));
  const fs::path dir = cache.root() / "shell" / key;
  auto lock = cache.lock("shell-" + key, deadline);
  if (!lock) return std::unexpected(lock.error());

  ShellImage out;
  auto recorded = read_file(dir / "packages.json");
  if (refresh || !recorded || !path_exists(dir / "root")) {
    if (auto s = make_dirs(dir.parent_path()); !s) return std::unexpected(s.error());
    // Unpacked beside its place and renamed into it: a tree is complete or absent.
    auto staging = TempDir::create("shell", dir.parent_path());
    if (!staging) return std::unexpected(staging.error());
    auto packages = fetch_packages(needs->packages, deb_arch, staging->path(), deadline);
    if (!packages) return std::unexpected(packages.error());
    if (auto s = install_dir(staging->path(), dir, true); !s) return std::unexpected(s.error());
    out.packages = std::move(*packages);
    out.fetched = true;
  } else {
    out.packages = json::parse(*recorded, nullptr, false);
    if (!out.packages.is_array())
      return fail(FailureClass::infra, (dir / "packages.json").string() + " is not a list of packages");
  }

  auto seg = cache.get_ref("shell-segment", key);
  if (!seg) return std::unexpected(seg.error());
  if (!out.fetched && *seg && path_exists(cache.blob_path(**seg))) {
    auto path = cache.verified_blob(**seg);
    if (!path) return std::unexpected(path.error());
    auto bytes = read_file(dir / "segment-bytes");
    out.segment = {*path, **seg, bytes ? std::strtoull(bytes->c_str(), nullptr, 10) : 0};
    return out;
  }
  auto inputs = program_inputs(*needs, dir / "root");
  if (!inputs) return std::unexpected(inputs.error());
  auto entries = image::expand_recipe(recipe, *inputs, recipe_origin);
  if (!entries) return std::unexpected(entries.error());
  auto segment = pack_segment(cache, std::move(*entries));
  if (!segment) return std::unexpected(segment.error());
  out.segment = std::move(*segment);
  if (auto s = write_file_atomic(dir / "segment-bytes", std::to_string(out.segment.bytes) + "\n"); !s)
    return std::unexpected(s.error());
  if (auto s = cache.set_ref("shell-segment", key, out.segment.sha256); !s) return std::unexpected(s.error());
  return out;
}

}  // namespace kgate::run
