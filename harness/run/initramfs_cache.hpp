#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "image/cpio.hpp"
#include "image/recipe.hpp"
#include "kernel/cache.hpp"
#include "kernel/prepare.hpp"
#include "vm/arch.hpp"

namespace kgate::run {

struct PreparedInitramfs {
  fs::path path;
  std::string sha256;
  std::string agent_sha256;
  std::vector<std::string> modules;  // in load order
  bool built = false;                // false: taken from the cache
};

// The initramfs for a kernel's module set and this kgate's agent for `arch`, cached by
// the sha256 of those inputs: built once, then reused (and verified) by every run.
Result<PreparedInitramfs> prepare_initramfs(kernel::Cache& cache, const kernel::PreparedKernel& kernel,
                                            const std::vector<std::string>& wanted_modules, bool refresh,
                                            vm::Arch arch);

// An archive appended to the initramfs: a loader's image, the files a run ships.
struct Segment {
  fs::path path;  // a zstd cpio blob in the cache
  std::string sha256;
  std::uint64_t bytes = 0;  // the files' bytes: what the guest holds once it is unpacked
};

// Packs entries (image::check_entries holds) as a zstd cpio blob in the cache.
Result<Segment> pack_segment(kernel::Cache& cache, std::vector<image::CpioEntry> entries);

// The segment of a run's files (image::file_list_entries), cached by each file's path, mode and
// sha256: packed once, then found by the next run that ships the same bytes.
Result<Segment> files_segment(kernel::Cache& cache, const std::vector<image::GuestFile>& files);

// The initrd of a run: the initramfs followed by the segments, in order (the kernel unpacks
// concatenated archives one after the other, a later file replacing an earlier one), cached by
// every part's digest. Without segments, the initramfs itself.
Result<fs::path> initrd_with_segments(kernel::Cache& cache, const PreparedInitramfs& initramfs,
                                      const std::vector<Segment>& segments);

}  // namespace kgate::run
