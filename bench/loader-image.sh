#!/usr/bin/env bash
# Benchmark: a user's loader shipped from the host (tests/objects/live.json) against the same
# loader run from an OCI image of it, warm, interleaved; medians of the whole run and of the
# phases that differ, and the image's cold preparation (verify, unpack, pack) once.
#   bench/loader-image.sh [RUNS]   (default 7; needs a built tree with tests: scripts/setup.sh --all && scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
build=${KGATE_BUILD:-build}
objects=$build/tests/objects
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The image: the static loader and its object, gzip layer, Entrypoint and WorkingDir.
mkdir -p "$work/root/usr/bin" "$work/root/etc/agent" "$work/layout/blobs/sha256"
cp "$objects/loader.x86_64" "$work/root/usr/bin/agent"
cp "$objects/gate.x86_64.bpf.o" "$work/root/etc/agent/gate.bpf.o"
# A file of this invocation's own: a new image digest, so that its first run is cold.
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/root/etc/agent/bench-id"
python3 - "$work" "$objects/live.json" <<'EOF'
import gzip, hashlib, json, subprocess, sys
work, live = sys.argv[1], sys.argv[2]
layout = work + "/layout"
subprocess.run(["tar", "-cf", work + "/layer.tar", "--sort=name", "--owner=0", "--group=0", "-C",
                work + "/root", "."], check=True)
tar = open(work + "/layer.tar", "rb").read()
def put(data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    open(f"{layout}/blobs/sha256/{digest}", "wb").write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
config = {"architecture": "amd64", "os": "linux",
          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
          "config": {"Entrypoint": ["/usr/bin/agent"], "WorkingDir": "/etc/agent"}}
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
            "layers": [put(gzip.compress(tar, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")]}
desc = put(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
desc["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [desc]},
          open(layout + "/index.json", "w"))
open(layout + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
spec = json.load(open(live))
del spec["loader"]["exec"], spec["files"]
spec["loader"]["image"] = "oci-layout:" + layout + ":v1"
spec["loader"]["args"] = ["gate.bpf.o", "attach", "tp_getpid", "kp_unlinkat", "nonce={nonce}"]
json.dump(spec, open(work + "/image.json", "w"))
EOF

field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
$build/kgate run --spec "$work/image.json" --count 2 --receipt "$work/cold" >/dev/null
echo "cold image preparation: $(field "$work/cold/receipt.json" "round(r['timings_s']['image']*1000)") ms" \
  "(unpacked: $(field "$work/cold/receipt.json" "r['loader']['image']['unpacked']"))"

host=() image=() host_phase=() image_phase=()
for i in $(seq "$runs"); do
  $build/kgate run --spec "$objects/live.json" --count 2 --receipt "$work/host-$i" >/dev/null
  $build/kgate run --spec "$work/image.json" --count 2 --receipt "$work/image-$i" >/dev/null
  host+=("$(field "$work/host-$i/receipt.json" "r['timings_s']['total']")")
  image+=("$(field "$work/image-$i/receipt.json" "r['timings_s']['total']")")
  host_phase+=("$(field "$work/host-$i/receipt.json" "r['timings_s'].get('files',0)+r['timings_s']['boot']")")
  image_phase+=("$(field "$work/image-$i/receipt.json" "r['timings_s'].get('image',0)+r['timings_s'].get('files',0)+r['timings_s']['boot']")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
h=$(median "${host[@]}") m=$(median "${image[@]}")
echo "warm run, loader from the host   median $h s"
echo "warm run, loader from its image  median $m s  (ratio $(python3 -c "print(f'{$m/$h:.2f}x')"))"
echo "files/image + boot phases (median s): host $(median "${host_phase[@]}"), image $(median "${image_phase[@]}")"
