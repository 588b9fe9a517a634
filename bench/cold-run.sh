#!/usr/bin/env bash
# Benchmark: `kgate run` with kgate's files out of the page cache against a warm run, interleaved
# pairs. "Cold" evicts, with posix_fadvise(DONTNEED) after an fsync, every file the run reads from
# disk: the kgate binary, kgate's cache (kernels, initramfs, BTF), QEMU and the shared libraries
# it loads, and its firmware; nothing else on the machine is touched (unlike drop_caches), so the
# benchmark can run on a shared machine. Prints the medians of the whole run, of the time before
# QEMU starts and of the boot phase, cold and warm, and their differences.
#   bench/cold-run.sh [ROUNDS] [KGATE RUN ARGS...]   (default 5 rounds; needs a built tree)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift $(($# < 1 ? $# : 1))
build=${KGATE_BUILD:-build}
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/kgate
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# What a run reads: the paths to evict (directories recursively, symbolic links followed). Both
# arches' QEMU, so that --arch arm64 runs cold too.
evict_paths=("$build/kgate" "$cache_root" /usr/share/qemu /usr/share/seabios)
found=0
for q in qemu-system-x86_64 qemu-system-aarch64; do
  path=$(command -v "$q") || continue
  found=1
  evict_paths+=("$path")
  mapfile -t libs < <(ldd "$path" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
  evict_paths+=("${libs[@]}")
done
[ "$found" = 1 ] || { echo "cold-run: no QEMU on PATH (scripts/setup.sh)" >&2; exit 1; }

evict() {
  python3 - "${evict_paths[@]}" <<'PY'
import os, sys
def drop(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
for top in sys.argv[1:]:
    top = os.path.realpath(top)
    if os.path.isdir(top):
        for d, _, files in os.walk(top, followlinks=True):
            for f in files:
                drop(os.path.realpath(os.path.join(d, f)))
    else:
        drop(top)
PY
}

now() { date +%s.%N; }
one_run() {
  local name=$1 t0 rc=0
  shift
  t0=$(now)
  $build/kgate run "$@" --receipt "$work/$name" >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || { echo "kgate run exited $rc" >&2; exit 1; }
  awk "BEGIN { print $(now) - $t0 }" >"$work/$name.wall"
}

one_run warmup "$@"
for i in $(seq 1 "$rounds"); do
  evict
  one_run "cold$i" "$@"
  one_run "warm$i" "$@"
done

python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def figures(kind):
    walls, pre, boot = [], [], []
    for i in range(1, rounds + 1):
        walls.append(float(open(f"{work}/{kind}{i}.wall").read()))
        t = json.load(open(f"{work}/{kind}{i}/receipt.json"))["timings_s"]
        pre.append(t["pre_qemu"])
        boot.append(t["boot"])
    return statistics.median(walls), statistics.median(pre), statistics.median(boot)
cold, warm = figures("cold"), figures("warm")
print(f"{rounds} interleaved pairs, medians")
for label, c, w in zip(("whole run", "before QEMU", "boot phase"), cold, warm):
    print(f"{label:12s} cold {c * 1000:7.0f} ms  warm {w * 1000:7.0f} ms  cold - warm {(c - w) * 1000:6.0f} ms")
PY
