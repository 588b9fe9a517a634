// VM suite: boots the real Debian kernel under QEMU (TCG here) through the real
// kgate binary, and asserts on the receipts it writes.
#include <doctest/doctest.h>

#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <thread>

#include "core/strings.hpp"
#include "vm_harness.hpp"

using namespace kgate;
using namespace kgate::vmtest;
using nlohmann::json;

namespace {
TempDir out_root() {
  auto t = TempDir::create("kgate-vmtest");
  REQUIRE(t.has_value());
  return std::move(*t);
}

void check_no_qemu_left(const fs::path& dir) {
  auto left = processes_mentioning(dir.string());
  CHECK_MESSAGE(left.empty(), "QEMU processes left running for " << dir.string());
}

void check_failure(const KgateResult& r, const char* cls, int code) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == code);
  REQUIRE(r.receipt.is_object());
  CHECK(r.receipt["verdict"] == "fail");
  CHECK(r.receipt["failure"]["class"] == cls);
  CHECK(r.receipt["failure"]["exit_code"] == code);
  CHECK(fs::exists(r.dir / "console.log"));
  check_no_qemu_left(r.dir);
}
// Runs kgate with `args` into <tmp>/<name> and requires a pass with a receipt.
KgateResult run_passing(const TempDir& tmp, const char* name, const std::vector<std::string>& args) {
  auto r = run_kgate(tmp.path() / name, args);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 0);
  REQUIRE(r.receipt.is_object());
  return r;
}
}  // namespace

namespace {
// Both built-in programs loaded, attached and fired at least `times` times with the run's nonce,
// counted by the kernel and by their records, with the verifier's figures for each.
void check_programs_fired(const json& rc, int times) {
  REQUIRE(rc["programs"].size() == 2);
  for (const auto& p : rc["programs"]) {
    CAPTURE(p.dump());
    CHECK(p["object"] == "probe");
    CHECK(p["verdict"] == "pass");
    CHECK(p["reasons"].empty());
    CHECK(p["loaded"] == true);
    CHECK(p["attached"] == true);
    CHECK(p["run_count"].get<int>() >= times);
    CHECK(p["nonce_records"].get<int>() >= times);
    CHECK(p["required_records"] == times);
    CHECK(p["passed"] == true);
    CHECK(p["verifier"]["insns_processed"].get<int>() > 0);
    CHECK(p["verifier"]["xlated_bytes"].get<int>() > 0);
  }
}
}  // namespace

TEST_CASE("pass: the probe loads, attaches and fires with this run's nonce on debian-6.1") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_passing(tmp, "pass", {"--count", "5"});
  const json& rc = r.receipt;
  CHECK(rc["schema"] == "kgate.receipt/2");
  CHECK(rc["entry"] == "debian-6.1");
  CHECK(rc["verdict"] == "pass");
  CHECK(rc["failure"].is_null());
  // The guest's own uname agrees with the package the catalog resolved.
  std::string expected = rc["kernel"]["release_expected"];
  CHECK(expected.starts_with("6.1."));
  CHECK(rc["guest"]["release"] == expected);
  CHECK(rc["kernel"]["release"] == expected);
  CHECK(rc["kernel"]["pvh"] == true);
  CHECK(rc["guest"]["btf"] == true);
  // CO-RE took the host-made BTF of what the probe and canary read: a few types of the kernel's
  // tens of thousands, and the programs above fired with it.
  CHECK(rc["btf"]["source"] == "kernel");
  CHECK(rc["btf"]["core"]["btf"] == "minimized");
  CHECK(rc["btf"]["core"]["types"].get<int>() > 0);
  CHECK(rc["btf"]["core"]["types"].get<int>() < 100);
  CHECK(rc["btf"]["core"]["bytes"].get<std::size_t>() <
        rc["btf"]["core"]["kernel_bytes"].get<std::size_t>() / 100);
  CHECK_FALSE(rc["btf"]["core"].contains("fell_back"));
  CHECK(rc["qemu"]["accel"].get<std::string>().size() > 0);
  CHECK(rc["nonce"].get<std::string>().size() == 16);
  check_programs_fired(rc, 5);
  // No lockdown asked: the guest shows none and the write-user canary loads.
  CHECK(rc["lockdown"]["requested"] == "none");
  CHECK(rc["lockdown"]["observed"] == "none");
  CHECK(rc["lockdown"]["canary"]["loaded"] == true);
  CHECK(rc["lockdown"]["proven"] == true);
  CHECK(rc["leftovers"]["programs"].empty());
  CHECK(rc["leftovers"]["links"].empty());
  CHECK(fs::file_size(r.dir / "console.log") > 0);
  // The console has notices and worse; kernel.log, read over the channel, has the whole boot.
  const std::string console = read_file(r.dir / "console.log").value_or("");
  CHECK(console.find("Linux version") != std::string::npos);
  CHECK(console.find("Run /init as init process") == std::string::npos);
  CHECK(rc["kernel_log"] == "kernel.log");
  const std::string kernel_log = read_file(r.dir / "kernel.log").value_or("");
  CHECK(kernel_log.find("Linux version") != std::string::npos);
  CHECK(kernel_log.find("Run /init as init process") != std::string::npos);
  check_no_qemu_left(r.dir);
}

TEST_CASE("boot hang: a guest that never says hello ends as boot_hang at the boot deadline") {
  require_vm_prerequisites();
  auto tmp = out_root();
  // The agent's fault injection keeps PID 1 alive and silent: a hang whatever the machine's
  // speed, where a deadline shorter than a boot depends on it.
  auto start = Clock::now();
  auto r = run_kgate(tmp.path() / "hang", {"--append", "kgate.fault=silent", "--boot-timeout", "15"});
  check_failure(r, "boot_hang", 4);
  CHECK(r.receipt["failure"]["message"].get<std::string>().find(
            "no hello from the agent within the boot deadline "
            "of 15.0 s") != std::string::npos);
  CHECK(seconds_since(start) < 60);
  // A deadline QEMU cannot even meet still leaves a console log and a receipt.
  auto fast = run_kgate(tmp.path() / "fast", {"--boot-timeout", "0.01"});
  check_failure(fast, "boot_hang", 4);
}

TEST_CASE("kernel panic: an rdinit that names a missing file panics the kernel") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_kgate(tmp.path() / "panic", {"--append", "rdinit=/nonexistent"});
  check_failure(r, "kernel_panic", 3);
  CHECK(r.receipt["failure"]["message"].get<std::string>().find("Kernel panic") != std::string::npos);
  CHECK_FALSE(r.receipt["console_tail"].empty());
}

TEST_CASE("QEMU killed mid-run: the receipt is still written, class infra") {
  require_vm_prerequisites();
  auto tmp = out_root();
  fs::path dir = tmp.path() / "killed";
  // loglevel=7: the console shows the info-level "Run /init" line this test waits for.
  auto child =
      Child::spawn({kgate_binary().string(), "run", "--receipt", dir.string(), "--append", "loglevel=7"},
                   {tmp.path() / "stdout", tmp.path() / "stderr", {}});
  REQUIRE(child.has_value());
  // Wait for QEMU (its console path names our directory), then kill it outright.
  std::vector<int> qemu;
  for (int i = 0; i < 600 && qemu.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int pid : processes_mentioning(dir.string())) {
      if (pid != child->pid()) qemu.push_back(pid);
    }
  }
  REQUIRE_FALSE(qemu.empty());
  // Mid-run: the kernel has booted and handed over to the agent.
  bool agent_started = false;
  for (int i = 0; i < 600 && !agent_started; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    agent_started =
        read_file(dir / "console.log").value_or("").find("Run /init as init process") != std::string::npos;
  }
  REQUIRE(agent_started);
  for (int pid : qemu) ::kill(pid, SIGKILL);
  auto status = child->wait(Deadline(std::chrono::minutes(2)));
  REQUIRE(status.has_value());
  KgateResult r;
  r.dir = dir;
  r.exit_code = WEXITSTATUS(*status);
  r.err = read_file(tmp.path() / "stderr").value_or("");
  r.receipt = json::parse(read_file(dir / "receipt.json").value_or("null"), nullptr, false);
  check_failure(r, "infra", 6);
  CHECK(r.receipt["failure"]["message"].get<std::string>().find("signal") != std::string::npos);
}

TEST_CASE("SIGTERM to kgate mid-boot stops QEMU and writes an interrupted receipt") {
  require_vm_prerequisites();
  auto tmp = out_root();
  fs::path dir = tmp.path() / "sigterm";
  // loglevel=7: the console shows the info-level "Run /init" line this test waits for.
  auto child =
      Child::spawn({kgate_binary().string(), "run", "--receipt", dir.string(), "--append", "loglevel=7"},
                   {tmp.path() / "stdout", tmp.path() / "stderr", {}});
  REQUIRE(child.has_value());
  bool qemu_seen = false;
  for (int i = 0; i < 600 && !qemu_seen; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int pid : processes_mentioning(dir.string())) qemu_seen = qemu_seen || pid != child->pid();
  }
  REQUIRE(qemu_seen);
  for (int i = 0; i < 1500; ++i) {
    if (read_file(dir / "console.log").value_or("").find("Run /init as init process") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(child->pid(), SIGTERM);
  auto status = child->wait(Deadline(std::chrono::seconds(30)));
  REQUIRE(status.has_value());
  KgateResult r;
  r.dir = dir;
  r.exit_code = WEXITSTATUS(*status);
  r.receipt = json::parse(read_file(dir / "receipt.json").value_or("null"), nullptr, false);
  check_failure(r, "interrupted", 130);
}

TEST_CASE("agent crash: PID 1 dying is told apart from other panics") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_kgate(tmp.path() / "crash", {"--append", "kgate.fault=crash"});
  check_failure(r, "agent_crash", 9);
  CHECK(r.receipt["failure"]["message"].get<std::string>().find("Attempted to kill init") !=
        std::string::npos);
}

TEST_CASE("a guest that sends garbage instead of frames ends as no_verdict, promptly") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto start = Clock::now();
  auto r = run_kgate(tmp.path() / "garbage", {"--append", "kgate.fault=garbage"});
  check_failure(r, "no_verdict", 10);
  CHECK(r.receipt["failure"]["message"].get<std::string>().find("bad magic") != std::string::npos);
  CHECK(seconds_since(start) < 60);
}

TEST_CASE("an agent that stops answering hits the request deadline: timeout") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_kgate(tmp.path() / "silent", {"--append", "kgate.fault=hang", "--request-timeout", "2"});
  check_failure(r, "timeout", 5);
  CHECK(r.receipt["guest"]["release"].is_string());
  // The first request after the hello: the minimized BTF for CO-RE (btf.core says it was made).
  CHECK(r.receipt["btf"]["core"]["btf"] == "minimized");
  CHECK(r.receipt["failure"]["message"].get<std::string>().find("'btf'") != std::string::npos);
}

TEST_CASE("a cached kernel whose bytes changed is refused before any boot: digest_mismatch") {
  require_vm_prerequisites();
  auto tmp = out_root();
  // The Debian kernel the suite fetched, booted as a user-supplied file through a private cache.
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  fs::path user_cache =
      xdg && *xdg ? fs::path(xdg) / "kgate" : fs::path(std::getenv("HOME")) / ".cache/kgate";
  json rec = json::parse(read_file(user_cache / "entries/debian-6.1.json").value_or("null"), nullptr, false);
  REQUIRE(rec.is_object());
  std::string tree = user_cache / "trees" / rec["package_sha256"].get<std::string>();
  std::string release = rec["release"];
  std::vector<std::string> args = {"--kernel", tree + "/boot/vmlinuz-" + release, "--modules",
                                   tree + "/lib/modules/" + release};

  fs::path cache_home = tmp.path() / "xdg";
  ::setenv("XDG_CACHE_HOME", cache_home.c_str(), 1);
  auto first = run_kgate(tmp.path() / "first", args);
  INFO("first: " << first.out << first.err);
  REQUIRE(first.exit_code == 0);
  std::string boot_sha = first.receipt["kernel"]["boot_sha256"];
  fs::path blob = cache_home / "kgate/blobs/sha256" / boot_sha;
  REQUIRE(fs::exists(blob));

  // Flip one byte in the cached vmlinux, in place.
  std::string bytes = read_file(blob).value();
  bytes[bytes.size() / 2] ^= 0x01;
  REQUIRE(write_file_atomic(blob, bytes).has_value());
  auto second = run_kgate(tmp.path() / "second", args);
  ::unsetenv("XDG_CACHE_HOME");
  if (xdg) ::setenv("XDG_CACHE_HOME", xdg, 1);
  INFO("second: " << second.out << second.err);
  CHECK(second.exit_code == 7);
  REQUIRE(second.receipt.is_object());
  CHECK(second.receipt["failure"]["class"] == "digest_mismatch");
  CHECK(second.receipt["failure"]["message"].get<std::string>().find(boot_sha) != std::string::npos);
  CHECK(second.receipt["qemu"]["argv"].empty());
  CHECK_FALSE(fs::exists(second.dir / "console.log"));
}

namespace {
// lockdown=integrity proven three ways: securityfs, the LSM list, and the canary refused by
// the verifier while the kernel log names the lockdown reason.
void check_integrity_proven(const json& l) {
  CHECK(l["requested"] == "integrity");
  CHECK(l["observed"] == "integrity");
  CHECK(l["lsm_listed"] == true);
  CHECK(l["canary"]["loaded"] == false);
  CHECK(l["canary"]["verifier"].get<std::string>().find("unknown func bpf_probe_write_user") !=
        std::string::npos);
  bool logged = false;
  for (const auto& line : l["dmesg"])
    logged = logged || line.get<std::string>().find("write user RAM") != std::string::npos;
  CHECK(logged);
  CHECK(l["proven"] == true);
}
}  // namespace

TEST_CASE("lockdown=integrity: the probe passes and the canary is refused, three ways proven") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_passing(tmp, "integrity", {"--lockdown", "integrity"});
  check_integrity_proven(r.receipt["lockdown"]);
  CHECK(r.receipt["cmdline"].get<std::string>().find("lockdown=integrity") != std::string::npos);
  for (const auto& p : r.receipt["programs"]) CHECK(p["passed"] == true);
}

TEST_CASE("arm64 pass: Debian's arm64 kernel under qemu-system-aarch64, the arm64 agent and objects") {
  require_vm_prerequisites("arm64");
  auto tmp = out_root();
  auto r = run_passing(tmp, "arm64", {"--arch", "arm64", "--count", "5"});
  const json& rc = r.receipt;
  CHECK(rc["entry"] == "debian-6.1-arm64");
  CHECK(rc["arch"] == "arm64");
  CHECK(rc["verdict"] == "pass");
  // The arm64 Image's BTF, found on the host, minimized for the arm64 probe's relocations.
  CHECK(rc["btf"]["core"]["btf"] == "minimized");
  std::string expected = rc["kernel"]["release_expected"];
  CHECK(expected.starts_with("6.1."));
  CHECK(expected.ends_with("-arm64"));
  CHECK(rc["guest"]["release"] == expected);
  CHECK(rc["guest"]["machine"] == "aarch64");
  CHECK(rc["kernel"]["pvh"] == false);
  CHECK(rc["kernel"]["source"].get<std::string>().find("-arm64 ") != std::string::npos);
  CHECK(rc["qemu"]["machine"] == "virt");
  CHECK(rc["qemu"]["accel"] == "tcg");
  const auto& argv = rc["qemu"]["argv"];
  REQUIRE(argv.is_array());
  CHECK(argv[0].get<std::string>().ends_with("qemu-system-aarch64"));
  CHECK(std::find(argv.begin(), argv.end(), json("cortex-a57")) != argv.end());
  CHECK(rc["cmdline"].get<std::string>().starts_with("console=ttyAMA0 "));
  CHECK(rc["initramfs"]["modules"].back() == "virtio_console");
  check_programs_fired(rc, 5);
  CHECK(rc["nonce"].get<std::string>().size() == 16);
  CHECK(rc["lockdown"]["observed"] == "none");
  CHECK(rc["lockdown"]["canary"]["loaded"] == true);
  CHECK(rc["lockdown"]["proven"] == true);
  CHECK(rc["leftovers"]["programs"].empty());
  CHECK(rc["leftovers"]["links"].empty());
  check_no_qemu_left(r.dir);

  // An entry of one arch with --arch of the other is a usage error, before anything boots.
  auto mismatch = run_kgate(tmp.path() / "mismatch", {"--entry", "debian-6.1-arm64", "--arch", "x86_64"});
  CHECK(mismatch.exit_code == 2);
  // A catalog kernel that no matrix entry names: run_gate itself refuses it, with a receipt.
  fs::path matrix = tmp.path() / "matrix.json";
  REQUIRE(
      write_file_atomic(matrix, R"({"schema": "kgate.matrix/1", "entries": [{"name": "x", "kernel": "x"}]})")
          .has_value());
  auto catalog_only = run_kgate(tmp.path() / "catalog-mismatch", {"--matrix", matrix.string(), "--entry",
                                                                  "debian-6.1-cloud", "--arch", "arm64"});
  CHECK(catalog_only.exit_code == 2);
  REQUIRE(catalog_only.receipt.is_object());
  CHECK(catalog_only.receipt["failure"]["class"] == "usage");
  CHECK(catalog_only.receipt["failure"]["message"].get<std::string>().find("is x86_64, but --arch arm64") !=
        std::string::npos);
}

TEST_CASE("arm64 lockdown=integrity: the probe passes and the canary is refused on arm64") {
  require_vm_prerequisites("arm64");
  auto tmp = out_root();
  auto r = run_passing(tmp, "arm64-integrity", {"--entry", "debian-6.1-arm64-integrity"});
  CHECK(r.receipt["entry"] == "debian-6.1-arm64-integrity");
  CHECK(r.receipt["arch"] == "arm64");
  CHECK(r.receipt["guest"]["machine"] == "aarch64");
  check_integrity_proven(r.receipt["lockdown"]);
  REQUIRE(r.receipt["programs"].size() == 2);
  for (const auto& p : r.receipt["programs"]) CHECK(p["passed"] == true);
  check_no_qemu_left(r.dir);
}

TEST_CASE("lockdown mismatch: none requested on a command line that forces integrity") {
  // Debian's kernel initialises the lockdown LSM early, so an lsm= list cannot
  // remove it; a forced level is the mismatch this kernel can show.
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_kgate(tmp.path() / "mismatch", {"--lockdown", "none", "--append", "lockdown=integrity"});
  check_failure(r, "lockdown_mismatch", 8);
  CHECK(r.receipt["lockdown"]["observed"] == "integrity");
  CHECK(r.receipt["lockdown"]["canary"]["loaded"] == false);
  CHECK(r.receipt["failure"]["message"].get<std::string>().find("lockdown=none requested") !=
        std::string::npos);
}

TEST_CASE("matrix: three entries with -j2 give three receipts, a summary and JUnit a parser accepts") {
  require_vm_prerequisites();
  auto tmp = out_root();
  fs::path out = tmp.path() / "matrix";
  auto cap = run_capture({kgate_binary().string(), "matrix", "-j2", "--only",
                          "debian-6.1,debian-6.1-integrity,debian-6.1-cloud", "--out", out.string()},
                         Deadline(std::chrono::minutes(5)));
  REQUIRE(cap.has_value());
  INFO("stdout: " << cap->out << "\nstderr: " << cap->err);
  CHECK(WEXITSTATUS(cap->status) == 0);
  for (const char* e : {"debian-6.1", "debian-6.1-integrity", "debian-6.1-cloud"}) {
    json rc = json::parse(read_file(out / e / "receipt.json").value_or("null"), nullptr, false);
    REQUIRE(rc.is_object());
    CHECK(rc["entry"] == e);
    CHECK(rc["verdict"] == "pass");
    CAPTURE(e);
    CHECK(cap->out.find(e) != std::string::npos);  // a row of the table
    // The entry ran the request the matrix wrote for it, resolved (kernel, lockdown, arch), and
    // its receipt records that request.
    json req = json::parse(read_file(out / e / "request.json").value_or("null"), nullptr, false);
    REQUIRE(req.is_object());
    CHECK(req["name"] == e);
    CHECK(req["entry"] == (std::string(e) == "debian-6.1-cloud" ? "debian-6.1-cloud" : "debian-6.1"));
    CHECK(req["lockdown"] == (std::string(e) == "debian-6.1-integrity" ? "integrity" : "none"));
    CHECK(req["arch"] == "x86_64");
    CHECK(rc["request"] == req);
  }
  json summary = json::parse(read_file(out / "matrix-summary.json").value_or("null"), nullptr, false);
  REQUIRE(summary.is_object());
  CHECK(summary["schema"] == "kgate.matrix-summary/1");
  CHECK(summary["passed"] == 3);
  CHECK(summary["entries"][1]["lockdown"] == "integrity");
  // An independent XML parser reads the JUnit file: a case per entry and per program.
  auto parsed = run_capture({"python3", "-c",
                             "import sys, xml.etree.ElementTree as ET\n"
                             "root = ET.parse(sys.argv[1]).getroot()\n"
                             "assert root.tag == 'testsuites'\n"
                             "cases = root.findall('./testsuite/testcase')\n"
                             "print(len(cases), sum(1 for c in cases if c.find('failure') is not None))",
                             (out / "junit.xml").string()},
                            Deadline(std::chrono::seconds(30)));
  REQUIRE(parsed.has_value());
  CHECK(parsed->out == "9 0\n");
}

TEST_CASE("matrix shards: two slices run apart merge into one; a missing shard and a grown baseline fail") {
  require_vm_prerequisites();
  auto tmp = out_root();
  const std::string only = "debian-6.1,debian-6.1-integrity";
  auto kgate = [&](std::vector<std::string> args) {
    args.insert(args.begin(), kgate_binary().string());
    auto cap = run_capture(args, Deadline(std::chrono::minutes(5)));
    REQUIRE(cap.has_value());
    return *cap;
  };
  auto summary_of = [](const fs::path& dir) {
    return json::parse(read_file(dir / "matrix-summary.json").value_or("null"), nullptr, false);
  };
  const fs::path s1 = tmp.path() / "shard1", s2 = tmp.path() / "shard2", merged = tmp.path() / "merged";
  for (const auto& [shard, dir] : {std::pair{"1/2", s1}, std::pair{"2/2", s2}}) {
    auto cap = kgate({"matrix", "--only", only, "--shard", shard, "--out", dir.string()});
    INFO("stdout: " << cap.out << "\nstderr: " << cap.err);
    CHECK(WEXITSTATUS(cap.status) == 0);
    json s = summary_of(dir);
    REQUIRE(s.is_object());
    CHECK(s["total"] == 1);  // round robin: debian-6.1 in 1/2, debian-6.1-integrity in 2/2
    CHECK(s["shard"]["selected"] == json::array({"debian-6.1", "debian-6.1-integrity"}));
  }
  CHECK(summary_of(s1)["entries"][0]["name"] == "debian-6.1");
  CHECK(summary_of(s2)["entries"][0]["name"] == "debian-6.1-integrity");

  // Merged: both entries in matrix order, their directories copied, the Markdown appended to the
  // step summary, JUnit for both.
  const fs::path step_summary = tmp.path() / "step-summary.md";
  // (Given in either order: the selection orders them.)
  auto cap = kgate({"matrix", "merge", s2.string(), s1.string(), "--out", merged.string()});
  CHECK(WEXITSTATUS(cap.status) == 0);
  CHECK(summary_of(merged)["entries"][0]["name"] == "debian-6.1");
  {
    auto env_cap =
        run_capture({"env", "GITHUB_STEP_SUMMARY=" + step_summary.string(), kgate_binary().string(), "matrix",
                     "merge", s1.string(), s2.string(), "--out", merged.string()},
                    Deadline(std::chrono::minutes(1)));
    REQUIRE(env_cap.has_value());
    cap = *env_cap;
  }
  INFO("merge stdout: " << cap.out << "\nstderr: " << cap.err);
  CHECK(WEXITSTATUS(cap.status) == 0);
  json m = summary_of(merged);
  REQUIRE(m.is_object());
  CHECK(m["passed"] == 2);
  CHECK(m["entries"][0]["name"] == "debian-6.1");
  CHECK(m["entries"][1]["name"] == "debian-6.1-integrity");
  CHECK(m["entries"][1]["lockdown"] == "integrity");
  CHECK(!m.contains("shard"));
  CHECK(json::parse(read_file(merged / "debian-6.1-integrity" / "receipt.json").value_or("null"), nullptr,
                    false)["verdict"] == "pass");
  CHECK(read_file(merged / "junit.xml").value_or("").find("name=\"debian-6.1-integrity\"") !=
        std::string::npos);
  const std::string md = read_file(step_summary).value_or("");
  CHECK(md.find("kgate matrix: pass, 2 of 2 entries passed") != std::string::npos);
  CHECK(md.find("| `probe/on_getpid` | pass, ") != std::string::npos);
  CHECK(read_file(merged / "matrix-summary.md").value_or("") + "\n" == md);

  // A shard's output missing: its entry is no verdict, and so is the merge.
  cap = kgate({"matrix", "merge", s1.string(), "--out", (tmp.path() / "half").string()});
  CHECK(WEXITSTATUS(cap.status) == 10);
  json half = summary_of(tmp.path() / "half");
  CHECK(half["entries"][1]["name"] == "debian-6.1-integrity");
  CHECK(half["entries"][1]["class"] == "no_verdict");
  CHECK(half["entries"][1]["message"].get<std::string>().find("shard 2/2") != std::string::npos);
  // The same shard twice is refused before anything is written.
  cap = kgate({"matrix", "merge", s1.string(), s1.string(), "--out", (tmp.path() / "twice").string()});
  CHECK(WEXITSTATUS(cap.status) == 2);
  CHECK(cap.err.find("are both shard 1/2") != std::string::npos);

  // Against itself as the baseline: every row the same.
  cap = kgate({"matrix", "merge", s1.string(), s2.string(), "--out", (tmp.path() / "b0").string(),
               "--baseline", merged.string()});
  CHECK(WEXITSTATUS(cap.status) == 0);
  json same =
      json::parse(read_file(tmp.path() / "b0" / "baseline-comparison.json").value_or("null"), nullptr, false);
  REQUIRE(same.is_object());
  CHECK(same["failures"] == 0);
  CHECK(same["rows"].size() == 4);  // two programs on two entries
  for (const auto& row : same["rows"]) CHECK(row["change"] == "same");
  // A baseline in which on_getpid took half the instructions on debian-6.1: it grew past 10%.
  json base = m;
  for (auto& p : base["programs"])
    if (p["name"] == "on_getpid") {
      auto& cell = p["entries"]["debian-6.1"];
      cell["insns_processed"] = cell["insns_processed"].get<long long>() / 2;
    }
  base["programs"].push_back({{"object", "probe"},
                              {"name", "gone"},
                              {"entries", {{"debian-6.1", {{"verdict", "pass"}, {"insns_processed", 9}}}}}});
  REQUIRE(write_file_atomic(tmp.path() / "base.json", base.dump()).has_value());
  cap = kgate({"matrix", "merge", s1.string(), s2.string(), "--out", (tmp.path() / "b1").string(),
               "--baseline", (tmp.path() / "base.json").string()});
  INFO("baseline stdout: " << cap.out);
  CHECK(WEXITSTATUS(cap.status) == 1);
  CHECK(cap.out.find("FAIL grew") != std::string::npos);
  CHECK(cap.out.find("against the baseline: 1 of 5 rows fail") != std::string::npos);
  json grew =
      json::parse(read_file(tmp.path() / "b1" / "baseline-comparison.json").value_or("null"), nullptr, false);
  REQUIRE(grew.is_object());
  CHECK(grew["rows"][4]["change"] == "removed");  // a program only the baseline has: reported, not failed
  // The same growth under a looser bound passes.
  cap = kgate({"matrix", "merge", s1.string(), s2.string(), "--out", (tmp.path() / "b2").string(),
               "--baseline", (tmp.path() / "base.json").string(), "--max-growth", "150"});
  CHECK(WEXITSTATUS(cap.status) == 0);
}

TEST_CASE("matrix: SIGTERM mid-run stops every VM, keeps finished receipts, marks the rest cancelled") {
  require_vm_prerequisites();
  auto tmp = out_root();
  fs::path out = tmp.path() / "matrix-term";
  auto child =
      Child::spawn({kgate_binary().string(), "matrix", "-j2", "--only", "debian-6.1*", "--out", out.string()},
                   {tmp.path() / "stdout", tmp.path() / "stderr", {}});
  REQUIRE(child.has_value());
  // Wait until two QEMUs run (their console paths name the output directory).
  int qemus = 0;
  for (int i = 0; i < 600 && qemus < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    qemus = 0;
    for (int pid : processes_mentioning(out.string())) {
      qemus +=
          read_file("/proc/" + std::to_string(pid) + "/cmdline").value_or("").starts_with("qemu-system") ||
          read_file("/proc/" + std::to_string(pid) + "/cmdline").value_or("").find("/qemu-system") !=
              std::string::npos;
    }
  }
  REQUIRE(qemus == 2);
  // Mid-run: both kernels are booting, a second or more before either could finish.
  auto booted = [&](const char* e) {
    return read_file(out / e / "console.log").value_or("").find("Linux version") != std::string::npos;
  };
  for (int i = 0; i < 1500 && !(booted("debian-6.1") && booted("debian-6.1-integrity")); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(booted("debian-6.1"));
  REQUIRE(booted("debian-6.1-integrity"));
  ::kill(child->pid(), SIGTERM);
  auto status = child->wait(Deadline(std::chrono::seconds(60)));
  REQUIRE(status.has_value());
  CHECK(WEXITSTATUS(*status) == 130);
  check_no_qemu_left(out);
  json summary = json::parse(read_file(out / "matrix-summary.json").value_or("null"), nullptr, false);
  REQUIRE(summary.is_object());
  CHECK(summary["interrupted"] == true);
  CHECK(summary["verdict"] == "fail");
  int cancelled = 0;
  for (const auto& e : summary["entries"]) cancelled += e["verdict"] == "cancelled";
  CHECK(cancelled >= 1);  // the third never started
  // The two that were running wrote interrupted receipts of their own.
  for (const char* e : {"debian-6.1", "debian-6.1-integrity"}) {
    json rc = json::parse(read_file(out / e / "receipt.json").value_or("null"), nullptr, false);
    CAPTURE(e);
    REQUIRE(rc.is_object());
    CHECK(rc["failure"]["class"] == "interrupted");
  }
}

TEST_CASE(
    "kernels pin: skopeo resolves an OCI layout's tag into kernels.lock; the run boots it; --check sees it "
    "move") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto debian = fetched_debian_kernel();
  const fs::path layout = tmp.path() / "layout";
  const std::string digest = build_oci_layout(debian, layout, "6.1");
  // A catalog of one OCI entry whose digest is left to the lock, and a private cache.
  json catalog = {
      {"schema", "kgate.catalog/1"},
      {"default", "oci-debian"},
      {"kernels",
       {{"oci-debian",
         {{"arch", "x86_64"},
          {"modules", {"virtio_pci", "virtio_console"}},
          {"source", {{"type", "oci-layout"}, {"path", "layout"}, {"ref", "6.1"}, {"digest", nullptr}}}}},
        {"debian",
         {{"arch", "x86_64"},
          {"source",
           {{"type", "debian-package"},
            {"metapackage", "linux-image-amd64"},
            {"package_prefix", "linux-image-6.1.0-"}}}}}}}};
  const fs::path catalog_file = tmp.path() / "catalog.json";
  REQUIRE(write_file_atomic(catalog_file, catalog.dump(2)).has_value());
  auto kgate = [&](std::vector<std::string> args) {
    args.insert(args.begin(), kgate_binary().string());
    auto cap = run_capture(args, Deadline(std::chrono::minutes(3)));
    REQUIRE(cap.has_value());
    return *cap;
  };
  // Unpinned, the entry is refused before boot.
  auto unpinned = kgate({"kernels", "list", "--catalog", catalog_file.string()});
  CHECK(unpinned.out.find("UNPINNED") != std::string::npos);

  auto pinned = kgate({"kernels", "pin", "--catalog", catalog_file.string()});
  INFO("pin: " << pinned.out << pinned.err);
  REQUIRE(WEXITSTATUS(pinned.status) == 0);
  const std::string lock = read_file(tmp.path() / "kernels.lock").value_or("");
  CHECK(lock.find("oci-debian x86_64 6.1 " + digest + "\n") !=
        std::string::npos);                            // skopeo agrees with kgate
  CHECK(lock.find("\ndebian ") == std::string::npos);  // only OCI entries are pinned
  auto same = kgate({"kernels", "pin", "--check", "--catalog", catalog_file.string()});
  CHECK(WEXITSTATUS(same.status) == 0);
  CHECK(same.out.find("  same") != std::string::npos);

  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const std::string saved_xdg = xdg ? xdg : "";
  ::setenv("XDG_CACHE_HOME", (tmp.path() / "xdg").c_str(), 1);
  auto ok = run_kgate(tmp.path() / "run", {"--catalog", catalog_file.string(), "--entry", "oci-debian"});
  auto listed = kgate({"kernels", "list", "--catalog", catalog_file.string()});
  // Pruning with nothing old keeps what the entry uses; a run after it still boots from the cache.
  auto prune = kgate({"cache", "prune", "--older-than", "0", "--catalog", catalog_file.string()});
  auto again =
      run_kgate(tmp.path() / "run-again", {"--catalog", catalog_file.string(), "--entry", "oci-debian"});
  if (saved_xdg.empty()) {
    ::unsetenv("XDG_CACHE_HOME");
  } else {
    ::setenv("XDG_CACHE_HOME", saved_xdg.c_str(), 1);
  }
  INFO("run: " << ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  REQUIRE(ok.receipt.is_object());
  CHECK(ok.receipt["kernel"]["source"].get<std::string>().find(digest) != std::string::npos);
  CHECK(listed.out.find(digest.substr(0, 19)) != std::string::npos);
  CHECK(listed.out.find(debian.release) != std::string::npos);
  INFO("prune: " << prune.out << prune.err);
  CHECK(WEXITSTATUS(prune.status) == 0);
  CHECK(prune.out.find("trees/") == std::string::npos);  // the entry's unpacked image stays
  CHECK(again.exit_code == 0);

  // The tag moves (a new image under the same ref): --check names it and fails; the run goes on
  // booting the locked digest, which the layout no longer holds under that ref.
  fs::remove_all(layout);
  const std::string moved = write_oci_layout(tmp.path() / "layout.root", layout, "6.1", "amd64",
                                             {{"Labels", {{"rebuilt", "yes"}}}});
  REQUIRE(moved != digest);
  auto check = kgate({"kernels", "pin", "--check", "--catalog", catalog_file.string()});
  INFO("check: " << check.out << check.err);
  CHECK(WEXITSTATUS(check.status) == 7);
  CHECK(check.out.find("oci-debian x86_64 6.1 " + moved + "  MOVED: the lock pins " + digest) !=
        std::string::npos);
  CHECK(read_file(tmp.path() / "kernels.lock").value_or("") == lock);  // --check writes nothing
  // A lock for a reference the catalog no longer names is refused until pinned again.
  catalog["kernels"]["oci-debian"]["source"]["ref"] = "6.1-new";
  REQUIRE(write_file_atomic(catalog_file, catalog.dump(2)).has_value());
  auto stale = kgate({"kernels", "list", "--catalog", catalog_file.string()});
  CHECK(WEXITSTATUS(stale.status) == 2);
  CHECK(stale.err.find("was pinned at 6.1, the catalog now names 6.1-new") != std::string::npos);
  // A lock line for an entry the catalog no longer has: --check says so even though every entry
  // it resolves is as locked.
  catalog["kernels"]["oci-debian"]["source"]["ref"] = "6.1";
  REQUIRE(write_file_atomic(catalog_file, catalog.dump(2)).has_value());
  REQUIRE(write_file_atomic(tmp.path() / "kernels.lock",
                            "oci-debian x86_64 6.1 " + moved + "\ngone x86_64 r " + digest + "\n")
              .has_value());
  auto stale_check = kgate({"kernels", "pin", "--check", "--catalog", catalog_file.string()});
  INFO("stale check: " << stale_check.out << stale_check.err);
  CHECK(WEXITSTATUS(stale_check.status) == 7);
  CHECK(stale_check.out.find("  same\n") != std::string::npos);
  CHECK(stale_check.out.find("stale: ") != std::string::npos);
  CHECK(stale_check.out.find("gone is no OCI entry of the catalog") != std::string::npos);
  // A digest the catalog gives itself is compared, never written to the lock.
  catalog["kernels"]["oci-debian"]["source"]["digest"] = moved;
  REQUIRE(write_file_atomic(catalog_file, catalog.dump(2)).has_value());
  fs::remove(tmp.path() / "kernels.lock");
  auto own = kgate({"kernels", "pin", "--catalog", catalog_file.string()});
  INFO("own: " << own.out << own.err);
  CHECK(WEXITSTATUS(own.status) == 0);
  CHECK(own.out.find("same (pinned in the catalog)") != std::string::npos);
  CHECK(read_file(tmp.path() / "kernels.lock").value_or("").find("oci-debian") == std::string::npos);
  CHECK(WEXITSTATUS(kgate({"kernels", "pin", "--check", "--catalog", catalog_file.string()}).status) == 0);
}

TEST_CASE("OCI layout: a kernel imported by digest boots; a tampered layer is refused before boot") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto debian = fetched_debian_kernel();
  fs::path layout = tmp.path() / "layout";
  std::string digest = build_oci_layout(debian, layout, "debian-6.1");
  // A catalog and matrix of one OCI entry, pinned to that digest, and a private cache.
  json catalog = {{"schema", "kgate.catalog/1"},
                  {"default", "oci-debian"},
                  {"kernels",
                   {{"oci-debian",
                     {{"arch", "x86_64"},
                      {"modules", {"virtio_pci", "virtio_console"}},
                      {"source",
                       {{"type", "oci-layout"},
                        {"path", layout.string()},
                        {"ref", "debian-6.1"},
                        {"digest", digest}}}}}}}};
  REQUIRE(write_file_atomic(tmp.path() / "catalog.json", catalog.dump(2)).has_value());
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  std::string saved_xdg = xdg ? xdg : "";
  ::setenv("XDG_CACHE_HOME", (tmp.path() / "xdg").c_str(), 1);
  std::vector<std::string> args = {"--catalog", (tmp.path() / "catalog.json").string(), "--entry",
                                   "oci-debian"};
  auto ok = run_kgate(tmp.path() / "oci", args);
  INFO("stdout: " << ok.out << "\nstderr: " << ok.err);
  CHECK(ok.exit_code == 0);
  REQUIRE(ok.receipt.is_object());
  CHECK(ok.receipt["guest"]["release"] == debian.release);
  CHECK(ok.receipt["kernel"]["source"].get<std::string>().find(digest) != std::string::npos);
  CHECK(ok.receipt["preflight"]["checked"] == true);

  // Flip one byte of the layer blob; a fresh cache must refuse the image before any boot.
  json index = json::parse(read_file(layout / "index.json").value());
  json manifest = json::parse(
      read_file(layout / "blobs/sha256" / index["manifests"][0]["digest"].get<std::string>().substr(7))
          .value());
  fs::path layer = layout / "blobs/sha256" / manifest["layers"][0]["digest"].get<std::string>().substr(7);
  std::string bytes = read_file(layer).value();
  bytes[bytes.size() / 2] ^= 0x20;
  REQUIRE(write_file_atomic(layer, bytes).has_value());
  ::setenv("XDG_CACHE_HOME", (tmp.path() / "xdg2").c_str(), 1);
  auto bad = run_kgate(tmp.path() / "oci-tampered", args);
  if (saved_xdg.empty()) {
    ::unsetenv("XDG_CACHE_HOME");
  } else {
    ::setenv("XDG_CACHE_HOME", saved_xdg.c_str(), 1);
  }
  INFO("stdout: " << bad.out << "\nstderr: " << bad.err);
  CHECK(bad.exit_code == 7);
  REQUIRE(bad.receipt.is_object());
  CHECK(bad.receipt["failure"]["class"] == "digest_mismatch");
  CHECK(bad.receipt["failure"]["message"].get<std::string>().find(
            manifest["layers"][0]["digest"].get<std::string>()) != std::string::npos);
  CHECK_FALSE(fs::exists(bad.dir / "console.log"));
}

TEST_CASE(
    "--btf: CO-RE relocations use a BTF file the host sends; one that is not BTF is refused before boot") {
  require_vm_prerequisites();
  auto tmp = out_root();
  // The guest kernel's own BTF, cut out of its vmlinux: what a kernel without DEBUG_INFO_BTF would need.
  json first = run_kgate(tmp.path() / "plain", {}).receipt;
  REQUIRE(first.is_object());
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  fs::path cache = xdg && *xdg ? fs::path(xdg) / "kgate" : fs::path(std::getenv("HOME")) / ".cache/kgate";
  fs::path vmlinux = cache / "blobs/sha256" / first["kernel"]["boot_sha256"].get<std::string>();
  fs::path btf = tmp.path() / "vmlinux.btf";
  auto cut = run_capture({"objcopy", "--dump-section", ".BTF=" + btf.string(), vmlinux.string(),
                          (tmp.path() / "discard.o").string()},
                         Deadline(std::chrono::seconds(60)));
  REQUIRE(cut.has_value());
  REQUIRE(fs::file_size(btf) > 1000);

  auto ok = run_kgate(tmp.path() / "btf", {"--btf", btf.string()});
  INFO("stdout: " << ok.out << "\nstderr: " << ok.err);
  CHECK(ok.exit_code == 0);
  REQUIRE(ok.receipt.is_object());
  CHECK(ok.receipt["btf"]["source"] == "file");
  CHECK(ok.receipt["btf"]["sha256"] == sha256_file(btf).value());

  // A file that is not BTF is refused on the host, before anything boots, naming the user's file.
  REQUIRE(write_file_atomic(tmp.path() / "junk.btf", std::string(4096, 'x')).has_value());
  auto bad = run_kgate(tmp.path() / "junk", {"--btf", (tmp.path() / "junk.btf").string()});
  CHECK(bad.exit_code == 2);
  REQUIRE(bad.receipt.is_object());
  CHECK(bad.receipt["failure"]["class"] == "usage");
  CHECK(bad.receipt["failure"]["message"].get<std::string>().find(
            "--btf " + (tmp.path() / "junk.btf").string() + ": not BTF") != std::string::npos);
  CHECK_FALSE(fs::exists(bad.dir / "qemu.log"));  // nothing booted
}

TEST_CASE("usage before boot: a kernel command line over COMMAND_LINE_SIZE is refused, saying the length") {
  require_vm_prerequisites();
  auto tmp = out_root();
  // Under the limit it boots: the words reach the guest.
  auto ok = run_passing(tmp, "fits", {"--append", "kgate.test=" + std::string(1800, 'x'), "--count", "1"});
  CHECK(ok.receipt["guest"]["cmdline"].get<std::string>().find(std::string(1800, 'x')) != std::string::npos);
  auto r = run_kgate(tmp.path() / "long", {"--append", "kgate.test=" + std::string(2100, 'x')});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 2);
  REQUIRE(r.receipt.is_object());
  CHECK(r.receipt["failure"]["class"] == "usage");
  CHECK(r.receipt["failure"]["message"].get<std::string>().find(
            "takes at most 2047 (COMMAND_LINE_SIZE 2048") != std::string::npos);
  CHECK_FALSE(fs::exists(r.dir / "qemu.log"));
  // An --entry that neither file names: both lists, so that a matrix name is found by its user.
  auto unknown = run_kgate(tmp.path() / "unknown", {"--entry", "debian-6.1-integrty"});
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find(
            "no matrix entry or catalog kernel is named 'debian-6.1-integrty' (matrix entries: ") !=
        std::string::npos);
  CHECK(unknown.err.find("debian-6.1-integrity") != std::string::npos);
}

TEST_CASE("console scan: a kernel WARNING on the console fails an entry whose programs passed") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_kgate(tmp.path() / "warn", {"--append", "kgate.fault=warn"});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 1);
  REQUIRE(r.receipt.is_object());
  for (const auto& p : r.receipt["programs"]) CHECK(p["passed"] == true);
  REQUIRE(r.receipt["console_splats"].size() == 1);
  CHECK(r.receipt["console_splats"][0]["id"] == "warn");
  CHECK(r.receipt["console_splats"][0]["line"].get<std::string>().find("kgate_injected_warning") !=
        std::string::npos);
  CHECK(r.receipt["failure"]["class"] == "gate_failed");
  CHECK(r.receipt["failure"]["message"].get<std::string>().find("kernel splat") != std::string::npos);
}

TEST_CASE(
    "gates: an ebpf-matrix gate runs real entries in-process, receipts nested, and a timeout stops its VMs") {
  require_vm_prerequisites();
  auto tmp = out_root();
  const fs::path file = tmp.path() / "gates.json";
  REQUIRE(write_file_atomic(file, R"({"schema": "kgate.gates/1", "gates": [
    {"name": "kernels", "kind": "ebpf-matrix", "entries": "debian-6.1,debian-6.1-arm64-integrity", "jobs": 2},
    {"name": "after", "command": ["true"], "needs": ["kernels"]},
    {"name": "too-slow", "kind": "ebpf-matrix", "entries": "debian-6.1-integrity", "timeout_s": 1, "needs": ["after"]}
  ]})")
              .has_value());
  const fs::path out = tmp.path() / "gates-out";
  auto cap =
      run_capture({kgate_binary().string(), "gates", "run", file.string(), "--out", out.string(), "-j", "1"},
                  Deadline(std::chrono::minutes(5)));
  REQUIRE(cap.has_value());
  INFO("stdout: " << cap->out << "\nstderr: " << cap->err);
  CHECK(WEXITSTATUS(cap->status) == 1);  // too-slow timed out
  json s = json::parse(read_file(out / "verify-all-summary.json").value_or("null"), nullptr, false);
  REQUIRE(s.is_object());
  // On a failure, the entries' own receipts (console tails included) are in the output.
  INFO("summary: " << s.dump(1));
  const json& kernels = s["gates"][0];
  CHECK(kernels["name"] == "kernels");
  CHECK(kernels["status"] == "passed");
  REQUIRE(kernels["matrix"].size() == 2);
  for (const auto& e : kernels["matrix"]) {
    CAPTURE(e["name"].get<std::string>());
    CHECK(e["verdict"] == "pass");
    CHECK(e["receipt"]["verdict"] == "pass");  // the entry's own receipt, nested
    CHECK(e["receipt"]["entry"] == e["name"]);
    CHECK(path_exists(out / e["dir"].get<std::string>() / "receipt.json"));
    // The entry ran the request the gate wrote for it, catalog included.
    json req = json::parse(read_file(out / e["dir"].get<std::string>() / "request.json").value_or("null"),
                           nullptr, false);
    CHECK(req.is_object());
    CHECK(req["catalog"].get<std::string>().ends_with("kernels/catalog.json"));
    CHECK(e["receipt"]["request"] == req);
  }
  CHECK(kernels["matrix"][1]["receipt"]["arch"] == "arm64");
  CHECK(kernels["matrix"][1]["receipt"]["lockdown"]["observed"] == "integrity");
  CHECK(kernels["matrix"][1]["receipt"]["lockdown"]["proven"] == true);
  CHECK(s["gates"][1]["status"] == "passed");
  // A 1 s timeout cannot boot a kernel under TCG: the VM is stopped, its receipt says so.
  const json& slow = s["gates"][2];
  CHECK(slow["status"] == "timed_out");
  CHECK(slow["duration_s"].get<double>() < 30);
  REQUIRE(slow["matrix"].size() == 1);
  CHECK(slow["matrix"][0]["class"] == "interrupted");
  CHECK(processes_mentioning(out.string()).empty());
  CHECK(s["non_green"] == json({"too-slow"}));
}

// ---- A user's own objects: tests/objects (gate.bpf.c, target.c, good.json, red.json) ----

namespace {
fs::path objects_dir() {
  const char* root = std::getenv("KGATE_BUILD_ROOT");
  return fs::path(root ? root : ".") / "tests/objects";
}

// tests/objects/NAME with its objects' and files' paths made absolute: a test changes it and writes
// it elsewhere.
json movable_spec(const std::string& name) {
  json spec = json::parse(read_file(objects_dir() / name).value());
  auto absolute = [](json& paths) {
    if (paths.is_string()) paths = (objects_dir() / paths.get<std::string>()).string();
    for (auto& [arch, file] : paths.items())
      if (file.is_string()) file = (objects_dir() / file.get<std::string>()).string();
  };
  for (auto& o : spec["objects"]) absolute(o["path"]);
  if (spec.contains("files"))
    for (auto& f : spec["files"]) absolute(f["source"]);
  return spec;
}

const json& program(const json& rc, const std::string& name) {
  for (const auto& p : rc["programs"])
    if (p["name"] == name) return p;
  FAIL("no program " << name << " in the receipt");
  static const json none;
  return none;
}

// good.json on one entry: every program passes, each as its spec says, with the verifier's numbers.
void check_good(const KgateResult& r, bool arm64) {
  const json& rc = r.receipt;
  CHECK(rc["schema"] == "kgate.receipt/2");
  CHECK(rc["verdict"] == "pass");
  REQUIRE(rc["programs"].size() == 13);
  for (const auto& p : rc["programs"]) {
    CAPTURE(p.dump());
    CHECK(p["object"] == "gate");
    CHECK(p["reasons"].empty());
    const bool skipped = arm64 && p["name"].get<std::string>().starts_with("f");
    CHECK(p["verdict"] == (skipped ? "skipped" : "pass"));
    if (skipped) CHECK(p["skip_reason"].get<std::string>().find("trampolines") != std::string::npos);
    if (p["loaded"] == true) {
      CHECK(p["verifier"]["insns_processed"].get<int>() > 0);
      CHECK(p["verifier"]["xlated_bytes"].get<int>() > 0);
      CHECK(p["verifier"]["load_ms"].get<double>() > 0);
    }
  }
  // Records carrying this run's nonce: set as a global before load, or carried by the trigger.
  for (const char* name : {"tp_getpid", "kp_unlinkat", "up_target"}) {
    const json& p = program(rc, name);
    CAPTURE(p.dump());
    CHECK(p["attached"] == true);
    CHECK(p["run_count"].get<int>() >= 3);
    CHECK(p["nonce_records"].get<int>() >= 3);
  }
  if (!arm64) CHECK(program(rc, "fentry_unlinkat")["nonce_records"].get<int>() >= 3);
  CHECK(program(rc, "xdp_udp_4242")["retvals"] == json::array({2}));
  CHECK(program(rc, "xdp_udp_4242")["attach"] == "test_run");
  CHECK(program(rc, "tc_ipv4_only")["retvals"] == json::array({0}));
  CHECK(program(rc, "lsm_file_open")["attach"] == "load_only");
  CHECK(program(rc, "lsm_file_open")["loaded"] == true);
  // Expected refusals: refused, and so passed.
  CHECK(program(rc, "bad_deref")["loaded"] == false);
  CHECK(program(rc, "core_missing")["loaded"] == false);
  // The run can be repeated from its directory: the spec and the object's bytes are there.
  CHECK(rc["spec"]["file"] == (objects_dir() / "good.json").string());
  REQUIRE(rc["objects"].size() == 1);
  const json& o = rc["objects"][0];
  CHECK(o["path"] == (objects_dir() / (arm64 ? "gate.arm64.bpf.o" : "gate.x86_64.bpf.o")).string());
  CHECK(sha256_file(r.dir / o["copy"].get<std::string>()).value() == o["sha256"]);
  CHECK(sha256_file(r.dir / "spec.json").value() == rc["spec"]["sha256"]);
  CHECK(rc["leftovers"]["programs"].empty());
  CHECK(rc["leftovers"]["links"].empty());
  check_no_qemu_left(r.dir);
}
}  // namespace

TEST_CASE("user objects: every program of good.json passes on debian-6.1") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_passing(tmp, "good", {"--spec", (objects_dir() / "good.json").string(), "--count", "3"});
  check_good(r, false);
  CHECK(r.out.find("13 programs passed (3 triggers each)") != std::string::npos);
}

TEST_CASE("user objects: good.json passes on debian-6.1-integrity, lockdown proven") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_passing(
      tmp, "good",
      {"--entry", "debian-6.1-integrity", "--spec", (objects_dir() / "good.json").string(), "--count", "3"});
  check_good(r, false);
  CHECK(r.receipt["lockdown"]["observed"] == "integrity");
  CHECK(r.receipt["lockdown"]["proven"] == true);
}

TEST_CASE("triggers: tcp and udp round trips over the guest's loopback, brought up when first needed") {
  require_vm_prerequisites();
  auto tmp = out_root();
  // good.json with its raw_tp program (every syscall fires it) run by the network triggers.
  json spec = movable_spec("good.json");
  for (const char* kind : {"tcp", "udp"}) {
    CAPTURE(kind);
    spec["objects"][0]["programs"]["raw_tp_enter"]["trigger"] = kind;
    const fs::path file = tmp.path() / (std::string(kind) + ".json");
    REQUIRE(write_file_atomic(file, spec.dump()).has_value());
    auto r = run_passing(tmp, kind, {"--spec", file.string(), "--count", "2"});
    const json& raw = program(r.receipt, "raw_tp_enter");
    CHECK(raw["verdict"] == "pass");
    CHECK(raw["run_count"].get<int>() >= 2);
  }
}

TEST_CASE("refusals: two of three programs refused, the third is still loaded and judged") {
  require_vm_prerequisites();
  auto tmp = out_root();
  // red.json with every program skipped but one that passes and two the verifier refuses: one
  // load round per refusal, then one for the rest. The CO-RE refusal also loads the object again
  // with the kernel's whole BTF.
  json spec = movable_spec("red.json");
  json& programs = spec["objects"][0]["programs"];
  for (const char* name : {"never_fires", "up_target", "fentry_unlinkat", "fexit_unlinkat", "xdp_udp_4242",
                           "tc_ipv4_only", "lsm_file_open", "raw_tp_enter", "kp_unlinkat", "krp_unlinkat"})
    programs[name]["skip"] =
        json::array({{{"arch", json::array({"x86_64", "arm64"})}, {"reason", "not this test"}}});
  REQUIRE(write_file_atomic(tmp.path() / "three.json", spec.dump()).has_value());
  auto r = run_kgate(tmp.path() / "three", {"--spec", (tmp.path() / "three.json").string(), "--count", "2"});
  check_failure(r, "gate_failed", 1);
  CHECK(program(r.receipt, "tp_getpid")["verdict"] == "pass");
  CHECK(program(r.receipt, "tp_getpid")["run_count"].get<int>() >= 2);
  CHECK(program(r.receipt, "bad_deref")["reasons"] == json::array({"verifier_reject"}));
  CHECK(program(r.receipt, "core_missing")["reasons"] == json::array({"core_relocation"}));
  CHECK(r.receipt["btf"]["core"].contains("fell_back"));
}

TEST_CASE("user objects: good.json passes on debian-6.1-arm64, fentry and fexit skipped") {
  require_vm_prerequisites("arm64");
  auto tmp = out_root();
  auto r = run_passing(
      tmp, "good",
      {"--entry", "debian-6.1-arm64", "--spec", (objects_dir() / "good.json").string(), "--count", "3"});
  check_good(r, true);
  CHECK(r.out.find("11 programs passed, 2 skipped") != std::string::npos);
}

TEST_CASE("user objects: red.json fails each program for its own reason, and the others pass") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_kgate(tmp.path() / "red", {"--spec", (objects_dir() / "red.json").string(), "--count", "3"});
  check_failure(r, "gate_failed", 1);
  const json& rc = r.receipt;
  const std::map<std::string, std::string> want = {{"bad_deref", "verifier_reject"},
                                                   {"core_missing", "core_relocation"},
                                                   {"never_fires", "did_not_fire"},
                                                   {"up_target", "nonce_missing"}};
  for (const auto& p : rc["programs"]) {
    CAPTURE(p.dump());
    auto it = want.find(p["name"].get<std::string>());
    if (it == want.end()) {
      CHECK(p["verdict"] == "pass");
    } else {
      CHECK(p["verdict"] == "fail");
      CHECK(p["reasons"] == json::array({it->second}));
    }
  }
  // The refusal names the verifier's reason and the source line, and keeps the log's tail.
  const json& bad = program(rc, "bad_deref");
  CHECK(bad["error"].get<std::string>().find("invalid mem access") != std::string::npos);
  CHECK(bad["error"].get<std::string>().find("*v += 1;") != std::string::npos);
  CHECK(bad["verifier"]["insns_processed"].get<int>() > 0);
  CHECK(bad["verifier_log_tail"].dump().find("map_value_or_null") != std::string::npos);
  // The stale nonce reached the program: it fired, but on a nonce that is not this run's.
  const json& up = program(rc, "up_target");
  CHECK(up["records"].get<int>() >= 3);
  CHECK(up["nonce_records"] == 0);
  for (const char* name : {"bad_deref", "core_missing", "never_fires", "up_target"})
    CHECK(rc["failure"]["message"].get<std::string>().find(name) != std::string::npos);
  // core_missing failed its relocation under the minimized BTF too; the object was loaded again
  // with the kernel's whole BTF, whose account (the field it lacks) is what the receipt keeps.
  CHECK(rc["btf"]["core"]["btf"] == "minimized");
  CHECK(rc["btf"]["core"]["fell_back"].get<std::string>().find("core_missing") != std::string::npos);
  const json& core = program(rc, "core_missing");
  CHECK(core["error"].get<std::string>().find("kgate_no_such_field") != std::string::npos);
}

TEST_CASE(
    "user objects: --object alone judges every program; an x86 object on arm64 is refused before boot") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_kgate(tmp.path() / "object", {"--object", (objects_dir() / "gate.x86_64.bpf.o").string()});
  check_failure(r, "gate_failed", 1);
  const json& rc = r.receipt;
  CHECK(rc["spec"]["file"] == "");
  CHECK(program(rc, "xdp_udp_4242")["attach"] == "load_only");
  CHECK(program(rc, "xdp_udp_4242")["verdict"] == "pass");
  CHECK(program(rc, "tp_getpid")["attach"] == "auto");
  CHECK(program(rc, "tp_getpid")["attached"] == true);
  CHECK(program(rc, "bad_deref")["reasons"] == json::array({"verifier_reject"}));
  CHECK(program(rc, "core_missing")["reasons"] == json::array({"core_relocation"}));

  auto arm = run_kgate(tmp.path() / "arm",
                       {"--entry", "debian-6.1-arm64", "--spec", (objects_dir() / "good.json").string(),
                        "--object", (objects_dir() / "gate.x86_64.bpf.o").string()});
  INFO("stdout: " << arm.out << "\nstderr: " << arm.err);
  CHECK(arm.exit_code == 2);
  REQUIRE(arm.receipt.is_object());
  CHECK(arm.receipt["failure"]["class"] == "usage");
  CHECK(arm.receipt["failure"]["message"].get<std::string>().find("not a BPF object for arm64") !=
        std::string::npos);
  CHECK_FALSE(fs::exists(arm.dir / "console.log"));  // nothing booted
}

// ---- A user's own loader: tests/objects/loader.c and live.json ----

TEST_CASE("spec init: the proposed spec runs out of the box on debian-6.1 and debian-6.1-arm64") {
  require_vm_prerequisites();
  require_vm_prerequisites("arm64");
  auto tmp = out_root();
  // The object's directory is the build's: the spec goes elsewhere and names both builds relatively.
  const fs::path spec = tmp.path() / "proposed" / "gate.spec.json";
  const std::vector<std::string> init_argv = {kgate_binary().string(),
                                              "spec",
                                              "init",
                                              (objects_dir() / "gate.x86_64.bpf.o").string(),
                                              "--out",
                                              spec.string()};
  auto init = run_capture(init_argv, Deadline(std::chrono::seconds(60)));
  REQUIRE(init.has_value());
  INFO("init: " << init->out << init->err);
  REQUIRE(WEXITSTATUS(init->status) == 0);
  json doc = json::parse(read_file(spec).value_or("null"), nullptr, false);
  REQUIRE(doc.is_object());
  CHECK(doc["objects"][0]["path"].contains("arm64"));
  // Written again only when asked.
  auto again = run_capture(init_argv, Deadline(std::chrono::seconds(60)));
  REQUIRE(again.has_value());
  CHECK(WEXITSTATUS(again->status) == 2);

  for (const char* entry : {"debian-6.1", "debian-6.1-arm64"}) {
    CAPTURE(entry);
    auto r = run_kgate(tmp.path() / entry, {"--entry", entry, "--spec", spec.string(), "--count", "3"});
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.err.find("not yet confirmed (\"proposed\" by kgate spec init)") != std::string::npos);
    // Every proposal holds: the two programs built to be refused are the only failures.
    CHECK(r.exit_code == 1);
    REQUIRE(r.receipt.is_object());
    for (const auto& p : r.receipt["programs"]) {
      const std::string name = p["name"];
      CAPTURE(name);
      if (name == "bad_deref") {
        CHECK(p["reasons"] == json::array({"verifier_reject"}));
      } else if (name == "core_missing") {
        CHECK(p["reasons"] == json::array({"core_relocation"}));
      } else if (std::string(entry) == "debian-6.1-arm64" && name.starts_with("f")) {
        CHECK(p["verdict"] == "skipped");  // fentry/fexit: the proposed skip on arm64
      } else {
        CHECK(p["verdict"] == "pass");
      }
    }
    // The proposed triggers reached what they were proposed for.
    CHECK(program(r.receipt, "tp_getpid")["run_count"].get<long long>() >= 3);
    CHECK(program(r.receipt, "kp_unlinkat")["run_count"].get<long long>() >= 3);
    CHECK(program(r.receipt, "xdp_udp_4242")["run_count"].get<long long>() >= 3);
  }
}

TEST_CASE("loader: a user's static libbpf loader passes live.json on debian-6.1") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto r = run_passing(tmp, "live", {"--spec", (objects_dir() / "live.json").string(), "--count", "3"});
  const json& rc = r.receipt;
  const json& l = rc["loader"];
  CHECK(l["ready"] == true);
  CHECK(l["exited_before_stop"] == false);
  CHECK(l["exit"]["exit_code"] == 0);
  CHECK(l["source"] == (objects_dir() / "loader.x86_64").string());
  CHECK(l["sha256"] == sha256_hex(read_file(objects_dir() / "loader.x86_64").value()));
  CHECK(l["argv"][0] == "/kgate/loader/loader");
  CHECK(l["output_tail"].dump().find("loader: ready") != std::string::npos);
  CHECK(l["output_tail"].dump().find("loader: run nonce " + rc["nonce"].get<std::string>()) !=
        std::string::npos);
  CHECK(l["nonce_seen"] == true);
  CHECK(l["left"]["programs"].empty());
  CHECK(l["left"]["links"].empty());
  for (const char* name : {"tp_getpid", "kp_unlinkat"}) {
    const json& p = program(rc, name);
    CAPTURE(p.dump());
    CHECK(p["object"] == "loader");
    CHECK(p["verdict"] == "pass");
    CHECK(p["attached"] == true);
    CHECK(p["run_count"].get<int>() >= 3);
    CHECK(p["verifier"]["insns_processed"].get<int>() > 0);
  }
  // The kernel's view: each program with its link.
  REQUIRE(l["programs"].size() == 2);
  for (const auto& p : l["programs"]) CHECK(p["links"].size() == 1);

  // A loader that prints 2 MB after it is ready: its output is read while the triggers run, so it
  // is waiting for SIGTERM when it comes, and exits on its own.
  json spec = json::parse(read_file(objects_dir() / "live.json").value());
  spec["loader"]["exec"] = {{"x86_64", (objects_dir() / "loader.x86_64").string()}};
  spec["files"][0]["source"] = {{"x86_64", (objects_dir() / "gate.x86_64.bpf.o").string()}};
  spec["loader"]["args"][1] = "chatty";
  REQUIRE(write_file_atomic(tmp.path() / "chatty.json", spec.dump()).has_value());
  auto chatty = run_passing(tmp, "chatty", {"--spec", (tmp.path() / "chatty.json").string(), "--count", "2"});
  CHECK(chatty.receipt["loader"]["killed"] == false);
  CHECK(chatty.receipt["loader"]["exit"]["exit_code"] == 0);
  CHECK(chatty.receipt["loader"]["output_tail"].back() == "loader: SIGTERM, shutting down");

  // A raw tracepoint and an fentry program: their links say what they are attached to.
  json targets = spec;
  targets["loader"]["args"] = {"/kgate/files/gate.bpf.o", "attach", "raw_tp_enter", "fentry_unlinkat",
                               "nonce={nonce}"};
  targets["loader"]["programs"] = {
      {"raw_tp_enter",
       {{"type", "raw_tracepoint"},
        {"trigger", "getpid"},
        {"expect", {{"runs", "count"}, {"link", "raw_tracepoint"}, {"target", "sys_enter"}}}}},
      {"fentry_unlinkat",
       {{"type", "tracing"}, {"trigger", "openat"}, {"expect", {{"runs", "count"}, {"link", "tracing"}}}}}};
  REQUIRE(write_file_atomic(tmp.path() / "targets.json", targets.dump()).has_value());
  auto linked =
      run_passing(tmp, "targets", {"--spec", (tmp.path() / "targets.json").string(), "--count", "2"});
  std::map<std::string, std::string> target_of;
  for (const auto& p : linked.receipt["loader"]["programs"])
    if (!p["links"].empty()) target_of[p["name"]] = p["links"][0].value("target", "");
  CHECK(target_of["raw_tp_enter"] == "sys_enter");
  CHECK(target_of["fentry_unlinkat"].starts_with("trace_fentry btf_id "));

  // The nonce in a map the loader pins: found in its value at the offset the spec gives.
  spec["loader"]["args"] = {
      "/kgate/files/gate.bpf.o",          "attach", "tp_getpid", "kp_unlinkat", "nonce={nonce}",
      "nonce-map=/sys/fs/bpf/agent_nonce"};
  spec["loader"]["nonce"] = {{"map", "/sys/fs/bpf/agent_nonce"}, {"offset", 8}, {"encoding", "u64le"}};
  spec["loader"]["pins"] = true;
  REQUIRE(write_file_atomic(tmp.path() / "map.json", spec.dump()).has_value());
  auto map = run_passing(tmp, "nonce-map", {"--spec", (tmp.path() / "map.json").string(), "--count", "2"});
  CHECK(map.receipt["loader"]["nonce_seen"] == true);

  // The same loader linked dynamically, from the command line: its interpreter and libraries go
  // in with it, its object as a --file where its arguments after -- say.
  auto dynamic =
      run_passing(tmp, "dynamic",
                  {"--spec", (objects_dir() / "live.json").string(), "--exec",
                   (objects_dir() / "loader-dynamic.x86_64").string(), "--file",
                   (objects_dir() / "gate.x86_64.bpf.o").string() + ":/opt/agent/gate.bpf.o", "--count", "2",
                   "--", "/opt/agent/gate.bpf.o", "attach", "tp_getpid", "kp_unlinkat", "nonce={nonce}"});
  CHECK(dynamic.receipt["loader"]["argv"][1] == "/opt/agent/gate.bpf.o");
  CHECK(dynamic.receipt["request"]["exec"] == (objects_dir() / "loader-dynamic.x86_64").string());
  const json& libs = dynamic.receipt["loader"]["libraries"];
  CHECK(libs[0]["dest"] == "/lib64/ld-linux-x86-64.so.2");
  CHECK(libs.dump().find("/lib/x86_64-linux-gnu/libbpf.so.1") != std::string::npos);
  for (const char* name : {"tp_getpid", "kp_unlinkat"})
    CHECK(program(dynamic.receipt, name)["verdict"] == "pass");
}

TEST_CASE("loader: a replayer, a loader that does not attach, one that exits early and one that leaks fail") {
  require_vm_prerequisites();
  auto tmp = out_root();
  json base = json::parse(read_file(objects_dir() / "live.json").value());
  base["loader"]["exec"] = {{"x86_64", (objects_dir() / "loader.x86_64").string()}};
  base["files"][0]["source"] = {{"x86_64", (objects_dir() / "gate.x86_64.bpf.o").string()}};
  base["loader"]["ready"]["timeout_s"] = 5;
  struct Row {
    const char* mode;
    std::map<std::string, std::vector<std::string>> reasons;  // per program
    const char* message;
  };
  const std::vector<Row> rows = {
      // It prints what a loader prints, and the spec trusts that line: the kernel says otherwise.
      {"replay",
       {{"tp_getpid", {"never_loaded", "nonce_missing"}}, {"kp_unlinkat", {"never_loaded", "nonce_missing"}}},
       "the loader never loaded it"},
      {"no-attach",
       {{"tp_getpid", {"attach_failed"}}, {"kp_unlinkat", {"attach_failed"}}},
       "loaded, but never attached"},
      {"exit-early",
       {{"tp_getpid", {"never_loaded", "loader_exited", "nonce_missing"}},
        {"kp_unlinkat", {"never_loaded", "loader_exited", "nonce_missing"}}},
       "exited with 3"},
      {"leak", {{"tp_getpid", {"leaked"}}, {"kp_unlinkat", {}}}, "still held by the kernel"},
  };
  // A replayer that writes its recorded nonce where a live loader writes this run's.
  json replay_map = base;
  replay_map["loader"]["args"] = {
      "/kgate/files/gate.bpf.o",          "replay", "tp_getpid", "kp_unlinkat", "nonce={nonce}",
      "nonce-map=/sys/fs/bpf/agent_nonce"};
  replay_map["loader"]["nonce"] = {{"map", "/sys/fs/bpf/agent_nonce"}, {"offset", 8}};
  replay_map["loader"]["pins"] = true;
  replay_map["loader"]["ready"]["line"] = "loader: ready";
  REQUIRE(write_file_atomic(tmp.path() / "replay-map.json", replay_map.dump()).has_value());
  auto replayed = run_kgate(tmp.path() / "replay-map", {"--spec", (tmp.path() / "replay-map.json").string()});
  check_failure(replayed, "gate_failed", 1);
  CHECK(replayed.receipt["failure"]["message"].get<std::string>().find(
            "never appeared in the pinned map /sys/fs/bpf/agent_nonce") != std::string::npos);

  for (const auto& row : rows) {
    CAPTURE(row.mode);
    json spec = base;
    spec["loader"]["args"][1] = row.mode;
    if (std::string(row.mode) == "replay") spec["loader"]["ready"]["line"] = "loader: ready";
    const fs::path file = tmp.path() / (std::string(row.mode) + ".json");
    REQUIRE(write_file_atomic(file, spec.dump()).has_value());
    auto r = run_kgate(tmp.path() / row.mode, {"--spec", file.string(), "--count", "2"});
    check_failure(r, "gate_failed", 1);
    CHECK(r.receipt["failure"]["message"].get<std::string>().find(row.message) != std::string::npos);
    for (const auto& [name, reasons] : row.reasons) {
      const json& p = program(r.receipt, name);
      CAPTURE(p.dump());
      CHECK(p["reasons"] == json(reasons));
    }
  }
  // A dynamic loader whose own library is not beside it: refused before boot, naming it.
  REQUIRE(fs::create_directories(tmp.path() / "alone"));
  fs::copy_file(objects_dir() / "needs-gone.x86_64", tmp.path() / "alone" / "agent");
  json spec = base;
  spec["loader"]["exec"] = {{"x86_64", (tmp.path() / "alone" / "agent").string()}};
  REQUIRE(write_file_atomic(tmp.path() / "missing.json", spec.dump()).has_value());
  auto missing = run_kgate(tmp.path() / "missing", {"--spec", (tmp.path() / "missing.json").string()});
  CHECK(missing.exit_code == 2);
  REQUIRE(missing.receipt.is_object());
  CHECK(missing.receipt["failure"]["class"] == "usage");
  CHECK(missing.receipt["failure"]["message"].get<std::string>().find("needs libkgate-gone.so") !=
        std::string::npos);
  CHECK_FALSE(fs::exists(missing.dir / "console.log"));  // nothing booted
}

TEST_CASE(
    "loader: an OCI image runs as the loader's root; a flipped byte in a layer is refused before boot") {
  require_vm_prerequisites();
  auto tmp = out_root();
  // The image a project ships: its loader, its object, a relative and an absolute link, and a
  // config that starts the loader by name from its PATH in its working directory.
  const fs::path root = tmp.path() / "image-root";
  fs::create_directories(root / "usr/bin");
  fs::create_directories(root / "usr/local/bin");
  fs::create_directories(root / "etc/agent");
  fs::create_directories(root / "var/run/agent");
  fs::copy_file(objects_dir() / "loader.x86_64", root / "usr/bin/agent");
  fs::copy_file(objects_dir() / "gate.x86_64.bpf.o", root / "etc/agent/gate.bpf.o");
  fs::create_symlink("/usr/bin/agent", root / "usr/local/bin/agent");  // leaves the tree on the host
  fs::create_symlink("usr/bin", root / "bin");
  const fs::path layout = tmp.path() / "agent-image";
  const json run_config = {{"Entrypoint", {"agent"}},
                           {"Cmd", {"gate.bpf.o", "attach", "tp_getpid", "kp_unlinkat"}},
                           {"Env", {"PATH=/usr/local/bin:/usr/bin", "AGENT_FROM=image"}},
                           {"WorkingDir", "/etc/agent"}};
  const std::string digest = write_oci_layout(root, layout, "v1.4.2", "amd64", run_config);

  json spec = json::parse(read_file(objects_dir() / "live.json").value());
  spec["loader"].erase("exec");
  spec.erase("files");
  spec["loader"]["image"] = "oci-layout:agent-image:v1.4.2";
  // The nonce reaches a file the loader writes in its own filesystem.
  spec["loader"]["args"] = {"gate.bpf.o",  "attach",        "tp_getpid",
                            "kp_unlinkat", "nonce={nonce}", "nonce-file=/var/run/agent/nonce"};
  spec["loader"]["nonce"] = {{"file", "/var/run/agent/nonce"}};
  REQUIRE(write_file_atomic(tmp.path() / "image.json", spec.dump()).has_value());
  auto r = run_passing(tmp, "image", {"--spec", (tmp.path() / "image.json").string(), "--count", "2"});
  const json& l = r.receipt["loader"];
  CHECK(l["image"]["reference"] == "oci-layout:" + layout.string() + ":v1.4.2");
  CHECK(l["image"]["digest"] == digest);
  CHECK(l["image"]["unpacked"] == true);
  CHECK(l["dest"] == "/usr/local/bin/agent");
  CHECK(l["sha256"] == sha256_hex(read_file(objects_dir() / "loader.x86_64").value()));
  CHECK(l["argv"][0] == "/usr/local/bin/agent");
  CHECK(l["cwd"] == "/etc/agent");
  CHECK(l["env"].dump().find("AGENT_FROM=image") != std::string::npos);
  CHECK(l["nonce_seen"] == true);
  for (const char* name : {"tp_getpid", "kp_unlinkat"}) {
    CHECK(program(r.receipt, name)["verdict"] == "pass");
    CHECK(program(r.receipt, name)["run_count"].get<int>() >= 2);
  }

  // The same image from the command line, over a spec whose loader is a host binary: --exec names
  // the executable in the image, and the words after -- replace its arguments; unpacked before.
  auto cli =
      run_passing(tmp, "image-cli",
                  {"--spec", (objects_dir() / "live.json").string(), "--image",
                   "oci-layout:" + layout.string() + ":v1.4.2", "--exec", "/bin/agent", "--count", "2", "--",
                   "/etc/agent/gate.bpf.o", "attach", "tp_getpid", "kp_unlinkat", "nonce={nonce}"});
  CHECK(cli.receipt["loader"]["image"]["unpacked"] == false);
  CHECK(cli.receipt["loader"]["argv"][0] == "/bin/agent");
  CHECK(cli.receipt["loader"]["cwd"] == "/etc/agent");

  // One flipped byte in the layer of a copy: refused before boot, though the image (by its
  // manifest) was unpacked and cached before.
  const fs::path tampered = tmp.path() / "tampered-image";
  fs::copy(layout, tampered, fs::copy_options::recursive);
  json index = json::parse(read_file(tampered / "index.json").value());
  json manifest = json::parse(
      read_file(tampered / "blobs/sha256" / index["manifests"][0]["digest"].get<std::string>().substr(7))
          .value());
  const std::string layer_digest = manifest["layers"][0]["digest"];
  const fs::path blob = tampered / "blobs/sha256" / layer_digest.substr(7);
  std::string bytes = read_file(blob).value();
  bytes[bytes.size() / 2] ^= 0x20;
  REQUIRE(write_file_atomic(blob, bytes).has_value());
  spec["loader"]["image"] = "oci-layout:tampered-image:v1.4.2";
  REQUIRE(write_file_atomic(tmp.path() / "tampered.json", spec.dump()).has_value());
  auto bad = run_kgate(tmp.path() / "tampered", {"--spec", (tmp.path() / "tampered.json").string()});
  INFO("stdout: " << bad.out << "\nstderr: " << bad.err);
  CHECK(bad.exit_code == 7);
  REQUIRE(bad.receipt.is_object());
  CHECK(bad.receipt["failure"]["class"] == "digest_mismatch");
  CHECK(bad.receipt["failure"]["message"].get<std::string>().find("layer 1 of 1 " + layer_digest) !=
        std::string::npos);
  CHECK_FALSE(fs::exists(bad.dir / "console.log"));  // nothing booted
}

TEST_CASE(
    "repro: a red receipt runs again from its copies; a tampered copy and an unknown schema are refused") {
  require_vm_prerequisites();
  auto tmp = out_root();
  auto red = run_kgate(tmp.path() / "red", {"--spec", (objects_dir() / "red.json").string(), "--count", "2"});
  check_failure(red, "gate_failed", 1);
  REQUIRE(red.receipt["files"].size() == 1);  // the uprobe target, copied beside the receipt

  // From a copy of the receipt directory elsewhere: the same verdict for every program, the
  // override listed as a difference.
  fs::copy(red.dir, tmp.path() / "moved", fs::copy_options::recursive);
  // As if it came from a CI runner: the host differs.
  const std::string here = red.receipt["host"]["name"];
  CHECK_FALSE(here.empty());
  json moved = red.receipt;
  moved["host"]["name"] = "ci-runner-7";
  REQUIRE(write_file_atomic(tmp.path() / "moved/receipt.json", moved.dump()).has_value());
  auto again = run_kgate_command(
      "repro", tmp.path() / "again",
      {(tmp.path() / "moved").string(), "--count", "3", "--receipt", (tmp.path() / "again").string()});
  check_failure(again, "gate_failed", 1);
  CHECK(again.out.find("recorded: fail [gate_failed]") != std::string::npos);
  REQUIRE(again.receipt["programs"].size() == red.receipt["programs"].size());
  for (std::size_t i = 0; i < red.receipt["programs"].size(); ++i) {
    const json& was = red.receipt["programs"][i];
    const json& now = again.receipt["programs"][i];
    CAPTURE(was["name"]);
    CHECK(now["name"] == was["name"]);
    CHECK(now["verdict"] == was["verdict"]);
    CHECK(now["reasons"] == was["reasons"]);
  }
  CHECK(again.receipt["objects"][0]["path"] == (tmp.path() / "moved/objects/gate.x86_64.bpf.o").string());
  CHECK(again.receipt["trigger_count"] == 3);
  CHECK(again.receipt["repro"]["from"] == (tmp.path() / "moved/receipt.json").string());
  CHECK(again.receipt["repro"]["recorded"]["class"] == "gate_failed");
  CHECK(again.receipt["repro"]["differences"] ==
        json::array({"count: 2 -> 3", "host: ci-runner-7 -> " + here}));
  CHECK(again.receipt["kernel"]["image_sha256"] == red.receipt["kernel"]["image_sha256"]);

  // --gdb after the receipt: the stub, nokaslr, and a difference (no debugger attaches: the guest
  // runs on its own).
  auto debug = run_kgate_command("repro", tmp.path() / "debug",
                                 {red.dir.string(), "--gdb", "--receipt", (tmp.path() / "debug").string()});
  check_failure(debug, "gate_failed", 1);
  CHECK(debug.receipt["repro"]["differences"] == json::array({"gdb: unix (nokaslr, no deadlines)"}));
  CHECK(debug.receipt["cmdline"].get<std::string>().find("nokaslr") != std::string::npos);

  // An object copy that is not the receipt's bytes: refused before boot, naming both digests.
  std::string bytes = read_file(tmp.path() / "moved/objects/gate.x86_64.bpf.o").value();
  bytes[bytes.size() / 2] ^= 1;
  REQUIRE(write_file_atomic(tmp.path() / "moved/objects/gate.x86_64.bpf.o", bytes).has_value());
  auto tampered = run_kgate_command(
      "repro", tmp.path() / "tampered",
      {(tmp.path() / "moved/receipt.json").string(), "--receipt", (tmp.path() / "tampered").string()});
  CHECK(tampered.exit_code == 7);
  CHECK(tampered.receipt["failure"]["class"] == "digest_mismatch");
  CHECK(tampered.receipt["failure"]["message"].get<std::string>().find(
            red.receipt["objects"][0]["sha256"].get<std::string>()) != std::string::npos);
  CHECK_FALSE(fs::exists(tmp.path() / "tampered/console.log"));

  // A receipt of another schema version: refused, nothing run.
  json other = red.receipt;
  other["schema"] = "kgate.receipt/99";
  REQUIRE(write_file_atomic(tmp.path() / "other.json", other.dump()).has_value());
  auto refused = run_kgate_command("repro", tmp.path() / "other", {(tmp.path() / "other.json").string()});
  CHECK(refused.exit_code == 2);
  CHECK(refused.err.find("kgate.receipt/99") != std::string::npos);
}

TEST_CASE("gdb: Debian's gdb attaches to the held guest, reads a register, detaches, and the run passes") {
  require_vm_prerequisites();
  REQUIRE_MESSAGE(!find_program("gdb").empty(), "gdb is not installed (scripts/setup.sh --all installs it)");
  auto tmp = out_root();
  const fs::path out = tmp.path() / "gdb";
  auto kgate = Child::spawn({kgate_binary().string(), "run", "--gdb-wait", "--receipt", out.string()},
                            {tmp.path() / "kgate.out", {}, {}});
  REQUIRE(kgate.has_value());
  // The guest waits for the debugger: the socket appears, and nothing boots until gdb lets it go.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(out / "gdb.sock") && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(fs::exists(out / "gdb.sock"));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  CHECK(read_file(out / "console.log").value_or("x").empty());
  auto gdb = run_capture({"gdb", "-batch", "-nx", "-ex", "target remote " + (out / "gdb.sock").string(),
                          "-ex", "info registers rip", "-ex", "detach"},
                         Deadline(std::chrono::seconds(60)));
  REQUIRE(gdb.has_value());
  INFO("gdb: " << gdb->out << gdb->err);
  CHECK(gdb->status == 0);
  CHECK(gdb->out.find("rip") != std::string::npos);
  auto status = kgate->wait(Deadline(std::chrono::minutes(3)));
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  const json receipt = json::parse(read_file(out / "receipt.json").value());
  CHECK(receipt["verdict"] == "pass");
  CHECK(receipt["debug"]["gdb"] == (out / "gdb.sock").string());
  CHECK(receipt["cmdline"].get<std::string>().find("nokaslr") != std::string::npos);
  CHECK(read_file(tmp.path() / "kgate.out").value().find("attach with: gdb -ex 'target remote") !=
        std::string::npos);
}

TEST_CASE("loader: the arm64 build of the loader passes live.json on debian-6.1-arm64") {
  require_vm_prerequisites("arm64");
  auto tmp = out_root();
  auto r = run_passing(
      tmp, "live-arm64",
      {"--entry", "debian-6.1-arm64", "--spec", (objects_dir() / "live.json").string(), "--count", "2"});
  CHECK(r.receipt["arch"] == "arm64");
  CHECK(r.receipt["loader"]["source"] == (objects_dir() / "loader.arm64").string());
  for (const char* name : {"tp_getpid", "kp_unlinkat"}) {
    CHECK(program(r.receipt, name)["verdict"] == "pass");
    CHECK(program(r.receipt, name)["run_count"].get<int>() >= 2);
  }
  // Linked dynamically: its arm64 libraries come from Debian's :arm64 packages on this x86 host.
  json spec = json::parse(read_file(objects_dir() / "live.json").value());
  spec["loader"]["exec"] = {{"arm64", (objects_dir() / "loader-dynamic.arm64").string()}};
  spec["files"][0]["source"] = {{"arm64", (objects_dir() / "gate.arm64.bpf.o").string()}};
  REQUIRE(write_file_atomic(tmp.path() / "dynamic.json", spec.dump()).has_value());
  auto dynamic = run_passing(
      tmp, "dynamic-arm64",
      {"--entry", "debian-6.1-arm64", "--spec", (tmp.path() / "dynamic.json").string(), "--count", "2"});
  CHECK(dynamic.receipt["loader"]["libraries"].dump().find("/lib/aarch64-linux-gnu/libbpf.so.1") !=
        std::string::npos);
  for (const char* name : {"tp_getpid", "kp_unlinkat"})
    CHECK(program(dynamic.receipt, name)["verdict"] == "pass");

  // As an arm64 image: the layout's linux/arm64 manifest, its Entrypoint.
  const fs::path root = tmp.path() / "image-root";
  fs::create_directories(root / "usr/bin");
  fs::copy_file(objects_dir() / "loader.arm64", root / "usr/bin/agent");
  fs::copy_file(objects_dir() / "gate.arm64.bpf.o", root / "usr/bin/gate.bpf.o");
  write_oci_layout(root, tmp.path() / "agent-image", "v1", "arm64", {{"Entrypoint", {"/usr/bin/agent"}}});
  json image = json::parse(read_file(objects_dir() / "live.json").value());
  image["loader"].erase("exec");
  image.erase("files");
  image["loader"]["image"] = "oci-layout:agent-image:v1";
  image["loader"]["args"] = {"/usr/bin/gate.bpf.o", "attach", "tp_getpid", "kp_unlinkat", "nonce={nonce}"};
  REQUIRE(write_file_atomic(tmp.path() / "image.json", image.dump()).has_value());
  auto from_image = run_passing(
      tmp, "image-arm64",
      {"--entry", "debian-6.1-arm64", "--spec", (tmp.path() / "image.json").string(), "--count", "2"});
  CHECK(from_image.receipt["loader"]["dest"] == "/usr/bin/agent");
  for (const char* name : {"tp_getpid", "kp_unlinkat"})
    CHECK(program(from_image.receipt, name)["verdict"] == "pass");
}

namespace {
// kgate run on a pseudo-terminal, the test playing the user at the other end.
struct PtyKgate {
  int master = -1;
  int slave = -1;  // kept open by the test to read the terminal's settings after kgate
  pid_t pid = -1;
  termios before{};
  std::string seen;  // everything the terminal showed

  explicit PtyKgate(const std::vector<std::string>& args) {
    REQUIRE(::openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
    // A cooked terminal with echo, as a user's shell leaves it.
    REQUIRE(::tcgetattr(slave, &before) == 0);
    before.c_lflag |= ICANON | ECHO | ISIG;
    REQUIRE(::tcsetattr(slave, TCSANOW, &before) == 0);
    REQUIRE(::tcgetattr(slave, &before) == 0);
    winsize ws{};
    ws.ws_row = 40;
    ws.ws_col = 132;
    ::ioctl(slave, TIOCSWINSZ, &ws);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::setsid();
      ::ioctl(slave, TIOCSCTTY, 0);
      for (int fd = 0; fd < 3; ++fd) ::dup2(slave, fd);
      ::close(master);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~PtyKgate() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    ::close(master);
    ::close(slave);
  }
  // Reads what the terminal shows until `text` appears after `from` (true) or the time is up.
  bool wait_for(const std::string& text, std::chrono::seconds limit, std::size_t from = 0) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (seen.find(text, from) == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{master, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 500))) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(master, buf, sizeof buf);
      if (n <= 0) return false;
      seen.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }
  void type(const std::string& keys) {
    REQUIRE(::write(master, keys.data(), keys.size()) == static_cast<ssize_t>(keys.size()));
  }
  // kgate's exit status, reading the terminal meanwhile so that it never blocks on output.
  int wait_exit(std::chrono::seconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < until) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      wait_for("\x01never\x01", std::chrono::seconds(1));
    }
    return -1;
  }
  // The terminal's settings are the ones it had before kgate.
  void check_restored() const {
    termios after{};
    REQUIRE(::tcgetattr(slave, &after) == 0);
    CHECK(after.c_lflag == before.c_lflag);
    CHECK(after.c_iflag == before.c_iflag);
    CHECK(after.c_oflag == before.c_oflag);
    CHECK(after.c_cflag == before.c_cflag);
  }
};
}  // namespace

TEST_CASE(
    "shell: bpftool in the guest sees the gate's pinned programs; exit powers off and writes the receipt") {
  require_vm_prerequisites();
  auto tmp = out_root();
  // Without a terminal, --shell is a usage error before anything runs.
  auto no_tty = run_kgate(tmp.path() / "no-tty", {"--shell"});
  CHECK(no_tty.exit_code == 2);
  CHECK(no_tty.err.find("--shell needs a terminal") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp.path() / "no-tty" / "console.log"));

  const fs::path out = tmp.path() / "shell";
  PtyKgate user({kgate_binary().string(), "run", "--shell", "--receipt", out.string()});
  // The first shell on a machine downloads its packages: a generous wait.
  REQUIRE_MESSAGE(user.wait_for("kgate-guest:", std::chrono::seconds(400)), user.seen);
  std::size_t mark = user.seen.size();
  user.type("bpftool prog show; ls -1 /sys/fs/bpf/kgate/probe/programs; echo done-$((6*7))\n");
  REQUIRE_MESSAGE(user.wait_for("done-42", std::chrono::seconds(120), mark), user.seen);
  const std::string shown = user.seen.substr(mark);
  CHECK(shown.find("name on_getpid") != std::string::npos);
  CHECK(shown.find("name on_uprobe") != std::string::npos);
  CHECK(shown.find("on_getpid\r\non_uprobe") != std::string::npos);  // pinned by name
  // Ctrl-C goes to the guest: it ends the guest's command, not kgate.
  user.type("sleep 1000\n");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  mark = user.seen.size();
  user.type("\x03");
  user.type("echo back-$((1+1))\n");
  REQUIRE_MESSAGE(user.wait_for("back-2", std::chrono::seconds(60), mark), user.seen);
  user.type("exit\n");
  const int code = user.wait_exit(std::chrono::seconds(120));
  INFO(user.seen);
  CHECK(code == 0);
  user.check_restored();
  const json receipt = json::parse(read_file(out / "receipt.json").value_or("null"), nullptr, false);
  REQUIRE(receipt.is_object());
  CHECK(receipt["verdict"] == "pass");
  const json& shell = receipt["debug"]["shell"];
  CHECK(shell["when"] == "after");
  CHECK(shell["opened"] == true);
  CHECK(shell["status"] == "exited with 0");
  CHECK(shell["pinned"].get<int>() >= 6);  // two programs, two maps, two links
  CHECK(shell["problems"].empty());
  CHECK(shell["packages"].size() == 6);
  // Powered off through the agent, the objects detached after the shell and nothing left behind.
  std::vector<std::string> phases;
  for (const auto& [name, _] : receipt["timings_s"].items()) phases.push_back(name);
  CHECK(std::find(phases.begin(), phases.end(), "poweroff") != phases.end());
  CHECK(receipt["leftovers"]["programs"].empty());
  CHECK(fs::exists(out / "console.log"));
  check_no_qemu_left(out);

  // on-failure: a gate that passes opens no shell and says why.
  const fs::path quiet = tmp.path() / "on-failure";
  PtyKgate passing({kgate_binary().string(), "run", "--shell=on-failure", "--receipt", quiet.string()});
  CHECK(passing.wait_exit(std::chrono::seconds(300)) == 0);
  CHECK(passing.seen.find("kgate-guest:") == std::string::npos);
  passing.check_restored();
  const json passed = json::parse(read_file(quiet / "receipt.json").value_or("null"), nullptr, false);
  REQUIRE(passed.is_object());
  CHECK(passed["verdict"] == "pass");
  CHECK(passed["debug"]["shell"]["opened"] == false);
}

TEST_CASE("shell: SIGTERM to kgate, or QEMU killed, while the shell is open: terminal restored, no QEMU") {
  require_vm_prerequisites();
  auto tmp = out_root();
  const fs::path out = tmp.path() / "shell-sigterm";
  // A request deadline shorter than the time the shell stays open: it must not run meanwhile.
  PtyKgate user({kgate_binary().string(), "run", "--shell=before", "--request-timeout", "3", "--receipt",
                 out.string()});
  REQUIRE_MESSAGE(user.wait_for("kgate-guest:", std::chrono::seconds(400)), user.seen);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  ::kill(user.pid, SIGTERM);
  const int code = user.wait_exit(std::chrono::seconds(60));
  INFO(user.seen);
  CHECK(code == 130);
  user.check_restored();
  const json receipt = json::parse(read_file(out / "receipt.json").value_or("null"), nullptr, false);
  REQUIRE(receipt.is_object());
  CHECK(receipt["failure"]["class"] == "interrupted");
  CHECK(receipt["debug"]["shell"]["when"] == "before");
  check_no_qemu_left(out);

  // QEMU killed under the open shell: the terminal comes back, the receipt says QEMU ended.
  const fs::path killed = tmp.path() / "shell-qemu-killed";
  PtyKgate again({kgate_binary().string(), "run", "--shell=before", "--receipt", killed.string()});
  REQUIRE_MESSAGE(again.wait_for("kgate-guest:", std::chrono::seconds(400)), again.seen);
  for (int pid : processes_mentioning(killed.string()))
    if (pid != again.pid) ::kill(pid, SIGKILL);
  CHECK(again.wait_exit(std::chrono::seconds(60)) == 6);
  again.check_restored();
  const json crashed = json::parse(read_file(killed / "receipt.json").value_or("null"), nullptr, false);
  REQUIRE(crashed.is_object());
  CHECK(crashed["failure"]["class"] == "infra");
  check_no_qemu_left(killed);
}

TEST_CASE("watch: a changed spec and a changed object run again in the same guest, one verdict each") {
  require_vm_prerequisites();
  auto tmp = out_root();
  // good.json with its object copied beside the test, where the test changes it.
  const fs::path object = tmp.path() / "gate.bpf.o";
  fs::copy_file(objects_dir() / "gate.x86_64.bpf.o", object);
  json spec = movable_spec("good.json");
  spec["objects"][0]["path"] = {{"x86_64", object.string()}};
  const fs::path spec_path = tmp.path() / "spec.json";
  REQUIRE(write_file_atomic(spec_path, spec.dump(1)).has_value());

  const fs::path out = tmp.path() / "watch";
  auto kgate = Child::spawn({kgate_binary().string(), "run", "--spec", spec_path.string(), "--count", "3",
                             "--watch", "--receipt", out.string()},
                            {tmp.path() / "stdout", tmp.path() / "stderr", {}});
  REQUIRE(kgate.has_value());
  auto verdicts = [&] {
    const std::string text = read_file(tmp.path() / "stdout").value_or("");
    std::vector<std::string> lines;
    for (const auto& l : split_nonempty(text, '\n'))
      if (l.starts_with("PASS ") || l.starts_with("FAIL ")) lines.push_back(l);
    return lines;
  };
  auto wait_verdicts = [&](std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(240);
    while (verdicts().size() < n && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    INFO("stdout: " << read_file(tmp.path() / "stdout").value_or("")
                    << "\nstderr: " << read_file(tmp.path() / "stderr").value_or(""));
    REQUIRE(verdicts().size() == n);
    return json::parse(read_file(out / "receipt.json").value_or("null"), nullptr, false);
  };
  const json first = wait_verdicts(1);
  CHECK(verdicts()[0].starts_with("PASS debian-6.1"));
  REQUIRE(first.is_object());
  const int qemu_pid = first["debug"]["watch"]["qemu_pid"].get<int>();
  CHECK(first["debug"]["watch"]["run"] == 1);
  auto qemu = processes_mentioning(out.string());
  CHECK(std::find(qemu.begin(), qemu.end(), qemu_pid) != qemu.end());

  // The spec asks for more runs than the triggers make: the same guest says so.
  spec["objects"][0]["programs"]["tp_getpid"]["expect"]["runs"] = 100000;
  REQUIRE(write_file_atomic(spec_path, spec.dump(1)).has_value());
  const json second = wait_verdicts(2);
  CHECK(verdicts()[1].starts_with("FAIL debian-6.1 [gate_failed]: tp_getpid [did_not_fire]"));
  CHECK(second["debug"]["watch"]["run"] == 2);
  CHECK(second["debug"]["watch"]["qemu_pid"] == qemu_pid);
  CHECK(second["debug"]["watch"]["changed"] == json::array({spec_path.string()}));
  CHECK(second["nonce"] != first["nonce"]);

  // Bytes appended to the object change its digest: it is loaded again, and the spec still fails it.
  {
    std::string bytes = read_file(object).value();
    REQUIRE(write_file_atomic(object, bytes + std::string(8, '\0')).has_value());
  }
  const json third = wait_verdicts(3);
  CHECK(third["debug"]["watch"]["run"] == 3);
  CHECK(third["debug"]["watch"]["qemu_pid"] == qemu_pid);
  CHECK(third["debug"]["watch"]["changed"] == json::array({object.string()}));
  CHECK(third["objects"][0]["sha256"] != first["objects"][0]["sha256"]);
  CHECK(third["leftovers"]["programs"].empty());

  // Ctrl-C: the guest powers off and the last run's receipt is written, once more on stdout.
  ::kill(kgate->pid(), SIGINT);
  auto status = kgate->wait(Deadline(std::chrono::seconds(60)));
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 1);
  CHECK(verdicts().size() == 3);
  const json last = json::parse(read_file(out / "receipt.json").value_or("null"), nullptr, false);
  REQUIRE(last.is_object());
  CHECK(last["failure"]["class"] == "gate_failed");
  CHECK(last["debug"]["watch"]["stopped_by"] == "signal");
  CHECK(last["timings_s"].contains("poweroff"));
  check_no_qemu_left(out);
}

// ---- Kernels built from source (suite kernel-build, run by hand: minutes of compiling) ----

TEST_CASE(
    "kernel build: Debian's linux-source-6.1 with the minimal fragment builds, boots and passes the gate") {
  require_vm_prerequisites();
  const fs::path tarball = "/usr/src/linux-source-6.1.tar.xz";
  REQUIRE_MESSAGE(
      path_exists(tarball),
      "apt-get install linux-source-6.1 dwarves bc flex bison make (scripts/setup.sh --all --kernel-build)");
  auto tmp = out_root();
  const std::string sha = sha256_file(tarball).value();
  const char* root = std::getenv("KGATE_SOURCE_ROOT");
  const fs::path fragment = fs::path(root ? root : ".") / "kernels/config/gate-minimal.config";
  auto entry = [&](const std::string& digest, const std::string& base) {
    return json{{"arch", "x86_64"},
                {"modules", json::array()},
                {"source",
                 {{"type", "kernel-org"},
                  {"release", "6.1"},
                  {"sha256", digest},
                  {"tarball", tarball.string()},
                  {"config", fragment.string()},
                  {"base", base}}}};
  };
  json catalog = {{"schema", "kgate.catalog/1"},
                  {"default", "src"},
                  {"kernels",
                   {{"src", entry(sha, "tinyconfig")},
                    {"wrong-sha", entry(std::string(64, '0'), "tinyconfig")},
                    {"not-built", entry(sha, "allnoconfig")}}}};
  const fs::path catalog_file = tmp.path() / "catalog.json";
  REQUIRE(write_file_atomic(catalog_file, catalog.dump(2)).has_value());
  auto kgate = [&](std::vector<std::string> args) {
    args.insert(args.begin(), kgate_binary().string());
    auto cap = run_capture(args, Deadline(std::chrono::hours(2)));
    REQUIRE(cap.has_value());
    return *cap;
  };
  // A tarball that is not the pinned one is refused before anything is unpacked.
  auto wrong = kgate({"kernels", "build", "wrong-sha", "--catalog", catalog_file.string()});
  CHECK(WEXITSTATUS(wrong.status) == 7);
  CHECK(wrong.err.find("the catalog pins 0000") != std::string::npos);
  // A run never builds: it says how.
  auto unbuilt =
      run_kgate(tmp.path() / "unbuilt", {"--catalog", catalog_file.string(), "--entry", "not-built"});
  CHECK(unbuilt.exit_code == 2);
  CHECK(unbuilt.out.find("kgate kernels build not-built") != std::string::npos);

  auto built = kgate({"kernels", "build", "src", "--catalog", catalog_file.string()});
  INFO("build: " << built.out << built.err);
  REQUIRE(WEXITSTATUS(built.status) == 0);
  for (const char* lockdown : {"none", "integrity"}) {
    CAPTURE(lockdown);
    auto r = run_kgate(tmp.path() / lockdown,
                       {"--catalog", catalog_file.string(), "--entry", "src", "--lockdown", lockdown});
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.exit_code == 0);
    REQUIRE(r.receipt.is_object());
    CHECK(r.receipt["kernel"]["source"].get<std::string>().starts_with("kernel-org linux-6.1 sha256:" + sha));
    CHECK(r.receipt["guest"]["release"].get<std::string>().starts_with("6.1"));
    CHECK(r.receipt["preflight"]["problems"].empty());
  }
  // Built once: asked again, it is recorded from the cache, not compiled.
  auto again = kgate({"kernels", "build", "src", "--catalog", catalog_file.string()});
  CHECK(WEXITSTATUS(again.status) == 0);
  CHECK(again.out.find("built before") != std::string::npos);
}
