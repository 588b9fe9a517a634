#include "agent/shell.hpp"

#include "agent/system.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace kgate::agent {
namespace {

constexpr const char* shell_bin = "/kgate/shell/bin";
constexpr const char* busybox = "/kgate/shell/bin/busybox";
constexpr const char* profile = "/kgate/shell/profile";

// Runs argv to its end (the busybox applet links), quietly.
int run_quietly(const std::vector<const char*>& argv) {
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    std::vector<char*> args;
    for (const char* a : argv) args.push_back(const_cast<char*>(a));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// The processes of session `sid` (what the shell left running), from /proc/<pid>/stat.
std::vector<pid_t> session_members(pid_t sid) {
  std::vector<pid_t> out;
  DIR* proc = ::opendir("/proc");
  if (!proc) return out;
  while (dirent* d = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(d->d_name, &end, 10);
    if (pid <= 1 || *end != '\0') continue;
    std::string line = slurp((std::string("/proc/") + d->d_name + "/stat").c_str());
    line = line.substr(0, line.find('\n'));
    // pid (comm) state ppid pgrp session ...: comm may hold spaces and parentheses.
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0, pgrp = 0, session = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld %ld %ld", &state, &ppid, &pgrp, &session) == 4 &&
        session == sid)
      out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  return out;
}

[[noreturn]] void exec_shell(int tty, const proto::ShellRequest& req) {
  ::setsid();
  ::ioctl(tty, TIOCSCTTY, 0);
  for (int fd = 0; fd < 3; ++fd) ::dup2(tty, fd);
  if (tty > 2) ::close(tty);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP, SIGTSTP}) ::signal(sig, SIG_DFL);
  if (::chdir("/") != 0) ::_exit(126);
  const std::string path = std::string("PATH=") + shell_bin + ":/usr/sbin:/usr/bin:/sbin:/bin";
  const std::string term = "TERM=" + (req.term.empty() ? std::string("linux") : req.term);
  const std::string env_file = std::string("ENV=") + profile;
  const char* env[] = {path.c_str(), term.c_str(), env_file.c_str(), "HOME=/", "SHELL=/kgate/shell/bin/sh",
                       nullptr};
  const char* argv[] = {"sh", "-i", nullptr};
  ::execve(busybox, const_cast<char* const*>(argv), const_cast<char* const*>(env));
  ::_exit(127);
}

}  // namespace

proto::ShellResponse run_shell(const proto::ShellRequest& req, ObjectTable& objects, Loader& loader) {
  loopback_up();
  proto::ShellResponse r;
  const auto start = std::chrono::steady_clock::now();
  if (::access(busybox, X_OK) != 0) {
    r.error = std::string("the shell's tools are not in this guest (") + busybox + ": " +
              std::strerror(errno) + ")";
    return r;
  }
  if (req.pin) {
    ::mkdir(proto::shell_pin_dir, 0755);
    r.pinned = objects.pin_all(proto::shell_pin_dir, r.problems);
  }
  auto unpin = [&] {
    std::error_code ec;
    std::filesystem::remove_all(proto::shell_pin_dir, ec);
    if (ec) r.problems.push_back(std::string("unpin ") + proto::shell_pin_dir + ": " + ec.message());
  };
  // The console port's tty appears once virtio_console has probed it.
  int tty = -1;
  for (int i = 0; i < 50 && tty < 0; ++i) {
    tty = ::open(proto::shell_device, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty < 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (tty < 0) {
    r.error = std::string("open ") + proto::shell_device + ": " + std::strerror(errno);
    unpin();
    return r;
  }
  if (req.rows > 0 && req.cols > 0) {
    winsize ws{};
    ws.ws_row = static_cast<unsigned short>(req.rows);
    ws.ws_col = static_cast<unsigned short>(req.cols);
    ::ioctl(tty, TIOCSWINSZ, &ws);
  }
  run_quietly({busybox, "--install", "-s", shell_bin});

  const pid_t pid = ::fork();
  if (pid < 0) {
    r.error = std::string("fork: ") + std::strerror(errno);
    ::close(tty);
    unpin();
    return r;
  }
  if (pid == 0) exec_shell(tty, req);
  ::close(tty);
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    pollfd p{loader.output_fd(), POLLIN, 0};
    ::poll(&p, p.fd >= 0 ? 1 : 0, 100);
    loader.pump_output();
  }
  // What the user left running in the shell's session does not outlive it.
  for (pid_t member : session_members(pid)) {
    ::kill(member, SIGKILL);
    ::waitpid(member, nullptr, 0);
  }
  unpin();
  r.ok = true;
  r.status = status;
  r.open_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace kgate::agent
