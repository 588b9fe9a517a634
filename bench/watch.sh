#!/usr/bin/env bash
# Benchmark: `kgate run --watch`'s reload (the object changed on disk -> its verdict from the guest
# that stayed up) against a warm `kgate run` of the same spec (boot included), interleaved in one
# invocation; wall clock on the host, medians and their ratio. The spec is tests/objects/good.json
# (13 programs) with its object copied where the benchmark changes it.
#   bench/watch.sh [RUNS]   (default 7; needs a built tree with tests: scripts/setup.sh --all && scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
build=${KGATE_BUILD:-build}
objects=$PWD/$build/tests/objects
work=$(mktemp -d)
watcher=
trap '[ -n "$watcher" ] && kill -INT "$watcher" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

cp "$objects/gate.x86_64.bpf.o" "$work/gate.bpf.o"
python3 - "$objects" "$work" <<'EOF2'
import json, sys
objects, work = sys.argv[1], sys.argv[2]
spec = json.load(open(objects + "/good.json"))
spec["objects"][0]["path"] = {"x86_64": work + "/gate.bpf.o"}
for f in spec.get("files", []):
    f["source"] = {a: objects + "/" + s for a, s in f["source"].items()}
json.dump(spec, open(work + "/spec.json", "w"))
EOF2

now() { date +%s.%N; }
verdicts() { grep -c '^PASS \|^FAIL ' "$work/watch.out" || true; }
wait_verdicts() {
  local until=$(( $(date +%s) + 300 ))
  while [ "$(verdicts)" -lt "$1" ]; do
    [ "$(date +%s)" -lt "$until" ] || { echo "no verdict $1 from the watching kgate" >&2; cat "$work/watch.err" >&2; exit 1; }
    sleep 0.02
  done
}

$build/kgate run --spec "$work/spec.json" --receipt "$work/warmup" >/dev/null  # the cache, warm
$build/kgate run --spec "$work/spec.json" --watch --receipt "$work/watch" >"$work/watch.out" 2>"$work/watch.err" &
watcher=$!
wait_verdicts 1

warm=() reload=()
for i in $(seq "$runs"); do
  t0=$(now)
  $build/kgate run --spec "$work/spec.json" --receipt "$work/warm-$i" >/dev/null
  warm+=("$(python3 -c "print($(now) - $t0)")")
  t0=$(now)
  printf '\0' >> "$work/gate.bpf.o"  # other bytes: a reload
  wait_verdicts $((i + 1))
  reload+=("$(python3 -c "print($(now) - $t0)")")
done
grep -q '^FAIL ' "$work/watch.out" && { echo "a reload failed:" >&2; cat "$work/watch.out" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
w=$(median "${warm[@]}") r=$(median "${reload[@]}")
printf 'warm kgate run (boot included)   median %.2f s  (%s)\n' "$w" "$(printf '%.2f ' "${warm[@]}")"
printf 'reload in the watching guest     median %.2f s  (%s)\n' "$r" "$(printf '%.2f ' "${reload[@]}")"
python3 -c "print(f'reload / warm run: {$r/$w:.2f}x ({$w/$r:.1f} times as fast); runs: $runs')"
