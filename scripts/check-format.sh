#!/bin/sh
# Fails if any C++ file under harness/ or tests/ differs from .clang-format.
# With --fix, rewrites them instead.
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files 'harness/*.cpp' 'harness/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 2>/dev/null || find harness tests -name '*.[ch]pp')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i $files
else
  clang-format --dry-run -Werror $files
fi
