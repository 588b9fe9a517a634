#include "run/plan.hpp"

#include <algorithm>

namespace kgate::run {

namespace {

spec::ProgramSpec probe_program(std::string name, spec::Trigger trigger) {
  spec::ProgramSpec p;
  p.name = name;
  p.attach = spec::AttachMode::auto_attach;
  p.trigger = std::move(trigger);
  p.expect.runs = spec::MinCount{true, 1};
  spec::RecordsExpect r;
  r.ring = "events";
  r.where = spec::RecordFilter{24, name};  // struct kgate_event: prog[16] at 24
  r.min = spec::MinCount{true, 1};
  r.nonce = spec::NonceAt{0, spec::NonceEncoding::u64le};  // nonce at 0
  r.agent_pid_at = {8, 12};                                // tgid, and tgid read through CO-RE
  p.expect.records = std::move(r);
  return p;
}

// The agent's own uprobe target, called in-process with the nonce as its argument.
bool is_agent_call(const spec::Trigger& t) {
  return t.kind == spec::TriggerKind::call && t.binary == "/proc/self/exe" &&
         t.function == "kgate_uprobe_target";
}

void put16(std::string& s, std::size_t at, unsigned v) {
  s[at] = static_cast<char>(v >> 8);
  s[at + 1] = static_cast<char>(v & 0xff);
}

unsigned checksum(std::string_view bytes) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < bytes.size(); i += 2)
    sum += static_cast<unsigned char>(bytes[i]) << 8 | static_cast<unsigned char>(bytes[i + 1]);
  if (bytes.size() % 2) sum += static_cast<unsigned char>(bytes.back()) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

bool loaded(const proto::LoadResponse& load, const std::string& name) {
  for (const auto& p : load.programs)
    if (p.name == name) return p.loaded && !p.alone;
  return false;
}

}  // namespace

std::string with_nonce(std::string s, const std::string& nonce) {
  const std::string key = "{nonce}";
  for (std::size_t at = s.find(key); at != std::string::npos; at = s.find(key, at + nonce.size()))
    s.replace(at, key.size(), nonce);
  return s;
}

proto::TriggerAction trigger_action(const spec::Trigger& t, const std::string& nonce) {
  proto::TriggerAction a;
  a.kind = std::string(spec::trigger_kind_name(t.kind));
  if (t.kind == spec::TriggerKind::openat)
    a.path = with_nonce(t.path.empty() ? "/tmp/kgate-trigger-{nonce}" : t.path, nonce);
  a.binary = with_nonce(t.binary, nonce);
  for (const auto& arg : t.args) a.args.push_back(with_nonce(arg, nonce));
  return a;
}

spec::Spec builtin_probe_spec() {
  spec::Spec s;
  s.description = "kgate's built-in probe";
  spec::ObjectSpec o;
  o.name = "probe";
  o.builtin = "probe";
  o.nonce = {spec::NonceSource::Kind::map, "kgate_nonce"};
  o.maps = {"events", "kgate_nonce"};
  spec::Trigger getpid;
  getpid.kind = spec::TriggerKind::getpid;
  spec::Trigger call;
  call.kind = spec::TriggerKind::call;
  call.binary = "/proc/self/exe";
  call.function = "kgate_uprobe_target";
  o.programs.push_back(probe_program("on_getpid", getpid));
  o.programs.push_back(probe_program("on_uprobe", call));
  s.objects.push_back(std::move(o));
  return s;
}

std::string builtin_packet(std::string_view name, std::string_view nonce_hex) {
  if (name == "none") return {};
  std::string eth(14, '\0');
  for (int i = 0; i < 6; ++i) {
    eth[i] = static_cast<char>(0x02);  // a locally administered destination
    eth[6 + i] = static_cast<char>(0x02 + i);
  }
  if (name == "ipv6-tcp") {
    put16(eth, 12, 0x86dd);
    std::string ip(40, '\0'), tcp(20, '\0');
    ip[0] = 0x60;
    put16(ip, 4, 20);
    ip[6] = 6;  // TCP
    ip[7] = 64;
    ip[23] = 1;  // ::1 to ::1
    ip[39] = 1;
    put16(tcp, 0, 40000);
    put16(tcp, 2, 4242);
    tcp[12] = 0x50;  // data offset 5
    tcp[13] = 0x02;  // SYN
    put16(tcp, 14, 65535);
    return eth + ip + tcp;
  }
  // ipv4-udp
  put16(eth, 12, 0x0800);
  std::string payload(nonce_hex);
  std::string ip(20, '\0'), udp(8, '\0');
  ip[0] = 0x45;
  put16(ip, 2, static_cast<unsigned>(20 + 8 + payload.size()));
  ip[8] = 64;
  ip[9] = 17;  // UDP
  ip[12] = 127, ip[15] = 1;
  ip[16] = 127, ip[19] = 1;
  put16(ip, 10, checksum(ip));
  put16(udp, 0, 40000);
  put16(udp, 2, 4242);
  put16(udp, 4, static_cast<unsigned>(8 + payload.size()));
  return eth + ip + udp + payload;
}

proto::LoadRequest load_request(const spec::ObjectSpec& object, const std::vector<std::string>& programs,
                                const RunFacts& facts) {
  proto::LoadRequest r;
  r.name = object.name;
  r.nonce = facts.nonce;
  if (object.nonce.kind == spec::NonceSource::Kind::global) r.nonce_global = object.nonce.name;
  for (const auto& name : programs) {
    const spec::ProgramSpec* ps = object.find(name);
    if (!skip_reason(object, ps, facts).empty())
      r.programs.push_back({name, false});
    else if (ps && !ps->expect.loads)
      r.programs.push_back({name, true, true});
  }
  return r;
}

proto::AttachRequest attach_request(const spec::ObjectSpec& object, const proto::LoadResponse& load) {
  proto::AttachRequest r;
  r.handle = load.handle;
  for (const auto& p : load.programs) {
    if (!p.loaded || p.alone) continue;
    const spec::ProgramSpec* ps = object.find(p.name);
    if (ps && ps->attach != spec::AttachMode::auto_attach) continue;
    proto::AttachOption o;
    o.name = p.name;
    if (ps && ps->target) {
      const auto& t = *ps->target;
      o.binary = t.binary;
      if (!t.provider.empty()) {
        o.how = proto::AttachHow::usdt;
        o.provider = t.provider;
        o.probe = t.probe;
      } else {
        o.how = proto::AttachHow::uprobe;
        o.function = t.function;
        o.retprobe = p.section.rfind("uretprobe", 0) == 0;
      }
    }
    r.programs.push_back(std::move(o));
  }
  return r;
}

proto::TriggerRequest trigger_request(const spec::ObjectSpec& object, const proto::LoadResponse& load,
                                      const RunFacts& facts) {
  proto::TriggerRequest r;
  r.handle = load.handle;
  r.nonce = facts.nonce;
  r.count = facts.count;
  if (object.nonce.kind == spec::NonceSource::Kind::map) r.nonce_map = object.nonce.name;
  for (const auto& p : object.programs) {
    if (!loaded(load, p.name)) continue;
    if (p.attach == spec::AttachMode::test_run) {
      proto::TestRunAction t;
      t.program = p.name;
      t.data_hex =
          proto::to_hex(p.test_run.packet_hex.empty() ? builtin_packet(p.test_run.packet, facts.nonce)
                                                      : *proto::from_hex(p.test_run.packet_hex));
      t.repeat = p.test_run.repeat;
      r.test_runs.push_back(std::move(t));
      continue;
    }
    if (p.trigger.kind == spec::TriggerKind::none || p.attach == spec::AttachMode::load_only) continue;
    if (is_agent_call(p.trigger)) {
      r.uprobe_target = true;
      continue;
    }
    proto::TriggerAction a = trigger_action(p.trigger, facts.nonce);
    bool seen = std::any_of(r.actions.begin(), r.actions.end(), [&](const proto::TriggerAction& b) {
      return b.kind == a.kind && b.path == a.path && b.binary == a.binary && b.args == a.args;
    });
    if (!seen) r.actions.push_back(std::move(a));
  }
  return r;
}

proto::DrainRequest drain_request(const spec::ObjectSpec& object, int handle) {
  proto::DrainRequest r;
  r.handle = handle;
  for (const auto& p : object.programs) {
    if (p.expect.map_nonce &&
        std::find(r.maps.begin(), r.maps.end(), p.expect.map_nonce->map) == r.maps.end())
      r.maps.push_back(p.expect.map_nonce->map);
  }
  return r;
}

}  // namespace kgate::run
