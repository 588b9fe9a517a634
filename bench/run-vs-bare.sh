#!/usr/bin/env bash
# Benchmark: warm `kgate run` against a bare boot of the same kernel on the same QEMU machine,
# whose /init only powers off. The runs are interleaved so that noise on this shared machine hits
# all alike; medians and their ratios are printed. Also: the cold initramfs build, and the warm
# time before QEMU starts.
#   bench/run-vs-bare.sh [RUNS] [ARCH] [KGATE RUN ARGS...]   (default 7 runs of x86_64; ARCH
#   arm64 boots debian-6.1-arm64 on qemu-system-aarch64; needs a built tree: scripts/setup.sh --all;
#   KGATE_BUILD names another build directory than build/). With a user's objects among the
#   arguments (--object or --spec), each round runs the built-in probe, the user's run and the
#   bare boot, and both ratios are printed:
#   bench/run-vs-bare.sh 9 x86_64 --spec build/tests/objects/good.json
#   bench/run-vs-bare.sh 9 x86_64 --object build/tests/objects/gate.x86_64.bpf.o
#   bench/run-vs-bare.sh 9 x86_64 --spec build/bench/no-trampolines.json   (no fentry/fexit)
#   (ninja -C build tests/objects/gate.x86_64.bpf.o tests/objects/target.x86_64 builds them).
#   The per-phase and per-program times are printed for the user's run (else the probe's), and
#   the accelerator each side used.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
arch=${2:-x86_64}
shift $(($# < 2 ? $# : 2))
build=${KGATE_BUILD:-build}
case $arch in
x86_64) poweroff=$build/bench/bench-poweroff ;;
arm64) poweroff=$build/bench/bench-poweroff-arm64 ;;
*) echo "ARCH must be x86_64 or arm64" >&2; exit 2 ;;
esac
run_args=(--arch "$arch" "$@")
user=0
for a in "$@"; do case $a in --object | --spec | --object=* | --spec=*) user=1 ;; esac; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/kgate

now() { date +%s.%N; }
# A run whose programs fail their spec (exit 1, gate_failed) is still a measured run, as when
# the object has programs refused on purpose; anything else stops the benchmark.
kgate_run() {
  local rc=0
  $build/kgate run "$@" >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || { echo "kgate run exited $rc" >&2; exit 1; }
}

# Warm everything up once, and take the argv kgate used from its receipt.
kgate_run "${run_args[@]}" --receipt "$work/warmup"
[ "$user" = 0 ] || kgate_run --arch "$arch" --receipt "$work/warmup-probe"
$build/bench/bench-make-initramfs "$work/bare.cpio.zst" "$poweroff"
bench/bare-argv.py "$work/warmup/receipt.json" "$work/bare.cpio.zst" "$work/bare-console.log" >"$work/bare.argv"
mapfile -d '' bare_argv <"$work/bare.argv"

: >"$work/kgate.times"
: >"$work/probe.times"
: >"$work/bare.times"
: >"$work/preqemu.times"
for i in $(seq 1 "$runs"); do
  if [ "$user" = 1 ]; then
    p0=$(now)
    kgate_run --arch "$arch" --receipt "$work/probe$i"
    awk "BEGIN { print $(now) - $p0 }" >>"$work/probe.times"
  fi
  t0=$(now)
  kgate_run "${run_args[@]}" --receipt "$work/run$i"
  t1=$(now)
  "${bare_argv[@]}"
  t2=$(now)
  grep -q "reboot: Power down" "$work/bare-console.log" || { echo "bare boot did not power off" >&2; exit 1; }
  awk "BEGIN { print $t1 - $t0 }" >>"$work/kgate.times"
  awk "BEGIN { print $t2 - $t1 }" >>"$work/bare.times"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["timings_s"]["pre_qemu"])' \
    "$work/run$i/receipt.json" >>"$work/preqemu.times"
done

# Cold initramfs builds: a hard-linked copy of the cache without its initramfs refs.
: >"$work/cold.times"
for i in 1 2 3; do
  rm -rf "$work/cache"
  mkdir -p "$work/cache"
  cp -al "$cache_root" "$work/cache/kgate"
  rm -rf "$work/cache/kgate/refs/initramfs"
  XDG_CACHE_HOME="$work/cache" kgate_run "${run_args[@]}" --receipt "$work/cold$i"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["timings_s"]["initramfs"])' \
    "$work/cold$i/receipt.json" >>"$work/cold.times"
done

python3 - "$work" "$runs" "$arch" "$user" <<'PY'
import json, statistics, sys
work, runs, arch, user = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
def load(name):
    return [float(x) for x in open(f"{work}/{name}.times").read().split()]
k, b, p, c = load("kgate"), load("bare"), load("preqemu"), load("cold")
mk, mb = statistics.median(k), statistics.median(b)
receipts = [json.load(open(f"{work}/run{i}/receipt.json")) for i in range(1, int(runs) + 1)]
accels = sorted({r["qemu"]["accel"] for r in receipts})
bare_argv = open(f"{work}/bare.argv").read().split("\0")
bare_accel = bare_argv[bare_argv.index("-accel") + 1] if "-accel" in bare_argv else "?"
print(f"arch: {arch}; runs: {runs} interleaved {'triples' if user else 'pairs'}; "
      f"accel: kgate {', '.join(accels)}, bare {bare_accel}")
if user:
    pr = load("probe")
    mp = statistics.median(pr)
    print(f"warm kgate run, probe  median {mp:.3f} s  (min {min(pr):.3f}, max {max(pr):.3f})")
    print(f"warm kgate run, user   median {mk:.3f} s  (min {min(k):.3f}, max {max(k):.3f})")
    print(f"bare boot              median {mb:.3f} s  (min {min(b):.3f}, max {max(b):.3f})")
    print(f"ratio, probe           {mp / mb:.2f}x  (target <= 1.10x)")
    print(f"ratio, user            {mk / mb:.2f}x  (target <= 1.2x)")
else:
    print(f"warm kgate run   median {mk:.3f} s  (min {min(k):.3f}, max {max(k):.3f})")
    print(f"bare boot        median {mb:.3f} s  (min {min(b):.3f}, max {max(b):.3f})")
    print(f"ratio            {mk / mb:.2f}x  (target <= 1.10x)")
print(f"warm pre-QEMU    median {statistics.median(p) * 1000:.1f} ms  (target < 50 ms)")
print(f"cold initramfs   median {statistics.median(c) * 1000:.1f} ms over {len(c)} builds  (target < 1 s)")
# Where the warm runs' time goes, and each program's load time, from the receipts.
startup = [r["guest"].get("startup") or {} for r in receipts]
cells = [f"{key} {statistics.median(s[key] for s in startup if key in s):.0f}"
         for key in ("mounts_ms", "modules_ms", "port_ms") if any(key in s for s in startup)]
if cells:
    print("guest start-up (median ms) " + ", ".join(cells))
core = {(r.get("btf") or {}).get("core", {}).get("btf", "none") for r in receipts}
print("CO-RE BTF: " + ", ".join(sorted(core)))
phases = ["boot", "files", "load", "attach", "trigger", "flush", "detach", "canary", "poweroff"]
cells = []
for ph in phases:
    vals = [r["timings_s"][ph] for r in receipts if ph in r["timings_s"]]
    if vals:
        cells.append(f"{ph} {statistics.median(vals) * 1000:.0f}")
print("phases (median ms) " + ", ".join(cells))
programs = {}
for r in receipts:
    for p in r["programs"]:
        if p.get("loaded"):
            programs.setdefault(f'{p["object"]}/{p["name"]}', []).append(
                (p["verifier"]["load_ms"], p.get("attach_ms", 0), p.get("detach_ms", 0)))
print(f"{len(programs)} programs loaded; per program (median ms): kernel load, attach, detach")
for name, vals in programs.items():
    cols = [statistics.median(v[i] for v in vals) for i in range(3)]
    print(f"  {name:32s} {cols[0]:8.3f} {cols[1]:8.3f} {cols[2]:8.3f}")
rounds = [ms for r in receipts for o in r.get("objects", []) for ms in o.get("load_rounds_ms", [])[:1]]
if rounds:
    print(f"first load round (median ms) {statistics.median(rounds):.0f}")
PY
