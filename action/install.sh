#!/bin/bash
# The action's first step: puts a kgate where the gate step finds it and says where in the step's
# output "kgate". INPUT_INSTALL: package (build the Debian package of the action's checkout and
# install it with apt), build (build kgate alone with meson, in the runner's temp directory), or
# none (the kgate on PATH).
set -euo pipefail
src=${KGATE_ACTION_PATH:?}
tmp=${RUNNER_TEMP:-/tmp}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
case "${INPUT_INSTALL:-package}" in
  package)
    "$src/scripts/setup.sh" --deps-only --all
    "$src/scripts/build-package.sh" "$tmp/kgate-package"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "$tmp"/kgate-package/kgate_*.deb qemu-system-x86 qemu-system-arm
    kgate=/usr/bin/kgate
    ;;
  build)
    "$src/scripts/setup.sh" --deps-only --all
    if [ ! -f "$tmp/kgate-build/build.ninja" ]; then
      meson setup "$tmp/kgate-build" "$src" -Dtests=false --buildtype=release >/dev/null
    fi
    ninja -C "$tmp/kgate-build" kgate
    kgate=$tmp/kgate-build/kgate
    ;;
  none)
    kgate=$(command -v kgate) || { echo "::error::install: none, and no kgate on PATH"; exit 1; }
    ;;
  *)
    echo "::error::install must be package, build or none, not '${INPUT_INSTALL}'"
    exit 2
    ;;
esac
"$kgate" version
echo "kgate=$kgate" >>"${GITHUB_OUTPUT:?}"
