#pragma once

#include <expected>
#include <string_view>

#include "core/error.hpp"
#include "vm/arch.hpp"

namespace kgate::run {

// The static guest agent and the built-in probe and canary objects for each gate arch,
// linked into kgate at build time (scripts/embed-blob.sh), so the host binary is one
// relocatable file.
std::string_view agent_binary(vm::Arch arch = vm::Arch::x86_64);
std::string_view probe_object(vm::Arch arch = vm::Arch::x86_64);
std::string_view canary_object(vm::Arch arch = vm::Arch::x86_64);
// The arch's agent as built in, or why this kgate has none: a build without the arm64 cross
// toolchain (meson option arm64, scripts/setup.sh --arm64) embeds a line of text in its place.
std::expected<std::string_view, Error> built_agent(vm::Arch arch);
// The same judgement of a given agent blob: an agent is an ELF file.
std::expected<std::string_view, Error> agent_or_why(vm::Arch arch, std::string_view agent);
// kernels/console-patterns.json as built in.
std::string_view console_patterns();
// images/gate.json as built in: the recipe of the initramfs every run boots.
std::string_view gate_image_recipe();
// images/shell.json: the guest shell's tools, appended only when a run asks for a shell.
std::string_view shell_image_recipe();

}  // namespace kgate::run
