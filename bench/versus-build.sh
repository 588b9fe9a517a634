#!/usr/bin/env bash
# Benchmark: this tree's kgate against another build of kgate (an earlier commit's, built in a
# worktree), with each one's bare boot, all interleaved in one invocation. A bare boot is the
# same QEMU argv as that kgate's (its kernel command line included) with an initramfs whose /init
# only powers off, so each kgate is compared with the boot it asked QEMU for, and the two kgates
# with each other. Medians and ratios are printed, and each side's accelerator.
#   bench/versus-build.sh OTHER_BUILD_DIR [RUNS] [KGATE RUN ARGS...]
#   git worktree add /tmp/kgate-old <commit> && (cd /tmp/kgate-old && meson setup build &&
#     ninja -C build kgate) && bench/versus-build.sh /tmp/kgate-old/build 9
# Both kgates share the cache (~/.cache/kgate); each keeps its own cached initramfs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/versus-build.sh OTHER_BUILD_DIR [RUNS] [KGATE RUN ARGS...]" >&2; exit 2; }
other=$1
runs=${2:-7}
shift $(($# < 2 ? $# : 2))
build=${KGATE_BUILD:-build}
[ -x "$other/kgate" ] || { echo "no kgate in $other" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
kgate_run() {
  local bin=$1 rc=0
  shift
  "$bin" run "$@" >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || { echo "$bin run exited $rc" >&2; exit 1; }
}

$build/bench/bench-make-initramfs "$work/bare.cpio.zst" "$build/bench/bench-poweroff"
for side in old new; do
  bin=$other/kgate
  [ "$side" = new ] && bin=$build/kgate
  kgate_run "$bin" "$@" --receipt "$work/warmup-$side"
  bench/bare-argv.py "$work/warmup-$side/receipt.json" "$work/bare.cpio.zst" "$work/bare-console.log" \
    >"$work/bare-$side.argv"
  : >"$work/$side.times"
  : >"$work/bare-$side.times"
done
mapfile -d '' bare_old <"$work/bare-old.argv"
mapfile -d '' bare_new <"$work/bare-new.argv"

for i in $(seq 1 "$runs"); do
  t0=$(now)
  kgate_run "$other/kgate" "$@" --receipt "$work/old$i"
  t1=$(now)
  kgate_run "$build/kgate" "$@" --receipt "$work/new$i"
  t2=$(now)
  "${bare_old[@]}"
  t3=$(now)
  "${bare_new[@]}"
  t4=$(now)
  awk "BEGIN { print $t1 - $t0 }" >>"$work/old.times"
  awk "BEGIN { print $t2 - $t1 }" >>"$work/new.times"
  awk "BEGIN { print $t3 - $t2 }" >>"$work/bare-old.times"
  awk "BEGIN { print $t4 - $t3 }" >>"$work/bare-new.times"
done

python3 - "$work" "$runs" "$other" <<'PY'
import json, statistics, sys
work, runs, other = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(name):
    return [float(x) for x in open(f"{work}/{name}.times").read().split()]
def accel(side):
    return ", ".join(sorted({json.load(open(f"{work}/{side}{i}/receipt.json"))["qemu"]["accel"]
                             for i in range(1, runs + 1)}))
med = {}
print(f"runs: {runs} interleaved rounds; other build: {other}")
for name, label in [("old", f"kgate run, other build ({accel('old')})"), ("new", f"kgate run, this tree ({accel('new')})"),
                    ("bare-old", "bare boot, other's argv"), ("bare-new", "bare boot, this tree's argv")]:
    v = load(name)
    med[name] = statistics.median(v)
    print(f"{label:42s} median {med[name]:.3f} s  (min {min(v):.3f}, max {max(v):.3f})")
print(f"other build / its bare boot   {med['old'] / med['bare-old']:.2f}x")
print(f"this tree / its bare boot     {med['new'] / med['bare-new']:.2f}x")
print(f"this tree / other build       {med['new'] / med['old']:.2f}x")
print(f"this tree / other's bare boot {med['new'] / med['bare-old']:.2f}x")
PY
