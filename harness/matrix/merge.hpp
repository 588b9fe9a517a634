// `kgate matrix` output read back, and shards' outputs merged into one (`kgate matrix merge`).
#pragma once

#include <filesystem>
#include <vector>

#include "core/error.hpp"
#include "matrix/runner.hpp"

namespace kgate::matrix {

namespace fs = std::filesystem;

// The run a `kgate matrix` output directory holds: its matrix-summary.json and the receipts it
// names. An entry whose receipt is named but gone or unreadable is no_verdict.
Result<MatrixRun> read_run(const fs::path& dir);

// Several outputs as one run, their entry directories copied into `out_dir`. Each entry must be in
// one output only; shards must be slices of one selection (the same N and the same entries). An
// entry the selection named that no output holds (a shard's job that never uploaded) is a
// no_verdict result: a missing shard fails the merge's verdict, it is never a smaller pass.
Result<MatrixRun> merge_runs(const std::vector<fs::path>& dirs, const fs::path& out_dir);

}  // namespace kgate::matrix
