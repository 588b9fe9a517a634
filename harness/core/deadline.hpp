#pragma once

#include <algorithm>
#include <chrono>

namespace kgate {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// A point in time by which a wait must end. Every blocking call takes one.
class Deadline {
 public:
  explicit Deadline(Clock::duration budget) : budget_(budget), at_(Clock::now() + budget) {}

  bool expired() const { return Clock::now() >= at_; }
  // Milliseconds left, rounded up, for poll(); 0 when expired.
  int poll_ms() const {
    auto left = std::chrono::ceil<Millis>(at_ - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
  }
  Clock::duration budget() const { return budget_; }
  Clock::time_point at() const { return at_; }
  double budget_seconds() const { return std::chrono::duration<double>(budget_).count(); }

 private:
  Clock::duration budget_;
  Clock::time_point at_;
};

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace kgate
