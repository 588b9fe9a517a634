// Hostile-guest suite: kgate run against tests/hostile/fake-qemu.py given as --qemu, which
// connects to kgate's channel as QEMU's virtserialport would and then misbehaves. For each way,
// the run must end in its class and exit code within a bound, write a receipt of bounded size and
// its console log, and leave no process behind. The kernel is the cached Debian one (never booted).
// Hostile tools too: an apt-get whose failure floods stderr.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdlib>

#include "../vm/vm_harness.hpp"

using namespace kgate;
using namespace kgate::vmtest;
using nlohmann::json;

namespace {

struct Case {
  const char* mode;
  const char* cls;
  int exit_code;
  double max_seconds;   // wall time of the whole kgate run
  const char* message;  // a part of failure.message
};

void check_case(const Case& c) {
  require_vm_prerequisites();
  auto tmp = TempDir::create("kgate-hostile");
  REQUIRE(tmp.has_value());
  const char* src = std::getenv("KGATE_SOURCE_ROOT");
  REQUIRE(src != nullptr);
  ::setenv("KGATE_FAKE_MODE", c.mode, 1);
  auto start = Clock::now();
  auto r = run_kgate(tmp->path() / c.mode, {"--qemu", (fs::path(src) / "tests/hostile/fake-qemu.py").string(),
                                            "--boot-timeout", "5", "--request-timeout", "3"});
  const double took = seconds_since(start);
  ::unsetenv("KGATE_FAKE_MODE");
  INFO("mode " << std::string(c.mode) << "\nstdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == c.exit_code);
  REQUIRE(r.receipt.is_object());
  CHECK(r.receipt["failure"]["class"] == c.cls);
  CHECK_MESSAGE(r.receipt["failure"]["message"].get<std::string>().find(c.message) != std::string::npos,
                r.receipt["failure"]["message"].get<std::string>());
  CHECK(r.receipt["failure"]["message"].get<std::string>().size() <= 4096);
  CHECK(took < c.max_seconds);
  CHECK(fs::exists(r.dir / "console.log"));
  // Bounded, whatever the guest sent: only the object's own programs, never the guest's inventions.
  CHECK(fs::file_size(r.dir / "receipt.json") < (std::uintmax_t{4} << 20));
  CHECK(r.receipt["programs"].size() <= 2);
  CHECK_MESSAGE(processes_mentioning(r.dir.string()).empty(), "a process was left running for " << c.mode);
}

}  // namespace

TEST_CASE("hostile guest: random bytes instead of frames") {
  check_case({"random", "no_verdict", 10, 20, "bad magic"});
}

TEST_CASE("hostile guest: a 4 GB frame announced, then silence") {
  check_case({"huge-length", "no_verdict", 10, 20, "exceeds the limit of 1048576 bytes"});
}

TEST_CASE("hostile guest: endless small frames that are not hello") {
  check_case({"log-flood", "no_verdict", 10, 20, "expected hello"});
}

TEST_CASE("hostile guest: a hello nested 100,000 levels deep") {
  check_case({"nested", "no_verdict", 10, 20, "nests deeper than 64 levels"});
}

TEST_CASE("hostile guest: a header over the 1 MiB limit") {
  check_case({"huge-header", "no_verdict", 10, 20, "exceeds the limit of 1048576 bytes"});
}

// The first request after the hello sends the minimized BTF for CO-RE (run/core_btf.cpp).
TEST_CASE("hostile guest: a hello and then silence") {
  check_case({"silent-after-hello", "timeout", 5, 20, "'btf'"});
}

TEST_CASE("hostile guest: an answer to a request it was not asked") {
  check_case({"wrong-op", "no_verdict", 10, 20, "unexpected frame"});
}

TEST_CASE("hostile guest: a QEMU that ignores SIGTERM is killed all the same") {
  check_case({"ignore-sigterm", "timeout", 5, 25, "'btf'"});
}

TEST_CASE("hostile guest: a QEMU that forks and exits leaves no child behind") {
  check_case({"fork-and-exit", "infra", 6, 25, "QEMU"});
}

TEST_CASE("hostile guest: every load answered with a huge error and thousands of programs it made up") {
  // Its refused canary under lockdown=none is the first thing wrong; the made-up programs are one
  // problem of the run, not 4000 entries of the receipt.
  check_case({"huge-error", "lockdown_mismatch", 8, 25, "the bpf_probe_write_user canary was refused"});
}

TEST_CASE("hostile tools: an apt-get that floods stderr gives a bounded message, the whole text in a file") {
  // apt-cache is the real one (the package lists scripts/setup.sh fetched); apt-get download fails
  // with 300 KB on stderr, as dpkg and apt do when the disk fills up.
  auto tmp = TempDir::create("kgate-hostile");
  REQUIRE(tmp.has_value());
  const fs::path bin = tmp->path() / "bin";
  fs::create_directories(bin);
  REQUIRE(write_file_atomic(bin / "apt-get",
                            "#!/bin/sh\nfor i in $(seq 1 6000); do\n"
                            "  echo \"E: Write error - write (28: No space left on device) $i\"\n"
                            "done >&2\necho 'E: the last words' >&2\nexit 100\n")
              .has_value());
  fs::permissions(bin / "apt-get", fs::perms::owner_all);
  const fs::path catalog = tmp->path() / "catalog.json";
  REQUIRE(write_file_atomic(catalog, R"({"schema": "kgate.catalog/1", "default": "flood", "kernels": {
    "flood": {"arch": "x86_64", "modules": [],
              "source": {"type": "debian-package", "metapackage": "linux-image-amd64",
                         "package_prefix": "linux-image-6.1.0-"}}}})")
              .has_value());
  const fs::path xdg = tmp->path() / "cache";
  const std::string path = bin.string() + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
  auto cap = run_capture({"env", "PATH=" + path, "XDG_CACHE_HOME=" + xdg.string(), kgate_binary().string(),
                          "fetch", "--catalog", catalog.string()},
                         Deadline(std::chrono::seconds(60)));
  REQUIRE(cap.has_value());
  INFO("stderr (head): " << cap->err.substr(0, 600));
  CHECK(WIFEXITED(cap->status));
  CHECK(WEXITSTATUS(cap->status) == 6);  // infra
  CHECK(cap->err.size() < 8192);
  const fs::path file = xdg / "kgate" / "logs" / "fetch-flood.txt";
  CHECK(cap->err.find("the whole message is in " + file.string()) != std::string::npos);
  CHECK(cap->err.find("the last words") != std::string::npos);  // the tail is kept
  auto whole = read_file(file);
  REQUIRE(whole.has_value());
  CHECK(whole->size() > 300000);
  CHECK(whole->find("on device) 3000\n") != std::string::npos);
  CHECK(whole->find("the last words") != std::string::npos);
}
