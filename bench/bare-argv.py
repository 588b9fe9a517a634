#!/usr/bin/env python3
"""Prints, NUL-separated, the QEMU argv of a bare boot taken from a kgate receipt: the same
kernel, machine, CPU, memory and command line, without the channel (a bare boot has no
agent to talk to), with another initramfs and console file, and optionally another -cpu.

    bench/bare-argv.py RECEIPT INITRAMFS CONSOLE [CPU]
"""
import json
import sys

receipt, initramfs, console = sys.argv[1:4]
cpu = sys.argv[4] if len(sys.argv) > 4 else None
argv = json.load(open(receipt))["qemu"]["argv"]
out, skip = [], 0
for i, a in enumerate(argv):
    if skip:
        skip -= 1
        continue
    if a in ("-device", "-chardev") and i + 1 < len(argv) and (
            argv[i + 1].startswith(("virtio-serial", "virtserialport", "socket,"))):
        skip = 1
        continue
    if i > 0 and argv[i - 1] == "-initrd":
        a = initramfs
    if cpu and i > 0 and argv[i - 1] == "-cpu":
        a = cpu
    if a.startswith("file,id=console,path="):
        a = "file,id=console,path=" + console
    out.append(a)
sys.stdout.write("\0".join(out))
