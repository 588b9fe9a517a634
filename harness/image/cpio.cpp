#include "image/cpio.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <limits>
#include <set>
#include <string_view>

namespace kgate::image {

namespace {

bool is_device(std::uint32_t mode) {
  return S_ISCHR(mode) || S_ISBLK(mode);
}

Status check_path(std::string_view path) {
  if (path.empty()) return fail(FailureClass::usage, "cpio: empty path");
  if (path.find('\0') != std::string_view::npos) return fail(FailureClass::usage, "cpio: NUL byte in path");
  if (path.front() == '/') return fail(FailureClass::usage, "cpio: absolute path " + std::string(path));
  // A reader stops at this name, dropping every entry after it.
  if (path == "TRAILER!!!") return fail(FailureClass::usage, "cpio: reserved path TRAILER!!!");
  for (size_t pos = 0; pos <= path.size();) {
    size_t end = std::min(path.find('/', pos), path.size());
    std::string_view part = path.substr(pos, end - pos);
    if (part.empty() || part == "." || part == "..")
      return fail(FailureClass::usage, "cpio: path is not canonical: " + std::string(path));
    pos = end + 1;
  }
  return {};
}

void put_header(std::string& out, std::uint32_t ino, std::uint32_t mode, std::uint32_t nlink,
                std::uint32_t filesize, std::uint32_t rmaj, std::uint32_t rmin, std::string_view name) {
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
  // namesize (with the NUL), check
  char buf[111];
  std::snprintf(buf, sizeof buf, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08zx%08x", ino, mode, 0u,
                0u, nlink, 0u, filesize, 0u, 0u, rmaj, rmin, name.size() + 1, 0u);
  out.append(buf, 110);
  out.append(name);
  out.push_back('\0');
  out.resize((out.size() + 3) & ~size_t{3}, '\0');
}

}  // namespace

Status check_entries(const std::vector<CpioEntry>& entries) {
  std::set<std::string_view> dirs, seen;
  for (const CpioEntry& e : entries) {
    if (auto s = check_path(e.path); !s) return s;
    if (!seen.insert(e.path).second) return fail(FailureClass::usage, "cpio: duplicate path " + e.path);
    if (S_ISDIR(e.mode)) dirs.insert(e.path);
  }
  for (const CpioEntry& e : entries) {
    std::string_view path = e.path;
    if (size_t slash = path.rfind('/');
        slash != std::string_view::npos && !dirs.contains(path.substr(0, slash)))
      return fail(FailureClass::usage, "cpio: parent directory of " + e.path + " is not an entry");
    std::uint32_t type = e.mode & S_IFMT;
    if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK && type != S_IFCHR && type != S_IFBLK &&
        type != S_IFIFO)
      return fail(FailureClass::usage, "cpio: unsupported file type in mode of " + e.path);
    if (!S_ISREG(e.mode) && !S_ISLNK(e.mode) && !e.data.empty())
      return fail(FailureClass::usage, "cpio: " + e.path + " cannot hold data");
    if (S_ISLNK(e.mode) && e.data.empty())
      return fail(FailureClass::usage, "cpio: symlink " + e.path + " has no target");
    if (e.data.size() > std::numeric_limits<std::uint32_t>::max())
      return fail(FailureClass::usage, "cpio: " + e.path + " is larger than newc allows (4 GiB)");
    if (!is_device(e.mode) && (e.rdev_major || e.rdev_minor))
      return fail(FailureClass::usage, "cpio: device number on non-device " + e.path);
  }
  return {};
}

std::string write_cpio(std::vector<CpioEntry> entries) {
  assert(check_entries(entries));
  std::ranges::sort(entries, {}, &CpioEntry::path);
  std::string out;
  std::uint32_t ino = 0;
  for (const CpioEntry& e : entries) {
    put_header(out, ++ino, e.mode, S_ISDIR(e.mode) ? 2 : 1, static_cast<std::uint32_t>(e.data.size()),
               e.rdev_major, e.rdev_minor, e.path);
    out.append(e.data);
    out.resize((out.size() + 3) & ~size_t{3}, '\0');
  }
  put_header(out, 0, 0, 1, 0, 0, 0, "TRAILER!!!");
  return out;
}

}  // namespace kgate::image
