#include <doctest/doctest.h>
#include <zstd.h>

#include <cstdint>
#include <string>

#include "core/compress.hpp"
#include "support/synthetic.hpp"

using kgate::Compression;
using kgate::decompress;
using namespace std::literals;

namespace {

// Lower levels than the kernel's: these tests compress megabytes, many times over.
std::string gzip(std::string_view data) {
  return kgate::testing::gzip_bytes(data, 6);
}

std::string xz(std::string_view data) {
  return kgate::testing::xz_bytes(data, 2);
}

std::string zstd(std::string_view data) {
  auto r = kgate::zstd_compress(data, 3);
  REQUIRE(r);
  return *r;
}

// A frame with a checksum and without a content size, as a streaming compressor writes it.
std::string zstd_streamed(std::string_view data) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  REQUIRE(cctx);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  ZSTD_outBuffer dst{out.data(), out.size(), 0};
  CHECK(ZSTD_compressStream2(cctx, &dst, &in, ZSTD_e_end) == 0);
  ZSTD_freeCCtx(cctx);
  out.resize(dst.pos);
  return out;
}

// Deterministic text, compressible but not trivially so, and larger than the decoders' first buffer.
std::string sample(std::size_t size) {
  static constexpr std::string_view words[] = {"kernel ", "bpf ",      "verifier ",
                                               "qemu ",   "lockdown ", "ring\n"};
  std::string s;
  std::uint32_t x = 12345;
  while (s.size() < size) {
    x = x * 1103515245 + 12345;
    s += words[(x >> 16) % 6];
    s += std::to_string(x % 1000);
  }
  s.resize(size);
  return s;
}

void check_error(const kgate::Result<std::string>& r, std::string_view needle) {
  REQUIRE_FALSE(r);
  CHECK(r.error().cls() == kgate::FailureClass::usage);
  INFO(r.error().describe());
  CHECK(r.error().describe().find(needle) != std::string::npos);
}

}  // namespace

TEST_CASE("formats are recognized by their magic") {
  CHECK(kgate::detect_compression(gzip("x")) == Compression::gzip);
  CHECK(kgate::detect_compression(xz("x")) == Compression::xz);
  CHECK(kgate::detect_compression(zstd("x")) == Compression::zstd);
  CHECK(kgate::detect_compression("\177ELF") == Compression::none);
  CHECK(kgate::detect_compression("") == Compression::none);
  CHECK(kgate::detect_compression("\x1f") == Compression::none);
  CHECK(kgate::detect_compression("\xfd\x37zXZ") == Compression::none);  // the magic is six bytes
  CHECK(kgate::compression_name(Compression::none) == "none");
  CHECK(kgate::compression_name(Compression::gzip) == "gzip");
  CHECK(kgate::compression_name(Compression::xz) == "xz");
  CHECK(kgate::compression_name(Compression::zstd) == "zstd");
}

TEST_CASE("each format round-trips, empty and large") {
  for (std::string data : {""s, "a"s, sample(1 << 20)}) {
    CAPTURE(data.size());
    for (const std::string& packed : {gzip(data), xz(data), zstd(data), zstd_streamed(data)}) {
      CAPTURE(kgate::compression_name(kgate::detect_compression(packed)));
      auto r = decompress(packed);
      REQUIRE(r);
      CHECK(*r == data);
    }
  }
  CHECK(ZSTD_getFrameContentSize(zstd_streamed("abc").data(), 16) == ZSTD_CONTENTSIZE_UNKNOWN);
  auto best = kgate::zstd_compress(sample(100000), 19);
  REQUIRE(best);
  CHECK(decompress(*best).value() == sample(100000));
}

TEST_CASE("bytes after the first stream are ignored") {
  std::string data = sample(200000);
  // The kernel appends the uncompressed size; a second stream must not be decoded either.
  std::string tail = "\x40\x0d\x03\x00"s + gzip("second") + xz("second") + zstd("second") + "junk";
  for (const std::string& packed : {gzip(data), xz(data), zstd(data), zstd_streamed(data)}) {
    auto r = decompress(packed + tail);
    REQUIRE(r);
    CHECK(*r == data);
  }
}

TEST_CASE("truncated and corrupt input is an error") {
  std::string data = sample(100000);
  for (const std::string& packed : {gzip(data), xz(data), zstd(data), zstd_streamed(data)}) {
    std::string name(kgate::compression_name(kgate::detect_compression(packed)));
    CAPTURE(name);
    for (std::size_t cut : {packed.size() - 1, packed.size() / 2, std::size_t{8}})
      check_error(decompress(packed.substr(0, cut)), "decompress " + name);
  }
  check_error(decompress(gzip(data).substr(0, gzip(data).size() / 2)), "unexpected end of input");
  check_error(decompress(xz(data).substr(0, 100)), "unexpected end of input");
  check_error(decompress(zstd(data).substr(0, 100)), "unexpected end of input");

  std::string g = gzip(data);
  g[g.size() - 6] ^= 0x55;  // the CRC32 in the trailer
  check_error(decompress(g), "decompress gzip: incorrect data check");
  g = gzip(data);
  g[10] = '\xff';  // the first deflate block header: block type 3 is reserved
  check_error(decompress(g), "decompress gzip: invalid block type");
  std::string x = xz(data);
  x[x.size() / 2] ^= 0x55;
  check_error(decompress(x), "decompress xz");
  x = xz(data);
  x[7] = 0x0f;  // stream flags: an unknown check type
  check_error(decompress(x), "decompress xz");
  std::string z = zstd_streamed(data);
  z[z.size() / 2] ^= 0x55;
  check_error(decompress(z), "decompress zstd");
  check_error(decompress("\x1f\x8bgarbage"), "decompress gzip");
  check_error(decompress("\xfd\x37zXZ\0garbage"s), "decompress xz");
  check_error(decompress("\x28\xb5\x2f\xfdgarbage"), "decompress zstd");
}

TEST_CASE("output is capped") {
  std::string data = sample(300000);
  for (const std::string& packed : {gzip(data), xz(data), zstd(data), zstd_streamed(data)}) {
    std::string name(kgate::compression_name(kgate::detect_compression(packed)));
    CAPTURE(name);
    CHECK(decompress(packed, data.size()).value() == data);
    check_error(decompress(packed, data.size() - 1), name + ": output exceeds the limit of 299999 bytes");
    check_error(decompress(packed, 0), "limit of 0 bytes");
  }
  // A bomb stops at the cap instead of inflating to the end.
  std::string zeros(std::size_t{64} << 20, '\0');
  for (const std::string& packed : {gzip(zeros), zstd(zeros)})
    check_error(decompress(packed, 1 << 20), "exceeds");
}

TEST_CASE("data without a known magic passes through") {
  CHECK(decompress("hello, kernel").value() == "hello, kernel");
  CHECK(decompress("").value() == "");
  std::string bin = "\177ELF\0\0\x01"s;
  CHECK(decompress(bin).value() == bin);
  check_error(decompress("hello, kernel", 5), "exceeds the limit of 5");
}

TEST_CASE("zstd_compress rejects a level out of range") {
  auto r = kgate::zstd_compress("x", ZSTD_maxCLevel() + 1);
  REQUIRE_FALSE(r);
  CHECK(r.error().cls() == kgate::FailureClass::usage);
  CHECK(kgate::zstd_compress("x", -5).has_value());
}

TEST_CASE("zstd: a frame holding less than its declared content size is corrupt") {
  // Found by the bzimage fuzz target: header declares 100000 bytes, then a
  // 10-byte raw block and an empty last block. `zstd -d` rejects it too.
  const unsigned char frame[] = {0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0xa0, 0x86, 0x01, 0x00, 0x50, 0x00, 0x00, 0x30,
                                 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x01, 0x00, 0x00};
  auto r = kgate::decompress(std::string_view(reinterpret_cast<const char*>(frame), sizeof frame));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().describe().find("declares 100000 bytes but holds 10") != std::string::npos);
}
