#include "image/initramfs.hpp"

#include <sys/stat.h>

#include "image/cpio.hpp"

namespace kgate::image {

std::string build_initramfs_cpio(const InitramfsInputs& inputs) {
  std::vector<CpioEntry> entries;
  for (const char* dir : {"dev", "proc", "sys", "tmp", "run", "etc", "etc/kgate", "lib", "lib/modules"})
    entries.push_back({dir, S_IFDIR | 0755, {}});
  entries.push_back({"dev/console", S_IFCHR | 0600, {}, 5, 1});
  entries.push_back({"init", S_IFREG | 0755, inputs.agent});
  std::string list;
  for (const auto& [name, bytes] : inputs.modules) {
    entries.push_back({"lib/modules/" + name + ".ko", S_IFREG | 0644, bytes});
    list += name + "\n";
  }
  entries.push_back({"etc/kgate/modules", S_IFREG | 0644, std::move(list)});
  return write_cpio(std::move(entries));
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
