#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "channel/frame.hpp"

using namespace kgate;
using namespace kgate::channel;
using nlohmann::json;

namespace {

// A 16-byte prefix written field by field, for malformed input.
std::string prefix(std::string_view magic, std::uint16_t type, std::uint16_t flags, std::uint32_t header_len,
                   std::uint32_t body_len) {
  std::string out(magic);
  auto put = [&](std::uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(type, 2);
  put(flags, 2);
  put(header_len, 4);
  put(body_len, 4);
  return out;
}

std::vector<Frame> decode_all(Decoder& d) {
  std::vector<Frame> frames;
  for (;;) {
    auto r = d.next();
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    if (!*r) return frames;
    frames.push_back(std::move(**r));
  }
}

void check_same(const Frame& a, const Frame& b) {
  CHECK(a.type == b.type);
  CHECK(a.header == b.header);
  CHECK(a.body == b.body);
}

// Feeds `bytes` and expects next() to fail with a no_verdict error mentioning every one of `parts`.
Error expect_error(std::string_view bytes, std::vector<std::string> parts) {
  Decoder d;
  d.feed(bytes);
  auto r = d.next();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().cls() == FailureClass::no_verdict);
  for (const auto& part : parts)
    CHECK_MESSAGE(r.error().describe().find(part) != std::string::npos, r.error().describe());
  return r.error();
}

}  // namespace

TEST_CASE("type names") {
  CHECK(type_name(FrameType::hello) == "hello");
  CHECK(type_name(FrameType::request) == "request");
  CHECK(type_name(FrameType::response) == "response");
  CHECK(type_name(FrameType::log) == "log");
}

TEST_CASE("golden encoding") {
  Frame f{FrameType::request, json{{"op", "load"}}, "AB"};
  const std::string expected(
      "KGF1"
      "\x02\x00"          // type request
      "\x00\x00"          // flags
      "\x0d\x00\x00\x00"  // header_len 13
      "\x02\x00\x00\x00"  // body_len 2
      "{\"op\":\"load\"}"
      "AB",
      16 + 13 + 2);
  CHECK(encode(f) == expected);
}

TEST_CASE("empty header is encoded as header_len 0 and decodes to {}") {
  for (json header : {json::object(), json()}) {
    std::string bytes = encode(Frame{FrameType::hello, header, ""});
    CHECK(bytes == prefix("KGF1", 1, 0, 0, 0));
    Decoder d;
    d.feed(bytes);
    auto frames = decode_all(d);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type == FrameType::hello);
    CHECK(frames[0].header == json::object());
    CHECK(frames[0].body.empty());
    CHECK(d.buffered() == 0);
    CHECK(d.finish().has_value());
  }
}

TEST_CASE("round trip of a large binary body") {
  std::string body(max_body_bytes, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 131 + (i >> 9));
  Frame f{FrameType::response, json{{"ok", true}, {"sizes", {1, 2, 3}}}, body};
  Decoder d;
  d.feed(encode(f));
  auto frames = decode_all(d);
  REQUIRE(frames.size() == 1);
  check_same(frames[0], f);
  CHECK(d.finish().has_value());
}

TEST_CASE("several frames in one feed") {
  std::vector<Frame> sent = {
      {FrameType::hello, json{{"agent", "kgate"}, {"version", 1}}, ""},
      {FrameType::log, json::object(), "line one\n"},
      {FrameType::request, json{{"id", 7}, {"nested", {{"a", nullptr}}}}, std::string("\0\x7f\xff", 3)},
      {FrameType::response, json{{"id", 7}}, ""},
  };
  std::string stream;
  for (const auto& f : sent) stream += encode(f);
  Decoder d;
  d.feed(stream);
  auto got = decode_all(d);
  REQUIRE(got.size() == sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) check_same(got[i], sent[i]);
  CHECK(d.buffered() == 0);
  CHECK(d.finish().has_value());
}

TEST_CASE("frames fed one byte at a time") {
  std::vector<Frame> sent = {
      {FrameType::hello, json{{"k", "v"}}, "body"},
      {FrameType::log, json::object(), ""},
      {FrameType::response, json{{"n", 1}}, std::string(1000, 'x')},
  };
  std::string stream;
  for (const auto& f : sent) stream += encode(f);
  Decoder d;
  std::vector<Frame> got;
  for (char c : stream) {
    d.feed(std::string_view(&c, 1));
    for (auto& f : decode_all(d)) got.push_back(std::move(f));
  }
  REQUIRE(got.size() == sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) check_same(got[i], sent[i]);
  CHECK(d.buffered() == 0);
  CHECK(d.finish().has_value());
}

TEST_CASE("bad magic is reported in hex") {
  expect_error(prefix("KGF2", 1, 0, 0, 0), {"bad magic", "4b 47 46 32", "4b 47 46 31", "offset 0"});
  // Detected before a whole prefix has arrived.
  expect_error("XY", {"bad magic", "58 59"});
}

TEST_CASE("bad magic in a later frame names its stream offset") {
  std::string stream = encode(Frame{FrameType::log, json::object(), "abcd"}) + "junkjunkjunkjunk";
  Decoder d;
  d.feed(stream);
  auto first = d.next();
  REQUIRE(first.has_value());
  REQUIRE(first->has_value());
  auto second = d.next();
  REQUIRE_FALSE(second.has_value());
  CHECK(second.error().describe().find("frame at stream offset 20") != std::string::npos);
  CHECK(second.error().describe().find("6a 75 6e 6b") != std::string::npos);
}

TEST_CASE("unknown type") {
  expect_error(prefix("KGF1", 0, 0, 0, 0), {"unknown type 0"});
  expect_error(prefix("KGF1", 5, 0, 0, 0), {"unknown type 5"});
  expect_error(prefix("KGF1", 0xffff, 0, 0, 0), {"unknown type 65535"});
}

TEST_CASE("nonzero flags") {
  expect_error(prefix("KGF1", 1, 1, 0, 0), {"nonzero flags 1"});
  expect_error(prefix("KGF1", 1, 0x8000, 0, 0), {"nonzero flags 32768"});
}

TEST_CASE("header_len over the limit") {
  expect_error(prefix("KGF1", 2, 0, max_header_bytes + 1, 0), {"header_len 1048577", "limit of 1048576"});
}

TEST_CASE("body_len over the limit is rejected with only the prefix fed") {
  expect_error(prefix("KGF1", 3, 0, 0, max_body_bytes + 1), {"body_len 67108865", "limit of 67108864"});
  expect_error(prefix("KGF1", 3, 0, 0, 0xffffffff), {"body_len 4294967295"});
}

TEST_CASE("limits themselves are accepted") {
  Decoder d;
  d.feed(prefix("KGF1", 3, 0, max_header_bytes, max_body_bytes));
  auto r = d.next();
  REQUIRE(r.has_value());
  CHECK_FALSE(r->has_value());
  auto fin = d.finish();
  REQUIRE_FALSE(fin.has_value());
  CHECK(fin.error().describe().find("truncated frame: 16 of 68157456 bytes") != std::string::npos);
}

TEST_CASE("header that is not valid JSON") {
  std::string header = "{\"a\":";
  expect_error(prefix("KGF1", 2, 0, header.size(), 0) + header, {"header (5 bytes) is not valid JSON"});
  header = "{} {}";
  expect_error(prefix("KGF1", 2, 0, header.size(), 0) + header, {"not valid JSON"});
  header = "{\"s\":\"\xff\"}";  // invalid UTF-8
  expect_error(prefix("KGF1", 2, 0, header.size(), 0) + header, {"not valid JSON"});
}

TEST_CASE("header JSON that is not an object") {
  std::string header = "[1,2]";
  expect_error(prefix("KGF1", 2, 0, header.size(), 0) + header, {"is a JSON array, not an object"});
  header = "null";
  expect_error(prefix("KGF1", 2, 0, header.size(), 0) + header, {"is a JSON null, not an object"});
  header = "42";
  expect_error(prefix("KGF1", 2, 0, header.size(), 0) + header, {"is a JSON number, not an object"});
}

TEST_CASE("truncated stream is reported by finish()") {
  std::string bytes = encode(Frame{FrameType::response, json{{"x", 1}}, "0123456789"});
  REQUIRE(bytes.size() == 16 + 7 + 10);
  {
    Decoder d;
    d.feed(std::string_view(bytes).substr(0, 9));
    auto r = d.next();
    REQUIRE(r.has_value());
    CHECK_FALSE(r->has_value());
    auto fin = d.finish();
    REQUIRE_FALSE(fin.has_value());
    CHECK(fin.error().cls() == FailureClass::no_verdict);
    CHECK(fin.error().describe().find("truncated frame: 9 of 16 bytes") != std::string::npos);
  }
  {
    Decoder d;
    d.feed(bytes + bytes.substr(0, 30));
    REQUIRE(decode_all(d).size() == 1);
    CHECK(d.buffered() == 30);
    auto fin = d.finish();
    REQUIRE_FALSE(fin.has_value());
    CHECK(fin.error().describe().find("offset 33") != std::string::npos);
    CHECK(fin.error().describe().find("truncated frame: 30 of 33 bytes") != std::string::npos);
  }
}

TEST_CASE("decoder stays failed after an error") {
  Decoder d;
  d.feed(prefix("KGF1", 9, 0, 0, 0));
  auto first = d.next();
  REQUIRE_FALSE(first.has_value());
  d.feed(encode(Frame{FrameType::hello, json::object(), ""}));
  for (int i = 0; i < 3; ++i) {
    auto again = d.next();
    REQUIRE_FALSE(again.has_value());
    CHECK(again.error().describe() == first.error().describe());
    CHECK(again.error().cls() == FailureClass::no_verdict);
  }
  auto fin = d.finish();
  REQUIRE_FALSE(fin.has_value());
  CHECK(fin.error().describe() == first.error().describe());
}

TEST_CASE("a long stream split across frame boundaries") {
  const std::string one = encode(Frame{FrameType::log, json{{"i", 1}}, "payload"});
  const std::string stream = [&] {
    std::string s;
    for (int i = 0; i < 10000; ++i) s += one;
    return s;
  }();
  Decoder d;
  std::size_t count = 0;
  for (std::size_t at = 0; at < stream.size(); at += 37) {
    d.feed(std::string_view(stream).substr(at, 37));
    count += decode_all(d).size();
  }
  CHECK(count == 10000);
  CHECK(d.buffered() == 0);
  CHECK(d.finish().has_value());
}

TEST_CASE("a header nested deeper than the limit is refused, not copied") {
  // 100,000 levels fit well inside the 1 MiB header limit; copying such a value recurses once per
  // level and ends kgate with a stack overflow.
  std::string header = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_error(prefix("KGF1", 1, 0, static_cast<std::uint32_t>(header.size()), 0) + header,
               {"nests deeper than 64 levels"});
  // 63 levels inside the object are fine.
  std::string ok = "{\"a\":" + std::string(62, '[') + std::string(62, ']') + "}";
  Decoder d;
  d.feed(prefix("KGF1", 1, 0, static_cast<std::uint32_t>(ok.size()), 0) + ok);
  CHECK(decode_all(d).size() == 1);
}
