// The structural check without a boot: libbpf opens an object from memory, as the agent will,
// and lists its programs and maps. Nothing is loaded, so a foreign arch's object opens on any host.
// libbpf's ELF reader (1.1's bpf_object__open_mem) is less defensive than kgate's own and trusts
// what it reads: hand it untrusted bytes only through open_inspected_object(), which first
// requires that inspect_object() found no problems and that the file is a BPF object for a gate
// arch (EM_BPF, ELF64, relocatable, little-endian, .BTF and .BTF.ext).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/object.hpp"
#include "core/error.hpp"
#include "core/files.hpp"

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

// A global variable the object's BTF places in a data section: ".rodata" for `const volatile`
// (set before load), ".data", ".bss", or a named ".rodata.*"/".data.*" section.
struct GlobalInfo {
  std::string name;
  std::string section;
  std::uint32_t size = 0;
};

struct ObjectLayout {
  std::vector<ProgramInfo> programs;
  std::vector<MapInfo> maps;
  std::vector<GlobalInfo> globals;
};

// A BTF file as `kgate run --btf` takes it (raw BTF, or an ELF with a .BTF section), parsed by
// the host's libbpf as the guest's will: the number of types, or a usage error with libbpf's
// reason. Reads the file itself; does not name it (the caller does).
Result<std::uint32_t> vet_btf(const fs::path& file);

// Opens the object with bpf_object__open_mem and no load; `name` names it in messages. Fails
// (class usage) with libbpf's error and warnings in the message when libbpf refuses it. For bytes
// kgate built itself; see above.
Result<ObjectLayout> open_object(std::string_view bytes, const std::string& name);

// open_object() for bytes that inspect_object() read as `info`, only when kgate found no problems
// in them and arch_problems() finds none for at least one gate arch. Otherwise fails (class usage)
// without calling libbpf, saying why.
Result<ObjectLayout> open_inspected_object(std::string_view bytes, const ObjectInfo& info,
                                           const std::string& name);

}  // namespace kgate::bpf
