#!/bin/sh
# How long `kgate kernels build` takes here: Debian's linux-source-6.1 tarball on tinyconfig with
# kernels/config/gate-minimal.config, built again from scratch (--refresh), then one warm
# `kgate run` of it against one of debian-6.1, for scale. Needs scripts/setup.sh --kernel-build.
# Usage: bench/kernel-build.sh [JOBS]   (default: the number of cores)
set -eu
cd "$(dirname "$0")/.."
jobs=${1:-$(nproc)}
tarball=/usr/src/linux-source-6.1.tar.xz
test -f "$tarball" || { echo "kernel-build: no $tarball: scripts/setup.sh --kernel-build"; exit 1; }
work=$(mktemp -d /tmp/kgate-kernel-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
sha=$(sha256sum "$tarball" | cut -d' ' -f1)
cat >"$work/catalog.json" <<JSON
{"schema": "kgate.catalog/1", "default": "src-6.1", "kernels": {
  "src-6.1": {"arch": "x86_64", "modules": [],
    "source": {"type": "kernel-org", "release": "6.1", "sha256": "$sha", "tarball": "$tarball",
               "config": "$(pwd)/kernels/config/gate-minimal.config"}}}}
JSON
start=$(date +%s.%N)
build/kgate kernels build src-6.1 --catalog "$work/catalog.json" --jobs "$jobs" --refresh >/dev/null
end=$(date +%s.%N)
build/kgate run --catalog "$work/catalog.json" --entry src-6.1 --out "$work/src" | head -n 1
build/kgate run --entry debian-6.1 --out "$work/debian" | head -n 1
printf 'kernel-build: linux-source-6.1 on tinyconfig + gate-minimal.config, make -j%s: %.0f s on %s cores\n' \
  "$jobs" "$(echo "$end - $start" | bc)" "$(nproc)"
