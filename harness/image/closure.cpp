#include "image/closure.hpp"

#include <cstdint>
#include <cstring>
#include <deque>
#include <set>

#include "core/elf.hpp"
#include "core/files.hpp"
#include "core/strings.hpp"

namespace kgate::image {

namespace fs = std::filesystem;

namespace {

constexpr std::uint16_t em_x86_64 = 62;
constexpr std::uint16_t em_aarch64 = 183;
constexpr std::int64_t dt_null = 0, dt_needed = 1, dt_rpath = 15, dt_runpath = 29;
constexpr std::size_t max_libraries = 512;

struct Dynamic {
  std::uint16_t machine = 0;
  std::string interp;
  std::vector<std::string> needed;
  std::vector<std::string> search;  // DT_RUNPATH, else DT_RPATH, split at ':'
};

const ElfSection* section(const ElfFile& elf, std::string_view name) {
  for (const auto& s : elf.sections)
    if (s.name == name) return &s;
  return nullptr;
}

std::string c_string_at(const std::string& table, std::uint64_t offset) {
  if (offset >= table.size()) return {};
  const char* p = table.data() + offset;
  return std::string(p, ::strnlen(p, table.size() - offset));
}

Result<Dynamic> read_dynamic(const fs::path& file) {
  auto bytes = read_file(file);
  if (!bytes) return std::unexpected(std::move(bytes.error()).reclass(FailureClass::usage));
  auto elf = read_elf(*bytes);
  if (!elf) return std::unexpected(std::move(elf.error()).context(file.string()));
  Dynamic d;
  d.machine = elf->machine;
  if (!elf->elf64 || !elf->little_endian || (d.machine != em_x86_64 && d.machine != em_aarch64))
    return fail(FailureClass::usage, file.string() + ": not a 64-bit x86_64 or arm64 ELF file");
  if (const ElfSection* interp = section(*elf, ".interp")) d.interp = c_string_at(interp->content, 0);
  const ElfSection* dynamic = section(*elf, ".dynamic");
  const ElfSection* dynstr = section(*elf, ".dynstr");
  if (!dynamic || !dynstr) return d;
  std::string rpath, runpath;
  for (std::size_t off = 0; off + 16 <= dynamic->content.size(); off += 16) {
    std::int64_t tag;
    std::uint64_t val;
    std::memcpy(&tag, dynamic->content.data() + off, 8);
    std::memcpy(&val, dynamic->content.data() + off + 8, 8);
    if (tag == dt_null) break;
    if (tag == dt_needed) d.needed.push_back(c_string_at(dynstr->content, val));
    if (tag == dt_rpath) rpath = c_string_at(dynstr->content, val);
    if (tag == dt_runpath) runpath = c_string_at(dynstr->content, val);
  }
  d.search = split_nonempty(runpath.empty() ? rpath : runpath, ':');
  return d;
}

std::string_view triplet(std::uint16_t machine) {
  return machine == em_x86_64 ? "x86_64-linux-gnu" : "aarch64-linux-gnu";
}

// Where the dynamic linker looks by default, on the host (after the sysroots); the guest gets
// such libraries in its own first default directory.
std::vector<fs::path> default_dirs(std::uint16_t machine, const std::vector<fs::path>& sysroots) {
  const std::string t(triplet(machine));
  std::vector<fs::path> dirs;
  for (const auto& root : sysroots) {
    for (const char* d : {"lib", "usr/lib"}) {
      dirs.push_back(root / d / t);
      dirs.push_back(root / d);
    }
  }
  for (const char* d : {"/lib", "/usr/lib"}) dirs.push_back(fs::path(d) / t);
  if (machine == em_aarch64) dirs.push_back("/usr/aarch64-linux-gnu/lib");  // the cross toolchain's
  for (const char* d : {"/lib64", "/usr/lib64", "/lib", "/usr/lib"}) dirs.push_back(d);
  return dirs;
}

std::string replace_origin(std::string dir, const std::string& origin) {
  for (const char* key : {"${ORIGIN}", "$ORIGIN"}) {
    for (std::size_t at = dir.find(key); at != std::string::npos; at = dir.find(key, at + origin.size()))
      dir.replace(at, std::strlen(key), origin);
  }
  return dir;
}

// The file at `path` is an ELF for `machine`: the linker skips others.
bool usable(const fs::path& path, std::uint16_t machine) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  auto d = read_dynamic(path);
  return d && d->machine == machine;
}

struct Wanted {
  std::string name;
  std::string needed_by;            // for messages
  fs::path host_origin;             // the requester's directory on the host
  std::string guest_origin;         // and in the guest
  std::vector<std::string> search;  // the requester's run path
};

}  // namespace

Result<std::vector<ShippedLibrary>> library_closure(const fs::path& executable, const std::string& guest_path,
                                                    const std::vector<fs::path>& sysroots) {
  auto top = read_dynamic(executable);
  if (!top) return std::unexpected(top.error());
  std::vector<ShippedLibrary> out;
  if (top->interp.empty() && top->needed.empty()) return out;  // static
  const std::uint16_t machine = top->machine;
  const std::vector<fs::path> dirs = default_dirs(machine, sysroots);
  const std::string guest_libdir = "/lib/" + std::string(triplet(machine));

  if (!top->interp.empty()) {
    const fs::path interp(top->interp);
    std::vector<fs::path> candidates;
    for (const auto& root : sysroots) candidates.push_back(root / interp.relative_path());
    candidates.push_back(interp);
    for (const auto& d : dirs) candidates.push_back(d / interp.filename());
    bool found = false;
    for (const auto& c : candidates) {
      if (!usable(c, machine)) continue;
      out.push_back({top->interp, c, top->interp});
      found = true;
      break;
    }
    if (!found)
      return fail(FailureClass::usage, executable.string() + ": its ELF interpreter " + top->interp +
                                           " is not on this host (for another arch: its Debian :arm64 libc6, "
                                           "or a sysroot)");
  }

  std::deque<Wanted> queue;
  const std::string guest_dir = fs::path(guest_path).parent_path().string();
  for (const auto& n : top->needed)
    queue.push_back({n, executable.string(), executable.parent_path(), guest_dir, top->search});
  std::set<std::string> done;
  while (!queue.empty()) {
    Wanted w = std::move(queue.front());
    queue.pop_front();
    if (w.name.empty() || !done.insert(w.name).second) continue;
    if (out.size() >= max_libraries)
      return fail(FailureClass::usage,
                  executable.string() + ": needs more than " + std::to_string(max_libraries) + " libraries");
    fs::path source;
    std::string dest;
    std::string looked;
    auto try_dir = [&](const fs::path& host_dir, const std::string& guest_dir_for) {
      looked += (looked.empty() ? "" : ", ") + host_dir.string();
      const fs::path c = host_dir / w.name;
      if (!usable(c, machine)) return false;
      source = c;
      dest = (fs::path(guest_dir_for) / w.name).string();
      return true;
    };
    bool found = false;
    if (w.name.find('/') != std::string::npos) {
      found = usable(w.name, machine);
      if (found) source = dest = w.name;
      looked = w.name;
    }
    for (const auto& s : w.search) {
      if (found) break;
      found = try_dir(replace_origin(s, w.host_origin.string()), replace_origin(s, w.guest_origin));
    }
    for (const auto& d : dirs) {
      if (found) break;
      found = try_dir(d, guest_libdir);
    }
    if (!found)
      return fail(FailureClass::usage, w.needed_by + " needs " + w.name + ", which is in none of: " + looked);
    auto lib = read_dynamic(source);
    if (!lib) return std::unexpected(lib.error());
    out.push_back({w.name, source, dest});
    const std::string lib_guest_dir = fs::path(dest).parent_path().string();
    for (const auto& n : lib->needed)
      queue.push_back({n, source.string(), source.parent_path(), lib_guest_dir, lib->search});
  }
  return out;
}

}  // namespace kgate::image
