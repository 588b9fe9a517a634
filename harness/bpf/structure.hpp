// The structural check without a boot: libbpf opens an object from memory, as the agent will,
// and lists its programs and maps. Nothing is loaded, so a foreign arch's object opens on any host.
// libbpf's ELF reader is less defensive than kgate's own: call this on a file that
// inspect_object() has read without problems.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace kgate::bpf {

struct ProgramInfo {
  std::string name;
  std::string section;  // "uprobe//proc/self/exe:kgate_uprobe_target"
  std::string type;     // libbpf's name for it: "kprobe", "tracepoint", ...
  std::size_t insns = 0;
};

struct MapInfo {
  std::string name;
  std::string type;  // "ringbuf", "array", ...
  std::uint32_t max_entries = 0;
};

struct ObjectLayout {
  std::vector<ProgramInfo> programs;
  std::vector<MapInfo> maps;
};

// Opens the object with bpf_object__open_mem and no load; `name` names it in messages. Fails
// (class usage) with libbpf's warnings in the message when libbpf refuses it.
Result<ObjectLayout> open_object(std::string_view bytes, const std::string& name);

}  // namespace kgate::bpf
