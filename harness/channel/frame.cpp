#include "frame.hpp"

#include <algorithm>
#include <cassert>

namespace kgate::channel {

namespace {

constexpr std::string_view magic = "KGF1";

void put_le(std::string& out, std::uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint32_t get_le(const char* p, int bytes) {
  std::uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

std::string hex_bytes(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (!out.empty()) out += ' ';
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
}

// Malformed input: every message says where in the stream the bad frame starts.
Error malformed(std::uint64_t offset, std::string message) {
  return Error(FailureClass::no_verdict, std::move(message))
      .context("frame at stream offset " + std::to_string(offset));
}

}  // namespace

std::string_view type_name(FrameType type) {
  switch (type) {
    case FrameType::hello: return "hello";
    case FrameType::request: return "request";
    case FrameType::response: return "response";
    case FrameType::log: return "log";
  }
  return "unknown";
}

std::string encode(const Frame& frame) {
  assert(frame.header.is_object() || frame.header.is_null());
  // dump() throws on invalid UTF-8 in a string; replacing it keeps exceptions out of the codec.
  std::string header;
  if (!frame.header.empty())
    header = frame.header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);

  std::string out;
  out.reserve(prefix_bytes + header.size() + frame.body.size());
  out += magic;
  put_le(out, static_cast<std::uint16_t>(frame.type), 2);
  put_le(out, 0, 2);
  put_le(out, static_cast<std::uint32_t>(header.size()), 4);
  put_le(out, static_cast<std::uint32_t>(frame.body.size()), 4);
  out += header;
  out += frame.body;
  return out;
}

void Decoder::feed(std::string_view bytes) {
  if (error_) return;  // nothing more can be decoded; don't grow the buffer
  // Erase consumed bytes only once they are at least half the buffer, so each byte is moved at most
  // once per byte consumed: amortized O(n) over the stream.
  if (pos_ > 0 && pos_ >= buf_.size() - pos_) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

Result<std::size_t> Decoder::head_size() const {
  const char* p = buf_.data() + pos_;
  const std::size_t avail = buffered();
  auto bad = [&](std::string message) { return std::unexpected(malformed(offset_, std::move(message))); };

  // Checked on a partial prefix too, so garbage is reported as such rather than as truncation.
  std::string_view got(p, std::min(avail, magic.size()));
  if (!magic.starts_with(got))
    return bad("bad magic " + hex_bytes(got) + " (expected " + hex_bytes(magic) + ", \"KGF1\")");
  if (avail < prefix_bytes) return prefix_bytes;

  const std::uint32_t type = get_le(p + 4, 2), flags = get_le(p + 6, 2);
  const std::uint32_t header_len = get_le(p + 8, 4), body_len = get_le(p + 12, 4);
  if (type < static_cast<std::uint32_t>(FrameType::hello) ||
      type > static_cast<std::uint32_t>(FrameType::log))
    return bad("unknown type " + std::to_string(type));
  if (flags != 0) return bad("nonzero flags " + std::to_string(flags) + " (must be 0)");
  if (header_len > max_header_bytes)
    return bad("header_len " + std::to_string(header_len) + " exceeds the limit of " +
               std::to_string(max_header_bytes) + " bytes");
  if (body_len > max_body_bytes)
    return bad("body_len " + std::to_string(body_len) + " exceeds the limit of " +
               std::to_string(max_body_bytes) + " bytes");
  return prefix_bytes + header_len + body_len;
}

Result<std::optional<Frame>> Decoder::next() {
  if (error_) return std::unexpected(*error_);
  auto need = head_size();
  if (!need) {
    error_ = need.error();
    return std::unexpected(std::move(need).error());
  }
  if (buffered() < *need) return std::optional<Frame>();

  const char* p = buf_.data() + pos_;
  const std::size_t header_len = get_le(p + 8, 4);
  Frame frame{static_cast<FrameType>(get_le(p + 4, 2)), nlohmann::json::object(), {}};
  if (header_len > 0) {
    const char* h = p + prefix_bytes;
    // A guest can nest values as deep as the header is long; copying one recurses once per level.
    // The parser itself keeps its own stack: stop it at the limit.
    bool too_deep = false;
    nlohmann::json::parser_callback_t limit = [&too_deep](int depth, nlohmann::json::parse_event_t,
                                                          nlohmann::json&) {
      if (depth > max_header_depth) too_deep = true;
      return !too_deep;
    };
    frame.header = nlohmann::json::parse(h, h + header_len, limit, false);
    std::string problem;
    if (too_deep)
      problem = "header (" + std::to_string(header_len) + " bytes) nests deeper than " +
                std::to_string(max_header_depth) + " levels";
    else if (frame.header.is_discarded())
      problem = "header (" + std::to_string(header_len) + " bytes) is not valid JSON";
    else if (!frame.header.is_object())
      problem = "header (" + std::to_string(header_len) + " bytes) is a JSON " + frame.header.type_name() +
                ", not an object";
    if (!problem.empty()) {
      error_ = malformed(offset_, std::move(problem));
      return std::unexpected(*error_);
    }
  }
  frame.body.assign(p + prefix_bytes + header_len, *need - prefix_bytes - header_len);
  pos_ += *need;
  offset_ += *need;
  return std::optional<Frame>(std::move(frame));
}

Status Decoder::finish() const {
  if (error_) return std::unexpected(*error_);
  if (buffered() == 0) return {};
  auto need = head_size();
  if (!need) return std::unexpected(need.error());
  if (buffered() < *need)
    return std::unexpected(malformed(offset_, "truncated frame: " + std::to_string(buffered()) + " of " +
                                                  std::to_string(*need) + " bytes"));
  return std::unexpected(malformed(
      offset_, "end of stream with " + std::to_string(buffered()) + " bytes of complete frames not decoded"));
}

}  // namespace kgate::channel
