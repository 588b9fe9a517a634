// `kgate spec init`: a starting spec for an object, each program with the attach mode its section
// implies and a trigger where kgate has one that reaches it, marked "proposed" for the user to
// confirm. Pure: the caller reads the object (kgate's inspector, then libbpf) and writes the file.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "bpf/structure.hpp"

namespace kgate::spec {

struct InitObject {
  std::string name;  // the object's name in the spec: "gate"
  // arch ("x86_64", "arm64") -> path relative to the spec; the arch "" alone: one path for every arch
  std::map<std::string, std::string> path;
  bpf::ObjectLayout layout;  // what libbpf lists in it (one arch's build)
};

// What kgate proposes for one program: the spec's program object, with "proposed" saying why.
nlohmann::ordered_json propose_program(const bpf::ProgramInfo& program);

// The whole starting spec (kgate.spec/1).
nlohmann::ordered_json propose_spec(const InitObject& object);

// The trigger (a kind name) that runs a syscall, or "" when kgate has none: "unlinkat" -> "openat".
std::string trigger_for_syscall(std::string_view syscall);
// The same for a kernel function a kprobe or fentry names: "do_unlinkat" -> "openat",
// "__x64_sys_getpid" -> "getpid", "tcp_v4_connect" -> "tcp".
std::string trigger_for_function(std::string_view function);

}  // namespace kgate::spec
