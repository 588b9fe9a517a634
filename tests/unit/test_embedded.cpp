#include <doctest/doctest.h>
#include <elf.h>

#include <string_view>

#include "bpf/object.hpp"
#include "run/embedded.hpp"
#include "vm/arch.hpp"

using kgate::vm::Arch;
using namespace kgate::run;

namespace {

// What kgate's own ELF reader (the one behind kgate digest) says of a blob.
kgate::bpf::ObjectInfo inspect(std::string_view blob) {
  auto info = kgate::bpf::inspect_object(blob);
  REQUIRE_MESSAGE(info.has_value(), info.error().describe());
  return *info;
}

}  // namespace

TEST_CASE("each arch's embedded agent is a static executable for that machine") {
  CHECK(inspect(agent_binary(Arch::x86_64)).machine == EM_X86_64);
  CHECK(inspect(agent_binary(Arch::arm64)).machine == EM_AARCH64);
  CHECK(agent_binary(Arch::x86_64) != agent_binary(Arch::arm64));
  // The default is the x86_64 blob, as before kgate booted other arches.
  CHECK(agent_binary().data() == agent_binary(Arch::x86_64).data());
}

TEST_CASE("each arch's embedded probe is a BPF object built for that arch's registers") {
  const std::string_view x86 = probe_object(Arch::x86_64);
  const std::string_view arm64 = probe_object(Arch::arm64);
  const auto x86_info = inspect(x86), arm64_info = inspect(arm64);
  CHECK(x86_info.machine == EM_BPF);
  CHECK(arm64_info.machine == EM_BPF);
  CHECK(x86 != arm64);
  // The uprobe reads its argument through the arch's registers, which the CO-RE relocations
  // name: pt_regs.di on x86, user_pt_regs.regs[0] on arm64.
  CHECK(kgate::bpf::register_arch(x86_info) == "x86");
  CHECK(kgate::bpf::register_arch(arm64_info) == "arm64");
}

TEST_CASE("each arch's embedded canary is a BPF object") {
  CHECK(inspect(canary_object(Arch::x86_64)).machine == EM_BPF);
  CHECK(inspect(canary_object(Arch::arm64)).machine == EM_BPF);
}

TEST_CASE("a build without the arm64 agent refuses arm64 runs, saying how to get it") {
  // The tests build with the arm64 agent (they boot arm64 guests): both are there.
  CHECK(built_agent(Arch::x86_64).has_value());
  CHECK(built_agent(Arch::arm64).has_value());
  CHECK(agent_or_why(Arch::arm64, agent_binary(Arch::arm64)).value().data() ==
        agent_binary(Arch::arm64).data());
  // A build without the cross toolchain embeds a line of text in its place.
  CHECK_FALSE(agent_or_why(Arch::arm64, {}).has_value());
  auto missing = agent_or_why(Arch::arm64, "no arm64 agent: built without the aarch64 cross toolchain\n");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().cls() == kgate::FailureClass::infra);
  CHECK(missing.error().describe().find("no arm64 guest agent") != std::string::npos);
  CHECK(missing.error().describe().find("scripts/setup.sh --arm64") != std::string::npos);
}
