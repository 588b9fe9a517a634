#!/bin/sh
# Builds kgate and runs every test: unit (seconds, no VM), lint, and the VM suite,
# which boots the real Debian kernel in QEMU. A VM test whose prerequisites are
# missing is skipped (exit 77) unless KGATE_REQUIRE_VM=1, which CI sets.
set -eu
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
ninja -C build -j "$(nproc)"
status=0
meson test -C build --print-errorlogs --num-processes 2 "$@" || status=$?
# One plain closing line: passed and failed counts from meson's own log.
python3 - build/meson-logs/testlog.json <<'PY'
import json, sys
counts = {}
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    counts[r] = counts.get(r, 0) + 1
passed = counts.get("OK", 0) + counts.get("EXPECTEDFAIL", 0)
failed = sum(v for k, v in counts.items() if k not in ("OK", "EXPECTEDFAIL", "SKIP"))
line = f"{passed} passed, {failed} failed"
if counts.get("SKIP"):
    line += f", {counts['SKIP']} skipped"
print(line)
PY
exit $status
