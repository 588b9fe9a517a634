#include "file_watch.hpp"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <set>

namespace kgate {
namespace {

// Reads every pending event; true when there was any.
bool drain(int fd) {
  alignas(inotify_event) char buf[4096];
  bool any = false;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return any;
    any = true;
  }
}

}  // namespace

Result<FileWatch> FileWatch::create(std::map<fs::path, std::string> digests) {
  UniqueFd fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!fd.valid()) return fail_errno("inotify_init1", errno);
  std::set<fs::path> dirs;
  for (const auto& [file, _] : digests) dirs.insert(absolute_path(file).parent_path());
  for (const auto& d : dirs) {
    constexpr std::uint32_t mask =
        IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_MODIFY;
    if (::inotify_add_watch(fd.get(), d.c_str(), mask) < 0) return fail_errno("watch " + d.string(), errno);
  }
  return FileWatch(std::move(fd), std::move(digests));
}

Result<std::vector<fs::path>> FileWatch::wait(std::span<const int> watch, int settle_ms) {
  std::vector<pollfd> fds = {{fd_.get(), POLLIN, 0}};
  for (int w : watch) fds.push_back({w, POLLIN, 0});
  for (;;) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return fail_errno("poll the watched files", errno);
    }
    for (std::size_t i = 1; i < fds.size(); ++i)
      if (fds[i].revents) return std::vector<fs::path>{};
    if (!drain(fd_.get())) continue;
    // An editor writes in steps: wait until the directories are quiet.
    pollfd quiet{fd_.get(), POLLIN, 0};
    while (::poll(&quiet, 1, settle_ms) > 0) drain(fd_.get());
    std::vector<fs::path> changed;
    for (auto& [file, digest] : digests_) {
      auto sha = sha256_file(file);
      const std::string now = sha ? *sha : "";
      if (now == digest) continue;
      digest = now;
      changed.push_back(file);
    }
    if (!changed.empty()) return changed;
  }
}

}  // namespace kgate
