// The umbrella receipt of a gates run (verify-all-summary.json, "kgate.verify-all/1"), its
// JUnit XML and its Markdown for $GITHUB_STEP_SUMMARY: pure functions of the execution and
// where it ran, so a golden test can hold them byte-stable.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "gate/executor.hpp"
#include "gate/pipeline.hpp"

namespace kgate::gate {

inline constexpr std::string_view summary_schema = "kgate.verify-all/1";

// Where the run happened.
struct Provenance {
  std::string hostname;
  std::string kernel;  // uname -r
  int cores = 0;
  std::optional<std::string> git_commit;  // when the gates file is in a git work tree
  bool git_dirty = false;
  std::string kgate_version;
};
Provenance collect_provenance(const fs::path& gates_file);

struct Counts {
  int passed = 0, failed = 0, skipped = 0, timed_out = 0, cancelled = 0;
  int non_green() const { return failed + skipped + timed_out + cancelled; }
};
Counts count(const Execution& ex);

// The gates whose status is not passed, in pipeline order.
std::vector<std::string> non_green(const Execution& ex);

nlohmann::json summary_json(const Pipeline& p, const Execution& ex, const Provenance& where, int jobs,
                            const std::vector<std::string>& only);
std::string junit_xml(const Execution& ex, const fs::path& out_dir);
std::string markdown(const Execution& ex, const fs::path& out_dir);

// The last `n` lines of a log, read from its last `max_bytes` bytes, so that what is shown of
// it stays bounded; output that is one line longer than that shows as the line's end, "...".
std::vector<std::string> tail_lines(const fs::path& file, size_t n, size_t max_bytes = 8192);

// "2026-11-27T01:02:03.456Z"
std::string iso_utc(std::chrono::system_clock::time_point t);

// The closing line: "verify-all: N passed, M failed", M counting every non-green gate.
std::string closing_line(const Execution& ex);

}  // namespace kgate::gate
