// From a spec to the requests the agent serves: pure functions of the spec, what the guest
// reported so far and the run's facts, table-tested (tests/unit/test_judge.cpp).
#pragma once

#include <string>
#include <string_view>

#include "channel/protocol.hpp"
#include "run/judge.hpp"
#include "spec/spec.hpp"

namespace kgate::run {

// kgate's built-in probe as a spec: on_getpid (tracepoint, triggered by getpid) and on_uprobe
// (a uprobe on the agent's own kgate_uprobe_target, called with the nonce), each writing
// records to the `events` ring buffer that must carry this run's nonce and the agent's pid.
spec::Spec builtin_probe_spec();

// A built-in packet for test runs: "ipv4-udp" (Ethernet, IPv4, UDP to port 4242 carrying the
// nonce's hex digits), "ipv6-tcp" (Ethernet, IPv6, a TCP SYN), "none" (no bytes).
std::string builtin_packet(std::string_view name, std::string_view nonce_hex);

// The load request: skipped programs (skip_reason) are not loaded. `programs` are the object's
// program names as the host read them.
proto::LoadRequest load_request(const spec::ObjectSpec& object, const std::vector<std::string>& programs,
                                const RunFacts& facts);
// Attach every loaded program whose mode is auto: by its section, or at the spec's target.
proto::AttachRequest attach_request(const spec::ObjectSpec& object, const proto::LoadResponse& load);
// The triggers of the loaded programs (each distinct one once per round) and their test runs.
proto::TriggerRequest trigger_request(const spec::ObjectSpec& object, const proto::LoadResponse& load,
                                      const RunFacts& facts);
proto::DrainRequest drain_request(const spec::ObjectSpec& object, int handle);

// "{nonce}" in `s` replaced by the run's nonce.
std::string with_nonce(std::string s, const std::string& nonce);
// One trigger as the agent runs it, "{nonce}" replaced in its path, binary and arguments.
proto::TriggerAction trigger_action(const spec::Trigger& t, const std::string& nonce);

}  // namespace kgate::run
