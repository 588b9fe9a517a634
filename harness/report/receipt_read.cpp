// Reading a receipt back: the inverse of receipt_json(), for the matrix's reports and for
// whoever reproduces a run from its receipt. Strict where it matters (the schema, the verdict and
// its class), lenient elsewhere: a receipt is kgate's own output, but a file on disk can be cut
// short or edited, and a wrong type reads as the field's default rather than throwing.
#include <map>

#include "channel/fields.hpp"
#include "core/files.hpp"
#include "core/json_doc.hpp"
#include "report/receipt.hpp"

namespace kgate::report {

namespace {

using channel::get_array;
using channel::get_bool;
using channel::get_int;
using channel::get_number;
using channel::get_string;
using channel::get_strings;
using nlohmann::json;

const json& member(const json& j, std::string_view key) {
  static const json null;
  if (!j.is_object()) return null;
  auto it = j.find(key);
  return it == j.end() ? null : *it;
}

ProgramResult program_from_json(const json& p) {
  ProgramResult r;
  r.object = get_string(p, "object");
  r.name = get_string(p, "name");
  r.section = get_string(p, "section");
  r.type = get_string(p, "type");
  r.attach = get_string(p, "attach");
  r.verdict = get_string(p, "verdict");
  r.reasons = get_strings(p, "reasons");
  r.skip_reason = get_string(p, "skip_reason");
  r.loaded = get_bool(p, "loaded");
  r.attached = get_bool(p, "attached");
  const json& v = member(p, "verifier");
  r.insns_processed = get_int(v, "insns_processed").value_or(-1);
  r.total_states = get_int(v, "total_states").value_or(-1);
  r.peak_states = get_int(v, "peak_states").value_or(-1);
  r.verification_us = get_int(v, "verification_us").value_or(-1);
  r.stack_depth = get_string(v, "stack_depth");
  if (auto n = get_int(v, "verified_insns")) r.verified_insns = static_cast<std::uint32_t>(*n);
  r.xlated_bytes = static_cast<std::uint32_t>(get_int(v, "xlated_bytes").value_or(0));
  r.jited_bytes = static_cast<std::uint32_t>(get_int(v, "jited_bytes").value_or(0));
  r.load_ms = get_number(v, "load_ms").value_or(0);
  r.attach_ms = get_number(p, "attach_ms").value_or(0);
  r.detach_ms = get_number(p, "detach_ms").value_or(0);
  if (auto n = get_int(p, "run_count")) r.run_count = static_cast<std::uint64_t>(*n);
  r.run_time_ns = static_cast<std::uint64_t>(get_int(p, "run_time_ns").value_or(0));
  r.required_runs = static_cast<std::uint64_t>(get_int(p, "required_runs").value_or(0));
  r.records = static_cast<std::uint64_t>(get_int(p, "records").value_or(0));
  r.nonce_records = static_cast<std::uint64_t>(get_int(p, "nonce_records").value_or(0));
  r.required_records = static_cast<std::uint64_t>(get_int(p, "required_records").value_or(0));
  for (const auto& x : get_array(p, "retvals"))
    if (x.is_number_integer()) r.retvals.push_back(x.get<std::int64_t>());
  r.error = get_string(p, "error");
  r.log_tail = get_strings(p, "verifier_log_tail");
  return r;
}

}  // namespace

Result<Receipt> receipt_from_json(const json& j, std::string_view origin) {
  auto bad = [&](const std::string& what) {
    return fail(FailureClass::usage, std::string(origin) + ": " + what);
  };
  if (!j.is_object()) return bad("a receipt is a JSON object");
  if (get_string(j, "schema") != receipt_schema)
    return bad("schema is '" + get_string(j, "schema") + "', this kgate reads " + receipt_schema);
  Receipt r;
  r.kgate_version = get_string(j, "kgate_version");
  r.request = member(j, "request");
  r.entry = get_string(j, "entry");
  r.arch = get_string(j, "arch");
  const json& k = member(j, "kernel");
  r.kernel.catalog_entry = get_string(k, "catalog_entry");
  r.kernel.source = get_string(k, "source");
  r.kernel.release_expected = get_string(k, "release_expected");
  r.kernel.image_sha256 = get_string(k, "image_sha256");
  r.kernel.boot_sha256 = get_string(k, "boot_sha256");
  r.kernel.pvh = get_bool(k, "pvh");
  const json& ir = member(j, "initramfs");
  r.initramfs.sha256 = get_string(ir, "sha256");
  r.initramfs.agent_sha256 = get_string(ir, "agent_sha256");
  r.initramfs.modules = get_strings(ir, "modules");
  const json& q = member(j, "qemu");
  r.qemu.binary = get_string(q, "binary");
  r.qemu.version = get_string(q, "version");
  r.qemu.accel = get_string(q, "accel");
  r.qemu.accel_note = get_string(q, "accel_note");
  r.qemu.machine = get_string(q, "machine");
  r.qemu.argv = get_strings(q, "argv");
  r.cmdline = get_string(j, "cmdline");
  r.guest = member(j, "guest");
  for (const auto& o : get_array(j, "objects")) {
    Receipt::Object ro{get_string(o, "name"),   get_string(o, "path"),
                       get_string(o, "sha256"), static_cast<std::uint64_t>(get_int(o, "size").value_or(0)),
                       get_string(o, "copy"),   {}};
    for (const auto& ms : get_array(o, "load_rounds_ms"))
      if (ms.is_number()) ro.load_rounds_ms.push_back(ms.get<double>());
    r.objects.push_back(std::move(ro));
  }
  const json& s = member(j, "spec");
  r.spec.file = get_string(s, "file");
  r.spec.sha256 = get_string(s, "sha256");
  r.spec.copy = get_string(s, "copy");
  r.spec.description = get_string(s, "description");
  const json& c = member(j, "canary");
  r.canary.name = get_string(c, "name");
  r.canary.sha256 = get_string(c, "sha256");
  r.lockdown = member(j, "lockdown");
  r.preflight = member(j, "preflight");
  r.btf = member(j, "btf");
  r.nonce = get_string(j, "nonce");
  r.trigger_count = static_cast<int>(get_int(j, "trigger_count").value_or(0));
  for (const auto& p : get_array(j, "programs")) r.programs.push_back(program_from_json(p));
  r.leftovers = member(j, "leftovers");
  r.loader = member(j, "loader");
  if (member(j, "files").is_array()) r.files = member(j, "files");
  r.repro = member(j, "repro");
  r.host = member(j, "host");
  r.debug = member(j, "debug");
  const json& t = member(j, "timings_s");
  if (t.is_object()) {
    for (const auto& [phase, seconds] : t.items())
      if (seconds.is_number()) r.timings_s.emplace_back(phase, seconds.get<double>());
  }
  // The verdict and its class must agree: a receipt that says neither is no result.
  const std::string verdict = get_string(j, "verdict");
  const json& f = member(j, "failure");
  if (verdict == "pass") {
    if (!f.is_null()) return bad("verdict pass with a failure");
    r.verdict = FailureClass::pass;
  } else if (verdict == "fail") {
    auto cls = class_named(get_string(f, "class"));
    if (!cls || *cls == FailureClass::pass) return bad("verdict fail without a failure class");
    r.verdict = *cls;
    r.failure_message = get_string(f, "message");
  } else {
    return bad("verdict is '" + verdict + "', not pass or fail");
  }
  r.console_log = get_string(j, "console_log");
  r.kernel_log = get_string(j, "kernel_log");
  r.console_tail = get_strings(j, "console_tail");
  r.console_splats = member(j, "console_splats");
  return r;
}

Result<Receipt> read_receipt(const fs::path& file) {
  auto doc = read_json_doc(file);
  if (!doc) return std::unexpected(doc.error());
  return receipt_from_json(doc->root(), file.string());
}

}  // namespace kgate::report
