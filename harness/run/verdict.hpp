#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "report/receipt.hpp"

namespace kgate::run {

// What the agent reported during one run, as received (untrusted), and what
// this run asked for.
struct Observations {
  nlohmann::json hello;
  nlohmann::json load;
  nlohmann::json attach;
  nlohmann::json trigger;
  nlohmann::json flush;
  nlohmann::json detach;
  nlohmann::json canary_detach;                // the lockdown canary's unload report; null if never loaded
  std::string nonce;                           // this run's nonce, 16 hex digits
  int count = 0;                               // triggers per program
  std::string expected_release;                // from the package; empty: not checked
  std::vector<std::string> lockdown_refusals;  // the kernel's "Lockdown:" lines
  std::string lockdown_level;                  // as observed in the guest
};

struct Judgement {
  FailureClass verdict = FailureClass::no_verdict;
  std::string message;  // every problem found, "; "-separated
  std::vector<report::ProgramResult> programs;
  nlohmann::json leftovers;  // null when the agent never reported them
};

// Pure: the verdict from the observations. A program passes only if it loaded,
// attached, and at least `count` of its events carry this run's nonce, the
// agent's tgid, and a CO-RE-read tgid equal to it, so that a replayed or canned
// report cannot pass. A program refused at load while the kernel logged
// lockdown refusals is reported as refused under lockdown. Anything left behind, or a guest that runs another
// kernel than the package ships, fails the gate.
Judgement judge(const Observations& obs);

}  // namespace kgate::run
