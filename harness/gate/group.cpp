#include "gate/group.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include "core/interrupt.hpp"
#include "core/strings.hpp"

namespace kgate::gate {

namespace {

// A file name for any key: its readable part, then a hash so that keys differing only in
// characters dropped here stay apart.
std::string file_stem(const std::string& key) {
  std::string readable;
  for (char c : key.substr(0, 40)) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    readable += ok ? c : '_';
  }
  return readable + "-" + sha256_hex(key).substr(0, 16);
}

pid_t read_pid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  return static_cast<pid_t>(std::strtol(buf, nullptr, 10));
}

fs::path note_for(const fs::path& dir, const std::string& stem, pid_t pid) {
  return dir / (stem + "." + std::to_string(pid) + ".superseded");
}

}  // namespace

fs::path default_group_dir() {
  if (const char* d = std::getenv("XDG_RUNTIME_DIR"); d && *d) return fs::path(d) / "kgate" / "groups";
  return fs::path("/tmp") / ("kgate-" + std::to_string(::getuid())) / "groups";
}

Result<GroupLock> GroupLock::take(const fs::path& dir, const std::string& key, const Deadline& deadline) {
  if (auto st = make_dirs(dir); !st) return std::unexpected(st.error().context("concurrency group " + key));
  const std::string stem = file_stem(key);
  const fs::path lock_path = dir / (stem + ".lock");
  UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.valid()) return fail_errno("concurrency group " + key + ": open " + lock_path.string(), errno);
  bool signalled = false;
  pid_t holder = 0;
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return fail_errno("concurrency group " + key + ": flock", errno);
    if (!signalled) {
      holder = read_pid(fd.get());
      if (holder > 0) {
        // Hold the holder by pidfd, then check it still holds the group, so the signal
        // cannot reach a process that took its pid after it ended.
        UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, holder, 0)));
        if (pidfd.valid() && ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && read_pid(fd.get()) == holder) {
          (void)write_file_atomic(note_for(dir, stem, holder),
                                  strprintf("superseded by a newer run of concurrency group '%s' (pid %d)",
                                            key.c_str(), ::getpid()));
          ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGTERM, nullptr, 0);
          signalled = true;
          continue;
        }
      }
    }
    if (deadline.expired())
      return fail(FailureClass::timeout,
                  strprintf("concurrency group '%s': the run holding it (pid %d) did not end within %g s",
                            key.c_str(), holder, deadline.budget_seconds()));
    pollfd p{interrupt_fd(), POLLIN, 0};
    if (::poll(&p, interrupt_fd() >= 0 ? 1 : 0, 20) > 0)
      return fail(FailureClass::interrupted, "concurrency group " + key + ": interrupted while waiting");
  }
  std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()))
    return fail_errno("concurrency group " + key + ": write " + lock_path.string(), errno);
  fs::path note = note_for(dir, stem, ::getpid());
  std::error_code ec;
  fs::remove(note, ec);  // a note left for an earlier process with this pid
  return GroupLock(std::move(fd), note);
}

GroupLock::~GroupLock() {
  if (!fd_.valid()) return;
  std::error_code ec;
  fs::remove(note_, ec);
}

std::string GroupLock::superseded_reason() const {
  auto text = read_file(note_);
  return text ? *text : "";
}

}  // namespace kgate::gate
