// A parsed spec against the object files it names, before anything boots: each object is read for
// the guest arch, vetted by kgate's own inspector (ELF, BTF, the registers its CO-RE relocations
// read) and opened by the host's libbpf without a load, and the spec's demands are checked against
// what it holds: programs and maps that exist, attach modes and triggers that fit each program's
// type, nonce sources of the right kind. Every error is class usage and says where in the spec (or
// which object file) to look.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/object.hpp"
#include "bpf/structure.hpp"
#include "core/error.hpp"
#include "spec/spec.hpp"

namespace kgate::spec {

// The bytes of kgate's built-in objects ("probe") for the arch being checked, by name: the caller
// supplies its embedded objects (run/embedded.hpp); the spec module reads none itself.
using BuiltinObjects = std::map<std::string, std::string_view, std::less<>>;

// One object of the spec, read and checked for one arch.
struct CheckedObject {
  const ObjectSpec* spec = nullptr;  // points into the Spec given to check_spec(), which must outlive it
  std::size_t index = 0;             // its index in Spec::objects
  fs::path path;                     // the file read; empty for a built-in object
  std::string bytes;
  std::string sha256;
  std::uint64_t size = 0;
  bpf::ObjectLayout layout;
  bpf::ObjectInfo info;
};

// Reads, vets and checks every object of `spec` for `arch` ("x86_64" or "arm64"; the aliases
// parse_arch() takes too). Nothing is loaded; the first problem found is the error.
Result<std::vector<CheckedObject>> check_spec(const Spec& spec, std::string_view arch,
                                              const BuiltinObjects& builtins = {});

// The part of check_spec() that needs no file: the spec's demands on objects[index] against the
// programs, maps and globals libbpf found in it.
Status check_object(const Spec& spec, std::size_t index, const bpf::ObjectLayout& layout);

// The specs of the programs of `layout` that `object` does not name, in the object's order: auto
// attach, or load_only where libbpf cannot attach the program by itself and the object allows
// that fallback (--object alone). After check_object() passed, these are how they run.
std::vector<ProgramSpec> unnamed_programs(const ObjectSpec& object, const bpf::ObjectLayout& layout);

// What a program's ELF section says about a uprobe or USDT target: "uprobe//bin/x:fn" names one,
// "uprobe" and "usdt" do not (the spec's `target` must). kind: "uprobe", "usdt" or "" for others.
struct SectionTarget {
  std::string_view kind;
  bool names_target = false;
};
SectionTarget section_target(std::string_view section);

}  // namespace kgate::spec
