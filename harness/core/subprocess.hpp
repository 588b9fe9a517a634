#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "deadline.hpp"
#include "error.hpp"
#include "files.hpp"
#include "unique_fd.hpp"

namespace kgate {

struct SpawnOptions {
  fs::path stdout_path;  // empty: /dev/null
  fs::path stderr_path;  // empty: same as stdout
  fs::path cwd;          // empty: kgate's own
};

// A child process held by pidfd. It runs in its own process group (a terminal's
// Ctrl-C reaches kgate, which then stops it) and dies with kgate (PDEATHSIG), so
// it is never orphaned. Its group ends with it: when the child is seen to exit
// (try_wait, wait, terminate, the destructor), whatever it left in its group
// (a wrapper's QEMU, a backgrounded helper) is killed before the child is reaped.
// The destructor terminates it with a deadline, then kills it, and always reaps it.
class Child {
 public:
  static Result<Child> spawn(const std::vector<std::string>& argv, const SpawnOptions& opts = {});
  // The same, with `env` ("K=V" strings) as the child's whole environment.
  static Result<Child> spawn(const std::vector<std::string>& argv, const SpawnOptions& opts,
                             const std::vector<std::string>& env);
  Child(Child&& other) noexcept;
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  // Readable once the child has exited.
  int pidfd() const { return pidfd_.get(); }
  // The wait status once the child has exited (kills what is left of its group and
  // reaps it), else nullopt.
  std::optional<int> try_wait();
  // Waits until the child exits or the deadline passes (class timeout), or,
  // when `interruptible`, until SIGINT/SIGTERM arrives (class interrupted).
  Result<int> wait(const Deadline& deadline, bool interruptible = true);
  // SIGTERM, up to `grace` to exit, then SIGKILL; reaps. Returns the wait status.
  int terminate(Clock::duration grace);
  void kill();

 private:
  static Result<Child> spawn_with(const std::vector<std::string>& argv, const SpawnOptions& opts,
                                  const std::vector<std::string>* env);
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::optional<int> status_;
};

struct Captured {
  int status = 0;  // wait status
  std::string out;
  std::string err;
};

// Runs a program to completion, capturing its output; the deadline bounds it.
Result<Captured> run_capture(const std::vector<std::string>& argv, const Deadline& deadline,
                             const fs::path& cwd = {});

// What /proc/<pid>/stat says of a process; nullopt when it is gone (or unreadable).
struct ProcStat {
  char state = 0;  // 'R', 'S', 'Z' (a zombie), ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  unsigned long long start_ticks = 0;  // clock ticks after boot: with the pid, names one process
};
std::optional<ProcStat> read_proc_stat(pid_t pid);

// "exited with 3", "killed by signal 9".
std::string describe_status(int status);

// Looks a program up on PATH; empty if missing.
fs::path find_program(std::string_view name);
// The same on `search_path` (a PATH value), whose relative entries (and empty ones, meaning
// ".") are taken from `relative_to`.
fs::path find_program(std::string_view name, std::string_view search_path, const fs::path& relative_to);

}  // namespace kgate
