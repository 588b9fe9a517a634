// Waits for files to change on disk (kgate run --watch): inotify on their directories, so that
// an editor's write-to-temporary-then-rename counts, and a change counts only when the bytes
// differ from the ones the caller last used.
#pragma once

#include <map>
#include <span>
#include <string>
#include <vector>

#include "error.hpp"
#include "files.hpp"
#include "unique_fd.hpp"

namespace kgate {

class FileWatch {
 public:
  // `digests`: each watched file and the sha256 of the bytes last used ("" for none).
  static Result<FileWatch> create(std::map<fs::path, std::string> digests);
  // Returns the files whose bytes changed once the directories have been quiet for `settle_ms`,
  // or an empty list when one of `watch` became readable first (QEMU's end, a signal).
  Result<std::vector<fs::path>> wait(std::span<const int> watch, int settle_ms = 200);

 private:
  FileWatch(UniqueFd fd, std::map<fs::path, std::string> digests)
      : fd_(std::move(fd)), digests_(std::move(digests)) {}
  UniqueFd fd_;
  std::map<fs::path, std::string> digests_;
};

}  // namespace kgate
