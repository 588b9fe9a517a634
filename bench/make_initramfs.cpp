// make_initramfs OUT INIT: writes a zstd cpio whose /init is INIT, with
// kgate's own writer, for the benchmark's bare-boot baseline.
#include <iostream>

#include "core/compress.hpp"
#include "core/files.hpp"
#include "image/initramfs.hpp"
#include "run/embedded.hpp"

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
  // The layout every run boots (images/gate.json, as built into kgate).
  auto cpio = kgate::image::build_initramfs_cpio(kgate::run::gate_image_recipe(), "images/gate.json", in);
  auto packed = cpio ? kgate::zstd_compress(*cpio, 6) : kgate::Result<std::string>(std::unexpected(cpio.error()));
  if (!packed || !kgate::write_file_atomic(argv[1], *packed)) {
    std::cerr << "make_initramfs: failed\n";
    return 1;
  }
  return 0;
}
