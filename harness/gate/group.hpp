// A concurrency group, as CI systems have for a ref: one `kgate gates run` per key at a
// time, and a newer run cancels the older one, which still writes its receipt and says
// why it was cancelled.
#pragma once

#include <string>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/unique_fd.hpp"

namespace kgate::gate {

class GroupLock {
 public:
  // Takes the group `key` under `dir`. If an older run holds it, leaves it a note naming
  // this run, sends it SIGTERM and waits until the deadline for it to let go.
  static Result<GroupLock> take(const fs::path& dir, const std::string& key, const Deadline& deadline);
  GroupLock(GroupLock&&) noexcept = default;
  GroupLock& operator=(GroupLock&&) noexcept = default;
  ~GroupLock();

  // Why this run was told to stop, if a newer run of its group left a note; else empty.
  std::string superseded_reason() const;

 private:
  GroupLock(UniqueFd fd, fs::path note) : fd_(std::move(fd)), note_(std::move(note)) {}
  UniqueFd fd_;  // holds the flock for the run's lifetime
  fs::path note_;
};

// $XDG_RUNTIME_DIR/kgate/groups, else /tmp/kgate-<uid>/groups.
fs::path default_group_dir();

}  // namespace kgate::gate
