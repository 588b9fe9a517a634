#pragma once

#include <bpf/libbpf.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "channel/protocol.hpp"
#include "core/unique_fd.hpp"

namespace kgate::agent {

// The ids the kernel holds now, from bpf_prog_get_next_id or bpf_link_get_next_id.
template <class Next>
std::vector<std::uint32_t> live_ids(Next next) {
  std::vector<std::uint32_t> ids;
  __u32 id = 0;
  while (next(id, &id) == 0) ids.push_back(id);
  return ids;
}

// Programs and links are freed after an RCU grace period: waits (polling, up to `limit`) until
// none of these ids is alive, and returns those still alive.
struct StillAlive {
  std::vector<std::uint32_t> programs, links;
};
StillAlive wait_until_freed(const std::vector<std::uint32_t>& programs,
                            const std::vector<std::uint32_t>& links, std::chrono::milliseconds limit);

// One BPF object in the guest: the bpf_object libbpf loaded and the links attached to its
// programs. Members are declared so that the links go before the object they belong to.
struct LoadedObject {
  struct ObjectDeleter {
    void operator()(bpf_object* o) const { bpf_object__close(o); }
  };
  struct LinkDeleter {
    void operator()(bpf_link* l) const { bpf_link__destroy(l); }
  };
  struct Link {
    std::string program;
    std::unique_ptr<bpf_link, LinkDeleter> link;
  };
  std::unique_ptr<bpf_object, ObjectDeleter> object;
  std::vector<Link> links;
  std::vector<std::uint32_t> prog_ids;  // what this object created, for the leftover check
  std::vector<std::uint32_t> link_ids;
};

// The agent's handle table: the objects the host loaded, by handle. Each op takes its typed
// request and answers its typed response; a refused program or a failed attach is an
// observation to report, never an agent error. Generic: nothing here knows any object's
// programs, maps or record layout.
class ObjectTable {
 public:
  ObjectTable() = default;
  ObjectTable(const ObjectTable&) = delete;
  ObjectTable& operator=(const ObjectTable&) = delete;

  // Keeps BTF the host sent (--btf, or the minimized BTF) for every later load's CO-RE
  // relocations; an empty one returns to the kernel's own.
  proto::Ack set_btf(const std::string& bytes);
  // Loads an object, one verdict per program: a rejected program is recorded, its autoload
  // turned off, and the rest loaded again (as veristat does), then it is loaded once more alone
  // with a full verifier log for the failing instruction.
  proto::LoadResponse load(const proto::LoadRequest& req, const std::string& bytes);
  proto::AttachResponse attach(const proto::AttachRequest& req);
  proto::TriggerResponse trigger(const proto::TriggerRequest& req);
  // The records of every ring buffer of the object (the body), run counts and map values.
  proto::DrainResponse drain(const proto::DrainRequest& req, std::string& body);
  // Destroys the object's links and the object, then waits (bounded) for the kernel to free
  // every program and link it created, and reports what is left.
  proto::DetachResponse detach(int handle);
  // Pins every loaded object's loaded programs, maps and links under `dir`, as
  // <dir>/<object>/{programs,maps,links}/<name>, for a shell to look at; returns how many were
  // pinned and says in `problems` what could not be.
  int pin_all(const std::string& dir, std::vector<std::string>& problems);
  // Turns BPF run statistics on (sysctl, else BPF_ENABLE_STATS, whose fd keeps them on).
  bool enable_stats();

 private:
  LoadedObject* find(int handle);

  std::map<int, std::unique_ptr<LoadedObject>> objects_;
  int next_handle_ = 1;
  std::string btf_path_;  // empty: the kernel's own /sys/kernel/btf/vmlinux
  UniqueFd stats_fd_;
  bool stats_on_ = false;
};

// Brings the loopback interface up, once, when something first may use the network: the tcp and
// udp triggers, a command or call trigger, a test run, a loader, a shell. Not at start: under TCG
// it costs about 18 ms (IPv6 address setup), which a spec with no such use need not pay.
void loopback_up();

}  // namespace kgate::agent

// The uprobe target: the built-in probe attaches to it through /proc/self/exe.
extern "C" void kgate_uprobe_target(std::uint64_t nonce);
