// The tar layers of an OCI image, read and unpacked with libarchive. A layer is as untrusted as the
// image: every member is checked before anything of the image is unpacked, and unpacking guards
// again (names, link targets) as it writes.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/deadline.hpp"
#include "core/error.hpp"

namespace kgate::kernel {

// One member of a tar: its type ('-' file, 'd' directory, 'l' symbolic link, 'h' hard link, 'c', 'b',
// 'p', 's' for devices, FIFOs and sockets, '?' anything else), its name and, for links, the target.
struct TarMember {
  char type = '-';
  std::string name;
  std::string link;
};

// Every member of an uncompressed tar, in order. What is not a tar, or is truncated, is a usage
// error naming `where`.
Result<std::vector<TarMember>> list_tar(const std::filesystem::path& tar, const std::string& where,
                                        const Deadline& deadline);
// The same for a tar held in memory (tests, fuzzing).
Result<std::vector<TarMember>> list_tar_bytes(std::string_view tar, const std::string& where);

// Why a member may not be unpacked ("an absolute path"), or empty when it may. Symbolic links may
// point anywhere: extract_tar does not create one that leaves the tree.
std::string unsafe_tar_member(const TarMember& m);

// True when a symbolic link with this target could resolve outside the directory holding it: an
// absolute or empty target, or one with a ".." component.
bool link_leaves_tree(std::string_view target);

// Unpacks an uncompressed tar into `root`, an existing directory: members whose name starts with
// ".wh." (whiteouts, applied by the caller beforehand) are skipped, and so are symbolic links that
// would leave the tree, whose names (relative to root) are returned. A member unsafe_tar_member
// refuses fails the whole unpacking. Files are owned by the caller, with the archive's modes less
// the umask (no set-id bits), and replace what a lower layer left at their name, a directory too.
Result<std::vector<std::string>> extract_tar(const std::filesystem::path& tar,
                                             const std::filesystem::path& root, const std::string& where,
                                             const Deadline& deadline);

}  // namespace kgate::kernel
