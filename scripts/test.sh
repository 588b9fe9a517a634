#!/bin/sh
# Builds kgate, then runs every check through kgate itself: the gates of ci/gates.json
# (format, build, unit, fuzz, gate executor, digest, VM suite, negative controls) with
# `kgate gates run`. The umbrella receipt is build/verify-all/verify-all-summary.json, and
# the last line printed is kgate's "verify-all: N passed, M failed".
#
# The `vm` and `kernels` gates need QEMU and the Debian kernels (scripts/setup.sh installs
# them) and fail without them: the vm gate sets KGATE_REQUIRE_VM=1, so a receipt never
# calls skipped VM tests passed. A plain `meson test -C build` skips such tests (exit 77)
# unless KGATE_REQUIRE_VM=1 is set, as CI does. Arguments go to kgate gates run: `scripts/test.sh --only unit`, `-j 1`.
# `meson test -C build` runs the same tests without kgate.
set -eu
cd "$(dirname "$0")/.."
# The tests need every package of `scripts/setup.sh --all`: configuring them says so if one is
# missing. A build/ that setup.sh made without them gets them turned on.
if [ ! -f build/build.ninja ]; then
  meson setup build
elif ! grep -q '"name": "tests", "value": true' build/meson-info/intro-buildoptions.json; then
  meson configure build -Dtests=true
fi
ninja -C build -j "$(nproc)"
exec build/kgate gates run ci/gates.json --out build/verify-all "$@"
