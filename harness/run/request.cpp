#include "run/request.hpp"

#include <set>

#include "core/json_doc.hpp"
#include "core/strings.hpp"

namespace kgate::run {

namespace {

using nlohmann::json;

std::string absolute_or_empty(const fs::path& p) {
  return p.empty() ? std::string() : absolute_path(p).lexically_normal().string();
}

json optional_number(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

// Reads one key of a request, refusing a wrong type.
class Fields {
 public:
  Fields(const json& j, std::string_view origin) : j_(j), origin_(origin) {}

  std::unexpected<Error> bad(std::string_view key, std::string_view what) const {
    return fail(FailureClass::usage,
                std::string(origin_) + ": " + std::string(key) + ": " + std::string(what));
  }
  Status string(std::string_view key, std::string& out) const {
    const json& v = j_.at(std::string(key));
    if (!v.is_string()) return bad(key, "must be a string");
    out = v.get<std::string>();
    return {};
  }
  Status path(std::string_view key, fs::path& out) const {
    std::string s;
    if (auto st = string(key, s); !st) return st;
    if (!s.empty() && s.front() != '/') return bad(key, "must be an absolute path or \"\"");
    out = s;
    return {};
  }
  Status strings(std::string_view key, std::vector<std::string>& out) const {
    const json& v = j_.at(std::string(key));
    if (!v.is_array()) return bad(key, "must be an array of strings");
    for (const auto& s : v) {
      if (!s.is_string()) return bad(key, "must be an array of strings");
      out.push_back(s.get<std::string>());
    }
    return {};
  }
  Status seconds(std::string_view key, std::optional<double>& out) const {
    const json& v = j_.at(std::string(key));
    if (v.is_null()) return {};
    if (!v.is_number() || v.get<double>() <= 0 || v.get<double>() > 86400)
      return bad(key, "must be null or seconds from 0 to 86400");
    out = v.get<double>();
    return {};
  }

 private:
  const json& j_;
  std::string_view origin_;
};

}  // namespace

json request_json(const RunRequest& r) {
  json files = json::array();
  for (const auto& f : r.files) files.push_back({{"source", absolute_or_empty(f.source)}, {"dest", f.dest}});
  json sysroots = json::array();
  for (const auto& s : r.sysroots) sysroots.push_back(absolute_or_empty(s));
  return {{"schema", request_schema},
          {"name", r.name},
          {"entry", r.entry},
          {"kernel", absolute_or_empty(r.kernel)},
          {"modules", absolute_or_empty(r.modules_dir)},
          {"btf", absolute_or_empty(r.btf)},
          {"spec", absolute_or_empty(r.spec)},
          {"object", absolute_or_empty(r.object)},
          {"catalog", absolute_or_empty(r.catalog)},
          {"arch", r.arch ? json(std::string(vm::arch_name(*r.arch))) : json(nullptr)},
          {"qemu", r.qemu},
          {"count", r.count},
          {"lockdown", std::string(lockdown_name(r.lockdown))},
          {"boot_timeout_s", optional_number(r.boot_timeout_s)},
          {"request_timeout_s", optional_number(r.request_timeout_s)},
          {"append", r.append},
          {"qemu_args", r.qemu_args},
          {"refresh", r.refresh},
          {"image", r.image},
          {"exec", r.image.empty() ? absolute_or_empty(r.exec) : r.exec.string()},
          {"exec_args", r.exec_args ? json(*r.exec_args) : json(nullptr)},
          {"files", files},
          {"sysroots", sysroots}};
}

Result<RunRequest> request_from_json(const json& j, std::string_view origin) {
  static const std::set<std::string> keys = {
      "schema",   "name",           "entry",   "kernel",    "modules", "btf",
      "spec",     "object",         "catalog", "arch",      "qemu",    "count",
      "lockdown", "boot_timeout_s", "append",  "qemu_args", "refresh", "request_timeout_s"};
  // Keys added later within kgate.request/1: optional, so that older receipts still read.
  static const std::set<std::string> optional_keys = {"exec", "exec_args", "files", "sysroots", "image"};
  auto bad = [&](const std::string& what) {
    return fail(FailureClass::usage, std::string(origin) + ": " + what);
  };
  if (!j.is_object()) return bad("a request is a JSON object");
  for (const auto& [key, _] : j.items()) {
    if (!keys.contains(key) && !optional_keys.contains(key)) return bad("unknown key \"" + key + "\"");
  }
  for (const auto& key : keys) {
    if (!j.contains(key)) return bad("missing key \"" + key + "\"");
  }
  if (j["schema"] != request_schema)
    return bad("schema: must be \"" + std::string(request_schema) + "\" (this kgate reads that version)");
  Fields f(j, origin);
  RunRequest r;
  std::string arch, lockdown;
  Status st = f.string("name", r.name);
  if (st) st = f.string("entry", r.entry);
  if (st) st = f.path("kernel", r.kernel);
  if (st) st = f.path("modules", r.modules_dir);
  if (st) st = f.path("btf", r.btf);
  if (st) st = f.path("spec", r.spec);
  if (st) st = f.path("object", r.object);
  if (st) st = f.path("catalog", r.catalog);
  if (st) st = f.string("qemu", r.qemu);
  if (st) st = f.string("lockdown", lockdown);
  if (st) st = f.seconds("boot_timeout_s", r.boot_timeout_s);
  if (st) st = f.seconds("request_timeout_s", r.request_timeout_s);
  if (st) st = f.strings("append", r.append);
  if (st) st = f.strings("qemu_args", r.qemu_args);
  if (!st) return std::unexpected(st.error());
  if (!j["arch"].is_null()) {
    if (!j["arch"].is_string() || !vm::parse_arch(j["arch"].get<std::string>()))
      return f.bad("arch", "must be null, \"x86_64\" or \"arm64\"");
    r.arch = vm::parse_arch(j["arch"].get<std::string>());
  }
  auto l = parse_lockdown(lockdown);
  if (!l) return f.bad("lockdown", "must be none, integrity or confidentiality");
  r.lockdown = *l;
  if (!j["count"].is_number_integer() || j["count"].get<long long>() < 1 ||
      j["count"].get<long long>() > 1000)
    return f.bad("count", "must be an integer from 1 to 1000");
  r.count = j["count"].get<int>();
  if (!j["refresh"].is_boolean()) return f.bad("refresh", "must be true or false");
  r.refresh = j["refresh"].get<bool>();
  if (j.contains("exec")) {
    if (auto s = f.path("exec", r.exec); !s) return std::unexpected(s.error());
  }
  if (j.contains("image")) {
    if (!j["image"].is_string()) return f.bad("image", "must be a string");
    r.image = j["image"].get<std::string>();
  }
  if (j.contains("exec_args") && !j["exec_args"].is_null()) {
    std::vector<std::string> args;
    if (auto s = f.strings("exec_args", args); !s) return std::unexpected(s.error());
    r.exec_args = std::move(args);
  }
  if (j.contains("files")) {
    if (!j["files"].is_array()) return f.bad("files", "must be an array of {\"source\", \"dest\"}");
    for (const auto& e : j["files"]) {
      if (!e.is_object() || e.size() != 2 || !e.contains("source") || !e.contains("dest") ||
          !e["source"].is_string() || !e["dest"].is_string() ||
          !e["source"].get<std::string>().starts_with("/") || !e["dest"].get<std::string>().starts_with("/"))
        return f.bad("files", "each must be {\"source\": absolute host path, \"dest\": absolute guest path}");
      r.files.push_back({e["source"].get<std::string>(), e["dest"].get<std::string>()});
    }
  }
  if (j.contains("sysroots")) {
    std::vector<std::string> roots;
    if (auto s = f.strings("sysroots", roots); !s) return std::unexpected(s.error());
    for (const auto& root : roots) {
      if (!root.starts_with("/")) return f.bad("sysroots", "must be absolute paths");
      r.sysroots.push_back(root);
    }
  }
  if (!r.entry.empty() && !r.kernel.empty()) return bad("entry and kernel exclude each other");
  return r;
}

Result<RunRequest> read_request(const fs::path& file) {
  auto doc = read_json_doc(file);
  if (!doc) return std::unexpected(doc.error());
  const json& j = doc->root();
  // A receipt answers one request and records it.
  const bool receipt = j.is_object() && j.contains("schema") && j["schema"].is_string() &&
                       j["schema"].get<std::string>().starts_with("kgate.receipt/");
  if (receipt) {
    if (!j.contains("request") || !j["request"].is_object())
      return fail(FailureClass::usage, file.string() + ": a receipt of a run that recorded no request");
    return request_from_json(j["request"], file.string() + ": request");
  }
  return request_from_json(j, file.string());
}

}  // namespace kgate::run
