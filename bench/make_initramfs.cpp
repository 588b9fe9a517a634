// make_initramfs OUT INIT: writes a zstd cpio whose /init is INIT, with
// kgate's own writer, for the benchmark's bare-boot baseline.
#include <iostream>

#include "core/compress.hpp"
#include "core/files.hpp"
#include "image/initramfs.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_initramfs OUT INIT\n";
    return 2;
  }
  auto init = kgate::read_file(argv[2]);
  if (!init) {
    std::cerr << init.error().describe() << "\n";
    return 1;
  }
  kgate::image::InitramfsInputs in;
  in.agent = *init;
  auto packed = kgate::zstd_compress(kgate::image::build_initramfs_cpio(in), 6);
  if (!packed || !kgate::write_file_atomic(argv[1], *packed)) {
    std::cerr << "make_initramfs: failed\n";
    return 1;
  }
  return 0;
}
