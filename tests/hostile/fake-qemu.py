#!/usr/bin/env python3
# A QEMU that is not one: kgate runs it as --qemu, and it connects to kgate's channel socket the
# way QEMU's virtserialport does, then behaves as a hostile or broken guest would. The mode is
# the first word of $KGATE_FAKE_MODE; test_hostile.cpp runs one kgate per mode and asserts the
# class, the exit code, the time, the receipt and that no process is left.
import json
import os
import re
import signal
import socket
import struct
import sys
import time

MAGIC = b"KGF1"
HELLO, REQUEST, RESPONSE, LOG = 1, 2, 3, 4


def frame(kind, header=b"", body=b""):
    if isinstance(header, (dict, list)):
        header = json.dumps(header).encode()
    return MAGIC + struct.pack("<HHII", kind, 0, len(header), len(body)) + header + body


def protocol_version():
    # The version this kgate speaks, from the header both sides are built from: a guest that
    # speaks another is refused before anything hostile could happen.
    header = os.path.join(os.environ["KGATE_SOURCE_ROOT"], "harness/channel/protocol.hpp")
    with open(header) as f:
        return int(re.search(r"protocol_version = (\d+);", f.read()).group(1))


def hello():
    return {"protocol": protocol_version(), "agent": "fake", "release": "6.1.0-fake", "version": "#1", "machine": "x86_64",
            "cmdline": "", "lockdown": "[none] integrity confidentiality", "lsm": "bpf", "btf": True, "pid": 1}


def argv_value(flag, key):
    # -chardev socket,id=channel,path=/tmp/.../channel.sock
    args = sys.argv[1:]
    for i, a in enumerate(args[:-1]):
        if a == flag and f"{key}=" in args[i + 1] and "id=channel" in args[i + 1]:
            return args[i + 1].split(f"{key}=", 1)[1].split(",")[0]
    return None


def main():
    if "--version" in sys.argv:
        print("QEMU emulator version 0.0 (kgate fake-qemu)")
        return 0
    mode = os.environ.get("KGATE_FAKE_MODE", "").split()[0] if os.environ.get("KGATE_FAKE_MODE") else ""
    path = argv_value("-chardev", "path")
    if path is None:
        print("fake-qemu: no channel socket in argv", file=sys.stderr)
        return 1
    if mode == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "fork-and-exit":
        # The leader exits at once; its child holds the channel and never ends.
        if os.fork() != 0:
            os._exit(0)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    if mode == "random":
        s.sendall(os.urandom(4096))
    elif mode == "huge-length":
        s.sendall(MAGIC + struct.pack("<HHII", HELLO, 0, 0xFFFFFFFF, 0xFFFFFFFF))
    elif mode == "log-flood":
        while True:
            s.sendall(frame(LOG, {"line": "x"}) * 100)
    elif mode == "nested":
        s.sendall(frame(HELLO, b'{"release":' + b"[" * 100000 + b"]" * 100000 + b"}"))
    elif mode == "huge-header":
        s.sendall(frame(HELLO, b'{"release":"' + b"x" * (2 << 20) + b'"}'))
    elif mode in ("silent-after-hello", "ignore-sigterm", "fork-and-exit"):
        s.sendall(frame(HELLO, hello()))
    elif mode == "wrong-op":
        s.sendall(frame(HELLO, hello()))
        s.recv(65536)
        s.sendall(frame(RESPONSE, {"op": "detach", "id": 99, "ok": True}))
    elif mode == "huge-error":
        # A guest that speaks the protocol but lies big: every load refused with a 512 KiB error and
        # 4,000 programs the object does not have; everything else answered plainly.
        s.sendall(frame(HELLO, hello()))
        stream = s.makefile("rb")
        while True:
            prefix = stream.read(16)
            if len(prefix) < 16:
                return 0
            _, _, hlen, blen = struct.unpack("<HHII", prefix[4:])
            header = json.loads(stream.read(hlen) or b"{}")
            stream.read(blen)
            reply = {"op": header.get("op"), "id": header.get("id"), "ok": True}
            if header.get("op") == "load":
                reply.update({"ok": False, "error": "e" * (512 << 10), "handle": 0,
                              "programs": [{"name": f"p{i:05}", "loaded": False} for i in range(4000)]})
            if header.get("op") == "detach":
                reply.update({"reported": True, "left": {"programs": [], "links": []}})
            if header.get("op") == "dmesg":
                reply["text"] = ""
            s.sendall(frame(RESPONSE, reply))
            if header.get("op") == "poweroff":
                return 0
    while True:
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
