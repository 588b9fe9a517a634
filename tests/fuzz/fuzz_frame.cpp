// Fuzz target for the frame decoder, which reads whatever the guest writes to the channel.
// Beyond not crashing, the decoder must not care how the stream is chunked: fed at once, in two
// pieces split where the first byte says, or byte by byte, it yields the same frames and ends the
// same way. And a decoded frame re-encodes to bytes that decode to the same frame.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "channel/frame.hpp"
#include "driver.hpp"

namespace {

using namespace kgate::channel;
using nlohmann::json;

// What a decoder made of a stream. Frames are compared by their encoding; error messages are not
// compared, since the bad-magic one quotes as many bytes as had arrived.
struct Outcome {
  std::vector<std::string> frames;
  bool failed = false;    // next() returned an error
  bool finished = false;  // finish() accepted the end of the stream
  bool operator==(const Outcome&) const = default;
};

void drain(Decoder& decoder, Outcome& out) {
  while (!out.failed) {
    auto frame = decoder.next();
    if (!frame) {
      KGATE_FUZZ_CHECK(frame.error().cls() == kgate::FailureClass::no_verdict);
      (void)frame.error().describe();
      out.failed = true;
    } else if (!*frame) {
      return;
    } else {
      KGATE_FUZZ_CHECK((*frame)->header.is_object());
      KGATE_FUZZ_CHECK(type_name((*frame)->type) != "unknown");
      out.frames.push_back(encode(**frame));
    }
  }
}

template <class Chunks>
Outcome decode(const Chunks& chunks) {
  Decoder decoder;
  Outcome out;
  for (std::string_view chunk : chunks) {
    decoder.feed(chunk);
    drain(decoder, out);
  }
  // A failed decoder keeps failing.
  if (out.failed) KGATE_FUZZ_CHECK(!decoder.next().has_value());
  out.finished = decoder.finish().has_value();
  KGATE_FUZZ_CHECK(!(out.failed && out.finished));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::size_t split = data[0] % size;

  Outcome whole = decode(std::vector<std::string_view>{bytes});
  KGATE_FUZZ_CHECK(decode(std::vector<std::string_view>{bytes.substr(0, split), bytes.substr(split)}) ==
                   whole);
  if (size <= 4096) {
    std::vector<std::string_view> single_bytes;
    for (std::size_t i = 0; i < size; ++i) single_bytes.push_back(bytes.substr(i, 1));
    KGATE_FUZZ_CHECK(decode(single_bytes) == whole);
  }

  // encode(decode(x)) is a fixed point: decoding it gives back the same frame.
  for (const std::string& frame : whole.frames) {
    Outcome again = decode(std::vector<std::string_view>{frame});
    KGATE_FUZZ_CHECK(again.frames.size() == 1 && again.frames[0] == frame && again.finished);
  }
  return 0;
}

std::vector<std::string> kgate_fuzz_seeds() {
  const std::string binary(
      "\x7f"
      "ELF\x02\x01\x01\0\0\0\xff\xfe KGF1",
      18);
  std::vector<Frame> frames = {
      {FrameType::hello, {{"agent", "kgate-agent"}, {"version", "0.1.0"}, {"kernel", "6.1.0-18-amd64"}}, ""},
      {FrameType::request, {{"op", "load"}, {"name", "probe"}, {"id", 7}}, binary},
      {FrameType::response,
       {{"ok", false},
        {"code", -22},
        {"ratio", 0.25},
        {"big", 1e300},
        {"max", 18446744073709551615ull},
        {"message", "verifier: \"R1 invalid mem access\"\n\ttab\x01 caf\xc3\xa9 \xf0\x9f\x90\x9d"},
        {"lines", {1, 2.5, nullptr, true, json::array(), json::object()}},
        {"nested", {{"a", {{"b", {{"c", "d"}}}}}}}},
       std::string(300, 'x')},
      {FrameType::log, json::object(), "agent: probe attached\n"},
      {FrameType::log, nullptr, ""},
  };
  std::vector<std::string> seeds;
  std::string stream;
  for (const Frame& f : frames) {
    seeds.push_back(encode(f));
    stream += seeds.back();
  }
  seeds.push_back(stream);
  seeds.push_back(stream.substr(0, stream.size() - 5));  // ends inside a frame
  // Near misses: a header that is a JSON array, and one that is not JSON.
  std::string array = encode({FrameType::log, json::object(), ""});
  array[8] = 2;
  seeds.push_back(array + "[]");
  std::string broken = encode({FrameType::hello, {{"k", "v"}}, "body"});
  broken[prefix_bytes + 3] = '\\';
  seeds.push_back(broken);
  return seeds;
}
