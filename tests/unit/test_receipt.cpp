#include <doctest/doctest.h>

#include <cstdlib>

#include "core/files.hpp"
#include "report/receipt.hpp"

using namespace kgate;

namespace {
std::string source_root() {
  const char* env = std::getenv("KGATE_SOURCE_ROOT");
  return env ? env : std::string(__FILE__).substr(0, std::string(__FILE__).rfind("/tests/"));
}

report::Receipt sample() {
  report::Receipt r;
  r.kgate_version = "0.1.0";
  r.entry = "debian-6.1";
  r.arch = "x86_64";
  r.kernel = {"debian-6.1",         "debian-package linux-image-6.1.0-56-amd64 6.1.192-2",
              "6.1.0-56-amd64",     std::string(64, 'a'),
              std::string(64, 'b'), true};
  r.initramfs = {std::string(64, 'c'), std::string(64, 'd'), {"virtio", "virtio_console"}};
  r.qemu = {"/usr/bin/qemu-system-x86_64", "QEMU emulator version 7.2.22", "tcg", "no usable /dev/kvm", "pc",
            {"qemu", "-M", "pc"}};
  r.cmdline = "console=ttyS0 panic=-1 rdinit=/init";
  r.guest = {{"release", "6.1.0-56-amd64"}, {"lockdown", "[none] integrity confidentiality"}, {"pid", 1}};
  r.objects = {{"probe", "", std::string(64, 'e'), 5000, "", {150.5}}};
  r.nonce = "0123456789abcdef";
  r.trigger_count = 8;
  report::ProgramResult p;
  p.object = "probe";
  p.name = "on_getpid";
  p.section = "tracepoint/syscalls/sys_enter_getpid";
  p.type = "tracepoint";
  p.attach = "auto";
  p.verdict = "pass";
  p.loaded = p.attached = true;
  p.insns_processed = 30;
  p.total_states = 2;
  p.peak_states = 2;
  p.verification_us = 41;
  p.stack_depth = "8";
  p.xlated_bytes = 320;
  p.jited_bytes = 200;
  p.load_ms = 1.23456;
  p.attach_ms = 2.5;
  p.detach_ms = 0.75;
  p.run_count = 8;
  p.run_time_ns = 1234;
  p.required_runs = 8;
  p.records = 8;
  p.nonce_records = 8;
  p.required_records = 8;
  r.programs.push_back(p);
  report::ProgramResult q = p;
  q.name = "refused";
  q.verdict = "fail";
  q.reasons = {"verifier_reject"};
  q.loaded = q.attached = false;
  q.run_count.reset();
  q.error = "refused: Permission denied: R0 invalid mem access";
  q.log_tail = {"5: (7b) *(u64 *)(r0 +0) = r6", "R0 invalid mem access 'map_value_or_null'"};
  r.programs.push_back(q);
  r.leftovers = {{"programs", nlohmann::json::array()}, {"links", nlohmann::json::array()}};
  r.timings_s = {{"boot", 2.1234}, {"total", 3.5}};
  r.verdict = FailureClass::pass;
  r.console_log = "console.log";
  return r;
}
}  // namespace

TEST_CASE("receipt: byte-stable rendering equals the golden file") {
  std::string golden_path = source_root() + "/tests/data/golden/receipt.json";
  std::string rendered = report::render_receipt(sample());
  if (std::getenv("KGATE_UPDATE_GOLDEN")) REQUIRE(write_file_atomic(golden_path, rendered).has_value());
  auto golden = read_file(golden_path);
  REQUIRE_MESSAGE(golden.has_value(), "missing golden file; run with KGATE_UPDATE_GOLDEN=1 once");
  CHECK(rendered == *golden);
  CHECK(rendered == report::render_receipt(sample()));
}

TEST_CASE("receipt: a failure names its class and exit code; a program without matches fails") {
  auto r = sample();
  r.verdict = FailureClass::boot_hang;
  r.failure_message = "no hello";
  auto j = report::receipt_json(r);
  CHECK(j["verdict"] == "fail");
  CHECK(j["failure"]["class"] == "boot_hang");
  CHECK(j["failure"]["exit_code"] == 4);
  CHECK(j["schema"] == "kgate.receipt/2");
  CHECK(j["programs"][0]["passed"] == true);
  CHECK(j["programs"][1]["passed"] == false);
  CHECK(j["programs"][1]["reasons"][0] == "verifier_reject");
  CHECK(j["programs"][0]["verifier"]["insns_processed"] == 30);
  r.programs[0].verdict = "skipped";
  CHECK_FALSE(r.programs[0].passed());
}

TEST_CASE("receipt: read back, the golden file renders to itself byte for byte") {
  std::string golden_path = source_root() + "/tests/data/golden/receipt.json";
  auto r = report::read_receipt(golden_path);
  REQUIRE_MESSAGE(r.has_value(), r.error().describe());
  CHECK(report::render_receipt(*r) == read_file(golden_path).value());
  // Typed, as the writer had it.
  CHECK(r->verdict == FailureClass::pass);
  REQUIRE(r->programs.size() == 2);
  CHECK(r->programs[1].reasons == std::vector<std::string>{"verifier_reject"});
  CHECK(r->programs[1].log_tail.size() == 2);
  CHECK(r->programs[0].insns_processed == 30);
  CHECK(r->objects[0].sha256 == std::string(64, 'e'));

  // A failure keeps its class and message.
  auto failed = sample();
  failed.verdict = FailureClass::kernel_panic;
  failed.failure_message = "Kernel panic - not syncing";
  auto back = report::receipt_from_json(report::receipt_json(failed), "x");
  REQUIRE(back.has_value());
  CHECK(back->verdict == FailureClass::kernel_panic);
  CHECK(back->failure_message == "Kernel panic - not syncing");
  CHECK(report::render_receipt(*back) == report::render_receipt(failed));
}

TEST_CASE("receipt: what cannot be read back is a usage error naming the file") {
  auto j = report::receipt_json(sample());
  struct Row {
    const char* what;
    nlohmann::json doc;
    const char* message;
  };
  auto with = [&](const char* key, nlohmann::json v) {
    auto d = j;
    d[key] = std::move(v);
    return d;
  };
  const Row rows[] = {
      {"an older schema", with("schema", "kgate.receipt/1"), "this kgate reads kgate.receipt/2"},
      {"no verdict", with("verdict", nullptr), "not pass or fail"},
      {"a pass with a failure", with("failure", {{"class", "boot_hang"}}), "verdict pass with a failure"},
      {"a fail without a class", with("verdict", "fail"), "without a failure class"},
      {"not an object", nlohmann::json::array(), "a receipt is a JSON object"},
  };
  for (const auto& row : rows) {
    auto r = report::receipt_from_json(row.doc, "out/receipt.json");
    REQUIRE_MESSAGE(!r.has_value(), row.what);
    CHECK(r.error().cls() == FailureClass::usage);
    CHECK_MESSAGE(r.error().describe().find(row.message) != std::string::npos, r.error().describe());
    CHECK(r.error().describe().starts_with("out/receipt.json: "));
  }
  // Fields of the wrong type read as their defaults; nothing throws.
  auto odd = j;
  odd["programs"][0]["verifier"] = "nonsense";
  odd["timings_s"] = 5;
  auto r = report::receipt_from_json(odd, "x");
  REQUIRE(r.has_value());
  CHECK(r->programs[0].insns_processed == -1);
  CHECK(r->timings_s.empty());
}

TEST_CASE("receipt: a long failure message keeps its head and tail and names the file with the rest") {
  CHECK(report::bounded_message("short", 4096, "failure.txt") == "short");
  std::string listing;
  for (int i = 0; i < 3326; ++i)
    listing += "drwxr-xr-x root/root 0 2026-11-26 lib/modules/" + std::to_string(i) + "\n";
  const std::string text =
      "extract layer: tar: write error: No space left on device\n" + listing + "tar: exiting";
  const std::string b = report::bounded_message(text, 4096, "failure.txt");
  CHECK(b.size() <= 4096);
  CHECK(b.starts_with("extract layer: tar: write error: No space left on device"));
  CHECK(b.ends_with("tar: exiting"));
  CHECK(b.find(std::to_string(text.size()) + " bytes in all; the whole message is in failure.txt") !=
        std::string::npos);
}
