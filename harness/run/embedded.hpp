#pragma once

#include <string_view>

namespace kgate::run {

// The static guest agent and the built-in probe object, linked into kgate at
// build time (scripts/embed-blob.sh), so the host binary is one relocatable file.
std::string_view agent_binary();
std::string_view probe_object();
std::string_view canary_object();
// kernels/console-patterns.json as built in.
std::string_view console_patterns();

}  // namespace kgate::run
