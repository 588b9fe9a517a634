#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "channel/protocol.hpp"
#include "core/unique_fd.hpp"

namespace kgate::agent {

// A user's own loader, run by the agent: it loads and attaches its programs itself, and the agent
// watches the kernel's lists of programs and links for what appeared since it started. At most one
// runs at a time; the destructor kills one still running.
class Loader {
 public:
  Loader() = default;
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  ~Loader();

  // Starts it (stdout and stderr into one pipe, kept as a tail) and polls until every wanted
  // program is in the kernel's list with its type (and a link, when wanted), or the ready line was
  // printed, or the loader exited, or the deadline passed.
  proto::LoaderResponse start(const proto::LoaderStartRequest& req);
  // The programs it created, as the kernel shows them now.
  proto::LoaderResponse stats();
  // SIGTERM, up to `grace_ms`, then SIGKILL; then waits (up to 5 s) for every program and link it
  // created to be freed, and reports what is left.
  proto::LoaderResponse stop(int grace_ms);
  // The read end of its output pipe while it is open (-1 otherwise), and the read of what it
  // holds: the agent's loop watches the pipe between requests, so that a loader that prints a lot
  // never blocks on a full pipe.
  int output_fd() const { return out_.get(); }
  void pump_output();

 private:
  bool reap();  // true once the loader has exited (status_ kept)
  std::vector<proto::KernelProgram> created();
  void fill(proto::LoaderResponse& r);

  pid_t pid_ = -1;
  UniqueFd out_;
  std::string output_;   // the tail of what it printed
  std::string pending_;  // the line being printed, for the ready line
  bool line_seen_ = false;
  std::string ready_line_;
  // This run's nonce, looked for in all of its output (not only the tail kept), or in a file it
  // writes, or in a map it pins (as nonce_bytes_ at nonce_offset_ of a value).
  void look_for_nonce();
  bool nonce_in_output() const { return !nonce_.empty() && nonce_file_.empty() && nonce_map_.empty(); }
  std::string nonce_;
  std::string nonce_file_, nonce_map_, nonce_bytes_;
  std::uint32_t nonce_offset_ = 0;
  bool nonce_seen_ = false;
  bool exited_ = false;
  int status_ = 0;
  std::set<std::uint32_t> before_programs_, before_links_;
  std::set<std::uint32_t> seen_programs_, seen_links_;
};

}  // namespace kgate::agent
