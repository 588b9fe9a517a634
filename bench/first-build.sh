#!/usr/bin/env bash
# Benchmark: the first build of kgate on a fresh clone (what `scripts/setup.sh` builds: the kgate
# target alone) under this tree's default build options, against a baseline configuration given
# as meson options, each from a fresh build directory, interleaved. Prints each round's wall
# times, the medians and their ratio, and each configuration's binary size.
#   bench/first-build.sh [ROUNDS] [BASELINE MESON OPTIONS...]
#   bench/first-build.sh 1 -Ddebug=true   (the default before 2026-12-03: -O2 -g)
#   bench/first-build.sh 1 -Darm64=disabled -Dtests=false   (a machine without setup.sh --arm64)
# A round is two full builds: about 8 minutes on 2 cores. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
shift $(($# < 1 ? $# : 1))
baseline=("$@")
[ ${#baseline[@]} -gt 0 ] || baseline=(-Ddebug=true)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
jobs=$(nproc)

now() { date +%s.%N; }
# build NAME [MESON OPTIONS...]: appends the wall seconds of `ninja kgate` to NAME.times.
build() {
  local name=$1
  shift
  rm -rf "$work/$name"
  meson setup "$work/$name" "$@" >"$work/$name.setup" 2>&1 || { cat "$work/$name.setup" >&2; exit 1; }
  local t0
  t0=$(now)
  ninja -C "$work/$name" -j "$jobs" kgate >/dev/null
  awk "BEGIN { print $(now) - $t0 }" >>"$work/$name.times"
  stat -c %s "$work/$name/kgate" >"$work/$name.size"
}

for i in $(seq 1 "$rounds"); do
  # As setup.sh configures a fresh clone: without the tests.
  build default -Dtests=false
  build baseline -Dtests=false "${baseline[@]}"
  echo "round $i: default $(tail -n 1 "$work/default.times") s, baseline $(tail -n 1 "$work/baseline.times") s"
done

median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
d=$(median "$work/default.times")
b=$(median "$work/baseline.times")
echo "ninja -j $jobs kgate, $rounds round(s), load before: $(cut -d' ' -f1 /proc/loadavg)"
echo "default options:  median $d s, kgate $(($(cat "$work/default.size") / 1000000)) MB"
echo "baseline (${baseline[*]}): median $b s, kgate $(($(cat "$work/baseline.size") / 1000000)) MB"
awk "BEGIN { printf \"default / baseline: %.2fx\\n\", $d / $b }"
