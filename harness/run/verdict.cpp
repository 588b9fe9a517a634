#include "run/verdict.hpp"

#include <map>

#include "channel/fields.hpp"
#include "core/strings.hpp"

namespace kgate::run {

using channel::get_array;
using channel::get_bool;
using channel::get_int;
using channel::get_string;
using nlohmann::json;

namespace {
// Event records carry the program name in 16 bytes, NUL-terminated.
constexpr size_t event_name_len = 15;
}  // namespace

Judgement judge(const Observations& obs) {
  Judgement out;
  std::map<std::string, report::ProgramResult> by_name;
  std::vector<std::string> order;
  for (const auto& p : get_array(obs.load, "programs")) {
    report::ProgramResult pr;
    pr.name = get_string(p, "name");
    if (pr.name.empty() || by_name.contains(pr.name)) continue;
    pr.section = get_string(p, "section");
    pr.type = get_string(p, "type");
    pr.loaded = get_bool(p, "loaded");
    if (auto v = get_int(p, "verified_insns")) pr.verified_insns = static_cast<std::uint32_t>(*v);
    if (auto v = get_int(p, "xlated_insns")) pr.xlated_insns = static_cast<std::uint32_t>(*v);
    pr.required = obs.count;
    if (!pr.loaded) {
      pr.error = get_string(obs.load, "error", "not loaded");
      // Name a lockdown refusal that concerns BPF reading, if the kernel logged one.
      // The write-user line is the canary's own refusal, no evidence about this program.
      for (const auto& l : obs.lockdown_refusals) {
        if (l.find("bpf") != std::string::npos && l.find("write user RAM") == std::string::npos) {
          pr.error = "refused under lockdown=" + obs.lockdown_level + " (" + l + "): " + pr.error;
          break;
        }
      }
    }
    order.push_back(pr.name);
    by_name[pr.name] = pr;
  }
  for (const auto& p : get_array(obs.attach, "programs")) {
    auto it = by_name.find(get_string(p, "name"));
    if (it == by_name.end()) continue;
    it->second.attached = get_bool(p, "attached");
    if (!it->second.attached) it->second.error = "attach: " + get_string(p, "error", "failed");
  }
  for (const auto& p : get_array(obs.flush, "programs")) {
    auto it = by_name.find(get_string(p, "name"));
    if (it == by_name.end()) continue;
    if (auto v = get_int(p, "run_cnt"); v && *v >= 0) it->second.run_count = static_cast<std::uint64_t>(*v);
  }
  const auto agent_pid = get_int(obs.hello, "pid");
  for (const auto& ev : get_array(obs.flush, "events")) {
    const std::string prog = get_string(ev, "prog");
    for (auto& [name, pr] : by_name) {
      if (prog.empty() || name.substr(0, event_name_len) != prog) continue;
      ++pr.events;
      const auto tgid = get_int(ev, "tgid");
      if (get_string(ev, "nonce") == obs.nonce && !obs.nonce.empty() && agent_pid && tgid == agent_pid &&
          get_int(ev, "core_tgid") == tgid) {
        ++pr.nonce_matched;
      }
    }
  }

  std::vector<std::string> problems;
  if (order.empty()) problems.push_back(get_string(obs.load, "error", "the object has no programs"));
  for (const auto& name : order) {
    auto& pr = by_name[name];
    if (!pr.passed()) {
      if (pr.error.empty()) {
        pr.error = strprintf("fired %d times with this run's nonce, needs %d", pr.nonce_matched, pr.required);
      }
      problems.push_back(name + ": " + pr.error);
    }
    out.programs.push_back(pr);
  }
  const bool loaded = get_bool(obs.load, "ok");
  if (loaded && !get_bool(obs.trigger, "ok")) {
    problems.push_back("trigger: " +
                       get_string(obs.trigger, "error", "the agent did not confirm the triggers"));
  }
  if (auto dropped = get_int(obs.flush, "dropped"); dropped && *dropped > 0) {
    problems.push_back(strprintf("the agent dropped %lld events", static_cast<long long>(*dropped)));
  }
  if (!loaded && !get_string(obs.load, "log").empty())
    problems.push_back("verifier: " + get_string(obs.load, "log"));
  if (obs.detach.is_object() && obs.detach.contains("left") && obs.detach["left"].is_object()) {
    const json& left = obs.detach["left"];
    out.leftovers = {{"programs", get_array(left, "programs")}, {"links", get_array(left, "links")}};
    if (!out.leftovers["programs"].empty() || !out.leftovers["links"].empty()) {
      problems.push_back("left behind in the guest: " + out.leftovers.dump());
    }
  } else if (loaded) {
    problems.push_back("the agent reported nothing about what it left behind");
  }
  if (!obs.canary_detach.is_null()) {
    const json* left = obs.canary_detach.is_object() && obs.canary_detach.contains("left")
                           ? &obs.canary_detach["left"]
                           : nullptr;
    if (!left || !left->is_object()) {
      problems.push_back("the agent reported nothing about what the lockdown canary left behind");
    } else if (!get_array(*left, "programs").empty() || !get_array(*left, "links").empty()) {
      problems.push_back("the lockdown canary left behind in the guest: " + left->dump());
    }
  }
  const std::string release = get_string(obs.hello, "release");
  if (!obs.expected_release.empty() && release != obs.expected_release) {
    problems.push_back("the guest runs " + release + ", the entry's package ships " + obs.expected_release);
  }
  if (problems.empty()) {
    out.verdict = FailureClass::pass;
  } else {
    out.verdict = FailureClass::gate_failed;
    for (const auto& p : problems) out.message += (out.message.empty() ? "" : "; ") + p;
  }
  return out;
}

}  // namespace kgate::run
