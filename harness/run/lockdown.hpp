#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kgate::run {

enum class Lockdown { none, integrity, confidentiality };
std::optional<Lockdown> parse_lockdown(std::string_view name);
std::string_view lockdown_name(Lockdown l);

// What the guest showed about lockdown, three ways, against what was requested:
// the bracketed level in securityfs, "lockdown" in the active LSM list, and the
// canary object (bpf_probe_write_user), which must be refused at load under
// integrity and confidentiality and must load without lockdown. The bracketed
// level alone does not prove enforcement; the canary does.
struct LockdownProof {
  Lockdown requested = Lockdown::none;
  std::string observed;  // "none", "integrity", "confidentiality", or "unavailable" (no securityfs file)
  bool lsm_listed = false;
  bool canary_loaded = false;
  std::string canary_error;                 // the agent's load error, when refused
  std::string canary_verifier;              // verifier lines naming the refused helper
  std::vector<std::string> dmesg_lockdown;  // the kernel's "Lockdown:" lines
  bool consistent = false;
  std::string mismatch;  // why not, when not
};

// Pure. `hello` and `canary_load` are the agent's (untrusted) reports; `dmesg` its kernel log.
LockdownProof prove_lockdown(Lockdown requested, const nlohmann::json& hello,
                             const nlohmann::json& canary_load, std::string_view dmesg);
nlohmann::json lockdown_json(const LockdownProof& proof);
// The bracketed word of a securityfs lockdown line ("none [integrity] confidentiality"), or "".
std::string bracketed_level(std::string_view line);
// The kernel log's lines that carry "Lockdown:", timestamps stripped.
std::vector<std::string> lockdown_lines(std::string_view dmesg);

}  // namespace kgate::run
