#include "agent/bpf_session.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstring>
#include <thread>

#include <linux/types.h>
#include "core/strings.hpp"
#include "kgate_event.h"

extern "C" __attribute__((noinline, used)) void kgate_uprobe_target(std::uint64_t nonce) {
  // Keep the call and its argument: the compiler must not inline or drop it.
  asm volatile("" : : "r"(nonce) : "memory");
}

namespace kgate::agent {
namespace {

// libbpf reports through a global print callback; collect what it says while a
// call is in progress so the verifier log reaches the host.
std::string* g_log = nullptr;

int print_to_log(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!g_log || level == LIBBPF_DEBUG) return 0;
  // libbpf prints a whole verifier log as one message, its reason last: keep all of it.
  va_list again;
  va_copy(again, args);
  int n = std::vsnprintf(nullptr, 0, fmt, args);
  if (n > 0) {
    std::string text(static_cast<size_t>(n), '\0');
    std::vsnprintf(text.data(), text.size() + 1, fmt, again);
    g_log->append(text);
  }
  va_end(again);
  if (g_log->size() > (1 << 20)) g_log->erase(0, g_log->size() - (1 << 20));
  return 0;
}

class LogCapture {
 public:
  LogCapture() {
    g_log = &text;
    libbpf_set_print(print_to_log);
  }
  ~LogCapture() { g_log = nullptr; }
  std::string text;
};

std::string hex64(std::uint64_t v) {
  return kgate::strprintf("%016llx", static_cast<unsigned long long>(v));
}

nlohmann::json error_json(std::string what, int err) {
  return {{"ok", false}, {"error", std::move(what) + ": " + std::strerror(err)}, {"errno", err}};
}

std::uint32_t link_id(int fd) {
  bpf_link_info info{};
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return 0;
  return info.id;
}

template <class Next>
std::vector<std::uint32_t> live_ids(Next next) {
  std::vector<std::uint32_t> ids;
  __u32 id = 0;
  while (next(id, &id) == 0) ids.push_back(id);
  return ids;
}

}  // namespace

nlohmann::json BpfSession::load(const std::string& name, const std::string& bytes) {
  close();
  LogCapture log;
  // Run statistics (run_cnt, run_time_ns) are only counted while this sysctl is on.
  if (FILE* f = std::fopen("/proc/sys/kernel/bpf_stats_enabled", "w")) {
    std::fputs("1", f);
    std::fclose(f);
  }
  LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name.c_str(),
              .btf_custom_path = btf_path_.empty() ? nullptr : btf_path_.c_str());
  bpf_object* obj = bpf_object__open_mem(bytes.data(), bytes.size(), &opts);
  if (!obj) {
    auto r = error_json("open object " + name, errno);
    r["log"] = log.text;
    return r;
  }
  object_.reset(obj);
  nlohmann::json programs = nlohmann::json::array();
  int err = bpf_object__load(obj);
  int load_errno = err ? -err : 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    nlohmann::json p = {{"name", bpf_program__name(prog)},
                        {"section", bpf_program__section_name(prog)},
                        {"type", libbpf_bpf_prog_type_str(bpf_program__type(prog))}};
    int fd = bpf_program__fd(prog);
    p["loaded"] = fd >= 0;
    if (fd >= 0) {
      bpf_prog_info info{};
      __u32 len = sizeof info;
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
        p["prog_id"] = info.id;
        p["xlated_insns"] = info.xlated_prog_len / 8;
        p["verified_insns"] = info.verified_insns;
        prog_ids_.push_back(info.id);
      }
    }
    programs.push_back(std::move(p));
  }
  nlohmann::json r = {{"ok", err == 0}, {"programs", programs}, {"log", log.text}};
  if (err) {
    r["error"] = std::string("load: ") + std::strerror(load_errno);
    r["errno"] = load_errno;
    return r;
  }
  if (bpf_map* events = bpf_object__find_map_by_name(obj, "events")) {
    ring_.reset(ring_buffer__new(bpf_map__fd(events), on_event, this, nullptr));
    if (!ring_) return error_json("ring_buffer__new", errno);
  }
  return r;
}

nlohmann::json BpfSession::set_btf(const std::string& bytes) {
  const char* path = "/tmp/kgate-custom.btf";
  ::mkdir("/tmp", 01777);
  FILE* f = std::fopen(path, "wb");
  if (!f) return error_json("create " + std::string(path), errno);
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return error_json("write " + std::string(path), errno);
  btf_path_ = path;
  return {{"ok", true}, {"bytes", bytes.size()}};
}

nlohmann::json BpfSession::attach() {
  if (!object_) return {{"ok", false}, {"error", "no object loaded"}};
  LogCapture log;
  nlohmann::json programs = nlohmann::json::array();
  bool all = true;
  bpf_program* prog;
  bpf_object__for_each_program(prog, object_.get()) {
    nlohmann::json p = {{"name", bpf_program__name(prog)}};
    bpf_link* link = bpf_program__attach(prog);
    if (!link) {
      int e = errno;
      all = false;
      p["attached"] = false;
      p["error"] = std::strerror(e);
      p["errno"] = e;
    } else {
      links_.emplace_back(link);
      p["attached"] = true;
      if (std::uint32_t id = link_id(bpf_link__fd(link))) {
        p["link_id"] = id;
        link_ids_.push_back(id);
      }
    }
    programs.push_back(std::move(p));
  }
  return {{"ok", all}, {"programs", programs}, {"log", log.text}};
}

nlohmann::json BpfSession::trigger(std::uint64_t nonce, int count) {
  if (!object_) return {{"ok", false}, {"error", "no object loaded"}};
  if (bpf_map* m = bpf_object__find_map_by_name(object_.get(), "kgate_nonce")) {
    __u32 key = 0;
    if (bpf_map_update_elem(bpf_map__fd(m), &key, &nonce, BPF_ANY) != 0) {
      return error_json("set kgate_nonce", errno);
    }
  }
  for (int i = 0; i < count; ++i) {
    // The raw syscall: the C library may answer getpid() without entering the kernel.
    ::syscall(SYS_getpid);
    kgate_uprobe_target(nonce);
  }
  return {{"ok", true}, {"getpid_calls", count}, {"uprobe_calls", count}};
}

int BpfSession::on_event(void* ctx, void* data, size_t size) {
  auto* self = static_cast<BpfSession*>(ctx);
  if (size < sizeof(kgate_event)) {
    ++self->dropped_;
    return 0;
  }
  if (self->events_.size() >= 65536) {
    ++self->dropped_;
    return 0;
  }
  kgate_event e;
  std::memcpy(&e, data, sizeof e);
  e.prog[sizeof e.prog - 1] = '\0';
  self->events_.push_back({{"prog", e.prog},
                           {"nonce", hex64(e.nonce)},
                           {"tgid", e.tgid},
                           {"core_tgid", e.core_tgid},
                           {"syscall_nr", e.syscall_nr}});
  return 0;
}

nlohmann::json BpfSession::flush() {
  if (!object_) return {{"ok", false}, {"error", "no object loaded"}};
  if (ring_ && ring_buffer__consume(ring_.get()) < 0) return error_json("ring_buffer__consume", errno);
  nlohmann::json stats = nlohmann::json::array();
  bpf_program* prog;
  bpf_object__for_each_program(prog, object_.get()) {
    bpf_prog_info info{};
    __u32 len = sizeof info;
    int fd = bpf_program__fd(prog);
    if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
      stats.push_back(
          {{"name", bpf_program__name(prog)}, {"run_cnt", info.run_cnt}, {"run_time_ns", info.run_time_ns}});
    }
  }
  nlohmann::json r = {
      {"ok", true}, {"events", std::move(events_)}, {"dropped", dropped_}, {"programs", stats}};
  events_ = nlohmann::json::array();
  dropped_ = 0;
  return r;
}

nlohmann::json BpfSession::detach() {
  std::vector<std::uint32_t> progs = prog_ids_, links = link_ids_;
  auto start = std::chrono::steady_clock::now();
  close();
  double close_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  // Programs and links are freed after an RCU grace period: poll until ours are gone.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  nlohmann::json left_progs, left_links;
  for (;;) {
    left_progs = nlohmann::json::array();
    left_links = nlohmann::json::array();
    for (auto id : live_ids(bpf_prog_get_next_id))
      if (std::find(progs.begin(), progs.end(), id) != progs.end()) left_progs.push_back(id);
    for (auto id : live_ids(bpf_link_get_next_id))
      if (std::find(links.begin(), links.end(), id) != links.end()) left_links.push_back(id);
    if ((left_progs.empty() && left_links.empty()) || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  double total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return {{"ok", true},
          {"close_ms", close_ms},
          {"wait_ms", total_ms - close_ms},
          {"created", {{"programs", progs}, {"links", links}}},
          {"left", {{"programs", left_progs}, {"links", left_links}}}};
}

void BpfSession::close() {
  prog_ids_.clear();
  link_ids_.clear();
  ring_.reset();
  links_.clear();
  object_.reset();
  events_ = nlohmann::json::array();
  dropped_ = 0;
}

}  // namespace kgate::agent
