// A user's loader shipped as a container image: verified, unpacked once into the cache, packed as
// an initramfs segment that lands at /kgate/root in the guest, where the agent runs the loader with
// that tree as its root.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "kernel/cache.hpp"
#include "kernel/oci.hpp"
#include "run/initramfs_cache.hpp"
#include "spec/spec.hpp"
#include "vm/arch.hpp"

namespace kgate::run {

// Where the image's filesystem is in the guest.
inline constexpr const char* guest_image_root = "/kgate/root";

struct LoaderImage {
  spec::ImageSource source;
  kernel::OciImage image;  // digests and config; root is the unpacked tree in the cache
  Segment segment;         // the tree as an archive under kgate/root; bytes: the files' (guest memory)
  bool unpacked = false;   // false: the tree and the segment came from the cache
};

// Verifies the image (a registry reference is first copied with skopeo into the cache by its
// digest): every blob's digest, on every run, so that a flipped byte in a layer is refused before
// boot even when the image was unpacked before. The tree and the segment are cached by the
// manifest's digest and made again with `refresh`.
Result<LoaderImage> prepare_loader_image(kernel::Cache& cache, const spec::ImageSource& source, vm::Arch arch,
                                         bool refresh, const Deadline& deadline);

// The path of `guest_path` (absolute, as the loader sees it) in the image's tree, following its
// symbolic links the way a process whose root is the tree would; class usage when it is absent or
// not a regular file.
Result<fs::path> file_in_image(const LoaderImage& img, const std::string& guest_path);

// `name` looked up the way execvp would in the image, along PATH from `env` (or the usual one):
// the absolute guest path, or class usage naming the directories searched.
Result<std::string> find_in_image(const LoaderImage& img, const std::string& name,
                                  const std::vector<std::string>& env);

}  // namespace kgate::run
