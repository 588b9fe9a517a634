// kgate-agent: the guest's PID 1. It prepares the system, says hello to the host
// over the virtio-serial port and serves requests until told to power off. If it
// fails before it can talk, it says why on the console and powers off.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "agent/loader.hpp"
#include "agent/objects.hpp"
#include "agent/shell.hpp"
#include "agent/system.hpp"
#include "channel/fields.hpp"
#include "channel/protocol.hpp"
#include "channel/transport.hpp"

namespace {

using kgate::Deadline;
using kgate::channel::Frame;
using kgate::channel::FrameType;
using nlohmann::json;

constexpr const char* agent_version = "kgate-agent " KGATE_VERSION;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "kgate-agent: fatal: %s\n", why.c_str());
  std::fflush(stderr);
  kgate::agent::power_off();
}

// Answers one request: the typed request read from the header (and body), the typed
// response as its JSON. `body` receives a response body (the drain's records).
json handle(kgate::agent::ObjectTable& objects, kgate::agent::Loader& loader, const Frame& req,
            std::string& body, bool& power_off) {
  namespace proto = kgate::proto;
  const auto op = proto::parse_op(req.header.value("op", ""));
  if (!op) return {{"ok", false}, {"error", "unknown op '" + req.header.value("op", "") + "'"}};
  switch (*op) {
    case proto::Op::btf: return proto::to_json(objects.set_btf(req.body));
    case proto::Op::load:
      return proto::to_json(objects.load(proto::load_request_from_json(req.header), req.body));
    case proto::Op::attach:
      return proto::to_json(objects.attach(proto::attach_request_from_json(req.header)));
    case proto::Op::trigger:
      return proto::to_json(objects.trigger(proto::trigger_request_from_json(req.header)));
    case proto::Op::drain:
      return proto::to_json(objects.drain(proto::drain_request_from_json(req.header), body));
    case proto::Op::detach:
      return proto::to_json(objects.detach(kgate::channel::get_int(req.header, "handle").value_or(0)));
    case proto::Op::dmesg: return {{"ok", true}, {"text", kgate::agent::kernel_log(256 * 1024)}};
    case proto::Op::poweroff: power_off = true; return {{"ok", true}};
    case proto::Op::loader_start:
      objects.enable_stats();
      return proto::to_json(loader.start(proto::loader_start_request_from_json(req.header)));
    case proto::Op::loader_stats: return proto::to_json(loader.stats());
    case proto::Op::loader_stop:
      return proto::to_json(loader.stop(kgate::channel::get_int(req.header, "grace_ms").value_or(5000)));
    case proto::Op::shell:
      return proto::to_json(
          kgate::agent::run_shell(proto::shell_request_from_json(req.header), objects, loader));
  }
  return {{"ok", false}, {"error", "unhandled op"}};
}

// Fault injection for the VM tests, from the kernel command line
// (kgate.fault=crash|garbage|silent|hang|warn): a real crash of PID 1, a guest that
// sends bytes that are no frame, one that never says hello (a boot that hangs, whatever
// the machine's speed), one that goes silent after hello, and a kernel-format WARNING
// written to the kernel log (so the console shows a splat while every program passes).
// The host must tell each apart.
std::string requested_fault() {
  std::string cmdline = kgate::agent::describe_system().value("cmdline", "");
  const std::string key = "kgate.fault=";
  auto pos = cmdline.find(key);
  if (pos == std::string::npos) return {};
  auto end = cmdline.find(' ', pos);
  return cmdline.substr(pos + key.size(),
                        end == std::string::npos ? std::string::npos : end - pos - key.size());
}

}  // namespace

int main(int argc, char** argv) {
  // The execve trigger's helper: the agent binary run again, told to exit at once.
  if (argc > 1 && std::string(argv[1]) == "--kgate-exit") return 0;
  json startup = {{"exec_uptime_s", kgate::agent::uptime_s()}};
  auto since = [last = std::chrono::steady_clock::now()]() mutable {
    const auto now = std::chrono::steady_clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - last).count();
    last = now;
    return ms;
  };
  auto mounts = kgate::agent::mount_filesystems();
  if (!mounts) die(mounts.error().describe());
  startup["mounts_ms"] = since();
  auto modules = kgate::agent::load_modules();
  if (!modules) die(modules.error().describe());
  startup["modules_ms"] = since();
  auto port = kgate::agent::open_port(kgate::proto::port_name, 10'000);
  if (!port) die(port.error().describe());
  startup["port_ms"] = since();

  const std::string fault = requested_fault();
  if (fault == "crash") std::abort();
  if (fault == "silent") {
    for (;;) ::pause();
  }
  if (fault == "warn") {
    if (FILE* kmsg = std::fopen("/dev/kmsg", "w")) {
      std::fputs("<4>WARNING: CPU: 0 PID: 1 at harness/agent/main.cpp:1 kgate_injected_warning+0x0/0x0\n",
                 kmsg);
      std::fclose(kmsg);
    }
  }
  if (fault == "garbage") {
    const char junk[] = "this is not a kgate frame\n";
    for (;;) {
      if (::write(port->get(), junk, sizeof junk - 1) < 0) ::sleep(1);
    }
  }
  kgate::channel::Transport channel(std::move(*port));
  json hello = kgate::agent::describe_system();
  hello["agent"] = agent_version;
  hello["protocol"] = kgate::proto::protocol_version;
  hello["mounts"] = *mounts;
  hello["modules"] = *modules;
  hello["startup"] = startup;
  // The first write blocks until the host is connected; the host's boot deadline bounds it.
  if (auto s = channel.send({FrameType::hello, hello, {}}, Deadline(std::chrono::seconds(120))); !s) {
    die("send hello: " + s.error().describe());
  }

  kgate::agent::ObjectTable objects;
  kgate::agent::Loader loader;
  for (;;) {
    // The host bounds each request; this bounds a host that went away silently.
    // A running loader's output is read between requests (receive returns nothing when it is).
    const int loader_out[] = {loader.output_fd()};
    auto req =
        channel.receive(Deadline(std::chrono::minutes(10)),
                        loader_out[0] >= 0 ? std::span<const int>(loader_out) : std::span<const int>());
    if (!req) die("receive: " + req.error().describe());
    if (!*req) {
      loader.pump_output();
      continue;
    }
    if ((*req)->type != FrameType::request) die("unexpected frame type from host");
    if (fault == "hang") {
      for (;;) ::pause();
    }
    bool power_off = false;
    std::string body;
    json resp = handle(objects, loader, **req, body, power_off);
    resp["op"] = (*req)->header.value("op", "");
    if (auto id = (*req)->header.find("id"); id != (*req)->header.end()) resp["id"] = *id;
    if (auto s =
            channel.send({FrameType::response, resp, std::move(body)}, Deadline(std::chrono::seconds(30)));
        !s) {
      die("send response: " + s.error().describe());
    }
    if (power_off) kgate::agent::power_off();
  }
}
