#!/bin/sh
# embed-blob.sh INPUT OUTPUT SYMBOL
# Wraps a file as a read-only ELF object defining _binary_SYMBOL_start and
# _binary_SYMBOL_end, to be linked into the host binary.
set -eu
in=$1
out=$2
sym=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$in" "$tmp/$sym"
(cd "$tmp" && objcopy -I binary -O elf64-x86-64 -B i386:x86-64 \
  --rename-section .data=.rodata,alloc,load,readonly,data,contents \
  --add-section .note.GNU-stack=/dev/null "$sym" blob.o)
mv "$tmp/blob.o" "$out"
