#include "error.hpp"

#include <cstring>

namespace kgate {

std::optional<FailureClass> class_named(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(FailureClass::interrupted); ++i) {
    auto c = static_cast<FailureClass>(i);
    if (class_name(c) == name) return c;
  }
  return std::nullopt;
}

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

std::string exit_code_table() {
  struct Row {
    FailureClass cls;
    const char* meaning;
  };
  static constexpr Row rows[] = {
      {FailureClass::pass,
       "every program loaded, attached and fired often enough with this run's nonce; lockdown as asked; a "
       "clean console"},
      {FailureClass::gate_failed,
       "the guest answered everything, and the result is a failure (or the console shows a kernel splat)"},
      {FailureClass::usage,
       "bad command line, catalog, matrix, kernel file, OCI image, module set, or a kernel config that "
       "cannot "
       "run the gate"},
      {FailureClass::kernel_panic, "the guest kernel panicked"},
      {FailureClass::boot_hang, "no hello from the agent before the boot deadline"},
      {FailureClass::timeout, "a request, the power-off or a fetch command ran past its deadline"},
      {FailureClass::infra, "QEMU missing or died, apt or skopeo failed, a host I/O error"},
      {FailureClass::digest_mismatch,
       "a cached, downloaded or OCI file does not match its sha256 or pin; `kgate digest`: a BPF object "
       "differs from `bpf/digests.lock`"},
      {FailureClass::lockdown_mismatch, "the guest's lockdown level is not the one asked for"},
      {FailureClass::agent_crash, "the guest agent (PID 1) died or gave up"},
      {FailureClass::no_verdict, "the guest's answers stopped making sense while QEMU kept running"},
      {FailureClass::interrupted, "kgate got SIGINT, SIGTERM or SIGHUP"},
  };
  std::string out = "| code | class | meaning |\n|---|---|---|\n";
  for (const Row& r : rows)
    out += "| " + std::to_string(exit_code(r.cls)) + " | `" + std::string(class_name(r.cls)) + "` | " +
           r.meaning + " |\n";
  return out;
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
