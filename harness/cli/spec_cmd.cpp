// kgate spec init: a starting spec for an object (spec/init.cpp proposes, this reads and writes).
#include <iostream>

#include "bpf/object.hpp"
#include "bpf/structure.hpp"
#include "cli/commands.hpp"
#include "core/files.hpp"
#include "spec/check.hpp"
#include "spec/init.hpp"
#include "spec/spec.hpp"

namespace kgate::cli {

namespace {

namespace fs = std::filesystem;

// "gate.x86_64.bpf.o" -> {"gate", "x86_64"}; "agent.bpf.o" -> {"agent", ""}.
std::pair<std::string, std::string> split_object_name(const fs::path& file) {
  std::string stem = file.filename().string();
  for (std::string_view ext : {".bpf.o", ".o"}) {
    if (stem.ends_with(ext)) {
      stem.resize(stem.size() - ext.size());
      break;
    }
  }
  for (const auto& [suffix, arch] :
       {std::pair{".x86_64", "x86_64"}, std::pair{".x86", "x86_64"}, std::pair{".amd64", "x86_64"},
        std::pair{".arm64", "arm64"}, std::pair{".aarch64", "arm64"}}) {
    if (stem.ends_with(suffix)) return {stem.substr(0, stem.size() - std::string_view(suffix).size()), arch};
  }
  return {stem, ""};
}

int spec_init(const fs::path& object, const fs::path& out, bool force) {
  auto bytes = read_file(object);
  if (!bytes) return input_error(bytes.error());
  auto info = bpf::inspect_object(*bytes);
  if (!info) return input_error(std::move(info.error()).context(object.string()));
  auto layout = bpf::open_inspected_object(*bytes, *info, object.filename().string());
  if (!layout) return input_error(std::move(layout.error()).context(object.string()));
  if (path_exists(out) && !force)
    return usage_error(out.string() + " exists: give another --out, or --force to replace it");

  spec::InitObject init;
  auto [name, arch] = split_object_name(object);
  init.name = name.empty() ? "object" : name;
  init.layout = std::move(*layout);
  const fs::path spec_dir = absolute_path(out).parent_path();
  auto relative = [&](const fs::path& p) { return absolute_path(p).lexically_relative(spec_dir).string(); };
  if (arch.empty()) {
    // The arch its CO-RE relocations read registers of, else one path for every arch.
    const std::string reads = bpf::register_arch(*info);
    arch = reads == "x86" ? "x86_64" : reads;
  }
  init.path[arch] = relative(object);  // "": one path for every arch
  // Its build for the other arch beside it, named the same way: both go in.
  const std::string given = object.filename().string();
  for (const auto& [mine, other, other_arch] :
       {std::tuple{".x86_64.", ".arm64.", "arm64"}, std::tuple{".arm64.", ".x86_64.", "x86_64"},
        std::tuple{".x86.", ".arm64.", "arm64"}}) {
    const auto at = given.find(mine);
    if (at == std::string::npos) continue;
    const fs::path sibling = object.parent_path() /
                             (given.substr(0, at) + other + given.substr(at + std::string_view(mine).size()));
    if (path_exists(sibling)) init.path[other_arch] = relative(sibling);
  }
  nlohmann::ordered_json doc = spec::propose_spec(init);
  if (auto st = make_dirs(spec_dir); !st) return input_error(st.error());
  if (auto st = write_file_atomic(out, doc.dump(2) + "\n"); !st) return input_error(st.error());

  // What was written must be a spec kgate runs: checked as `kgate run --spec` checks it.
  auto written = spec::load_spec(out);
  if (written) {
    auto checked = spec::check_spec(*written, arch.empty() ? "x86_64" : arch);
    if (!checked) written = std::unexpected(checked.error());
  }
  if (!written) {
    std::cerr << "kgate: the spec written to " << out.string()
              << " does not pass kgate's own check (a kgate bug): " << written.error().describe() << "\n";
    return exit_code(FailureClass::infra);
  }
  std::cout << out.string() << ": " << init.layout.programs.size() << " programs of " << object.string()
            << ", each marked \"proposed\":\n";
  for (const auto& [prog, p] : doc["objects"][0]["programs"].items()) {
    std::string how = p.contains("attach") ? p["attach"].get<std::string>() : "auto";
    if (p.contains("trigger"))
      how += ", trigger " + (p["trigger"].is_string() ? p["trigger"].get<std::string>()
                                                      : p["trigger"]["kind"].get<std::string>());
    std::cout << "  " << prog << ": " << how << "\n";
  }
  std::cout << "run it: kgate run --spec " << out.string() << "\n";
  return 0;
}

}  // namespace

cxxopts::Options spec_options() {
  cxxopts::Options opts(
      "kgate spec",
      "Write a starting run spec (docs/spec.md) for a BPF object: every program with the "
      "attach mode its section implies and a trigger where kgate has one that reaches it, each "
      "marked \"proposed\" for you to confirm.\n  kgate spec init OBJECT.bpf.o [--out FILE]");
  opts.positional_help("init OBJECT");
  auto add = opts.add_options();
  add("out", "the spec file to write (default: <object name>.spec.json beside the object)",
      cxxopts::value<std::string>());
  add("force", "replace --out if it exists");
  add_positional_words(opts);
  add("h,help", "show this help");
  return opts;
}

int cmd_spec(int argc, char** argv) {
  auto opts = spec_options();
  cxxopts::ParseResult args;
  if (auto done = parse_args(opts, argc, argv, args)) return *done;
  const auto words = positional_words(args);
  if (words.empty() || words.front() != "init")
    return usage_error("spec: say 'kgate spec init OBJECT.bpf.o'");
  if (words.size() != 2) return usage_error("spec init: name one object file");
  const fs::path object = words[1];
  const fs::path out = args.count("out")
                           ? fs::path(args["out"].as<std::string>())
                           : object.parent_path() / (split_object_name(object).first + ".spec.json");
  return spec_init(object, out, args.count("force") > 0);
}

}  // namespace kgate::cli
