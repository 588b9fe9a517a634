// libFuzzer target for the frame decoder; not built by default.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "channel/frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::size_t split = data[0] % size;

  kgate::channel::Decoder decoder;
  for (std::string_view chunk : {bytes.substr(0, split), bytes.substr(split)}) {
    decoder.feed(chunk);
    for (;;) {
      auto frame = decoder.next();
      if (!frame || !*frame) break;
    }
  }
  (void)decoder.finish();
  return 0;
}
