#include "gate/capped_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/strings.hpp"

namespace kgate::gate {

Result<CappedLog> CappedLog::open(const fs::path& path, std::uint64_t limit) {
  // O_CLOEXEC: gates started later must not inherit another gate's log.
  // O_RDWR: finish() reads back the end of the head when the tail began inside it.
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return fail_errno("open " + path.string(), errno);
  return CappedLog(std::move(fd), std::max<std::uint64_t>(limit, 2));
}

CappedLog::CappedLog(UniqueFd fd, std::uint64_t limit)
    : fd_(std::move(fd)), limit_(limit), tail_(std::min(limit / 2, max_tail)) {}

void CappedLog::write_file(std::string_view bytes) {
  // A log that cannot be written (ENOSPC) stops being written; the output is still read, so
  // the command never blocks on its pipe.
  while (!file_failed_ && !bytes.empty()) {
    ssize_t n = ::write(fd_.get(), bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      file_failed_ = true;
      break;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

void CappedLog::write(std::string_view bytes) {
  total_ += bytes.size();
  if (written_ < limit_) {
    const auto head = static_cast<size_t>(std::min<std::uint64_t>(bytes.size(), limit_ - written_));
    write_file(bytes.substr(0, head));
    written_ += head;
    bytes.remove_prefix(head);
  }
  if (bytes.empty()) return;
  overflow_ += bytes.size();
  // Only the last tail_ bytes of what is past the limit can end up in the log.
  if (bytes.size() > tail_) bytes.remove_prefix(bytes.size() - static_cast<size_t>(tail_));
  if (ring_.size() < tail_) {
    const auto room = static_cast<size_t>(tail_ - ring_.size());
    const size_t take = std::min(room, bytes.size());
    ring_.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
  }
  while (!bytes.empty()) {  // the ring is full: overwrite its oldest bytes
    const size_t take = std::min(ring_.size() - ring_at_, bytes.size());
    ring_.replace(ring_at_, take, bytes.substr(0, take));
    ring_at_ = (ring_at_ + take) % ring_.size();
    bytes.remove_prefix(take);
  }
}

void CappedLog::finish() {
  if (overflow_ == 0 || !fd_.valid()) return;
  // The file holds the first limit_ bytes. The log keeps the first limit_ - tail_ of them, then
  // the last tail_ bytes of the output: the end of the file's bytes when fewer than tail_ came
  // past the limit, then the ring.
  const std::uint64_t head = limit_ - tail_;
  const std::uint64_t from_file = overflow_ < tail_ ? tail_ - overflow_ : 0;
  std::string piece(static_cast<size_t>(from_file), '\0');
  if (from_file > 0) {
    ssize_t got = ::pread(fd_.get(), piece.data(), piece.size(), static_cast<off_t>(limit_ - from_file));
    piece.resize(got > 0 ? static_cast<size_t>(got) : 0);
  }
  if (::ftruncate(fd_.get(), static_cast<off_t>(head)) != 0 ||
      ::lseek(fd_.get(), static_cast<off_t>(head), SEEK_SET) < 0)
    return;
  write_file(strprintf(
      "\n[kgate: %ju bytes of output dropped here: the log keeps the first %ju and the last "
      "%ju bytes of %ju (log_limit_mb)]\n",
      std::uintmax_t{overflow_}, std::uintmax_t{head}, std::uintmax_t{tail_}, std::uintmax_t{total_}));
  write_file(piece);
  write_file(std::string_view(ring_).substr(ring_at_));
  write_file(std::string_view(ring_).substr(0, ring_at_));
  fd_.reset();
}

}  // namespace kgate::gate
