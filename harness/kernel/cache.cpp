#include "kernel/cache.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <thread>
#include "core/interrupt.hpp"
#include "core/strings.hpp"

namespace kgate::kernel {
namespace {

std::optional<std::string> seal_of(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return strprintf("%ju %ju %jd %jd.%09ld %jd.%09ld\n", uintmax_t(st.st_dev), uintmax_t(st.st_ino),
                   intmax_t(st.st_size), intmax_t(st.st_mtim.tv_sec), st.st_mtim.tv_nsec,
                   intmax_t(st.st_ctim.tv_sec), st.st_ctim.tv_nsec);
}

}  // namespace

fs::path Cache::default_root() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return fs::path(xdg) / "kgate";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "kgate";
  return fs::path("/tmp") / "kgate-cache";
}

namespace {

// Makes the cache's directories and takes its use lock (LOCK_SH or LOCK_EX) before the deadline.
Result<std::shared_ptr<UniqueFd>> use_lock(const fs::path& root, int how, const Deadline& deadline) {
  for (const char* sub : {"blobs/sha256", "refs", "trees", "entries", "locks"}) {
    if (auto s = make_dirs(root / sub); !s)
      return std::unexpected(std::move(s.error()).context("open cache"));
  }
  const fs::path p = root / "locks" / "use";
  auto fd = std::make_shared<UniqueFd>(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd->valid()) return fail_errno("open cache lock " + p.string(), errno);
  while (::flock(fd->get(), how | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) return fail_errno("lock " + p.string(), errno);
    if (interrupt_signal() != 0)
      return fail(FailureClass::interrupted, "interrupted waiting for " + p.string());
    if (deadline.expired())
      return fail(FailureClass::timeout,
                  how == LOCK_EX ? "kgate runs are using the cache " + root.string() +
                                       strprintf(" (still after %.0f s): prune when none runs",
                                                 deadline.budget_seconds())
                                 : "the cache " + root.string() + " is being pruned (still after " +
                                       strprintf("%.0f s)", deadline.budget_seconds()));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return fd;
}

// The time of last use, on a file kgate keeps: its mtime is now.
void stamp(const fs::path& p) {
  ::utimensat(AT_FDCWD, p.c_str(), nullptr, 0);
}

}  // namespace

Result<Cache> Cache::open(const fs::path& root) {
  // A prune holds the lock for seconds at most; a run waits that out.
  auto use = use_lock(root, LOCK_SH, Deadline(std::chrono::minutes(2)));
  if (!use) return std::unexpected(use.error());
  return Cache(root, std::move(*use));
}

Result<Cache> Cache::open_exclusive(const fs::path& root, const Deadline& deadline) {
  auto use = use_lock(root, LOCK_EX, deadline);
  if (!use) return std::unexpected(use.error());
  return Cache(root, std::move(*use));
}

fs::path Cache::blob_path(std::string_view sha) const {
  return root_ / "blobs" / "sha256" / sha;
}
fs::path Cache::tree_path(std::string_view sha) const {
  return root_ / "trees" / sha;
}
fs::path Cache::entry_path(std::string_view name) const {
  return root_ / "entries" / (std::string(name) + ".json");
}

Result<std::string> Cache::put_blob(std::string_view bytes) {
  std::string sha = sha256_hex(bytes);
  fs::path p = blob_path(sha);
  if (auto s = write_file_atomic(p, bytes); !s) return std::unexpected(s.error());
  if (auto seal = seal_of(p)) {
    if (auto s = write_file_atomic(p.string() + ".seal", *seal); !s) return std::unexpected(s.error());
  }
  return sha;
}

Result<fs::path> Cache::verified_blob(std::string_view sha) const {
  if (!is_sha256_hex(sha))
    return fail(FailureClass::usage, "not a sha256 digest: '" + std::string(sha) + "'");
  fs::path p = blob_path(sha);
  auto seal = seal_of(p);
  if (!seal) return fail_errno("cached file " + p.string(), errno);
  fs::path seal_path = p.string() + ".seal";
  if (auto recorded = read_file(seal_path); recorded && *recorded == *seal) {
    stamp(seal_path);
    return p;
  }
  auto actual = sha256_file(p);
  if (!actual) return std::unexpected(actual.error());
  if (*actual != sha) {
    return fail(
        FailureClass::digest_mismatch,
        strprintf("cached file %s has sha256 %s, expected %.*s: refusing to use it (rerun with --refresh "
                  "to fetch, verify and rebuild it)",
                  p.c_str(), actual->c_str(), int(sha.size()), sha.data()));
  }
  if (auto s = write_file_atomic(seal_path, *seal); !s) return std::unexpected(s.error());
  return p;
}

Result<Cache::Lock> Cache::lock(std::string_view name, const Deadline& deadline) const {
  fs::path p = root_ / "locks" / name;
  UniqueFd fd(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.valid()) return fail_errno("open lock " + p.string(), errno);
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) return fail_errno("lock " + p.string(), errno);
    if (interrupt_signal() != 0)
      return fail(FailureClass::interrupted, "interrupted waiting for " + p.string());
    if (deadline.expired()) {
      return fail(FailureClass::infra, "another kgate holds " + p.string() + " (still after " +
                                           strprintf("%.0f s", deadline.budget_seconds()) + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Lock(std::move(fd));
}

Result<std::optional<std::string>> Cache::get_ref(std::string_view kind, std::string_view key) const {
  fs::path p = root_ / "refs" / kind / key;
  auto text = read_file_if_exists(p);
  if (!text) return std::unexpected(text.error());
  if (!*text) return std::optional<std::string>{};
  stamp(p);
  std::string sha = **text;
  while (!sha.empty() && sha.back() == '\n') sha.pop_back();
  // The cache's own file, damaged (by hand, a full disk, another tool): a problem of the cache,
  // not of the user's input, and one a refresh, which writes the ref again, repairs.
  if (!is_sha256_hex(sha)) {
    return fail(FailureClass::digest_mismatch,
                "corrupt cache file " + p.string() +
                    " (it should hold one sha256 digest): rerun with --refresh to rebuild it, or delete it");
  }
  return std::optional<std::string>(sha);
}

Status Cache::set_ref(std::string_view kind, std::string_view key, std::string_view sha) {
  return write_file_atomic(root_ / "refs" / kind / key, std::string(sha) + "\n");
}

}  // namespace kgate::kernel
