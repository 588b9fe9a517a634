#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace kgate::channel {

// The frame codec of the host<->guest channel. Wire format, integers little-endian:
//   0..3 magic "KGF1" | 4..5 u16 type | 6..7 u16 flags (0) | 8..11 u32 header_len | 12..15 u32 body_len
// then header_len bytes of a JSON object (0 bytes means {}), then body_len bytes of body.

enum class FrameType : std::uint16_t { hello = 1, request = 2, response = 3, log = 4 };
std::string_view type_name(FrameType type);

struct Frame {
  FrameType type;
  nlohmann::json header;  // a JSON object, possibly empty
  std::string body;       // raw bytes, e.g. an ELF object
};

inline constexpr std::size_t prefix_bytes = 16;
inline constexpr std::uint32_t max_header_bytes = 1u << 20;  // 1 MiB
inline constexpr int max_header_depth = 64;                  // arrays and objects within the header
inline constexpr std::uint32_t max_body_bytes = 64u << 20;   // 64 MiB

// The header is serialized compactly; an empty (or null) header is sent as header_len 0.
// The caller keeps header and body within the limits: the peer's Decoder rejects a larger frame.
std::string encode(const Frame& frame);

// Incremental decoder for a byte stream. Malformed input is a no_verdict error: a guest
// that sends garbage has not produced a verdict. Owns the bytes fed but not yet decoded.
class Decoder {
 public:
  void feed(std::string_view bytes);
  // The next complete frame, std::nullopt when more bytes are needed, or an error when the
  // buffered bytes can never form a valid frame. After an error the decoder stays failed
  // (every later next() returns the same error).
  Result<std::optional<Frame>> next();
  // Call at end of stream: an error ("truncated frame: N of M bytes") if a partial frame is buffered.
  Status finish() const;
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  // Validates what is buffered of the head frame's prefix; returns the size the head
  // frame needs (prefix_bytes while the prefix is incomplete).
  Result<std::size_t> head_size() const;

  std::string buf_;
  std::size_t pos_ = 0;       // consumed bytes at the front of buf_, erased in feed()
  std::uint64_t offset_ = 0;  // stream offset of buf_[pos_], for error messages
  std::optional<Error> error_;
};

}  // namespace kgate::channel
