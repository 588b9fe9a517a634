#include "run/lockdown.hpp"

#include <algorithm>

#include "channel/fields.hpp"
#include "core/strings.hpp"

namespace kgate::run {

using channel::get_bool;
using channel::get_string;

std::optional<Lockdown> parse_lockdown(std::string_view name) {
  if (name == "none") return Lockdown::none;
  if (name == "integrity") return Lockdown::integrity;
  if (name == "confidentiality") return Lockdown::confidentiality;
  return std::nullopt;
}

std::string_view lockdown_name(Lockdown l) {
  switch (l) {
    case Lockdown::none: return "none";
    case Lockdown::integrity: return "integrity";
    case Lockdown::confidentiality: return "confidentiality";
  }
  return "none";
}

std::string bracketed_level(std::string_view line) {
  auto open = line.find('[');
  auto close = line.find(']', open);
  if (open == std::string_view::npos || close == std::string_view::npos) return {};
  return std::string(line.substr(open + 1, close - open - 1));
}

namespace {
std::vector<std::string> lines_with(std::string_view text, std::string_view needle) {
  std::vector<std::string> out;
  for (std::string_view line : split_lines(text)) {
    auto at = line.find(needle);
    if (at == std::string_view::npos) continue;
    // Drop the "<4>[    1.23] " priority and timestamp the kernel log carries.
    if (auto ts = line.find("] "); ts != std::string_view::npos && ts < at) line.remove_prefix(ts + 2);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    out.emplace_back(line);
  }
  return out;
}

bool has_word(std::string_view comma_list, std::string_view word) {
  size_t pos = 0;
  while (pos <= comma_list.size()) {
    size_t end = comma_list.find(',', pos);
    if (end == std::string_view::npos) end = comma_list.size();
    if (comma_list.substr(pos, end - pos) == word) return true;
    pos = end + 1;
  }
  return false;
}
}  // namespace

std::vector<std::string> lockdown_lines(std::string_view dmesg) {
  // Each refusal is logged per attempt: keep the first of each distinct line.
  std::vector<std::string> out;
  for (auto& l : lines_with(dmesg, "Lockdown:")) {
    if (std::find(out.begin(), out.end(), l) == out.end()) out.push_back(std::move(l));
  }
  return out;
}

LockdownProof prove_lockdown(Lockdown requested, const nlohmann::json& hello,
                             const nlohmann::json& canary_load, std::string_view dmesg) {
  LockdownProof p;
  p.requested = requested;
  p.observed = bracketed_level(get_string(hello, "lockdown"));
  if (p.observed.empty()) p.observed = "unavailable";
  p.lsm_listed = has_word(get_string(hello, "lsm"), "lockdown");
  p.canary_loaded = get_bool(canary_load, "ok");
  if (!p.canary_loaded) {
    p.canary_error = get_string(canary_load, "error", "no report");
    for (const auto& l : lines_with(get_string(canary_load, "log"), "bpf_probe_write_user")) {
      p.canary_verifier += (p.canary_verifier.empty() ? "" : "\n") + l;
    }
  }
  p.dmesg_lockdown = lockdown_lines(dmesg);

  std::vector<std::string> why;
  if (requested == Lockdown::none) {
    if (p.observed != "none" && p.observed != "unavailable")
      why.push_back("securityfs shows [" + p.observed + "]");
    if (!p.canary_loaded) why.push_back("the bpf_probe_write_user canary was refused: " + p.canary_error);
  } else {
    const std::string want(lockdown_name(requested));
    if (p.observed != want) why.push_back("securityfs shows " + p.observed + ", not [" + want + "]");
    if (!p.lsm_listed)
      why.push_back("lockdown is not in the active LSM list (" + get_string(hello, "lsm") + ")");
    if (p.canary_loaded)
      why.push_back("the bpf_probe_write_user canary loaded: lockdown is not enforced");
    else if (p.canary_verifier.empty() && p.dmesg_lockdown.empty())
      why.push_back("the canary was refused, but neither the verifier nor the kernel log names lockdown (" +
                    p.canary_error + ")");
  }
  p.consistent = why.empty();
  for (const auto& w : why) p.mismatch += (p.mismatch.empty() ? "" : "; ") + w;
  if (!p.consistent)
    p.mismatch = "lockdown=" + std::string(lockdown_name(requested)) + " requested: " + p.mismatch;
  return p;
}

nlohmann::json lockdown_json(const LockdownProof& p) {
  return {
      {"requested", lockdown_name(p.requested)},
      {"observed", p.observed},
      {"lsm_listed", p.lsm_listed},
      {"canary", {{"loaded", p.canary_loaded}, {"error", p.canary_error}, {"verifier", p.canary_verifier}}},
      {"dmesg", p.dmesg_lockdown},
      {"proven", p.consistent},
      {"mismatch", p.mismatch}};
}

}  // namespace kgate::run
