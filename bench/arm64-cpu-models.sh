#!/usr/bin/env bash
# Benchmark: bare boots of debian-6.1-arm64 under TCG with each -cpu model, interleaved,
# to show why kgate boots arm64 on cortex-a57. Same argv as kgate's (from a receipt)
# without the channel, and an initramfs whose /init only powers off.
#   bench/arm64-cpu-models.sh [RUNS]   (default 5; KGATE_BUILD names the build directory)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
build=${KGATE_BUILD:-build}
models=(cortex-a57 "max,pauth-impdef=on" "max,pauth=off" max)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

$build/kgate run --arch arm64 --receipt "$work/warmup" >/dev/null
$build/bench/bench-make-initramfs "$work/bare.cpio.zst" $build/bench/bench-poweroff-arm64
for m in "${models[@]}"; do
  bench/bare-argv.py "$work/warmup/receipt.json" "$work/bare.cpio.zst" "$work/console.log" "$m" >"$work/argv.$m"
  : >"$work/times.$m"
done
for i in $(seq 1 "$runs"); do
  for m in "${models[@]}"; do
    mapfile -d '' argv <"$work/argv.$m"
    t0=$(date +%s.%N)
    "${argv[@]}"
    t1=$(date +%s.%N)
    grep -q "reboot: Power down" "$work/console.log" || { echo "-cpu $m: no power-off" >&2; exit 1; }
    awk "BEGIN { print $t1 - $t0 }" >>"$work/times.$m"
  done
done
for m in "${models[@]}"; do
  python3 -c 'import statistics, sys
t = [float(x) for x in open(sys.argv[1]).read().split()]
print(f"-cpu {sys.argv[2]:<22} median {statistics.median(t):.3f} s  (min {min(t):.3f}, max {max(t):.3f})")' \
    "$work/times.$m" "$m"
done
