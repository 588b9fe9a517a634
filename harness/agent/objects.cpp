#include "agent/objects.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>

extern char** environ;

extern "C" __attribute__((noinline, used)) void kgate_uprobe_target(std::uint64_t nonce) {
  // Keep the call and its argument: the compiler must not inline or drop it.
  asm volatile("" : : "r"(nonce) : "memory");
}

namespace kgate::agent {
namespace {

using Clock = std::chrono::steady_clock;

// libbpf reports through a global print callback; collect what it says while a call is in
// progress (warnings and info: CO-RE relocation failures, attach target lookups).
std::string* g_log = nullptr;

int print_to_log(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!g_log || level == LIBBPF_DEBUG) return 0;
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

std::string tail(const std::string& s, std::size_t n) {
  return s.size() <= n ? s : s.substr(s.size() - n);
}

// libbpf's own codes (LIBBPF_ERRNO__FORMAT and the rest, from 4000) as words, errno values too.
std::string strerr(int e) {
  char buf[256];
  if (libbpf_strerror(e, buf, sizeof buf) == 0) return buf;
  return std::strerror(e);
}

// The first thing libbpf warned about: the cause, where the lines after it are consequences
// ("failed to parse target BTF", then "failed to perform CO-RE relocations", then "failed to
// load object").
std::string first_line(const std::string& log) {
  std::string_view rest(log);
  while (!rest.empty()) {
    std::size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    if (line.starts_with("libbpf: ")) line.remove_prefix(8);
    if (!line.empty()) return std::string(line.substr(0, 512));
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return {};
}

// The lines of libbpf's messages that name program `name` ("prog 'name': ...").
std::string lines_about(const std::string& log, const std::string& name) {
  const std::string tag = "prog '" + name + "'";
  std::string out;
  std::size_t pos = 0;
  while (pos < log.size()) {
    std::size_t end = log.find('\n', pos);
    if (end == std::string::npos) end = log.size();
    std::string_view line(log.data() + pos, end - pos);
    if (line.find(tag) != std::string_view::npos) out.append(line).push_back('\n');
    pos = end + 1;
  }
  return out;
}

// The program libbpf says it could not load: "prog 'NAME': failed to load" (libbpf 1.x), or
// "prog 'NAME': BPF program load failed", whichever comes first.
std::string failed_program(const std::string& log) {
  for (const char* marker :
       {"': failed to load", "': BPF program load failed", "': failed to prepare load"}) {
    std::size_t at = log.find(marker);
    if (at == std::string::npos) continue;
    std::size_t start = log.rfind("prog '", at);
    if (start == std::string::npos) continue;
    return log.substr(start + 6, at - start - 6);
  }
  return {};
}

std::uint64_t boottime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint32_t link_id(int fd) {
  bpf_link_info info{};
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return 0;
  return info.id;
}

// Sets a `const volatile` global of .rodata before load: finds the variable in the object's BTF
// (the .rodata DATASEC) and writes the value into the map's initial image.
std::string set_rodata_u64(bpf_object* obj, const std::string& var, std::uint64_t value) {
  const btf* b = bpf_object__btf(obj);
  if (!b) return "the object has no BTF to find '" + var + "' in";
  bpf_map* rodata = bpf_object__find_map_by_name(obj, ".rodata");
  if (!rodata) return "the object has no .rodata for '" + var + "'";
  int sec_id = btf__find_by_name_kind(b, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) return "no .rodata section in the object's BTF";
  const btf_type* sec = btf__type_by_id(b, static_cast<__u32>(sec_id));
  const btf_var_secinfo* vs = btf_var_secinfos(sec);
  for (int i = 0; i < btf_vlen(sec); ++i, ++vs) {
    const btf_type* v = btf__type_by_id(b, vs->type);
    if (!v || var != btf__name_by_offset(b, v->name_off)) continue;
    if (vs->size != sizeof value) return "'" + var + "' is not 8 bytes";
    size_t size = 0;
    const void* data = bpf_map__initial_value(rodata, &size);
    if (!data || vs->offset + sizeof value > size) return "cannot write '" + var + "' in .rodata";
    std::string image(static_cast<const char*>(data), size);
    std::memcpy(image.data() + vs->offset, &value, sizeof value);
    if (bpf_map__set_initial_value(rodata, image.data(), image.size()) != 0)
      return "cannot set .rodata: " + strerr(errno);
    return {};
  }
  return "no global '" + var + "' in .rodata";
}

// One attempt at loading the object: opened, options applied, loaded.
struct Attempt {
  std::unique_ptr<bpf_object, LoadedObject::ObjectDeleter> object;
  int err = 0;  // bpf_object__load's, or open's
  std::string open_error;
  std::string libbpf;
  std::map<std::string, std::string> logs;  // per program: the verifier log of this attempt
};

constexpr std::size_t stats_log_bytes = 64 * 1024;
constexpr std::size_t full_log_bytes = 16 << 20;

struct LoadSetup {
  const std::string* bytes;
  const proto::LoadRequest* req;
  const std::string* btf_path;
};

// Opens and loads with only the programs `enabled` names autoloaded, each at `log_level` into its
// own buffer.
Attempt attempt_load(const LoadSetup& s, const std::function<bool(const std::string&)>& enabled,
                     unsigned log_level, std::size_t log_bytes) {
  Attempt a;
  LogCapture log;
  LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = s.req->name.c_str(),
              .btf_custom_path = s.btf_path->empty() ? nullptr : s.btf_path->c_str());
  bpf_object* obj = bpf_object__open_mem(s.bytes->data(), s.bytes->size(), &opts);
  if (!obj) {
    a.err = errno;
    a.open_error = "open: " + strerr(a.err);
    a.libbpf = log.text;
    return a;
  }
  a.object.reset(obj);
  if (!s.req->nonce_global.empty()) {
    std::uint64_t nonce = std::strtoull(s.req->nonce.c_str(), nullptr, 16);
    if (auto why = set_rodata_u64(obj, s.req->nonce_global, nonce); !why.empty()) {
      a.err = EINVAL;
      a.open_error = "nonce: " + why;
      a.libbpf = log.text;
      return a;
    }
  }
  // Not zero-filled: the kernel writes a NUL-terminated log, and pages it does not touch are
  // never faulted in (zeroing 16 MiB costs tens of milliseconds under TCG).
  std::map<std::string, std::unique_ptr<char[]>> bufs;
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    std::string name = bpf_program__name(prog);
    bool on = enabled(name);
    bpf_program__set_autoload(prog, on);
    if (!on) continue;
    auto& buf = bufs[name];
    buf.reset(new char[log_bytes]);
    buf[0] = '\0';
    bpf_program__set_log_buf(prog, buf.get(), log_bytes);
    bpf_program__set_log_level(prog, log_level);
  }
  int err = bpf_object__load(obj);
  a.err = err < 0 ? -err : 0;
  for (auto& [name, buf] : bufs) a.logs[name] = std::string(buf.get(), ::strnlen(buf.get(), log_bytes));
  a.libbpf = log.text;
  return a;
}

}  // namespace

proto::Ack ObjectTable::set_btf(const std::string& bytes) {
  if (bytes.empty()) {  // back to the kernel's own
    btf_path_.clear();
    return {true, {}};
  }
  const char* path = "/tmp/kgate-custom.btf";
  ::mkdir("/tmp", 01777);
  proto::Ack ack;
  FILE* f = std::fopen(path, "wb");
  if (!f) return {false, std::string("create ") + path + ": " + strerr(errno)};
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return {false, std::string("write ") + path + ": " + strerr(errno)};
  btf_path_ = path;
  return {true, {}};
}

int ObjectTable::pin_all(const std::string& dir, std::vector<std::string>& problems) {
  int pinned = 0;
  auto pin = [&](const std::string& path, int err) {
    if (err == 0) {
      ++pinned;
    } else if (problems.size() < 64) {
      problems.push_back("pin " + path + ": " + std::strerror(-err));
    }
  };
  for (const auto& [handle, obj] : objects_) {
    bpf_object* o = obj->object.get();
    const std::string base = dir + "/" + bpf_object__name(o);
    for (const char* kind : {"", "/programs", "/maps", "/links"}) ::mkdir((base + kind).c_str(), 0755);
    bpf_program* prog;
    bpf_object__for_each_program(prog, o) {
      if (bpf_program__fd(prog) < 0) continue;  // refused or skipped: nothing to pin
      const std::string path = base + "/programs/" + bpf_program__name(prog);
      pin(path, bpf_program__pin(prog, path.c_str()));
    }
    bpf_map* map;
    bpf_object__for_each_map(map, o) {
      if (bpf_map__fd(map) < 0) continue;
      const std::string path = base + "/maps/" + bpf_map__name(map);
      pin(path, bpf_map__pin(map, path.c_str()));
    }
    for (const auto& l : obj->links) {
      const std::string path = base + "/links/" + l.program;
      pin(path, bpf_link__pin(l.link.get(), path.c_str()));
    }
  }
  return pinned;
}

bool ObjectTable::enable_stats() {
  if (stats_on_) return true;
  // Run statistics (run_cnt, run_time_ns) are only counted while stats are on: the sysctl
  // (5.1+), or an fd from BPF_ENABLE_STATS (5.8+) held for the agent's life.
  if (FILE* f = std::fopen("/proc/sys/kernel/bpf_stats_enabled", "w")) {
    std::fputs("1", f);
    std::fclose(f);
  }
  if (FILE* f = std::fopen("/proc/sys/kernel/bpf_stats_enabled", "r")) {
    int c = std::fgetc(f);
    std::fclose(f);
    if (c == '1') stats_on_ = true;
  }
  if (!stats_on_) {
    int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    if (fd >= 0) {
      stats_fd_.reset(fd);
      stats_on_ = true;
    }
  }
  return stats_on_;
}

proto::LoadResponse ObjectTable::load(const proto::LoadRequest& req, const std::string& bytes) {
  enable_stats();
  proto::LoadResponse resp;
  LoadSetup setup{&bytes, &req, &btf_path_};

  // The programs to load together: all the object has, less those the host turned off and
  // those it expects the verifier to refuse (each loaded alone below, so the rest need one round).
  std::set<std::string> skipped, alone;
  for (const auto& p : req.programs) {
    if (!p.autoload)
      skipped.insert(p.name);
    else if (p.alone)
      alone.insert(p.name);
  }
  // The first round's object names them (no separate open just to list them: under TCG an open
  // costs milliseconds).
  std::set<std::string> enabled;
  auto in_first_round = [&](const std::string& name) {
    return !skipped.contains(name) && !alone.contains(name);
  };
  auto still_enabled = [&](const std::string& name) { return enabled.contains(name); };

  // Load; on a reject, record it, turn it off and load the rest again.
  std::map<std::string, proto::ProgramLoad> rejected;
  Attempt final;
  std::uint64_t before = 0, after = 0;
  // One round per program refused, plus one: the first round's programs less the refused ones,
  // down to none (an object whose every program is refused still loads its maps).
  std::size_t max_rounds = 1;
  for (std::size_t round = 0; round < max_rounds; ++round) {
    before = boottime_ns();
    Attempt a = round == 0 ? attempt_load(setup, in_first_round, 4, stats_log_bytes)
                           : attempt_load(setup, still_enabled, 4, stats_log_bytes);
    after = boottime_ns();
    if (round == 0 && a.object) {
      bpf_program* prog;
      bpf_object__for_each_program(prog, a.object.get()) {
        if (std::string name = bpf_program__name(prog); in_first_round(name)) enabled.insert(name);
      }
      max_rounds = enabled.size() + 1;
    }
    ++resp.rounds;
    resp.round_ms.push_back(static_cast<double>(after - before) / 1e6);
    if (!a.object) {
      resp.err = a.err;
      resp.error = a.open_error;
      resp.libbpf = tail(a.libbpf, 32 * 1024);
      return resp;
    }
    if (a.err == 0) {
      final = std::move(a);
      break;
    }
    std::string culprit = failed_program(a.libbpf);
    if (culprit.empty() || !enabled.contains(culprit)) {
      // Not one program's fault (maps, BTF, relocations of the whole object): nothing loads.
      // Each program carries the object's whole libbpf log: the cause is in it, not in lines
      // about the program.
      resp.err = a.err;
      const std::string cause = first_line(a.libbpf);
      resp.error = "load: " + strerr(a.err) + (cause.empty() ? "" : " (libbpf: " + cause + ")");
      resp.libbpf = tail(a.libbpf, 32 * 1024);
      for (const auto& name : enabled) {
        proto::ProgramLoad pl;
        pl.name = name;
        pl.err = a.err;
        pl.error = "the object did not load: " + resp.error.substr(6);
        pl.libbpf = tail(a.libbpf, 8192);
        rejected[name] = std::move(pl);
      }
      enabled.clear();
      final = {};
      break;
    }
    proto::ProgramLoad pl;
    pl.name = culprit;
    pl.err = a.err;
    pl.error = "refused: " + strerr(a.err);
    pl.log = tail(a.logs[culprit], 48 * 1024);
    pl.libbpf = tail(lines_about(a.libbpf, culprit), 8192);
    rejected[culprit] = std::move(pl);
    enabled.erase(culprit);
  }

  // Each rejected program alone with a full verifier log: the failing instruction and the source
  // line it came from. The stats-level log above says why, this one says where.
  for (auto& [name, pl] : rejected) {
    if (pl.error.rfind("refused", 0) != 0) continue;
    const std::uint64_t start = boottime_ns();
    Attempt alone = attempt_load(
        setup, [&](const std::string& n) { return n == name; }, 1 | 4, full_log_bytes);
    ++resp.rounds;
    resp.round_ms.push_back(static_cast<double>(boottime_ns() - start) / 1e6);
    if (alone.err != 0 && !alone.logs[name].empty()) {
      // Keep the tail (where the verifier stopped) and the stats lines from the level-4 log.
      pl.log = tail(alone.logs[name], 48 * 1024);
    }
  }

  // The programs expected to be refused, each alone at once with the full log. One that loads
  // after all is reported loaded (alone, with its statistics) and closed again; the leftover
  // check at detach covers it.
  std::vector<std::uint32_t> alone_ids;
  for (const auto& name : alone) {
    const std::uint64_t start = boottime_ns();
    Attempt a = attempt_load(
        setup, [&](const std::string& n) { return n == name; }, 1 | 4, full_log_bytes);
    const std::uint64_t end = boottime_ns();
    ++resp.rounds;
    resp.round_ms.push_back(static_cast<double>(end - start) / 1e6);
    proto::ProgramLoad pl;
    pl.name = name;
    pl.alone = true;
    pl.err = a.err;
    int fd = -1;
    if (a.object) {
      if (bpf_program* prog = bpf_object__find_program_by_name(a.object.get(), name.c_str()))
        fd = bpf_program__fd(prog);
    }
    if (!a.object) {
      pl.error = a.open_error;
      pl.libbpf = tail(a.libbpf, 8192);
    } else if (a.err != 0 || fd < 0) {
      const std::string culprit = failed_program(a.libbpf);
      pl.error = culprit == name ? "refused: " + strerr(a.err)
                                 : "the object did not load: " + strerr(a.err) +
                                       " (libbpf: " + first_line(a.libbpf) + ")";
      pl.log = tail(a.logs[name], 48 * 1024);
      pl.libbpf = tail(culprit == name ? lines_about(a.libbpf, name) : a.libbpf, 8192);
    } else {
      pl.loaded = true;
      pl.log = tail(a.logs[name], 16 * 1024);
      bpf_prog_info info{};
      __u32 len = sizeof info;
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
        pl.prog_id = info.id;
        pl.xlated_bytes = info.xlated_prog_len;
        pl.jited_bytes = info.jited_prog_len;
        if (len >= offsetof(bpf_prog_info, verified_insns) + sizeof info.verified_insns)
          pl.verified_insns = info.verified_insns;
        pl.load_ns = end > info.load_time && info.load_time >= start ? end - info.load_time : 0;
        alone_ids.push_back(info.id);
      }
    }
    rejected[name] = std::move(pl);
  }

  bpf_object* obj = final.object.get();
  if (!obj && !rejected.empty() && enabled.empty() && resp.error.empty()) {
    resp.error = "every program was refused";
  }
  auto info_of = [](int fd, bpf_prog_info& info) {
    __u32 len = sizeof info;
    int r = bpf_obj_get_info_by_fd(fd, &info, &len);
    return r == 0 ? static_cast<int>(len) : -1;
  };

  // Every program of the object, in its order: loaded, rejected or skipped.
  auto table = std::make_unique<LoadedObject>();
  std::vector<std::pair<std::uint64_t, std::size_t>> by_load_time;
  {
    LogCapture quiet;
    std::unique_ptr<bpf_object, LoadedObject::ObjectDeleter> listing;
    bpf_object* list_obj = obj;
    if (!list_obj) {
      LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = req.name.c_str());
      listing.reset(bpf_object__open_mem(bytes.data(), bytes.size(), &opts));
      list_obj = listing.get();
    }
    bpf_program* prog;
    if (list_obj) {
      bpf_object__for_each_program(prog, list_obj) {
        std::string name = bpf_program__name(prog);
        proto::ProgramLoad pl;
        if (auto it = rejected.find(name); it != rejected.end()) pl = it->second;
        pl.name = name;
        pl.section = bpf_program__section_name(prog);
        pl.type = libbpf_bpf_prog_type_str(bpf_program__type(prog)) ?: "unknown";
        pl.autoload = !skipped.contains(name);
        int fd = obj && !alone.contains(name) ? bpf_program__fd(prog) : -1;
        if (fd >= 0) {
          pl.loaded = true;
          pl.log = tail(final.logs[name], 16 * 1024);
          bpf_prog_info info{};
          int len = info_of(fd, info);
          if (len > 0) {
            pl.prog_id = info.id;
            pl.xlated_bytes = info.xlated_prog_len;
            pl.jited_bytes = info.jited_prog_len;
            if (static_cast<std::size_t>(len) >=
                offsetof(bpf_prog_info, verified_insns) + sizeof info.verified_insns)
              pl.verified_insns = info.verified_insns;
            table->prog_ids.push_back(info.id);
            by_load_time.emplace_back(info.load_time, resp.programs.size());
          }
        }
        resp.programs.push_back(std::move(pl));
      }
    }
  }
  // The kernel stamps each program when its load starts: the gap to the next is its load time.
  std::sort(by_load_time.begin(), by_load_time.end());
  for (std::size_t i = 0; i < by_load_time.size(); ++i) {
    std::uint64_t start = by_load_time[i].first;
    std::uint64_t end = i + 1 < by_load_time.size() ? by_load_time[i + 1].first : after;
    resp.programs[by_load_time[i].second].load_ns = end > start && start >= before ? end - start : 0;
  }
  resp.libbpf = tail(final.libbpf, 16 * 1024);
  if (obj) {
    bpf_map* m;
    bpf_object__for_each_map(m, obj) {
      bpf_map_info info{};
      __u32 len = sizeof info;
      std::uint32_t id = bpf_obj_get_info_by_fd(bpf_map__fd(m), &info, &len) == 0 ? info.id : 0;
      resp.maps.push_back({bpf_map__name(m), libbpf_bpf_map_type_str(bpf_map__type(m)) ?: "unknown", id});
    }
    resp.ok = true;
    table->prog_ids.insert(table->prog_ids.end(), alone_ids.begin(), alone_ids.end());
    table->object = std::move(final.object);
    resp.handle = next_handle_++;
    objects_[resp.handle] = std::move(table);
  }
  return resp;
}

LoadedObject* ObjectTable::find(int handle) {
  auto it = objects_.find(handle);
  return it == objects_.end() ? nullptr : it->second.get();
}

proto::AttachResponse ObjectTable::attach(const proto::AttachRequest& req) {
  proto::AttachResponse resp;
  LoadedObject* o = find(req.handle);
  if (!o) {
    resp.error = "no object with handle " + std::to_string(req.handle);
    return resp;
  }
  LogCapture log;
  resp.ok = true;
  for (const auto& opt : req.programs) {
    proto::ProgramAttach pa;
    pa.name = opt.name;
    bpf_program* prog = bpf_object__find_program_by_name(o->object.get(), opt.name.c_str());
    if (!prog || bpf_program__fd(prog) < 0) {
      pa.error = prog ? "not loaded" : "no such program";
      resp.programs.push_back(std::move(pa));
      continue;
    }
    if (opt.how == proto::AttachHow::none) {
      resp.programs.push_back(std::move(pa));
      continue;
    }
    bpf_link* link = nullptr;
    const auto start = Clock::now();
    if (opt.how == proto::AttachHow::uprobe) {
      LIBBPF_OPTS(bpf_uprobe_opts, uopts, .retprobe = opt.retprobe, .func_name = opt.function.c_str());
      link = bpf_program__attach_uprobe_opts(prog, -1, opt.binary.c_str(), 0, &uopts);
    } else if (opt.how == proto::AttachHow::usdt) {
      link = bpf_program__attach_usdt(prog, -1, opt.binary.c_str(), opt.provider.c_str(), opt.probe.c_str(),
                                      nullptr);
    } else {
      link = bpf_program__attach(prog);
    }
    pa.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (!link) {
      pa.err = errno;
      pa.error = strerr(pa.err);
      std::string about = lines_about(log.text, opt.name);
      if (!about.empty()) pa.error += " (" + tail(about, 2048) + ")";
      resp.ok = false;
    } else {
      o->links.push_back({opt.name, std::unique_ptr<bpf_link, LoadedObject::LinkDeleter>(link)});
      pa.attached = true;
      if (std::uint32_t id = link_id(bpf_link__fd(link))) {
        pa.link_id = id;
        o->link_ids.push_back(id);
      }
    }
    resp.programs.push_back(std::move(pa));
  }
  resp.libbpf = tail(log.text, 16 * 1024);
  return resp;
}

namespace {

// Runs argv to completion within `limit`; "" when it exited 0, else why not.
std::string run_command(const std::vector<std::string>& args, std::chrono::milliseconds limit) {
  if (args.empty()) return "no command";
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  int err = ::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (err != 0) return "start " + args[0] + ": " + strerr(err);
  auto deadline = Clock::now() + limit;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
      if (WIFEXITED(status)) return args[0] + " exited " + std::to_string(WEXITSTATUS(status));
      return args[0] + " killed by signal " + std::to_string(WTERMSIG(status));
    }
    if (r < 0 && errno != EINTR) return "wait for " + args[0] + ": " + strerr(errno);
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return args[0] + " did not finish within " + std::to_string(limit.count()) + " ms";
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

std::string tcp_round_trip() {
  UniqueFd srv(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!srv.valid()) return "socket: " + strerr(errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(srv.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(srv.get(), 1) != 0 || ::getsockname(srv.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return "listen on loopback: " + strerr(errno);
  UniqueFd cli(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{2, 0};
  ::setsockopt(cli.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(cli.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return "connect over loopback: " + strerr(errno);
  UniqueFd conn(::accept4(srv.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) return "accept: " + strerr(errno);
  char buf[64] = "kgate";
  if (::send(cli.get(), buf, sizeof buf, 0) != static_cast<ssize_t>(sizeof buf))
    return "send: " + strerr(errno);
  ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::recv(conn.get(), buf, sizeof buf, MSG_WAITALL) != static_cast<ssize_t>(sizeof buf))
    return "recv: " + strerr(errno);
  return {};
}

std::string udp_round_trip() {
  UniqueFd rx(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  UniqueFd tx(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!rx.valid() || !tx.valid()) return "socket: " + strerr(errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(rx.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(rx.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return "bind on loopback: " + strerr(errno);
  timeval tv{2, 0};
  ::setsockopt(rx.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[64] = "kgate";
  if (::sendto(tx.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return "sendto: " + strerr(errno);
  if (::recv(rx.get(), buf, sizeof buf, 0) < 0) return "recv: " + strerr(errno);
  return {};
}

// One round of one built-in trigger; "" on success.
std::string run_action(const proto::TriggerAction& a, const std::string& nonce) {
  if (a.kind == "getpid") {
    // The raw syscall: the C library may answer getpid() without entering the kernel.
    ::syscall(SYS_getpid);
    return {};
  }
  if (a.kind == "openat") {
    int fd = ::openat(AT_FDCWD, a.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return "openat " + a.path + ": " + strerr(errno);
    ssize_t n = ::write(fd, nonce.data(), nonce.size());
    ::close(fd);
    if (n < 0) return "write " + a.path + ": " + strerr(errno);
    if (::unlinkat(AT_FDCWD, a.path.c_str(), 0) != 0) return "unlinkat " + a.path + ": " + strerr(errno);
    return {};
  }
  if (a.kind == "execve") return run_command({"/proc/self/exe", "--kgate-exit"}, std::chrono::seconds(10));
  if (a.kind == "pipe") {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return "pipe: " + strerr(errno);
    UniqueFd r(fds[0]), w(fds[1]);
    char buf[64] = "kgate";
    if (::write(w.get(), buf, sizeof buf) != static_cast<ssize_t>(sizeof buf))
      return "write: " + strerr(errno);
    if (::read(r.get(), buf, sizeof buf) != static_cast<ssize_t>(sizeof buf)) return "read: " + strerr(errno);
    return {};
  }
  if (a.kind == "tcp" || a.kind == "udp" || a.kind == "call" || a.kind == "command") loopback_up();
  if (a.kind == "tcp") return tcp_round_trip();
  if (a.kind == "udp") return udp_round_trip();
  if (a.kind == "nanosleep") {
    timespec ts{0, 1000};
    ::nanosleep(&ts, nullptr);
    return {};
  }
  if (a.kind == "call" || a.kind == "command") {
    std::vector<std::string> argv = a.args;
    if (a.kind == "call") argv.insert(argv.begin(), a.binary);
    return run_command(argv, std::chrono::seconds(10));
  }
  return "unknown trigger '" + a.kind + "'";
}

}  // namespace

proto::TriggerResponse ObjectTable::trigger(const proto::TriggerRequest& req) {
  proto::TriggerResponse resp;
  // Handle 0: no object of kgate's (a user's loader holds the programs); actions only.
  LoadedObject* o = req.handle == 0 ? nullptr : find(req.handle);
  if (req.handle != 0 && !o) {
    resp.error = "no object with handle " + std::to_string(req.handle);
    return resp;
  }
  if (!o && (!req.nonce_map.empty() || !req.test_runs.empty())) {
    resp.error = "a nonce map or a test run needs an object";
    return resp;
  }
  if (req.count < 1 || req.count > 1'000'000) {
    resp.error = "count out of range";
    return resp;
  }
  const std::uint64_t nonce = std::strtoull(req.nonce.c_str(), nullptr, 16);
  if (!req.nonce_map.empty()) {
    bpf_map* m = bpf_object__find_map_by_name(o->object.get(), req.nonce_map.c_str());
    __u32 key = 0;
    if (!m || bpf_map_update_elem(bpf_map__fd(m), &key, &nonce, BPF_ANY) != 0) {
      resp.error = "set " + req.nonce_map + ": " + (m ? strerr(errno) : std::string("no such map"));
      return resp;
    }
  }
  // A test run sees the guest's network as a loaded program would (bpf_fib_lookup and the socket
  // lookups on 127.0.0.1).
  if (!req.test_runs.empty()) loopback_up();
  for (const auto& a : req.actions) resp.actions.push_back({a.kind, 0, {}});
  for (const auto& t : req.test_runs) resp.test_runs.push_back({t.program, 0, {}, 0, 0, {}});
  // Decode each test run's bytes once.
  std::vector<std::string> data(req.test_runs.size());
  for (std::size_t i = 0; i < req.test_runs.size(); ++i) {
    auto bytes = proto::from_hex(req.test_runs[i].data_hex);
    if (!bytes) resp.test_runs[i].error = "data is not hex";
    data[i] = bytes.value_or("");
  }
  for (int round = 0; round < req.count; ++round) {
    for (std::size_t i = 0; i < req.actions.size(); ++i) {
      auto& r = resp.actions[i];
      if (!r.error.empty()) continue;
      std::string why = run_action(req.actions[i], req.nonce);
      if (why.empty())
        ++r.done;
      else
        r.error = why;
    }
    if (req.uprobe_target) kgate_uprobe_target(nonce);
    for (std::size_t i = 0; i < req.test_runs.size(); ++i) {
      auto& r = resp.test_runs[i];
      if (!r.error.empty()) continue;
      const auto& t = req.test_runs[i];
      bpf_program* prog = bpf_object__find_program_by_name(o->object.get(), t.program.c_str());
      int fd = prog ? bpf_program__fd(prog) : -1;
      if (fd < 0) {
        r.error = prog ? "not loaded" : "no such program";
        continue;
      }
      // Tracing and syscall programs take their bytes as context and no repeat count.
      bpf_prog_type type = bpf_program__type(prog);
      const bool ctx_only = type == BPF_PROG_TYPE_RAW_TRACEPOINT || type == BPF_PROG_TYPE_SYSCALL ||
                            type == BPF_PROG_TYPE_TRACING;
      const int repeat = std::max(1, t.repeat);
      for (int k = 0; k < (ctx_only ? repeat : 1); ++k) {
        LIBBPF_OPTS(bpf_test_run_opts, opts);
        if (ctx_only) {
          opts.ctx_in = data[i].empty() ? nullptr : data[i].data();
          opts.ctx_size_in = static_cast<__u32>(data[i].size());
        } else {
          opts.data_in = data[i].empty() ? nullptr : data[i].data();
          opts.data_size_in = static_cast<__u32>(data[i].size());
          opts.repeat = repeat;
        }
        if (bpf_prog_test_run_opts(fd, &opts) != 0) {
          r.err = errno;
          r.error = "BPF_PROG_TEST_RUN: " + strerr(r.err);
          break;
        }
        r.runs += ctx_only ? 1 : repeat;
        r.duration_ns = opts.duration;
        std::int64_t rv = static_cast<std::int32_t>(opts.retval);
        if (std::find(r.retvals.begin(), r.retvals.end(), rv) == r.retvals.end() && r.retvals.size() < 64)
          r.retvals.push_back(rv);
      }
    }
  }
  resp.ok = true;
  for (const auto& a : resp.actions)
    if (!a.error.empty()) resp.ok = false;
  for (const auto& t : resp.test_runs)
    if (!t.error.empty()) resp.ok = false;
  return resp;
}

namespace {
struct RingCtx {
  std::string* body;
  std::uint32_t index;
  proto::RingDrain* drain;
  std::size_t* total;
};

int on_record(void* ctx, void* data, size_t size) {
  auto* c = static_cast<RingCtx*>(ctx);
  if (*c->total >= proto::max_records || size > (1u << 20)) {
    ++c->drain->dropped;
    return 0;
  }
  proto::append_record(*c->body, c->index, data, static_cast<std::uint32_t>(size));
  ++c->drain->records;
  ++*c->total;
  return 0;
}
}  // namespace

proto::DrainResponse ObjectTable::drain(const proto::DrainRequest& req, std::string& body) {
  proto::DrainResponse resp;
  LoadedObject* o = find(req.handle);
  if (!o) {
    resp.error = "no object with handle " + std::to_string(req.handle);
    return resp;
  }
  resp.stats_enabled = stats_on_;
  std::size_t total = 0;
  bpf_map* m;
  bpf_object__for_each_map(m, o->object.get()) {
    if (bpf_map__type(m) != BPF_MAP_TYPE_RINGBUF) continue;
    resp.rings.push_back({bpf_map__name(m), 0, 0});
  }
  // Pointers into resp.rings are taken after it stops growing.
  std::size_t index = 0;
  bpf_object__for_each_map(m, o->object.get()) {
    if (bpf_map__type(m) != BPF_MAP_TYPE_RINGBUF) continue;
    RingCtx ctx{&body, static_cast<std::uint32_t>(index), &resp.rings[index], &total};
    ring_buffer* rb = ring_buffer__new(bpf_map__fd(m), on_record, &ctx, nullptr);
    if (!rb) {
      resp.error = "ring_buffer__new " + resp.rings[index].name + ": " + strerr(errno);
      return resp;
    }
    int n = ring_buffer__consume(rb);
    int e = errno;
    ring_buffer__free(rb);
    if (n < 0) {
      resp.error = "ring_buffer__consume " + resp.rings[index].name + ": " + strerr(e);
      return resp;
    }
    ++index;
  }
  bpf_program* prog;
  bpf_object__for_each_program(prog, o->object.get()) {
    int fd = bpf_program__fd(prog);
    if (fd < 0) continue;
    bpf_prog_info info{};
    __u32 len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
      resp.programs.push_back({bpf_program__name(prog), info.run_cnt, info.run_time_ns});
  }
  for (const auto& name : req.maps) {
    proto::MapValues mv;
    mv.name = name;
    bpf_map* map = bpf_object__find_map_by_name(o->object.get(), name.c_str());
    if (!map) {
      mv.error = "no such map";
      resp.maps.push_back(std::move(mv));
      continue;
    }
    const std::size_t key_size = bpf_map__key_size(map);
    std::size_t value_size = bpf_map__value_size(map);
    const bpf_map_type t = bpf_map__type(map);
    if (t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH)
      value_size =
          ((value_size + 7) / 8 * 8) * static_cast<std::size_t>(std::max(1, libbpf_num_possible_cpus()));
    std::string key(key_size, '\0'), next(key_size, '\0'), value(value_size, '\0');
    const void* prev = nullptr;
    while (mv.values_hex.size() < proto::max_map_values &&
           bpf_map_get_next_key(bpf_map__fd(map), prev, next.data()) == 0) {
      key = next;
      prev = key.data();
      if (bpf_map_lookup_elem(bpf_map__fd(map), key.data(), value.data()) == 0)
        mv.values_hex.push_back(proto::to_hex(value));
    }
    resp.maps.push_back(std::move(mv));
  }
  resp.ok = true;
  return resp;
}

StillAlive wait_until_freed(const std::vector<std::uint32_t>& programs,
                            const std::vector<std::uint32_t>& links, std::chrono::milliseconds limit) {
  auto contains = [](const std::vector<std::uint32_t>& v, std::uint32_t id) {
    return std::find(v.begin(), v.end(), id) != v.end();
  };
  const auto deadline = Clock::now() + limit;
  for (;;) {
    StillAlive left;
    for (auto id : live_ids(bpf_prog_get_next_id))
      if (contains(programs, id)) left.programs.push_back(id);
    for (auto id : live_ids(bpf_link_get_next_id))
      if (contains(links, id)) left.links.push_back(id);
    if ((left.programs.empty() && left.links.empty()) || Clock::now() >= deadline) return left;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

proto::DetachResponse ObjectTable::detach(int handle) {
  proto::DetachResponse resp;
  auto it = objects_.find(handle);
  if (it == objects_.end()) return resp;
  std::vector<std::uint32_t> progs = it->second->prog_ids, links = it->second->link_ids;
  auto start = Clock::now();
  // Each link on its own, timed: the kernel's detach (trampolines and probes wait for RCU).
  for (auto& l : it->second->links) {
    const auto t = Clock::now();
    l.link.reset();
    resp.closes.push_back({l.program, std::chrono::duration<double, std::milli>(Clock::now() - t).count()});
  }
  objects_.erase(it);  // the object after its links
  double close_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  StillAlive left = wait_until_freed(progs, links, std::chrono::seconds(5));
  resp.left_programs = std::move(left.programs);
  resp.left_links = std::move(left.links);
  double total_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  resp.ok = true;
  resp.reported = true;
  resp.close_ms = close_ms;
  resp.wait_ms = total_ms - close_ms;
  resp.created_programs = std::move(progs);
  resp.created_links = std::move(links);
  return resp;
}

void loopback_up() {
  static bool up = false;
  if (up) return;
  up = true;
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP;
    ::ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  ::close(fd);
}

}  // namespace kgate::agent
