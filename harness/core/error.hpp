#pragma once

#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kgate {

// The failure classes of DESIGN.md. Each has its own exit code (docs/exit-codes.md);
// a run that ends without a verdict is never `pass`.
enum class FailureClass {
  pass,
  gate_failed,  // verifier reject, attach failure, did not fire, leftovers
  usage,        // bad command line, catalog or input file
  kernel_panic,
  boot_hang,        // no hello from the agent before the boot deadline
  timeout,          // the agent stopped answering a request in time
  infra,            // qemu missing, crashed or killed; host I/O failures
  digest_mismatch,  // a cached or supplied artifact does not match its sha256
  lockdown_mismatch,
  agent_crash,  // the guest agent died (PID 1 exited)
  no_verdict,   // the guest went away without a complete result
  interrupted,  // SIGINT, SIGTERM or SIGHUP
};

std::string_view class_name(FailureClass c);
std::optional<FailureClass> class_named(std::string_view name);  // the class class_name() names
int exit_code(FailureClass c);
// What each class means to a user, in exit-code order: the table `kgate help exit-codes` prints
// and docs/exit-codes.md holds (a unit test keeps the two the same).
std::string exit_code_table();

// An error: its class, errno where there is one, and a chain of context from
// the outermost layer inward ("boot debian-6.1: connect virtio-serial: timed out").
class Error {
 public:
  Error(FailureClass cls, std::string message, int err = 0)
      : cls_(cls), err_(err), chain_{std::move(message)} {}

  FailureClass cls() const { return cls_; }
  int err() const { return err_; }
  std::string describe() const;

  Error& context(std::string outer) & {
    chain_.insert(chain_.begin(), std::move(outer));
    return *this;
  }
  Error&& context(std::string outer) && {
    chain_.insert(chain_.begin(), std::move(outer));
    return std::move(*this);
  }
  Error& reclass(FailureClass cls) & {
    cls_ = cls;
    return *this;
  }
  Error&& reclass(FailureClass cls) && {
    cls_ = cls;
    return std::move(*this);
  }

 private:
  FailureClass cls_;
  int err_;
  std::vector<std::string> chain_;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(FailureClass cls, std::string message, int err = 0) {
  return std::unexpected<Error>(Error(cls, std::move(message), err));
}

// An errno-carrying infra error: "open /x: No such file or directory".
std::unexpected<Error> fail_errno(std::string what, int err);

// Adds context to the error of a failed result, passing a success through.
template <class R>
R with_context(R&& r, std::string outer) {
  if (!r) r.error().context(std::move(outer));
  return std::forward<R>(r);
}

}  // namespace kgate
