#include "matrix/baseline.hpp"

#include <map>
#include <set>

#include "channel/fields.hpp"
#include "core/strings.hpp"
#include "core/text_table.hpp"

namespace kgate::matrix {

using nlohmann::json;

namespace {

struct Cell {
  std::string verdict;
  long long insns = -1;
};

// "object/name" -> entry -> cell, and the programs in document order.
struct Cells {
  std::vector<std::string> order;
  std::map<std::string, std::map<std::string, Cell>> at;
};

Cells cells_of(const json& summary) {
  Cells c;
  for (const auto& p : channel::get_array(summary, "programs")) {
    const std::string key = channel::get_string(p, "object") + "/" + channel::get_string(p, "name");
    if (!c.at.contains(key)) c.order.push_back(key);
    auto& row = c.at[key];
    if (!p.contains("entries") || !p["entries"].is_object()) continue;
    for (const auto& [entry, v] : p["entries"].items()) {
      Cell cell{channel::get_string(v, "verdict"), channel::get_int(v, "insns_processed").value_or(-1)};
      row[entry] = cell;
    }
  }
  return c;
}

std::string insns_text(long long v) {
  return v >= 0 ? std::to_string(v) : "-";
}

std::string diff_text(const BaselineRow& r) {
  if (r.insns_a < 0 || r.insns_b < 0) return "-";
  const long long d = r.insns_b - r.insns_a;
  if (r.insns_a == 0) return strprintf("%+lld", d);
  return strprintf("%+lld (%+.2f%%)", d, 100.0 * static_cast<double>(d) / static_cast<double>(r.insns_a));
}

std::vector<std::vector<std::string>> grid(const BaselineComparison& c) {
  std::vector<std::vector<std::string>> rows = {
      {"PROGRAM", "ENTRY", "VERDICT (A)", "VERDICT (B)", "INSNS (A)", "INSNS (B)", "INSNS (DIFF)", "CHANGE"}};
  for (const auto& r : c.rows) {
    rows.push_back({r.program, r.entry, r.verdict_a.empty() ? "-" : r.verdict_a,
                    r.verdict_b.empty() ? "-" : r.verdict_b, insns_text(r.insns_a), insns_text(r.insns_b),
                    diff_text(r), r.fails() ? "FAIL " + r.change : r.change});
  }
  return rows;
}

}  // namespace

BaselineComparison compare_to_baseline(const json& baseline, const json& now, double max_growth_pct) {
  BaselineComparison out;
  out.max_growth_pct = max_growth_pct;
  const Cells a = cells_of(baseline), b = cells_of(now);
  std::vector<std::string> programs = b.order;
  for (const auto& key : a.order)
    if (!b.at.contains(key)) programs.push_back(key);
  for (const auto& key : programs) {
    std::set<std::string> entries;
    std::vector<std::string> entry_order;
    for (const auto* side : {&b, &a}) {
      auto it = side->at.find(key);
      if (it == side->at.end()) continue;
      for (const auto& [entry, _] : it->second)
        if (entries.insert(entry).second) entry_order.push_back(entry);
    }
    for (const auto& entry : entry_order) {
      BaselineRow r;
      r.program = key;
      r.entry = entry;
      const Cell* ca = nullptr;
      const Cell* cb = nullptr;
      if (auto it = a.at.find(key); it != a.at.end() && it->second.contains(entry))
        ca = &it->second.at(entry);
      if (auto it = b.at.find(key); it != b.at.end() && it->second.contains(entry))
        cb = &it->second.at(entry);
      if (ca) r.verdict_a = ca->verdict, r.insns_a = ca->insns;
      if (cb) r.verdict_b = cb->verdict, r.insns_b = cb->insns;
      if (!ca) {
        r.change = "added";
      } else if (!cb) {
        r.change = "removed";
      } else if (ca->verdict == "pass" && cb->verdict != "pass" && cb->verdict != "skipped") {
        r.change = "regressed";
      } else if (ca->verdict != "pass" && cb->verdict == "pass") {
        r.change = "fixed";
      } else if (ca->insns >= 0 && cb->insns >= 0 &&
                 static_cast<double>(cb->insns) >
                     static_cast<double>(ca->insns) * (1.0 + max_growth_pct / 100.0)) {
        r.change = "grew";
      } else {
        r.change = ca->insns == cb->insns && ca->verdict == cb->verdict ? "same" : "changed";
      }
      out.failures += r.fails() ? 1 : 0;
      out.rows.push_back(std::move(r));
    }
  }
  return out;
}

std::string baseline_table(const BaselineComparison& c) {
  return text_columns(grid(c));
}

std::string baseline_markdown(const BaselineComparison& c) {
  const auto rows = grid(c);
  std::string out =
      strprintf("### Against the baseline: %d of %zu program x entry rows fail (max growth %g%%)\n\n",
                c.failures, c.rows.size(), c.max_growth_pct);
  // Failing rows stand out: bold after the cells are escaped.
  auto rows_marked = rows;
  for (size_t i = 1; i < rows_marked.size(); ++i)
    if (rows_marked[i].back().starts_with("FAIL"))
      rows_marked[i].back() = "**" + rows_marked[i].back() + "**";
  out += markdown_table(rows_marked);
  return out;
}

json baseline_json(const BaselineComparison& c) {
  json rows = json::array();
  for (const auto& r : c.rows) {
    rows.push_back({{"program", r.program},
                    {"entry", r.entry},
                    {"verdict_a", r.verdict_a.empty() ? json(nullptr) : json(r.verdict_a)},
                    {"verdict_b", r.verdict_b.empty() ? json(nullptr) : json(r.verdict_b)},
                    {"insns_a", r.insns_a >= 0 ? json(r.insns_a) : json(nullptr)},
                    {"insns_b", r.insns_b >= 0 ? json(r.insns_b) : json(nullptr)},
                    {"change", r.change}});
  }
  return {{"schema", "kgate.baseline-comparison/1"},
          {"max_growth_pct", c.max_growth_pct},
          {"failures", c.failures},
          {"rows", rows}};
}

}  // namespace kgate::matrix
