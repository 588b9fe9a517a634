// `kgate matrix --baseline`: every program's verdict and verifier complexity per entry, against an
// earlier matrix-summary.json (the main branch's artifact), as veristat's comparison mode does for
// one kernel: A (the baseline), B (this run), the difference and its percentage.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace kgate::matrix {

// The default for --max-growth: instructions processed may grow this many percent.
constexpr double default_max_growth_pct = 10.0;

struct BaselineRow {
  std::string program;  // "object/name"
  std::string entry;
  std::string verdict_a, verdict_b;  // "" where that side has no such program on that entry
  long long insns_a = -1, insns_b = -1;
  // What the row says: "same", "changed" (complexity within the bound), "regressed" (a pass that is
  // no longer one), "grew" (past --max-growth), "fixed", "added" or "removed" (one side only).
  std::string change;
  bool fails() const { return change == "regressed" || change == "grew"; }
};

struct BaselineComparison {
  std::vector<BaselineRow> rows;  // in this run's program order, then the baseline's leftovers
  double max_growth_pct = default_max_growth_pct;
  int failures = 0;
};

// Compares two kgate.matrix-summary/1 documents' "programs".
BaselineComparison compare_to_baseline(const nlohmann::json& baseline, const nlohmann::json& now,
                                       double max_growth_pct);

std::string baseline_table(const BaselineComparison& c);     // columns, for the terminal
std::string baseline_markdown(const BaselineComparison& c);  // for matrix-summary.md
nlohmann::json baseline_json(const BaselineComparison& c);   // baseline-comparison.json

}  // namespace kgate::matrix
