#pragma once

#include <optional>
#include <span>

#include "channel/frame.hpp"
#include "core/deadline.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/unique_fd.hpp"

namespace kgate::channel {

// One end of the framed channel over a stream fd: the host's accepted unix socket
// or the guest's virtio-serial port. Owns the fd. Every call takes a deadline.
class Transport {
 public:
  explicit Transport(UniqueFd fd);

  // The next frame. std::nullopt when one of `watch` became readable first (the
  // caller asks which: QEMU's pidfd, the interrupt fd). Errors: timeout when the
  // deadline passes, no_verdict when the peer closes or sends a malformed frame.
  Result<std::optional<Frame>> receive(const Deadline& deadline, std::span<const int> watch = {});
  // Sends a frame; one of `watch` becoming readable ends the wait (class no_verdict,
  // which the caller refines: QEMU's pidfd, the interrupt fd).
  Status send(const Frame& frame, const Deadline& deadline, std::span<const int> watch = {});
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  Decoder decoder_;
};

// Listens on a unix stream socket at `path`, inside a private directory the caller owns.
Result<UniqueFd> listen_unix(const fs::path& path);
// Accepts one connection; std::nullopt when one of `watch` became readable first.
Result<std::optional<UniqueFd>> accept_one(int listener, const Deadline& deadline,
                                           std::span<const int> watch);

}  // namespace kgate::channel
