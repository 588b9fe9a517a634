#pragma once

#include <bpf/libbpf.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"

struct kgate_event;

namespace kgate::agent {

// One gate object in the guest: opened from the bytes the host sent, loaded,
// attached, triggered and flushed, then closed. Owns the bpf_object, its links and
// the ring buffer; members are declared so that the ring buffer and links go
// before the object they belong to.
class BpfSession {
 public:
  BpfSession() = default;
  BpfSession(const BpfSession&) = delete;
  BpfSession& operator=(const BpfSession&) = delete;
  ~BpfSession() { close(); }

  // Each returns the JSON response body; failures are reported in it ("ok": false),
  // since a refused program is an observation to report, not an agent error.
  nlohmann::json load(const std::string& name, const std::string& bytes);
  // Keeps BTF the host sent (--btf) for every later load's CO-RE relocations,
  // for kernels built without CONFIG_DEBUG_INFO_BTF.
  nlohmann::json set_btf(const std::string& bytes);
  nlohmann::json attach();
  nlohmann::json trigger(std::uint64_t nonce, int count);
  nlohmann::json flush();
  // Destroys links and the object, then walks the kernel's program and link IDs
  // until none that this session created is left (or a deadline passes).
  nlohmann::json detach();

 private:
  struct ObjectDeleter {
    void operator()(bpf_object* o) const { bpf_object__close(o); }
  };
  struct LinkDeleter {
    void operator()(bpf_link* l) const { bpf_link__destroy(l); }
  };
  struct RingDeleter {
    void operator()(ring_buffer* r) const { ring_buffer__free(r); }
  };

  void close();
  static int on_event(void* ctx, void* data, size_t size);

  std::unique_ptr<bpf_object, ObjectDeleter> object_;
  std::vector<std::unique_ptr<bpf_link, LinkDeleter>> links_;
  std::unique_ptr<ring_buffer, RingDeleter> ring_;
  std::vector<std::uint32_t> prog_ids_;
  std::vector<std::uint32_t> link_ids_;
  nlohmann::json events_ = nlohmann::json::array();
  std::uint64_t dropped_ = 0;
  std::string btf_path_;  // empty: the kernel's own /sys/kernel/btf/vmlinux
};

}  // namespace kgate::agent

// The uprobe target: the built-in probe attaches to it through /proc/self/exe.
extern "C" void kgate_uprobe_target(std::uint64_t nonce);
