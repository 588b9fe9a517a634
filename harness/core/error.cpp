#include "error.hpp"

#include <cstring>

namespace kgate {

std::string_view class_name(FailureClass c) {
  switch (c) {
    case FailureClass::pass: return "pass";
    case FailureClass::gate_failed: return "gate_failed";
    case FailureClass::usage: return "usage";
    case FailureClass::kernel_panic: return "kernel_panic";
    case FailureClass::boot_hang: return "boot_hang";
    case FailureClass::timeout: return "timeout";
    case FailureClass::infra: return "infra";
    case FailureClass::digest_mismatch: return "digest_mismatch";
    case FailureClass::lockdown_mismatch: return "lockdown_mismatch";
    case FailureClass::agent_crash: return "agent_crash";
    case FailureClass::no_verdict: return "no_verdict";
    case FailureClass::interrupted: return "interrupted";
  }
  return "unknown";
}

int exit_code(FailureClass c) {
  switch (c) {
    case FailureClass::pass: return 0;
    case FailureClass::gate_failed: return 1;
    case FailureClass::usage: return 2;
    case FailureClass::kernel_panic: return 3;
    case FailureClass::boot_hang: return 4;
    case FailureClass::timeout: return 5;
    case FailureClass::infra: return 6;
    case FailureClass::digest_mismatch: return 7;
    case FailureClass::lockdown_mismatch: return 8;
    case FailureClass::agent_crash: return 9;
    case FailureClass::no_verdict: return 10;
    case FailureClass::interrupted: return 130;
  }
  return 6;
}

std::string Error::describe() const {
  std::string out;
  for (const auto& part : chain_) {
    if (!out.empty()) out += ": ";
    out += part;
  }
  return out;
}

std::unexpected<Error> fail_errno(std::string what, int err) {
  return fail(FailureClass::infra, std::move(what) + ": " + std::strerror(err), err);
}

}  // namespace kgate
