#include "terminal.hpp"

#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kgate {
namespace {

// Writes all of `n` bytes to a blocking fd.
bool write_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace

bool interactive_terminal() {
  return ::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO);
}

Result<RawTerminal> RawTerminal::enter(int fd) {
  RawTerminal t;
  if (::tcgetattr(fd, &t.saved_) != 0) return fail_errno("read the terminal's settings", errno);
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
    t.rows_ = ws.ws_row;
    t.cols_ = ws.ws_col;
  }
  termios raw = t.saved_;
  ::cfmakeraw(&raw);
  if (::tcsetattr(fd, TCSANOW, &raw) != 0) return fail_errno("put the terminal in raw mode", errno);
  t.fd_ = fd;
  return t;
}

RawTerminal::RawTerminal(RawTerminal&& other) noexcept
    : fd_(other.fd_), saved_(other.saved_), rows_(other.rows_), cols_(other.cols_) {
  other.fd_ = -1;
}

void RawTerminal::restore() {
  if (fd_ < 0) return;
  ::tcsetattr(fd_, TCSANOW, &saved_);
  fd_ = -1;
}

Result<bool> relay_terminal(int guest, int done, std::span<const int> watch) {
  std::vector<pollfd> fds = {{STDIN_FILENO, POLLIN, 0}, {guest, POLLIN, 0}, {done, POLLIN, 0}};
  for (int w : watch) fds.push_back({w, POLLIN, 0});
  char buf[4096];
  for (;;) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return fail_errno("poll the terminal and the guest", errno);
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(guest, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
        return fail(FailureClass::no_verdict, "the guest's console port closed while the shell was open");
      if (n > 0 && !write_all(STDOUT_FILENO, buf, static_cast<std::size_t>(n)))
        return fail_errno("write to the terminal", errno);
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n > 0 && !write_all(guest, buf, static_cast<std::size_t>(n)))
        return fail(FailureClass::no_verdict, "the guest's console port closed while the shell was open");
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) fds[0].fd = -1;  // no more input
    }
    for (std::size_t i = 3; i < fds.size(); ++i)
      if (fds[i].revents) return false;
    if (fds[2].revents) {
      // The last of the shell's output (its goodbye) may still be on its way.
      pollfd tail{guest, POLLIN, 0};
      while (::poll(&tail, 1, 50) > 0 && (tail.revents & POLLIN)) {
        ssize_t n = ::read(guest, buf, sizeof buf);
        if (n <= 0 || !write_all(STDOUT_FILENO, buf, static_cast<std::size_t>(n))) break;
      }
      return true;
    }
  }
}

}  // namespace kgate
