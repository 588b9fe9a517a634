#include "image/initramfs.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "image/cpio.hpp"
#include "image/recipe.hpp"

namespace kgate::image {

Result<std::string> build_initramfs_cpio(std::string_view recipe, std::string_view origin,
                                         const InitramfsInputs& inputs) {
  RecipeInputs in;
  in.files.emplace("agent", inputs.agent);
  in.modules = inputs.modules;
  auto entries = expand_recipe(recipe, in, origin);
  if (!entries) return std::unexpected(entries.error());
  return write_cpio(std::move(*entries));
}

Result<std::vector<CpioEntry>> tree_entries(const fs::path& tree, const std::string& prefix,
                                            const std::map<std::string, std::string>& links,
                                            std::uint64_t max_bytes) {
  std::vector<CpioEntry> out;
  std::string at;
  for (const auto& part : fs::path(prefix)) {
    at += (at.empty() ? "" : "/") + part.string();
    out.push_back({at, S_IFDIR | 0755, {}});
  }
  std::uint64_t bytes = 0;
  std::error_code ec;
  fs::recursive_directory_iterator it(tree, fs::directory_options::none, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string rel = p.lexically_relative(tree).generic_string();
    const std::string name = prefix + "/" + rel;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return fail_errno("stat " + p.string(), errno);
    const std::uint32_t perms = st.st_mode & 07777;
    if (S_ISDIR(st.st_mode)) {
      out.push_back({name, S_IFDIR | perms, {}});
    } else if (S_ISLNK(st.st_mode)) {
      auto target = fs::read_symlink(p, ec);
      if (ec) return fail_errno("read link " + p.string(), ec.value());
      out.push_back({name, S_IFLNK | 0777, target.string()});
    } else if (S_ISREG(st.st_mode)) {
      bytes += static_cast<std::uint64_t>(st.st_size);
      if (bytes > max_bytes)
        return fail(FailureClass::usage,
                    tree.string() + " holds more than " + std::to_string(max_bytes >> 20) + " MiB of files");
      auto data = read_file(p);
      if (!data) return std::unexpected(data.error());
      out.push_back({name, S_IFREG | perms, std::move(*data)});
    } else {
      return fail(FailureClass::usage, p.string() + " is not a file, directory or symbolic link");
    }
  }
  if (ec) return fail_errno("walk " + tree.string(), ec.value());
  for (const auto& [rel, target] : links) {
    const std::string name = prefix + "/" + rel;
    const std::string parent = fs::path(name).parent_path().generic_string();
    const bool taken =
        std::any_of(out.begin(), out.end(), [&](const CpioEntry& e) { return e.path == name; });
    const bool has_parent =
        std::any_of(out.begin(), out.end(), [&](const CpioEntry& e) { return e.path == parent; });
    if (!taken && has_parent) out.push_back({name, S_IFLNK | 0777, target});
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> read_modules(
    const std::vector<ModuleFile>& closure) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const ModuleFile& m : closure) {
    auto bytes = read_module(m.path);
    if (!bytes) return std::unexpected(std::move(bytes).error().context("read module " + m.name));
    out.emplace_back(m.name, std::move(*bytes));
  }
  return out;
}

}  // namespace kgate::image
