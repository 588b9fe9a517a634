#!/usr/bin/env python3
"""`kgate digest` from the command line, one case per meson test:

    cli.py CASE KGATE SOURCE_ROOT

KGATE's default objects directory (bpf/ beside it) holds the build's objects. Each case copies
what it needs into a temporary directory, changes it, and checks kgate's exit code and output.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ARCHES = ("x86", "arm64")
NAMES = ("probe", "canary_write_user")
UPROBE = "uprobe//proc/self/exe:kgate_uprobe_target"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def run(kgate, *args, path=None):
    env = None
    if path is not None:
        env = dict(os.environ, PATH=path)
    r = subprocess.run([kgate, "digest", *args], capture_output=True, text=True, env=env)
    print(f"$ kgate digest {' '.join(args)}  -> exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.returncode, r.stdout + r.stderr


def expect(rc, out, want_rc, *needles):
    if rc != want_rc:
        fail(f"exit {rc}, expected {want_rc}")
    for n in needles:
        if n not in out:
            fail(f"output lacks {n!r}")


def sections(data):
    """name -> (offset, size) of an ELF64 little-endian file's sections."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3a)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    stroff = headers[shstrndx][4]
    out = {}
    for h in headers[1:]:
        end = data.index(b"\0", stroff + h[0])
        out[data[stroff + h[0]:end].decode()] = (h[4], h[5])
    return out


def copy_objects(src, dst, clang=True):
    os.makedirs(dst, exist_ok=True)
    for name in NAMES:
        for arch in ARCHES:
            shutil.copy(os.path.join(src, f"{name}.{arch}.bpf.o"), dst)
    if clang:
        shutil.copy(os.path.join(src, "clang-version.txt"), dst)


def fake_clang(directory, version):
    """A `clang` on PATH that says it is `version`."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "clang")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\necho '{version}'\necho 'Target: bpf'\n")
    os.chmod(path, 0o755)


def flip_byte_in(path, section):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    off, size = sections(bytes(data))[section]
    data[off + size // 2] ^= 0x01
    with open(path, "wb") as f:
        f.write(data)


def main():
    case, kgate, root = sys.argv[1:4]
    objects = os.path.join(os.path.dirname(os.path.abspath(kgate)), "bpf")
    lock = os.path.join(root, "bpf", "digests.lock")
    with tempfile.TemporaryDirectory(prefix="kgate-digest-") as tmp:
        work = os.path.join(tmp, "objects")
        if case == "check_clean":
            rc, out = run(kgate, "--check", lock)
            expect(rc, out, 0, *[f"{n}.{a}.bpf.o: yes" for n in NAMES for a in ARCHES], "all 4 objects match")
            if "note:" in out:
                fail("a check by the clang installed now has a note")
            # ninja does not rebuild the objects when a package update replaces clang: the check
            # compares the installed clang with the one that built them, and says so.
            bin_dir = os.path.join(tmp, "bin")
            fake_clang(bin_dir, "Debian clang version 99.0.0")
            rc, out = run(kgate, "--check", lock, path=bin_dir + os.pathsep + os.environ.get("PATH", ""))
            expect(rc, out, 0, "note: the objects were built by Debian clang version",
                   "another clang than the one installed now (Debian clang version 99.0.0)",
                   "ninja -C build -t clean && ninja -C build", "all 4 objects match")
            rc, out = run(kgate, "--check", lock, path=os.path.join(tmp, "empty"))
            expect(rc, out, 0, "note: no clang is installed", "all 4 objects match")
            # A release directory is not a build: no note.
            copy_objects(objects, work)
            rc, out = run(kgate, "--verify-release", work, "--lock", lock,
                          path=bin_dir + os.pathsep + os.environ.get("PATH", ""))
            expect(rc, out, 0, "all 4 objects match")
            if "note:" in out:
                fail("--verify-release compared the installed clang")
        elif case == "flipped_byte":
            copy_objects(objects, work)
            flip_byte_in(os.path.join(work, "probe.arm64.bpf.o"), UPROBE)
            rc, out = run(kgate, "--arch", "arm64", "--check", lock, "--objects", work)
            expect(rc, out, 7, "probe.arm64.bpf.o: no", f"section {UPROBE} differs",
                   "canary_write_user.arm64.bpf.o: yes", "1 differs")
            if "x86" in out:
                fail("--arch arm64 checked x86 objects")
            rc, out = run(kgate, "--arch", "x86", "--check", lock, "--objects", work)
            expect(rc, out, 0, "probe.x86.bpf.o: yes")
            # The names kgate run, the matrix and receipts use.
            for alias, arch in (("x86_64", "x86"), ("amd64", "x86"), ("aarch64", "arm64")):
                rc, out = run(kgate, "--arch", alias, "--check", lock, "--objects", work)
                expect(rc, out, 0 if arch == "x86" else 7, f"probe.{arch}.bpf.o: ")
        elif case == "wrong_arch":
            # A release directory whose arm64 probe is the x86 one.
            copy_objects(objects, work, clang=False)
            shutil.copy(os.path.join(objects, "probe.x86.bpf.o"), os.path.join(work, "probe.arm64.bpf.o"))
            rc, out = run(kgate, "--verify-release", work, "--lock", lock)
            expect(rc, out, 7, "probe.arm64.bpf.o: no", "built for x86, not arm64",
                   "name pt_regs.di, x86's register", "where arm64 objects read user_pt_regs", "probe.x86.bpf.o: yes")
        elif case == "not_elf":
            copy_objects(objects, work)
            with open(os.path.join(work, "probe.arm64.bpf.o"), "w") as f:
                f.write("<html>404 Not Found</html>\n")
            rc, out = run(kgate, "--check", lock, "--objects", work)
            expect(rc, out, 2, "probe.arm64.bpf.o: not checked", "not an ELF file", "could not be checked")
        elif case == "missing_file":
            copy_objects(objects, work, clang=False)
            os.remove(os.path.join(work, "canary_write_user.x86.bpf.o"))
            rc, out = run(kgate, "--verify-release", work, "--lock", lock)
            expect(rc, out, 2, "canary_write_user.x86.bpf.o: not checked", "No such file")
        elif case == "bad_lock":
            bad = os.path.join(tmp, "digests.lock")
            with open(lock) as f:
                text = f.read()
            with open(bad, "w") as f:
                f.write(text.replace('"size"', '"sise"', 1))
            rc, out = run(kgate, "--check", bad)
            expect(rc, out, 2, "unknown key 'sise'")
            with open(bad, "w") as f:
                f.write(text[: len(text) // 2])
            rc, out = run(kgate, "--check", bad)
            expect(rc, out, 2, "not valid JSON")
            rc, out = run(kgate, "--check", os.path.join(tmp, "none.lock"))
            expect(rc, out, 2, "read digest lock")
        elif case == "clang_differs":
            copy_objects(objects, work)
            with open(os.path.join(work, "clang-version.txt"), "w") as f:
                f.write("Debian clang version 99.0.0\n")
            flip_byte_in(os.path.join(work, "probe.x86.bpf.o"), ".BTF")
            rc, out = run(kgate, "--check", lock, "--objects", work)
            expect(rc, out, 7, "probe.x86.bpf.o: no", "built by Debian clang version 99.0.0",
                   "Build with the pinned clang (Debian clang version", "section .BTF differs")
        elif case == "not_locked":
            copy_objects(objects, work)
            shutil.copy(os.path.join(objects, "probe.arm64.bpf.o"), os.path.join(work, "extra.arm64.bpf.o"))
            rc, out = run(kgate, "--check", lock, "--objects", work)
            expect(rc, out, 7, "extra.arm64.bpf.o: no", "not in the lock")
        elif case == "update":
            # The committed lock is what this build's objects and clang give, byte for byte.
            fresh = os.path.join(tmp, "digests.lock")
            rc, out = run(kgate, "--update", fresh)
            expect(rc, out, 0, "wrote")
            with open(fresh, "rb") as a, open(lock, "rb") as b:
                if a.read() != b.read():
                    fail(f"--update gives another lock than {lock}: run kgate digest --update {lock}")
            # --arch updates that arch only; the rest of the lock stays.
            copy_objects(objects, work)
            flip_byte_in(os.path.join(work, "probe.arm64.bpf.o"), UPROBE)
            rc, out = run(kgate, "--update", fresh, "--arch", "arm64", "--objects", work)
            expect(rc, out, 0)
            rc, out = run(kgate, "--check", fresh, "--objects", work)
            expect(rc, out, 0, "all 4 objects match")
            rc, out = run(kgate, "--check", fresh)
            expect(rc, out, 7, "probe.arm64.bpf.o: no", "probe.x86.bpf.o: yes")
            os.remove(os.path.join(work, "clang-version.txt"))
            rc, out = run(kgate, "--update", fresh, "--objects", work)
            expect(rc, out, 2, "clang-version.txt is missing")
            # A lock that cannot be written is the host's failure: infra.
            not_a_dir = os.path.join(tmp, "a-file")
            with open(not_a_dir, "w") as f:
                f.write("a file, not a directory\n")
            rc, out = run(kgate, "--update", os.path.join(not_a_dir, "digests.lock"))
            expect(rc, out, 6, "a-file")
        elif case == "inspect":
            rc, out = run(kgate, "--inspect", os.path.join(objects, "probe.arm64.bpf.o"))
            expect(rc, out, 0, "EM_BPF", "registers: user_pt_regs.regs[0] (arm64)", "on_uprobe", "events  ringbuf",
                   "user_pt_regs.regs[0]")
            rc, out = run(kgate, "--inspect", os.path.join(objects, "probe.x86.bpf.o"))
            expect(rc, out, 0, "registers: pt_regs.di (x86)", "pt_regs.di")
            rc, out = run(kgate, "--inspect", lock)
            expect(rc, out, 2, "not an ELF file")
            # An ELF file that is no BPF object is described, and never handed to libbpf.
            rc, out = run(kgate, "--inspect", kgate)
            expect(rc, out, 0, "libbpf: not opened: not a BPF object for any gate arch")
            if "programs (libbpf" in out:
                fail("libbpf opened a file that is not a BPF object")
        elif case == "usage":
            rc, out = run(kgate, "--check", lock, "--update", lock)
            expect(rc, out, 2, "give one of")
            rc, out = run(kgate, "--check", lock, "--arch", "riscv")
            expect(rc, out, 2, "unknown arch 'riscv' (x86 (x86_64, amd64), arm64 (aarch64))")
            rc, out = run(kgate, "--help")
            expect(rc, out, 0, "--verify-release")
        else:
            fail(f"unknown case {case}")
    print("PASS")


if __name__ == "__main__":
    main()
