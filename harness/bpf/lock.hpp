// bpf/digests.lock: what every gate object must be, byte for byte, per arch. JSON, sorted keys,
// one file for every arch:
//   {"schema": "kgate.digests/1",
//    "objects": {"probe": {"arm64": {"clang": "Debian clang version 14.0.6",
//                                    "sections": [{"name": ".text", "sha256": "...", "size": 0}, ...],
//                                    "sha256": "...", "size": 11648}}}}
// The sections are listed in file order, so that a mismatch can name the section that differs.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bpf/object.hpp"
#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::bpf {

inline constexpr std::string_view lock_schema = "kgate.digests/1";

struct LockedSection {
  std::string name;
  std::uint64_t size = 0;
  std::string sha256;
};

struct LockEntry {
  std::string sha256;
  std::uint64_t size = 0;
  std::string clang;  // the first line of `clang --version` of the clang that built it
  std::vector<LockedSection> sections;
};

struct DigestLock {
  // object name -> gate arch -> entry
  std::map<std::string, std::map<std::string, LockEntry>> objects;

  // The gate arches that have at least one entry, in gate_arches order.
  std::vector<std::string> arches() const;
};

// Fails (class usage) on anything but the schema above: unknown keys, an arch that is not a gate
// arch, a digest that is not 64 lowercase hex digits, a name that could not be a file name.
Result<DigestLock> parse_lock(std::string_view text, const std::string& where);
Result<DigestLock> load_lock(const fs::path& path);
// Byte-stable: the same lock always gives the same text.
std::string write_lock(const DigestLock& lock);

LockEntry lock_entry(const ObjectInfo& info, std::string clang);

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
// The lock is JSON text: a section name that is not could not be written as itself, and its
// object would never match its own entry.
bool valid_utf8(std::string_view s);
// `s` with every byte outside printable ASCII as \xNN, for messages about names that are not text.
std::string escape_bytes(std::string_view s);

// Gate object files are named <name>.<arch>.bpf.o.
std::string object_file_name(std::string_view name, std::string_view arch);
// The name and gate arch of such a file name; nullopt for any other.
std::optional<std::pair<std::string, std::string>> split_object_file_name(std::string_view file);

}  // namespace kgate::bpf
