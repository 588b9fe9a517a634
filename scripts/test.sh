#!/bin/sh
# Builds kgate, then runs every check through kgate itself: the gates of ci/gates.json
# (format, build, unit, fuzz, gate executor, digest, VM suite, negative controls) with
# `kgate gates run`. The umbrella receipt is build/verify-all/verify-all-summary.json, and
# the last line printed is kgate's "verify-all: N passed, M failed".
#
# The `vm` and `kernels` gates need QEMU for both arches and the Debian kernels (`scripts/setup.sh
# --all` installs them) and fail without them: the vm gate sets KGATE_REQUIRE_VM=1, so a receipt never
# calls skipped VM tests passed. A plain `meson test -C build` skips such tests (exit 77)
# unless KGATE_REQUIRE_VM=1 is set, as CI does. Arguments go to kgate gates run: `scripts/test.sh --only unit`, `-j 1`.
# `meson test -C build` runs the same tests without kgate.
set -eu
cd "$(dirname "$0")/.."
# The tests need the packages of `scripts/setup.sh --all`. Those the build needs (the arm64
# agent's toolchain) are checked before build/ is touched: turning the tests on without them
# would leave a build/ that no longer configures. The others fail the tests that use them.
arm64_toolchain() {
  command -v aarch64-linux-gnu-g++ >/dev/null || return 1
  for lib in libbpf.a libelf.a libzstd.a libz.a; do
    [ -f "/usr/lib/aarch64-linux-gnu/$lib" ] || return 1
  done
}
if ! arm64_toolchain; then
  echo "test: the tests boot arm64 guests and need the arm64 agent's toolchain: run scripts/setup.sh --all" >&2
  exit 1
fi
if [ ! -f build/build.ninja ]; then
  meson setup build
elif ! grep -q '"name": "tests", "value": true' build/meson-info/intro-buildoptions.json; then
  meson configure build -Dtests=true -Darm64=enabled
fi
ninja -C build -j "$(nproc)"
exec build/kgate gates run ci/gates.json --out build/verify-all "$@"
