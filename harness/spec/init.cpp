#include "spec/init.hpp"

#include <array>
#include <utility>

#include "spec/check.hpp"

namespace kgate::spec {

using nlohmann::ordered_json;

namespace {

// The syscalls each built-in trigger makes (harness/agent/objects.cpp), as their tracepoints and
// syscall wrappers name them.
constexpr std::array<std::pair<std::string_view, std::string_view>, 27> syscall_triggers = {{
    {"getpid", "getpid"},
    {"openat", "openat"},
    {"unlinkat", "openat"},
    {"write", "openat"},
    {"close", "openat"},
    {"execve", "execve"},
    {"clone", "execve"},
    {"clone3", "execve"},
    {"wait4", "execve"},
    {"exit_group", "execve"},
    {"pipe2", "pipe"},
    {"read", "pipe"},
    {"socket", "tcp"},
    {"bind", "tcp"},
    {"listen", "tcp"},
    {"connect", "tcp"},
    {"accept", "tcp"},
    {"accept4", "tcp"},
    {"sendto", "tcp"},
    {"recvfrom", "tcp"},
    {"shutdown", "tcp"},
    {"clock_nanosleep", "nanosleep"},
    {"sched_process_exec", "execve"},
    {"sched_process_fork", "execve"},
    {"sched_process_exit", "execve"},
    {"task_newtask", "execve"},
    {"sys_enter", "getpid"},
}};

// Kernel functions those syscalls pass through, for kprobes and fentry.
constexpr std::array<std::pair<std::string_view, std::string_view>, 24> function_triggers = {{
    {"do_unlinkat", "openat"},      {"do_sys_openat2", "openat"},
    {"do_sys_open", "openat"},      {"do_filp_open", "openat"},
    {"vfs_open", "openat"},         {"vfs_write", "openat"},
    {"vfs_unlink", "openat"},       {"security_file_open", "openat"},
    {"bprm_execve", "execve"},      {"do_execveat_common", "execve"},
    {"kernel_clone", "execve"},     {"wake_up_new_task", "execve"},
    {"do_exit", "execve"},          {"pipe_write", "pipe"},
    {"pipe_read", "pipe"},          {"tcp_connect", "tcp"},
    {"tcp_v4_connect", "tcp"},      {"tcp_v6_connect", "tcp"},
    {"inet_stream_connect", "tcp"}, {"tcp_sendmsg", "tcp"},
    {"tcp_recvmsg", "tcp"},         {"udp_sendmsg", "udp"},
    {"udp_recvmsg", "udp"},         {"hrtimer_nanosleep", "nanosleep"},
}};

// Types the run can drive with BPF_PROG_TEST_RUN (spec/check.cpp's list).
// (Not sk_lookup: its test run takes a context and no packet, which the built-in packets are not.)
constexpr std::array<std::string_view, 11> test_run_types = {
    "xdp",        "sched_cls", "sched_act", "socket_filter", "flow_dissector", "syscall",
    "cgroup_skb", "lwt_in",    "lwt_out",   "lwt_xmit",      "lwt_seg6local"};

std::string_view after_slash(std::string_view section, size_t nth) {
  for (size_t i = 0; i < nth; ++i) {
    const size_t slash = section.find('/');
    if (slash == std::string_view::npos) return {};
    section.remove_prefix(slash + 1);
  }
  return section;
}

std::string_view section_kind(std::string_view section) {
  return section.substr(0, section.find('/'));
}

ordered_json load_only(std::string why) {
  return ordered_json{{"attach", "load_only"}, {"proposed", std::move(why)}};
}

ordered_json triggered(std::string_view trigger, const std::string& what) {
  if (trigger.empty())
    return ordered_json{{"proposed", "attached by its section (" + what +
                                         "); kgate has no trigger that surely reaches it, so only the attach "
                                         "is judged: add a trigger and \"expect\" if one does"}};
  return ordered_json{{"trigger", std::string(trigger)},
                      {"expect", {{"runs", "count"}}},
                      {"proposed", "attached by its section (" + what + "); the " + std::string(trigger) +
                                       " trigger runs it"}};
}

}  // namespace

std::string trigger_for_syscall(std::string_view syscall) {
  for (const auto& [name, trigger] : syscall_triggers)
    if (name == syscall) return std::string(trigger);
  return "";
}

std::string trigger_for_function(std::string_view function) {
  for (const auto& [name, trigger] : function_triggers)
    if (name == function) return std::string(trigger);
  // The syscall wrappers: __x64_sys_getpid, __arm64_sys_openat, __se_sys_..., __do_sys_..., ksys_...
  for (std::string_view prefix :
       {"__x64_sys_", "__arm64_sys_", "__ia32_sys_", "__se_sys_", "__do_sys_", "ksys_", "sys_"}) {
    if (function.starts_with(prefix)) return trigger_for_syscall(function.substr(prefix.size()));
  }
  return "";
}

ordered_json propose_program(const bpf::ProgramInfo& p) {
  const std::string_view section = p.section;
  const std::string_view kind = section_kind(section);
  const std::string what = "\"" + p.section + "\"";
  if (std::find(test_run_types.begin(), test_run_types.end(), p.type) != test_run_types.end()) {
    ordered_json out = {{"attach", "test_run"}};
    if (p.type != "syscall") out["test_run"] = {{"packet", "ipv4-udp"}};
    out["proposed"] =
        "a " + p.type + " program (" + what +
        ") runs by BPF_PROG_TEST_RUN on a built-in IPv4 UDP packet; add \"expect\": {\"retval\": "
        "N} for the verdict it must return";
    return out;
  }
  if (kind == "tracepoint" || kind == "tp") {
    // tracepoint/syscalls/sys_enter_getpid, tracepoint/sched/sched_process_exec
    const std::string_view event = after_slash(section, 2);
    std::string_view syscall = event;
    for (std::string_view prefix : {"sys_enter_", "sys_exit_"})
      if (event.starts_with(prefix)) syscall = event.substr(prefix.size());
    return triggered(trigger_for_syscall(syscall), what);
  }
  if (kind == "raw_tp" || kind == "raw_tracepoint" || kind == "tp_btf")
    return triggered(trigger_for_syscall(after_slash(section, 1)), what);
  if (kind == "ksyscall" || kind == "kretsyscall")
    return triggered(trigger_for_syscall(after_slash(section, 1)), what);
  if (kind == "kprobe" || kind == "kretprobe") {
    std::string_view function = after_slash(section, 1);
    return triggered(trigger_for_function(function.substr(0, function.find('+'))), what);  // kprobe/fn+0x10
  }
  if (kind == "fentry" || kind == "fexit" || kind == "fmod_ret") {
    ordered_json out = triggered(trigger_for_function(after_slash(section, 1)), what);
    out["skip"] = ordered_json::array(
        {{{"arch", "arm64"},
          {"reason",
           "arm64 kernels attach fentry/fexit (BPF trampolines) only from Linux 6.4: drop this skip if "
           "every arm64 entry is 6.4 or newer"}}});
    return out;
  }
  if (kind == "lsm" || kind == "lsm.s")
    return load_only(
        "an LSM program (" + what +
        ") attaches only where the kernel's lsm= list names bpf, which Debian's default does not: "
        "loaded and judged by the verifier");
  if (kind == "uprobe" || kind == "uretprobe" || kind == "uprobe.s" || kind == "uretprobe.s" ||
      kind == "usdt") {
    const SectionTarget t = section_target(section);
    if (t.names_target && kind != "usdt") {
      // uprobe//bin/x:fn: the call trigger runs the binary, which calls the function.
      const std::string_view target = after_slash(section, 1);
      const size_t colon = target.rfind(':');
      ordered_json out = {
          {"trigger",
           {{"kind", "call"},
            {"binary", std::string(target.substr(0, colon))},
            {"function", std::string(target.substr(colon + 1))}}},
          {"expect", {{"runs", "count"}}},
          {"proposed", "attached by its section (" + what +
                           "); the call trigger runs that binary, which must call the function "
                           "(ship it with \"files\" if the image has none)"}};
      return out;
    }
    return load_only("a " + std::string(kind) + " program whose section (" + what +
                     ") names no target: loaded only; give it \"attach\": \"auto\", a \"target\" and a "
                     "\"call\" trigger on a binary the spec ships");
  }
  return load_only("a " + p.type + " program (" + what +
                   ") needs something a bare guest does not have to attach to (a cgroup, socket or "
                   "target program): loaded and judged by the verifier");
}

ordered_json propose_spec(const InitObject& object) {
  ordered_json path;
  if (object.path.size() == 1 && object.path.begin()->first.empty()) {
    path = object.path.begin()->second;
  } else {
    for (const auto& [arch, p] : object.path) path[arch] = p;
  }
  ordered_json obj = {{"name", object.name}, {"path", path}};
  // A `const volatile` 8-byte global named like a nonce is proposed as the nonce's way in.
  for (const auto& g : object.layout.globals) {
    if (g.section == ".rodata" && g.size == 8 && g.name.find("nonce") != std::string::npos) {
      obj["nonce"] = {{"global", g.name}};
      break;
    }
  }
  ordered_json programs = ordered_json::object();
  for (const auto& p : object.layout.programs) programs[p.name] = propose_program(p);
  obj["programs"] = programs;
  return {{"schema", "kgate.spec/1"},
          {"description",
           "made by kgate spec init: confirm each program's proposal, then delete its \"proposed\""},
          {"objects", ordered_json::array({obj})}};
}

}  // namespace kgate::spec
