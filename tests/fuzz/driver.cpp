// A deterministic mutation driver for the libFuzzer targets in this directory, so that every test
// run exercises them: clang 14 cannot build std::expected against libstdc++ 12, which rules out
// libFuzzer itself. It has no coverage feedback. It runs the target's seeds, then stacks random
// mutations on them (bit flips, interesting integers, inserted, deleted and spliced ranges), half
// the time walking on from the previous input. The PRNG seed is fixed, so a failure reproduces, and
// the failing input is saved for replay.
//
//   fuzz_NAME [ITERATIONS [PRNG_SEED]]   mutate; 20000 iterations and PRNG seed 1 by default
//   fuzz_NAME FILE...                    run saved inputs once each
//
// A crash, a sanitizer report or a failed check aborts the run; a mutated input is written to
// $KGATE_FUZZ_ARTIFACTS (default: the working directory) as NAME-crash.bin and, when short,
// printed in hex. LeakSanitizer reports only at exit, without the input: the first N inputs do not
// depend on ITERATIONS, so bisecting on ITERATIONS finds it.
#include "driver.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string_view>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#endif

namespace {

// splitmix64: tiny, and its sequence is fixed by its definition, unlike the std distributions.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }
  // Uniform enough in [0, n); 0 when n is 0.
  std::size_t below(std::size_t n) { return n == 0 ? 0 : next() % n; }
  bool one_in(std::size_t n) { return below(n) == 0; }

 private:
  std::uint64_t state_;
};

// Values at which length and offset checks tend to break: signed and unsigned limits of each width.
// clang-format off
constexpr std::uint64_t interesting[] = {
    0, 1, 2,
    0x7f, 0x80, 0xff, 0x100,
    0x7fff, 0x8000, 0xffff, 0x10000,
    0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x100000000,
    0x7fffffffffffffff, 0x8000000000000000, 0xfffffffffffffffe, 0xffffffffffffffff};
// clang-format on

class Mutator {
 public:
  Mutator(Rng& rng, const std::vector<std::string>& seeds, std::size_t max_size)
      : rng_(rng), seeds_(seeds), max_size_(max_size) {}

  void mutate(std::string& s) {
    switch (rng_.below(14)) {
      case 0:
        if (!s.empty()) s[pos(s)] ^= static_cast<char>(1u << rng_.below(8));
        break;
      case 1:
        if (!s.empty()) s[pos(s)] = static_cast<char>(rng_.next());
        break;
      case 2:
        if (!s.empty()) s[pos(s)] = static_cast<char>(interesting[rng_.below(6)]);
        break;
      case 3:
        if (!s.empty())
          s[pos(s)] += static_cast<char>(rng_.one_in(2) ? 1 + rng_.below(16) : -1 - rng_.below(16));
        break;
      case 4: put_int(s, interesting[rng_.below(std::size(interesting))]); break;
      case 5: put_int(s, size_relative(s)); break;
      case 6: {
        std::size_t n = chunk_len(64);
        std::string bytes(n, static_cast<char>(rng_.next()));
        if (rng_.one_in(2))
          for (char& c : bytes) c = static_cast<char>(rng_.next());
        s.insert(rng_.below(s.size() + 1), bytes);
        break;
      }
      case 7:
        if (!s.empty()) {
          std::size_t at = pos(s);
          s.erase(at, chunk_len(s.size() - at));
        }
        break;
      case 8: s.resize(rng_.below(s.size() + 1)); break;
      case 9: {  // the front of this input on the back of a seed
        const std::string& other = seed();
        s = s.substr(0, rng_.below(s.size() + 1)) + other.substr(rng_.below(other.size() + 1));
        break;
      }
      case 10: s.insert(rng_.below(s.size() + 1), chunk_of(seed())); break;
      case 11: overwrite(s, chunk_of(seed())); break;
      case 12: {
        std::string piece = chunk_of(s);
        if (rng_.one_in(2))
          s.insert(rng_.below(s.size() + 1), piece);
        else
          overwrite(s, piece);
        break;
      }
      case 13:  // a byte run, as a length field pointing past the end would expect
        s.append(chunk_len(std::size_t{1} << rng_.below(13)), static_cast<char>(interesting[rng_.below(6)]));
        break;
    }
    if (s.size() > max_size_) s.resize(max_size_);
  }

 private:
  std::size_t pos(const std::string& s) { return rng_.below(s.size()); }

  // A length in [1, limit], mostly short; 0 when limit is 0.
  std::size_t chunk_len(std::size_t limit) {
    if (limit == 0) return 0;
    return 1 + rng_.below(std::min(limit, std::size_t{1} << rng_.below(11)));
  }

  const std::string& seed() { return seeds_[rng_.below(seeds_.size())]; }

  std::string chunk_of(const std::string& s) {
    if (s.empty()) return {};
    std::size_t at = pos(s);
    return s.substr(at, chunk_len(s.size() - at));
  }

  void overwrite(std::string& s, std::string_view piece) {
    std::size_t at = rng_.below(s.size() + 1);
    s.replace(at, std::min(piece.size(), s.size() - at), piece);
  }

  // A length or offset that matches this input: its size, or the distance to its end, give or take.
  std::uint64_t size_relative(const std::string& s) {
    std::uint64_t base = rng_.one_in(2) ? s.size() : s.size() - rng_.below(s.size() + 1);
    return base + rng_.below(9) - 4;
  }

  // Writes v as a 1-, 2-, 4- or 8-byte integer of either byte order, often at an aligned offset.
  void put_int(std::string& s, std::uint64_t v) {
    std::size_t width = std::size_t{1} << rng_.below(4);
    if (s.size() < width) return;
    std::size_t at = rng_.below(s.size() - width + 1);
    if (rng_.one_in(2)) at -= at % width;
    bool big = rng_.one_in(4);
    for (std::size_t i = 0; i < width; ++i)
      s[at + (big ? width - 1 - i : i)] = static_cast<char>(v >> (8 * i));
  }

  Rng& rng_;
  const std::vector<std::string>& seeds_;
  std::size_t max_size_;
};

// What the crash handlers need, set before each input. Plain globals, since signal handlers read them.
const std::uint8_t* current_data = nullptr;
std::size_t current_size = 0;
std::uint64_t current_index = 0;
const char* current_file = nullptr;  // in replay mode, where the input came from
char crash_path[4096];
volatile std::sig_atomic_t saved = 0;

// Only async-signal-safe calls from here on: this runs in a signal handler or a sanitizer's death callback.
void say(std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(STDERR_FILENO, s.data(), s.size());
    if (n <= 0) return;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

void say_number(std::uint64_t v) {
  char buf[24];
  char* end = buf + sizeof buf;
  char* p = end;
  do *--p = static_cast<char>('0' + v % 10);
  while ((v /= 10) != 0);
  say(std::string_view(p, static_cast<std::size_t>(end - p)));
}

void save_input() {
  if (saved || current_data == nullptr) return;
  saved = 1;
  if (current_file != nullptr) {
    say("\nfuzz: failed on ");
    say(current_file);
    say("\n");
    return;
  }
  say("\nfuzz: failed on input #");
  say_number(current_index);
  say(" (");
  say_number(current_size);
  say(" bytes)\n");
  // A raw fd, not an RAII one: nothing here may allocate, and it is closed just below.
  int fd = ::open(crash_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool written = fd >= 0;
  for (std::size_t off = 0; written && off < current_size;) {
    ssize_t n = ::write(fd, current_data + off, current_size - off);
    written = n > 0;
    off += written ? static_cast<std::size_t>(n) : 0;
  }
  if (fd >= 0) ::close(fd);
  say(written ? "fuzz: saved to " : "fuzz: could not save it to ");
  say(crash_path);
  say("\n");
  if (current_size > 4096) return;
  say("fuzz: input hex: ");
  static constexpr char digits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < current_size; ++i) {
    const char pair[2] = {digits[current_data[i] >> 4], digits[current_data[i] & 0xf]};
    say(std::string_view(pair, 2));
  }
  say("\n");
}

extern "C" void on_fatal_signal(int sig) {
  save_input();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

extern "C" void on_sanitizer_death() {
  save_input();
}

void install_crash_handlers(std::string_view name) {
  const char* dir = std::getenv("KGATE_FUZZ_ARTIFACTS");
  std::string path = std::string(dir && *dir ? dir : ".") + "/" + std::string(name) + "-crash.bin";
  std::snprintf(crash_path, sizeof crash_path, "%s", path.c_str());

  // ASan reports segfaults and the like itself, then calls the death callback. An abort comes to the
  // handler: a failed check or assert, an uncaught exception, and a UBSan report when UBSAN_OPTIONS
  // has abort_on_error=1 (libubsan has death callbacks of its own, which this does not reach).
  std::vector<int> signals = {SIGABRT};
#ifdef __SANITIZE_ADDRESS__
  __sanitizer_set_death_callback(on_sanitizer_death);
#else
  signals.insert(signals.end(), {SIGSEGV, SIGBUS, SIGFPE, SIGILL});
#endif
  for (int sig : signals) {
    struct sigaction sa {};
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
  }
}

// Copies the input into a buffer of exactly its size, so that ASan sees a read one byte past the end.
void run_one(std::uint64_t index, std::string_view input) {
  auto buf = std::make_unique_for_overwrite<std::uint8_t[]>(input.size());
  std::memcpy(buf.get(), input.data(), input.size());
  current_data = buf.get();
  current_size = input.size();
  current_index = index;
  LLVMFuzzerTestOneInput(buf.get(), input.size());
  current_data = nullptr;
}

bool parse_number(std::string_view s, std::uint64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

int replay(std::string_view name, const std::vector<const char*>& files) {
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::ifstream in(files[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "%.*s: cannot open %s\n", int(name.size()), name.data(), files[i]);
      return 1;
    }
    std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    current_file = files[i];
    run_one(i, bytes);
  }
  std::printf("%.*s: replayed %zu inputs\n", int(name.size()), name.data(), files.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string_view name = argv[0];
  name.remove_prefix(name.rfind('/') + 1);
  std::vector<const char*> args(argv + 1, argv + argc);
  install_crash_handlers(name);

  std::uint64_t iterations = 20000, prng_seed = 1;
  if (!args.empty() && !parse_number(args[0], iterations)) return replay(name, args);
  if (args.size() > 2 || (args.size() == 2 && !parse_number(args[1], prng_seed))) {
    std::fprintf(stderr, "usage: %.*s [ITERATIONS [PRNG_SEED]] | %.*s FILE...\n", int(name.size()),
                 name.data(), int(name.size()), name.data());
    return 2;
  }

  const std::vector<std::string> seeds = kgate_fuzz_seeds();
  if (seeds.empty()) {
    std::fprintf(stderr, "%.*s: the target has no seeds\n", int(name.size()), name.data());
    return 1;
  }
  std::size_t largest = 0;
  for (const std::string& s : seeds) largest = std::max(largest, s.size());

  Rng rng(prng_seed);
  Mutator mutator(rng, seeds, std::max<std::size_t>(2 * largest, 4096));
  std::string input;
  std::uint64_t bytes = 0;
  for (std::uint64_t i = 0; i < iterations; ++i) {
    if (i < seeds.size()) {
      input = seeds[i];  // each seed once as it is: a seed that fails is a bug of its own
    } else {
      if (i == seeds.size() || rng.one_in(2)) input = seeds[rng.below(seeds.size())];
      for (std::size_t n = 1 + rng.below(std::size_t{1} << rng.below(4)); n > 0; --n) mutator.mutate(input);
    }
    run_one(i, input);
    bytes += input.size();
  }
  std::printf("%.*s: ran %llu inputs (%zu seeds, PRNG seed %llu, %llu bytes in all)\n", int(name.size()),
              name.data(), static_cast<unsigned long long>(iterations), seeds.size(),
              static_cast<unsigned long long>(prng_seed), static_cast<unsigned long long>(bytes));
  return 0;
}
