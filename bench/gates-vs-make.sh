#!/usr/bin/env bash
# Benchmark: the gate executor's scheduling against make. 200 gates that each run `true`,
# in a DAG of width 8 (25 layers; a gate needs two of the layer before it), run with -j2
# by `kgate gates run` and by `make -j2` on the equivalent Makefile, interleaved, in one
# invocation; prints medians, the ratios, and kgate's cost per gate above make's.
# kgate writes each gate's output to a log file of its own, and a receipt; make writes
# nothing. So make runs twice: plain, and with each recipe's output sent to a log file of
# its own (`true >logs/$@.log 2>&1`, which costs it a shell per recipe), the same files
# kgate creates. All output goes under one directory ($BENCH_DIR, default: a new one under
# $TMPDIR), so both pay the same file system.
#   bench/gates-vs-make.sh [ROUNDS]     (default 11; needs a built tree: scripts/setup.sh; KGATE=PATH
#   benches another kgate binary than build/kgate)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-11}
kgate=${KGATE:-$PWD/build/kgate}
work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/kgate-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
width, layers = 8, 25
name = lambda l, i: f"g{l:02d}_{i}"
gates = []
head = [".PHONY: all " + " ".join(name(l, i) for l in range(layers) for i in range(width)),
        "all: " + " ".join(name(layers - 1, i) for i in range(width))]
plain, logged = list(head), list(head)
for l in range(layers):
    for i in range(width):
        needs = [name(l - 1, i), name(l - 1, (i + 1) % width)] if l else []
        gates.append({"name": name(l, i), "command": ["true"], "needs": needs})
        plain.append(f"{name(l, i)}: {' '.join(needs)}\n\ttrue")
        logged.append(f"{name(l, i)}: {' '.join(needs)}\n\ttrue >$(LOGS)/$@.log 2>&1")
json.dump({"schema": "kgate.gates/1", "gates": gates}, open(f"{work}/gates.json", "w"))
open(f"{work}/Makefile", "w").write("\n".join(plain) + "\n")
open(f"{work}/Makefile.logs", "w").write("\n".join(logged) + "\n")
PY
: >"$work/kgate.times"
: >"$work/make.times"
: >"$work/make-logs.times"
"$kgate" gates run "$work/gates.json" -j 2 --out "$work/warmup" >/dev/null 2>&1
for i in $(seq 1 "$rounds"); do
  mkdir "$work/m$i"
  t0=$(date +%s.%N)
  make -s -j2 -C "$work" all >/dev/null
  t1=$(date +%s.%N)
  "$kgate" gates run "$work/gates.json" -j 2 --out "$work/r$i" >/dev/null 2>&1
  t2=$(date +%s.%N)
  make -s -j2 -C "$work" -f Makefile.logs LOGS="$work/m$i" all >/dev/null
  t3=$(date +%s.%N)
  awk "BEGIN { print $t1 - $t0 }" >>"$work/make.times"
  awk "BEGIN { print $t2 - $t1 }" >>"$work/kgate.times"
  awk "BEGIN { print $t3 - $t2 }" >>"$work/make-logs.times"
  grep -q '"verdict": "pass"' "$work/r$i/verify-all-summary.json"
done
python3 - "$work" "$rounds" <<'PY'
import statistics, sys
work, rounds = sys.argv[1], sys.argv[2]
times = lambda n: [float(x) for x in open(f"{work}/{n}.times").read().split()]
k, m, ml = times("kgate"), times("make"), times("make-logs")
mk, mm, mml = statistics.median(k), statistics.median(m), statistics.median(ml)
row = lambda label, v, med, note="": print(
    f"{label:<11} median {med * 1000:4.0f} ms  (min {min(v) * 1000:.0f}, max {max(v) * 1000:.0f}){note}")
print(f"rounds: {rounds}, 200 gates of `true`, DAG width 8, -j2, interleaved, in {work.rsplit('/', 1)[0]}")
row("make", m, mm, "  no logs")
row("make+logs", ml, mml, "  a log file per recipe")
row("kgate", k, mk, "  a log file per gate, receipt, JUnit, Markdown")
print(f"ratio      {mk / mm:.2f}x make, {mk / mml:.2f}x make+logs (target 1.5x)")
print(f"per gate   kgate {mk / 200 * 1000:.2f} ms; above make {max(0.0, mk - mm) / 200 * 1000:.2f} ms (target under 5 ms)")
PY
