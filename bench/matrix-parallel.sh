#!/usr/bin/env bash
# Benchmark: four matrix entries run one at a time (-j1) against two at a time
# (-j2), interleaved, in one invocation; prints medians and the speed-up.
#   bench/matrix-parallel.sh [ROUNDS]     (default 3; needs a built tree: scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/matrix.json" <<'JSON'
{
  "schema": "kgate.matrix/1",
  "entries": [
    {"name": "debian-6.1", "kernel": "debian-6.1", "lockdown": "none"},
    {"name": "debian-6.1-integrity", "kernel": "debian-6.1", "lockdown": "integrity"},
    {"name": "debian-6.1-cloud", "kernel": "debian-6.1-cloud", "lockdown": "none"},
    {"name": "debian-6.1-cloud-integrity", "kernel": "debian-6.1-cloud", "lockdown": "integrity"}
  ]
}
JSON
build/kgate matrix --matrix "$work/matrix.json" -j 2 --out "$work/warmup" >/dev/null
: >"$work/j1.times"
: >"$work/j2.times"
for i in $(seq 1 "$rounds"); do
  for j in 1 2; do
    t0=$(date +%s.%N)
    build/kgate matrix --matrix "$work/matrix.json" -j "$j" --out "$work/r$i-j$j" >/dev/null
    t1=$(date +%s.%N)
    awk "BEGIN { print $t1 - $t0 }" >>"$work/j$j.times"
  done
done
python3 - "$work" "$rounds" <<'PY'
import statistics, sys
work, rounds = sys.argv[1], sys.argv[2]
j1 = [float(x) for x in open(f"{work}/j1.times").read().split()]
j2 = [float(x) for x in open(f"{work}/j2.times").read().split()]
m1, m2 = statistics.median(j1), statistics.median(j2)
print(f"rounds: {rounds}, 4 entries each, interleaved")
print(f"-j1   median {m1:.2f} s  (min {min(j1):.2f}, max {max(j1):.2f})")
print(f"-j2   median {m2:.2f} s  (min {min(j2):.2f}, max {max(j2):.2f})")
print(f"speed-up {m1 / m2:.2f}x  (target >= 1.7x on 2 cores)")
PY
