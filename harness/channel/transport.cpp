#include "channel/transport.hpp"

#include "core/strings.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kgate::channel {

Transport::Transport(UniqueFd fd) : fd_(std::move(fd)) {
  int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
}

Result<std::optional<Frame>> Transport::receive(const Deadline& deadline, std::span<const int> watch) {
  std::vector<pollfd> fds;
  fds.push_back({fd_.get(), POLLIN, 0});
  for (int w : watch) fds.push_back({w, POLLIN, 0});
  char buf[1 << 16];
  for (;;) {
    auto frame = decoder_.next();
    if (!frame) return std::unexpected(frame.error());
    if (*frame) return std::optional<Frame>(std::move(**frame));

    int r = ::poll(fds.data(), fds.size(), deadline.poll_ms());
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail_errno("poll channel", errno);
    }
    if (r == 0) {
      return fail(FailureClass::timeout, strprintf("no frame within %.1f s", deadline.budget_seconds()));
    }
    // What the peer sent before it went (the last reply before power-off) is read
    // first; a watched fd ends the wait only once the socket has nothing left.
    if (!fds[0].revents) {
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents) return std::optional<Frame>{};
      }
      continue;
    }
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return fail(FailureClass::no_verdict, std::string("channel read failed: ") + std::strerror(errno),
                  errno);
    }
    if (n == 0) {
      if (auto s = decoder_.finish(); !s) return std::unexpected(s.error());
      return fail(FailureClass::no_verdict, "channel closed by the peer");
    }
    decoder_.feed(std::string_view(buf, static_cast<size_t>(n)));
  }
}

Status Transport::send(const Frame& frame, const Deadline& deadline, std::span<const int> watch) {
  std::string bytes = encode(frame);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd_.get(), bytes.data() + done, bytes.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return fail(FailureClass::no_verdict, std::string("channel write failed: ") + std::strerror(errno),
                  errno);
    }
    std::vector<pollfd> fds{{fd_.get(), POLLOUT, 0}};
    for (int w : watch) fds.push_back({w, POLLIN, 0});
    int r = ::poll(fds.data(), fds.size(), deadline.poll_ms());
    if (r == 0) {
      return fail(FailureClass::timeout, strprintf("could not send %zu bytes within %.1f s", bytes.size(),
                                                   deadline.budget_seconds()));
    }
    if (r > 0 && (fds[0].revents & (POLLERR | POLLHUP)) && !(fds[0].revents & POLLOUT)) {
      return fail(FailureClass::no_verdict, "channel closed by the peer while sending");
    }
    for (size_t i = 1; r > 0 && i < fds.size(); ++i) {
      // The caller tells which (QEMU gone, or an interrupt) and classifies.
      if (fds[i].revents)
        return fail(FailureClass::no_verdict, "the send was cut short: the guest or kgate is stopping");
    }
  }
  return {};
}

}  // namespace kgate::channel

namespace kgate::channel {

Result<UniqueFd> listen_unix(const fs::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path) {
    return fail(FailureClass::infra, "socket path too long: " + path.string());
  }
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fail_errno("socket", errno);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return fail_errno("bind " + path.string(), errno);
  }
  if (::listen(fd.get(), 1) != 0) return fail_errno("listen " + path.string(), errno);
  return fd;
}

Result<std::optional<UniqueFd>> accept_one(int listener, const Deadline& deadline,
                                           std::span<const int> watch) {
  std::vector<pollfd> fds;
  fds.push_back({listener, POLLIN, 0});
  for (int w : watch) fds.push_back({w, POLLIN, 0});
  for (;;) {
    int r = ::poll(fds.data(), fds.size(), deadline.poll_ms());
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail_errno("poll listener", errno);
    }
    if (r == 0) {
      return fail(FailureClass::timeout, strprintf("no connection within %.1f s", deadline.budget_seconds()));
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents) return std::optional<UniqueFd>{};
    }
    int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return std::optional<UniqueFd>(UniqueFd(fd));
    if (errno != EINTR && errno != EAGAIN) return fail_errno("accept", errno);
  }
}

}  // namespace kgate::channel
