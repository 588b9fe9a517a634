// What every kgate command shares: option parsing, usage errors, where the kernel files are.
#pragma once

// --append and --qemu-arg values carry commas (console=ttyS0,115200; -device a,b=c):
// one option occurrence is one value, never split.
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>
#include <filesystem>
#include <optional>
#include <string>

#include "core/error.hpp"

namespace kgate::cli {

// Prints the message and the usage text; returns the usage exit code.
int usage_error(const std::string& msg);

// Prints an input file's error (a gates file, a catalog) alone, without the usage text: the
// command line was right. Returns its class's exit code.
int input_error(const Error& e);

// A deadline must be positive, finite and small enough for the clock's nanoseconds.
bool valid_timeout(double s);

// Parses a command's options into `args`. Returns the exit code to end with
// instead when there is nothing to run: --help, a bad option, a stray argument.
std::optional<int> parse_args(cxxopts::Options& opts, int argc, char** argv, cxxopts::ParseResult& args);

// A command's positional words ("merge DIR...", "init OBJECT"), which --help's option list leaves
// out: declared on the table, read from the parse.
void add_positional_words(cxxopts::Options& opts);
std::vector<std::string> positional_words(const cxxopts::ParseResult& args);

// The directory kgate's own executable is in.
std::filesystem::path self_dir();

// Where `meson install` put kernels/ and bpf/ (/usr/share/kgate for the package).
std::filesystem::path data_dir();

// The option's value, then $<ENV>, ./<dir>/<file>, next to kgate's build directory, the
// installed data directory and (unless built without) the source tree kgate was built from.
std::filesystem::path find_project_file(const std::string& given, const char* env_name,
                                        const std::filesystem::path& rel);
std::filesystem::path find_catalog(const std::string& given);
std::filesystem::path find_matrix(const std::string& given);

// UTC, for receipt directory names: 20261127-005050.
std::string timestamp();

}  // namespace kgate::cli
