#include "subprocess.hpp"

#include "interrupt.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kgate {
namespace {

// The child's whole process group, so that its own children (dpkg-deb's tar)
// stop with it; the child itself if the group is gone.
void signal_group(pid_t pid, int sig) {
  if (::kill(-pid, sig) != 0) ::kill(pid, sig);
}

// Whether any process of group `pgid` is still running (not a zombie), from /proc: a member
// orphaned by its leader is not ours to wait for, so its end can only be watched.
bool group_has_live_members(pid_t pgid) {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return false;
  bool live = false;
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char path[sizeof "/proc//stat" + sizeof e->d_name];  // no truncation, as g++ -O2 checks
    std::snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE* f = std::fopen(path, "re");
    if (f == nullptr) continue;
    char line[512];
    const bool read = std::fgets(line, sizeof line, f) != nullptr;
    std::fclose(f);
    if (!read) continue;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses; the last ')' ends it.
    const char* close = std::strrchr(line, ')');
    char state = 0;
    long ppid = 0, pgrp = 0;
    if (close == nullptr || std::sscanf(close + 1, " %c %ld %ld", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp == pgid && state != 'Z' && state != 'X') {
      live = true;
      break;
    }
  }
  ::closedir(proc);
  return live;
}

// After SIGKILL to a group whose leader had already exited: the signal is delivered at once, but
// a member takes a moment to die (longer on a loaded machine). Bounded, so that what called it
// returns with the group gone rather than dying.
void await_group_end(pid_t pgid, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (group_has_live_members(pgid) && std::chrono::steady_clock::now() < until) ::usleep(5000);
}

int open_pidfd(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int open_output(const fs::path& p) {
  if (p.empty()) return ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  return ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

}  // namespace

Result<Child> Child::spawn(const std::vector<std::string>& argv, const SpawnOptions& opts) {
  return spawn_with(argv, opts, nullptr);
}

Result<Child> Child::spawn(const std::vector<std::string>& argv, const SpawnOptions& opts,
                           const std::vector<std::string>& env) {
  return spawn_with(argv, opts, &env);
}

Result<Child> Child::spawn_with(const std::vector<std::string>& argv, const SpawnOptions& opts,
                                const std::vector<std::string>* env) {
  if (argv.empty()) return fail(FailureClass::usage, "spawn: empty argv");
  UniqueFd out(open_output(opts.stdout_path));
  if (!out.valid()) return fail_errno("open " + opts.stdout_path.string(), errno);
  UniqueFd err;
  if (!opts.stderr_path.empty()) {
    err.reset(open_output(opts.stderr_path));
    if (!err.valid()) return fail_errno("open " + opts.stderr_path.string(), errno);
  }
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull.valid()) return fail_errno("open /dev/null", errno);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  // Built before vfork: the child may only make async-signal-safe calls.
  std::vector<char*> cenv;
  if (env) {
    for (const auto& kv : *env) cenv.push_back(const_cast<char*>(kv.c_str()));
    cenv.push_back(nullptr);
  }

  // vfork: the child borrows kgate's memory until it execs, so starting it costs no copy
  // of kgate's page tables (the gate executor starts hundreds), and kgate resumes only once
  // it has exec'd or failed, which it reports through `child_errno`. kgate's signal
  // handlers must not run in the borrowed memory: every signal stays blocked until the
  // child has put its handlers back to the default.
  volatile int child_errno = 0;
  sigset_t all, old_mask;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old_mask);
  const pid_t parent = ::getpid();
  const pid_t pid = ::vfork();
  if (pid == 0) {
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD}) ::signal(sig, SIG_DFL);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(devnull.get(), 0);
    ::dup2(out.get(), 1);
    ::dup2(err.valid() ? err.get() : out.get(), 2);
    if (!opts.cwd.empty() && ::chdir(opts.cwd.c_str()) != 0) {
      child_errno = errno;
      ::_exit(127);
    }
    if (env) {
      ::execvpe(cargv[0], cargv.data(), cenv.data());
    } else {
      ::execvp(cargv[0], cargv.data());
    }
    child_errno = errno;
    ::_exit(127);
  }
  const int vfork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (pid < 0) return fail_errno("vfork", vfork_errno);
  UniqueFd pidfd(open_pidfd(pid));
  Child child(pid, std::move(pidfd));
  if (child_errno != 0) {
    const int e = child_errno;
    child.terminate(Millis(0));
    return fail(FailureClass::infra, "exec " + argv[0] + ": " + std::strerror(e), e);
  }
  if (!child.pidfd_.valid()) {
    child.terminate(Millis(100));
    return fail_errno("pidfd_open", errno);
  }
  return child;
}

Child::Child(Child&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), pidfd_(std::move(other.pidfd_)), status_(other.status_) {}

Child::~Child() {
  if (pid_ > 0 && !status_) terminate(std::chrono::seconds(2));
}

std::optional<int> Child::try_wait() {
  if (status_ || pid_ <= 0) return status_;
  // Seen exited but not reaped (WNOWAIT): the zombie still holds its pid, so -pid names its
  // group and no other. Whatever the child left running there (a QEMU wrapper's QEMU, a
  // backgrounded helper) is killed before the reap, after which the pid, and with it the
  // group's id, could name another process.
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
      info.si_pid != pid_)
    return status_;
  if (::kill(-pid_, SIGKILL) == 0) await_group_end(pid_, std::chrono::seconds(2));
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
  return status_;
}

Result<int> Child::wait(const Deadline& deadline, bool interruptible) {
  const int ifd = interruptible ? interrupt_fd() : -1;
  for (;;) {
    if (auto st = try_wait()) return *st;
    pollfd p[2] = {{pidfd_.get(), POLLIN, 0}, {ifd, POLLIN, 0}};
    int r = ::poll(p, ifd >= 0 ? 2 : 1, deadline.poll_ms());
    if (r < 0 && errno != EINTR) return fail_errno("poll pidfd", errno);
    if (r > 0 && (p[1].revents & POLLIN)) return fail(FailureClass::interrupted, "interrupted");
    if (r == 0 && deadline.expired()) {
      if (auto st = try_wait()) return *st;
      return fail(FailureClass::timeout, "process " + std::to_string(pid_) + " still running after " +
                                             std::to_string(deadline.budget_seconds()) + " s");
    }
  }
}

void Child::kill() {
  if (pid_ > 0 && !status_) signal_group(pid_, SIGKILL);
}

int Child::terminate(Clock::duration grace) {
  if (pid_ <= 0) return 0;
  if (try_wait()) return *status_;
  signal_group(pid_, SIGTERM);
  if (auto st = wait(Deadline(grace), false); st) return *st;
  signal_group(pid_, SIGKILL);
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  // The leader was alive when the group was signalled, so the group is gone with it.
  status_ = st;
  return st;
}

Result<Captured> run_capture(const std::vector<std::string>& argv, const Deadline& deadline,
                             const fs::path& cwd) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return fail_errno("pipe", errno);
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return fail_errno("pipe", errno);
  UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);

  auto child = Child::spawn(argv, {"/proc/self/fd/" + std::to_string(out_w.get()),
                                   "/proc/self/fd/" + std::to_string(err_w.get()), cwd});
  if (!child) return std::unexpected(child.error());
  out_w.reset();
  err_w.reset();

  Captured cap;
  char buf[1 << 16];
  // The interrupt fd ends the wait too: the child is then stopped by ~Child.
  pollfd fds[3] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}, {interrupt_fd(), POLLIN, 0}};
  int open_count = 2;
  while (open_count > 0) {
    int r = ::poll(fds, interrupt_fd() >= 0 ? 3 : 2, deadline.poll_ms());
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail_errno("poll", errno);
    }
    if (r == 0) {
      return fail(FailureClass::timeout, "'" + argv[0] + "' did not finish within " +
                                             std::to_string(deadline.budget_seconds()) + " s");
    }
    if (fds[2].revents & POLLIN) return fail(FailureClass::interrupted, "'" + argv[0] + "' interrupted");
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? cap.out : cap.err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  auto st = child->wait(deadline);
  if (!st) return std::unexpected(st.error());
  cap.status = *st;
  return cap;
}

std::optional<ProcStat> read_proc_stat(pid_t pid) {
  auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return std::nullopt;
  // The command (field 2) is in parentheses and may hold anything: fields are counted after
  // its last ')'. state is field 3, ppid 4, pgrp 5, starttime 22.
  auto close = stat->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  ProcStat p;
  int ppid = 0, pgrp = 0;
  const char* rest = stat->c_str() + close + 1;
  int used = 0;
  if (std::sscanf(rest, " %c %d %d%n", &p.state, &ppid, &pgrp, &used) != 3) return std::nullopt;
  rest += used;
  // Fields 6 to 21, then starttime.
  for (int field = 6; field <= 21; ++field) {
    rest = std::strchr(rest + 1, ' ');
    if (!rest) return std::nullopt;
  }
  p.ppid = ppid;
  p.pgrp = pgrp;
  p.start_ticks = std::strtoull(rest + 1, nullptr, 10);
  return p;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + ::sigabbrev_np(WTERMSIG(status));
  return "ended with status " + std::to_string(status);
}

fs::path find_program(std::string_view name) {
  const char* path = std::getenv("PATH");
  return find_program(name, path ? path : "/usr/local/bin:/usr/bin:/bin", {});
}

fs::path find_program(std::string_view name, std::string_view search_path, const fs::path& relative_to) {
  if (name.find('/') != std::string_view::npos) return fs::path(name);
  std::string_view rest = search_path;
  for (;;) {
    auto colon = rest.find(':');
    fs::path dir(std::string(rest.substr(0, colon)));
    if (dir.empty()) dir = ".";
    if (dir.is_relative() && !relative_to.empty()) dir = relative_to / dir;
    fs::path candidate = dir / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) return {};
    rest.remove_prefix(colon + 1);
  }
}

}  // namespace kgate
