// kgate-agent: the guest's PID 1. It prepares the system, says hello to the host
// over the virtio-serial port and serves requests until told to power off. If it
// fails before it can talk, it says why on the console and powers off.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "agent/bpf_session.hpp"
#include "agent/system.hpp"
#include "channel/transport.hpp"

namespace {

using kgate::Deadline;
using kgate::channel::Frame;
using kgate::channel::FrameType;
using nlohmann::json;

constexpr const char* port_name = "org.kgate.channel";
constexpr const char* agent_version = "kgate-agent " KGATE_VERSION;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "kgate-agent: fatal: %s\n", why.c_str());
  std::fflush(stderr);
  kgate::agent::power_off();
}

json handle(kgate::agent::BpfSession& session, const Frame& req, bool& power_off) {
  std::string op = req.header.value("op", "");
  if (op == "load") return session.load(req.header.value("name", "object"), req.body);
  if (op == "attach") return session.attach();
  if (op == "btf") return session.set_btf(req.body);
  if (op == "trigger") {
    std::uint64_t nonce = std::strtoull(req.header.value("nonce", "0").c_str(), nullptr, 16);
    int count = req.header.value("count", 1);
    if (count < 1 || count > 1'000'000) return {{"ok", false}, {"error", "count out of range"}};
    return session.trigger(nonce, count);
  }
  if (op == "flush") return session.flush();
  if (op == "detach") return session.detach();
  if (op == "dmesg") return {{"ok", true}, {"text", kgate::agent::kernel_log(256 * 1024)}};
  if (op == "poweroff") {
    power_off = true;
    return {{"ok", true}};
  }
  return {{"ok", false}, {"error", "unknown op '" + op + "'"}};
}

// Fault injection for the VM tests, from the kernel command line
// (kgate.fault=crash|garbage|hang|warn): a real crash of PID 1, a guest that
// sends bytes that are no frame, one that goes silent after hello, and a
// kernel-format WARNING written to the kernel log (so the console shows a splat
// while every program passes). The host must tell each apart.
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

int main() {
  auto mounts = kgate::agent::mount_filesystems();
  if (!mounts) die(mounts.error().describe());
  auto modules = kgate::agent::load_modules();
  if (!modules) die(modules.error().describe());
  auto port = kgate::agent::open_port(port_name, 10'000);
  if (!port) die(port.error().describe());

  const std::string fault = requested_fault();
  if (fault == "crash") std::abort();
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
  hello["mounts"] = *mounts;
  hello["modules"] = *modules;
  // The first write blocks until the host is connected; the host's boot deadline bounds it.
  if (auto s = channel.send({FrameType::hello, hello, {}}, Deadline(std::chrono::seconds(120))); !s) {
    die("send hello: " + s.error().describe());
  }

  kgate::agent::BpfSession session;
  for (;;) {
    // The host bounds each request; this bounds a host that went away silently.
    auto req = channel.receive(Deadline(std::chrono::minutes(10)));
    if (!req) die("receive: " + req.error().describe());
    if (!*req) continue;
    if ((*req)->type != FrameType::request) die("unexpected frame type from host");
    if (fault == "hang") {
      for (;;) ::pause();
    }
    bool power_off = false;
    json resp = handle(session, **req, power_off);
    resp["op"] = (*req)->header.value("op", "");
    if (auto id = (*req)->header.find("id"); id != (*req)->header.end()) resp["id"] = *id;
    if (auto s = channel.send({FrameType::response, resp, {}}, Deadline(std::chrono::seconds(30))); !s) {
      die("send response: " + s.error().describe());
    }
    if (power_off) kgate::agent::power_off();
  }
}
