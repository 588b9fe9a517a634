// The kgate subcommands, one file each; main() dispatches on argv[1] through commands().
#pragma once

#include <span>
#include <string_view>

#include "cli/common.hpp"

namespace kgate::cli {

// One command: its option table (the one --help, the man page and the shell completion all
// read) and what runs it.
struct Command {
  std::string_view name;
  std::string_view summary;  // one line: `kgate --help`, the man page's NAME
  cxxopts::Options (*options)();
  int (*main)(int argc, char** argv);  // argv[0] is the command's name
};

// Every command, in the order `kgate --help` lists them.
std::span<const Command> commands();
const Command* find_command(std::string_view name);

cxxopts::Options run_options();  // run_cmd.cpp
int cmd_run(int argc, char** argv);
cxxopts::Options repro_options();
int cmd_repro(int argc, char** argv);
cxxopts::Options matrix_options();  // matrix_cmd.cpp
int cmd_matrix(int argc, char** argv);
cxxopts::Options gates_options();  // gates_cmd.cpp
int cmd_gates(int argc, char** argv);
cxxopts::Options digest_options();  // digest_cmd.cpp
int cmd_digest(int argc, char** argv);
cxxopts::Options fetch_options();  // fetch_cmd.cpp
int cmd_fetch(int argc, char** argv);
cxxopts::Options spec_options();  // spec_cmd.cpp
int cmd_spec(int argc, char** argv);
cxxopts::Options kernels_options();  // kernels_cmd.cpp
int cmd_kernels(int argc, char** argv);
cxxopts::Options cache_options();
int cmd_cache(int argc, char** argv);

// manual.cpp: what is made of the tables (man pages and completion at build time).
std::string usage_text();                // kgate --help
std::string man_page(const Command& c);  // kgate-NAME(1), troff
std::string man_page_index();            // kgate(1): the commands and the exit codes
std::string bash_completion();           // for /usr/share/bash-completion/completions/kgate

}  // namespace kgate::cli
