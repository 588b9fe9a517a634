#include "gate/group.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <optional>
#include <thread>

#include "core/interrupt.hpp"
#include "core/strings.hpp"
#include "core/subprocess.hpp"

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

// A run in the lock file: its pid and its start time (clock ticks after boot), which tells it
// apart from a later process given the same pid.
struct Holder {
  pid_t pid = 0;
  unsigned long long start = 0;
  bool operator==(const Holder&) const = default;
};

std::optional<unsigned long long> start_time(pid_t pid) {
  auto stat = read_proc_stat(pid);
  if (!stat) return std::nullopt;
  return stat->start_ticks;
}

Holder read_holder(int fd) {
  char buf[64] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  Holder h;
  if (n <= 0 || std::sscanf(buf, "%d %llu", &h.pid, &h.start) != 2) return {};
  return h;
}

// The group directory holds the lock and the notes runs leave each other: it and its parent
// must be this user's own and writable by nobody else.
Status check_private(const fs::path& dir) {
  for (const fs::path& d : {dir.parent_path(), dir}) {
    struct stat st {};
    if (::lstat(d.c_str(), &st) != 0) return fail_errno("stat " + d.string(), errno);
    if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid())
      return fail(FailureClass::infra, d.string() + " is not a directory of this user's");
    if (st.st_mode & 022) {
      if (::chmod(d.c_str(), 0700) != 0) return fail_errno("chmod " + d.string(), errno);
    }
  }
  return {};
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
  if (auto st = check_private(dir); !st)
    return std::unexpected(st.error().context("concurrency group " + key));
  const std::string stem = file_stem(key);
  const fs::path lock_path = dir / (stem + ".lock");
  UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return fail_errno("concurrency group " + key + ": open " + lock_path.string(), errno);
  // Each run that holds the group while this one waits is told once: the holder can change
  // while this run waits (a third run got in first), and the newest holder must go too.
  Holder told;
  Holder holder;
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return fail_errno("concurrency group " + key + ": flock", errno);
    holder = read_holder(fd.get());
    if (holder.pid > 0 && !(holder == told)) {
      // Hold it by pidfd, then check that the pid still names the process that wrote the lock
      // (its start time) and that the group is still held, so the signal cannot reach a process
      // that took the pid after the holder ended.
      UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, holder.pid, 0)));
      if (pidfd.valid() && start_time(holder.pid) == holder.start &&
          ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && read_holder(fd.get()) == holder) {
        (void)write_file_atomic(note_for(dir, stem, holder.pid),
                                strprintf("superseded by a newer run of concurrency group '%s' (pid %d)",
                                          key.c_str(), ::getpid()));
        ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGTERM, nullptr, 0);
        told = holder;
        continue;
      }
    }
    if (deadline.expired())
      return fail(FailureClass::timeout,
                  strprintf("concurrency group '%s': the run holding it (pid %d) did not end within %g s",
                            key.c_str(), holder.pid, deadline.budget_seconds()));
    pollfd p{interrupt_fd(), POLLIN, 0};
    if (::poll(&p, interrupt_fd() >= 0 ? 1 : 0, 20) > 0)
      return fail(FailureClass::interrupted, "concurrency group " + key + ": interrupted while waiting");
  }
  auto mine = start_time(::getpid());
  std::string me = strprintf("%d %llu\n", ::getpid(), mine.value_or(0));
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
