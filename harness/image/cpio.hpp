#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace kgate::image {

// One member of an initramfs. Parent directories are not implied: every directory
// on the way to a path must be an entry of its own (check_entries enforces it).
struct CpioEntry {
  std::string path;    // relative, no leading slash: "dev/console"
  std::uint32_t mode;  // full st_mode, file type included (S_IFDIR, S_IFREG, S_IFCHR, ...)
  std::string data;    // file contents, or the target of a symlink
  std::uint32_t rdev_major = 0, rdev_minor = 0;
};

// A usage error for an empty, absolute or non-canonical path ("", "/x", "a//b", "a/./b", ".."),
// the reserved TRAILER!!!, a duplicate, a missing parent directory, an unknown file type, data on an entry
// that cannot hold it, or a device number on a non-device.
Status check_entries(const std::vector<CpioEntry>& entries);

// A cpio "newc" (070701) archive, byte-stable: entries sorted by path, inode numbers 1.. in
// that order, owner 0:0, mtime 0, nlink 1 (2 for directories), then TRAILER!!!.
// The entries must pass check_entries (asserted).
std::string write_cpio(std::vector<CpioEntry> entries);

}  // namespace kgate::image
