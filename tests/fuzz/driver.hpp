#pragma once

// What a fuzz target offers: the libFuzzer entry point, and the seeds that driver.cpp mutates
// (a libFuzzer build ignores kgate_fuzz_seeds). Seeds are valid inputs made with kgate's own
// encoders, plus near misses that reach the error paths.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
std::vector<std::string> kgate_fuzz_seeds();

// A property of the code under test that must hold for every input. It aborts, which both
// libFuzzer and the driver treat as a crash that saves the input; unlike assert, NDEBUG keeps it.
#define KGATE_FUZZ_CHECK(cond) ((cond) ? void(0) : kgate_fuzz_check_failed(#cond, __FILE__, __LINE__))

[[noreturn]] inline void kgate_fuzz_check_failed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, cond);
  std::abort();
}
