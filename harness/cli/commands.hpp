// The kgate subcommands, one file each; main() dispatches on argv[1].
#pragma once

namespace kgate::cli {

int cmd_gates(int argc, char** argv);   // gates_cmd.cpp
int cmd_digest(int argc, char** argv);  // digest_cmd.cpp

}  // namespace kgate::cli
