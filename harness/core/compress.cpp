#include "compress.hpp"

#define ZLIB_CONST
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>

namespace kgate {

using namespace std::literals;

Compression detect_compression(std::string_view data) {
  if (data.starts_with("\x1f\x8b"sv)) return Compression::gzip;
  if (data.starts_with("\xfd\x37zXZ\0"sv)) return Compression::xz;
  if (data.starts_with("\x28\xb5\x2f\xfd"sv)) return Compression::zstd;
  return Compression::none;
}

std::string_view compression_name(Compression c) {
  switch (c) {
    case Compression::none: return "none";
    case Compression::gzip: return "gzip";
    case Compression::xz: return "xz";
    case Compression::zstd: return "zstd";
  }
  return "unknown";
}

namespace {

// The decoders' output buffer. It doubles as needed up to one byte past the cap: a decoder that
// fills that byte has produced too much, which is how an oversized stream is caught without
// decoding it to the end.
class Sink {
 public:
  Sink(std::size_t input_size, std::size_t max_output)
      : max_(std::min(max_output, std::string().max_size() - 1)), limit_(max_ + 1) {
    std::size_t guess = input_size > limit_ / 4 ? limit_ : std::max<std::size_t>(input_size * 4, 1 << 16);
    buf_.resize(std::min(limit_, guess));
  }
  // Guarantees at least one free byte, which holds while the cap is not exceeded.
  void make_room() {
    if (used_ == buf_.size()) buf_.resize(buf_.size() > limit_ / 2 ? limit_ : buf_.size() * 2);
  }
  char* next() { return buf_.data() + used_; }
  std::size_t room() const { return buf_.size() - used_; }
  std::size_t size() const { return used_; }
  void produced(std::size_t n) { used_ += n; }
  bool over() const { return used_ > max_; }
  std::size_t max() const { return max_; }
  std::string take() && {
    buf_.resize(used_);
    return std::move(buf_);
  }

 private:
  std::size_t max_, limit_;
  std::string buf_;
  std::size_t used_ = 0;
};

std::unexpected<Error> decode_error(Compression c, std::string_view what) {
  return fail(FailureClass::usage,
              "decompress " + std::string(compression_name(c)) + ": " + std::string(what));
}

std::unexpected<Error> cap_error(Compression c, std::size_t max) {
  return decode_error(c, "output exceeds the limit of " + std::to_string(max) + " bytes");
}

constexpr std::string_view truncated = "unexpected end of input";

Status inflate_gzip(std::string_view in, Sink& out) {
  z_stream zs{};
  // 16 + MAX_WBITS: a gzip header and trailer, not a zlib one.
  if (int rc = inflateInit2(&zs, 16 + MAX_WBITS); rc != Z_OK)
    return decode_error(Compression::gzip, zError(rc));
  std::unique_ptr<z_stream, decltype(&inflateEnd)> end(&zs, &inflateEnd);
  std::size_t fed = 0;
  for (;;) {
    if (zs.avail_in == 0 && fed < in.size()) {  // zlib's counts are 32-bit: feed in pieces
      zs.next_in = reinterpret_cast<const Bytef*>(in.data() + fed);
      zs.avail_in = static_cast<uInt>(std::min<std::size_t>(in.size() - fed, UINT_MAX));
      fed += zs.avail_in;
    }
    out.make_room();
    auto room = static_cast<uInt>(std::min<std::size_t>(out.room(), UINT_MAX));
    zs.next_out = reinterpret_cast<Bytef*>(out.next());
    zs.avail_out = room;
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.produced(room - zs.avail_out);
    if (out.over()) return cap_error(Compression::gzip, out.max());
    if (rc == Z_STREAM_END) return {};
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && fed == in.size())
      return decode_error(Compression::gzip, truncated);
    if (rc != Z_OK && rc != Z_BUF_ERROR) return decode_error(Compression::gzip, zs.msg ? zs.msg : zError(rc));
  }
}

// Enough for any dictionary xz's presets use (64 MiB; the kernel's is 32 MiB) while keeping a
// hostile header from reserving gigabytes.
constexpr std::uint64_t xz_memlimit = std::uint64_t{256} << 20;

std::string_view lzma_message(lzma_ret rc) {
  switch (rc) {
    case LZMA_MEM_ERROR: return "cannot allocate memory";
    case LZMA_MEMLIMIT_ERROR: return "the stream needs more than 256 MiB of memory to decode";
    case LZMA_FORMAT_ERROR: return "not in the .xz format";
    case LZMA_OPTIONS_ERROR: return "unsupported options";
    case LZMA_DATA_ERROR: return "compressed data is corrupt";
    case LZMA_BUF_ERROR: return truncated;
    case LZMA_UNSUPPORTED_CHECK: return "unsupported integrity check";
    default: return "internal liblzma error";
  }
}

Status decode_xz(std::string_view in, Sink& out) {
  lzma_stream xs = LZMA_STREAM_INIT;
  // Without LZMA_CONCATENATED the decoder stops after the first stream.
  if (lzma_ret rc = lzma_stream_decoder(&xs, xz_memlimit, 0); rc != LZMA_OK)
    return decode_error(Compression::xz, lzma_message(rc));
  std::unique_ptr<lzma_stream, decltype(&lzma_end)> end(&xs, &lzma_end);
  xs.next_in = reinterpret_cast<const std::uint8_t*>(in.data());
  xs.avail_in = in.size();
  for (;;) {
    out.make_room();
    std::size_t room = out.room();
    xs.next_out = reinterpret_cast<std::uint8_t*>(out.next());
    xs.avail_out = room;
    lzma_ret rc = lzma_code(&xs, LZMA_FINISH);
    out.produced(room - xs.avail_out);
    if (out.over()) return cap_error(Compression::xz, out.max());
    if (rc == LZMA_STREAM_END) return {};
    if (rc != LZMA_OK) return decode_error(Compression::xz, lzma_message(rc));
  }
}

// Streaming, because a frame need not record its content size.
Status decode_zstd(std::string_view in, Sink& out) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!dctx) return decode_error(Compression::zstd, "cannot allocate memory");
  ZSTD_inBuffer src{in.data(), in.size(), 0};
  for (;;) {
    out.make_room();
    ZSTD_outBuffer dst{out.next(), out.room(), 0};
    std::size_t rc = ZSTD_decompressStream(dctx.get(), &dst, &src);
    if (ZSTD_isError(rc)) return decode_error(Compression::zstd, ZSTD_getErrorName(rc));
    out.produced(dst.pos);
    if (out.over()) return cap_error(Compression::zstd, out.max());
    if (rc == 0) {
      // libzstd 1.5 does not hold a frame to the content size its header declares
      // when the output buffer is smaller than it: check here (found by fuzzing).
      unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
      if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != ZSTD_CONTENTSIZE_ERROR &&
          declared != out.size()) {
        return decode_error(Compression::zstd, "frame declares " + std::to_string(declared) +
                                                   " bytes but holds " + std::to_string(out.size()));
      }
      return {};  // the first frame is complete and flushed
    }
    // Room left over means the decoder has flushed all it can from the input it was given.
    if (src.pos == src.size && dst.pos < dst.size) return decode_error(Compression::zstd, truncated);
  }
}

}  // namespace

Result<std::string> decompress(std::string_view data, std::size_t max_output) {
  Compression c = detect_compression(data);
  if (c == Compression::none) {
    if (data.size() > max_output)
      return fail(FailureClass::usage, "uncompressed input of " + std::to_string(data.size()) +
                                           " bytes exceeds the limit of " + std::to_string(max_output));
    return std::string(data);
  }
  Sink out(data.size(), max_output);
  Status s = c == Compression::gzip ? inflate_gzip(data, out)
             : c == Compression::xz ? decode_xz(data, out)
                                    : decode_zstd(data, out);
  if (!s) return std::unexpected(std::move(s.error()));
  return std::move(out).take();
}

Result<std::string> zstd_compress(std::string_view data, int level) {
  if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
    return fail(FailureClass::usage, "zstd level " + std::to_string(level) + " is outside " +
                                         std::to_string(ZSTD_minCLevel()) + ".." +
                                         std::to_string(ZSTD_maxCLevel()));
  std::size_t bound = ZSTD_compressBound(data.size());
  if (ZSTD_isError(bound)) return fail(FailureClass::usage, "zstd compress: input too large");
  std::string out(bound, '\0');
  std::size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(n))
    return fail(FailureClass::infra, "zstd compress: " + std::string(ZSTD_getErrorName(n)));
  out.resize(n);
  return out;
}

}  // namespace kgate
