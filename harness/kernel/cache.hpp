#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/unique_fd.hpp"

namespace kgate::kernel {

// The content-addressed cache under $XDG_CACHE_HOME/kgate (default ~/.cache/kgate):
//   blobs/sha256/<hex>        kernels, extracted vmlinux files, initramfs images
//   blobs/sha256/<hex>.seal   the file identity seen when <hex> was last hashed
//   refs/<kind>/<key>         a blob digest derived from a key (vmlinux of a vmlinuz, ...)
//   trees/<hex>/              an unpacked package, named by the package's sha256
//   entries/<name>.json       what a catalog entry resolved to
// A blob whose bytes no longer match its name is refused (digest_mismatch), never used.
//   locks/use                 every open Cache holds it shared; `kgate cache prune` exclusive
// Every use stamps what it used (a blob's seal, a ref, an entry record and its tree get the
// time of their last use as mtime): `kgate cache prune` keeps what was used recently.
class Cache {
 public:
  static fs::path default_root();
  // Holds the use lock shared for as long as this Cache or a copy of it lives.
  static Result<Cache> open(const fs::path& root);
  // For prune: the use lock exclusive, waiting for the runs that hold it until the deadline.
  static Result<Cache> open_exclusive(const fs::path& root, const Deadline& deadline);

  const fs::path& root() const { return root_; }
  fs::path blob_path(std::string_view sha) const;
  fs::path tree_path(std::string_view sha) const;
  fs::path entry_path(std::string_view name) const;

  // Stores bytes as a blob (atomically) and returns their sha256.
  Result<std::string> put_blob(std::string_view bytes);
  // The path of a blob after checking its digest. The file is hashed again
  // unless its inode, size, mtime and ctime equal the seal written at its last
  // hash, as git does for its index: any write to the file changes its ctime.
  Result<fs::path> verified_blob(std::string_view sha) const;

  // Holds an exclusive lock on <root>/locks/<name> until destroyed, so that two
  // kgate processes filling the same entry wait for each other (bounded).
  class Lock {
   public:
    explicit Lock(UniqueFd fd) : fd_(std::move(fd)) {}

   private:
    UniqueFd fd_;
  };
  Result<Lock> lock(std::string_view name, const Deadline& deadline) const;

  // The digest a ref holds, nullopt when there is none; a ref that holds anything else is
  // class digest_mismatch, naming the file.
  Result<std::optional<std::string>> get_ref(std::string_view kind, std::string_view key) const;
  Status set_ref(std::string_view kind, std::string_view key, std::string_view sha);

 private:
  Cache(fs::path root, std::shared_ptr<UniqueFd> use) : root_(std::move(root)), use_(std::move(use)) {}
  fs::path root_;
  std::shared_ptr<UniqueFd> use_;  // the use lock
};

}  // namespace kgate::kernel
