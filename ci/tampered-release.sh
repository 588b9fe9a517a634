#!/bin/sh
# Prepares the negative control of the digest check: a copy of the built BPF objects laid
# out as a release ships them, with one byte of the arm64 probe's program text flipped.
# ci/gates.json's digest-refuses-tampering gate must then see `kgate digest --verify-release`
# refuse it with the digest-mismatch exit code (7).
set -eu
cd "$(dirname "$0")/.."
out=build/tampered-release
rm -rf "$out"
mkdir -p "$out"
cp build/bpf/*.bpf.o "$out"/
obj="$out/probe.arm64.bpf.o"
# The section's file offset, from the ELF section table, so the flip lands in program text
# and not in a header kgate would refuse as unreadable (exit 2) instead.
offset=$(python3 - "$obj" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
def sh(i):
    return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
strtab = sh(shstrndx)
for i in range(shnum):
    name_off, _, _, _, off, size = sh(i)[:6]
    name = data[strtab[4] + name_off:].split(b"\0", 1)[0]
    if name.startswith(b"uprobe/") and size > 8:
        print(off + 4)
        break
PY
)
[ -n "$offset" ]
byte=$(od -An -tu1 -j "$offset" -N1 "$obj" | tr -d ' ')
printf "$(printf '\\%03o' $(( byte ^ 255 )))" | dd of="$obj" bs=1 seek="$offset" conv=notrunc status=none
echo "flipped the byte at offset $offset of $obj"
