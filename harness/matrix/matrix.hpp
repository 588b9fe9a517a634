#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"
#include "run/lockdown.hpp"

namespace kgate::matrix {

// One kernel-matrix entry: a catalog kernel on one side of the lockdown axis.
struct Entry {
  std::string name;    // "6.6-integrity"
  std::string kernel;  // a catalog kernel name
  run::Lockdown lockdown = run::Lockdown::none;
  std::string arch = "x86_64";  // must be the catalog kernel's ("x86_64" or "arm64")
};

struct Matrix {
  std::vector<Entry> entries;  // in file order
  const Entry* find(std::string_view name) const;
};

// Parses kernels/matrix.json ("kgate.matrix/1"); unknown keys and duplicate names are errors.
Result<Matrix> parse_matrix(std::string_view text, std::string_view origin);
Result<Matrix> load_matrix(const fs::path& path);

// Entries whose name matches the pattern: comma-separated globs with * and ?
// ("6.6*,debian-6.1"). An empty pattern selects all; one that selects nothing is an error.
Result<std::vector<Entry>> select(const Matrix& m, std::string_view pattern);
bool glob_match(std::string_view pattern, std::string_view name);

// What a GitHub Actions strategy.matrix reads with fromJSON: {"include": [{"entry": ...}, ...]}.
nlohmann::json github_matrix(const std::vector<Entry>& entries);

// `--shard I/N`: the I-th of N deterministic slices of the selected entries (1-based). Entry k of
// the selection (in matrix order, from 0) is in shard k % N + 1: round robin, so each shard gets
// a share of every arch and lockdown level the selection lists in blocks.
struct Shard {
  int index = 1;
  int count = 1;
};
Result<Shard> parse_shard(std::string_view text);
std::vector<Entry> shard_of(const std::vector<Entry>& selected, Shard shard);
// `--github --shards N`: {"include": [{"shard": "1/N", "entries": "a,b"}, ...]}, no empty shard.
nlohmann::json github_shards(const std::vector<Entry>& selected, int count);

}  // namespace kgate::matrix
