#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "error.hpp"

namespace kgate {

enum class Compression { none, gzip, xz, zstd };

// Recognizes a format by its magic bytes; anything else is `none`.
Compression detect_compression(std::string_view data);
std::string_view compression_name(Compression c);

// Decompresses gzip, xz or zstd data, or returns data without a known magic unchanged. Only the first
// stream is decoded and bytes after it are ignored (the kernel appends a 4-byte size to its payload).
// Output beyond max_output bytes is an error, so untrusted input cannot exhaust memory. Errors are
// class usage: "decompress xz: data is corrupt".
Result<std::string> decompress(std::string_view data, std::size_t max_output = std::size_t{1} << 30);

Result<std::string> zstd_compress(std::string_view data, int level);

}  // namespace kgate
