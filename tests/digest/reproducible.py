#!/usr/bin/env python3
"""The gate objects are reproducible: the same sources and clang give the same bytes in any
directory. Copies the source tree (git's file list: tracked and untracked files that are not
ignored, as they are in the working tree) into a temporary directory at another path and depth,
configures and builds the objects there with the build directory outside the tree, compares them
byte for byte with those of the build kgate belongs to, checks that their BTF line info names each source relative to
the source root and carries its lines' text, and checks them against bpf/digests.lock with
kgate.

    reproducible.py SOURCE_ROOT KGATE
"""
import os
import shutil
import subprocess
import sys
import tempfile

OBJECTS = [f"bpf/{name}.{arch}.bpf.o" for name in ("probe", "canary_write_user") for arch in ("x86", "arm64")]
TARGETS = OBJECTS + ["bpf/clang-version.txt"]


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def source_files(root):
    if os.path.isdir(os.path.join(root, ".git")):
        out = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             check=True, capture_output=True).stdout
        return [f for f in out.decode().split("\0") if f]
    # A tree without git (a source tarball): every file, less build directories.
    files = []
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if x != ".git" and not os.path.exists(os.path.join(d, x, "meson-private"))]
        files += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return files


def copy_tree(root, files, dest):
    for f in files:
        src = os.path.join(root, f)
        if not os.path.isfile(src):  # deleted in the working tree, not yet in git
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, f)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, f))


def build(src, builddir):
    for cmd in (["meson", "setup", "-Dtests=false", builddir, src], ["ninja", "-C", builddir, "-j2"] + TARGETS):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")


# A line of each source that the .BTF.ext line info must carry as text, under the file name it
# must carry: clang reads the text back from the source by that name, which it finds only when it
# runs in the source root (bpf/meson.build). Without it a verifier log shows no source lines.
SOURCE_LINES = {
    "probe": ("bpf/probe.bpf.c", '\treturn emit("on_uprobe", KGATE_ARG1(regs), -1);'),
    "canary_write_user": ("bpf/canary_write_user.bpf.c", "int canary_write_user(void *ctx)"),
}


def check_line_info(path, data):
    name = os.path.basename(path).split(".")[0]
    source, line = SOURCE_LINES[name]
    for s in (source, line):
        if b"\0" + s.encode() + b"\0" not in data:
            fail(f"{path}: its BTF strings lack {s!r}: the line info does not name the source as "
                 f"{source} with its text")


def main():
    if len(sys.argv) != 3:
        fail("usage: reproducible.py SOURCE_ROOT KGATE")
    root, kgate = sys.argv[1], sys.argv[2]
    files = source_files(root)
    with tempfile.TemporaryDirectory(prefix="kgate-repro-") as tmp:
        # The build that kgate belongs to (its build directory, usually inside the source tree)
        # against a copy at another path and depth, built outside its tree.
        a_src, a_build = root, os.path.dirname(os.path.abspath(kgate))
        b_src = os.path.join(tmp, "elsewhere", "much", "deeper", "kgate-source-copy")
        b_build = os.path.join(tmp, "b-build")
        copy_tree(root, files, b_src)
        build(b_src, b_build)
        for t in TARGETS:
            with open(os.path.join(a_build, t), "rb") as fa, open(os.path.join(b_build, t), "rb") as fb:
                a, b = fa.read(), fb.read()
            if a != b:
                at = next(i for i in range(min(len(a), len(b)) + 1) if i == min(len(a), len(b)) or a[i] != b[i])
                fail(f"{t} differs between {a_src} and {b_src}: {len(a)} and {len(b)} bytes, first at offset {at}")
            print(f"{t}: same bytes in both trees ({len(a)} bytes)")
            if t in OBJECTS:
                check_line_info(t, a)
        lock = os.path.join(root, "bpf", "digests.lock")
        r = subprocess.run([kgate, "digest", "--check", lock, "--objects", os.path.join(b_build, "bpf")],
                           capture_output=True, text=True)
        print(r.stdout, end="")
        if r.returncode != 0:
            fail(f"kgate digest --check exited {r.returncode} on the copy's objects:\n{r.stderr}")
    print("PASS")


if __name__ == "__main__":
    main()
