#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "error.hpp"

namespace kgate {

namespace fs = std::filesystem;

Result<std::string> read_file(const fs::path& path);
// The same for a file that may be absent: nullopt when it does not exist.
Result<std::optional<std::string>> read_file_if_exists(const fs::path& path);
// Writes through a temporary file in the same directory and renames it into place,
// so a reader never sees half a file.
Status write_file_atomic(const fs::path& path, std::string_view data);
Status make_dirs(const fs::path& path);
// Moves the directory `staged` (made beside `dest`, on the same file system) to `dest`. When `dest`
// already exists: with `replace`, the two are swapped in one step (renameat2 RENAME_EXCHANGE), so
// that a reader finds the old tree or the new one and never neither, and the old one is left at
// `staged` for the caller to remove; without, `dest` is kept (another process made it first).
Status install_dir(const fs::path& staged, const fs::path& dest, bool replace);
// std::filesystem's throwing calls, made quiet: a path that cannot be checked
// does not exist, and a path that cannot be made absolute stays as given.
bool path_exists(const fs::path& path) noexcept;
fs::path absolute_path(const fs::path& path) noexcept;

// Hex sha256 (libcrypto) of bytes or of a whole file.
std::string sha256_hex(std::span<const std::uint8_t> bytes);
std::string sha256_hex(std::string_view bytes);
Result<std::string> sha256_file(const fs::path& path);

// Owns a private directory (mode 0700) and removes it with its contents.
class TempDir {
 public:
  // Under $TMPDIR (default /tmp), or under `parent` when given.
  static Result<TempDir> create(std::string_view prefix, const fs::path& parent = {});
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  ~TempDir();
  const fs::path& path() const { return path_; }
  // Leaves the directory on disk (for --keep) and returns its path.
  fs::path keep();

 private:
  explicit TempDir(fs::path p) : path_(std::move(p)) {}
  fs::path path_;
};

}  // namespace kgate
