// A command gate's log, fed by kgate from the pipe the command writes to, so that it stays
// bounded whatever the command prints: a gate running `yes` wrote 1.94 GB in 3 s when the
// command wrote the file itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/unique_fd.hpp"

namespace kgate::gate {

// Owns the log file. The first `limit - tail` bytes go to the file as they arrive (a `tail -f`
// follows the gate); once the output passes `limit`, what follows is held in memory, and only
// the last `tail` bytes of the output are kept, where tail is half the limit but at most
// max_tail. finish() then writes, after the head, a line saying how many bytes were dropped,
// then the tail. A log under the limit is the output, byte for byte.
class CappedLog {
 public:
  static constexpr std::uint64_t max_tail = std::uint64_t{4} << 20;

  static Result<CappedLog> open(const fs::path& path, std::uint64_t limit);
  CappedLog(CappedLog&&) noexcept = default;
  CappedLog& operator=(CappedLog&&) noexcept = default;

  void write(std::string_view bytes);
  // Writes the dropped-bytes line and the tail; once, after the last write.
  void finish();

  std::uint64_t total() const { return total_; }       // bytes of output seen
  std::uint64_t dropped() const { return overflow_; }  // bytes of output not in the log
  std::uint64_t limit() const { return limit_; }

 private:
  CappedLog(UniqueFd fd, std::uint64_t limit);
  void write_file(std::string_view bytes);

  UniqueFd fd_;
  std::uint64_t limit_ = 0;
  std::uint64_t tail_ = 0;
  std::uint64_t written_ = 0;  // bytes of output in the file
  std::uint64_t total_ = 0;
  std::uint64_t overflow_ = 0;  // bytes past the limit
  std::string ring_;            // the last min(overflow_, tail_) bytes, from ring_at_ on when full
  std::size_t ring_at_ = 0;
  bool file_failed_ = false;
};

}  // namespace kgate::gate
