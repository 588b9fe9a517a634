#!/bin/sh
# Installs what kgate needs from Debian 12's archive with apt, then configures
# build/ and builds kgate there (not the tests: scripts/test.sh builds everything).
# Safe to run again: installed packages are skipped and an existing build
# directory is rebuilt, not recreated.
#   scripts/setup.sh                 x86_64 guests: what `build/kgate run` needs, and no more
#   scripts/setup.sh --arm64         also arm64 guests (the arm64 dpkg architecture, the aarch64
#                                    cross compiler and arm64 libraries for the arm64 agent,
#                                    qemu-system-arm)
#   scripts/setup.sh --all           everything kgate's features and its own tests use: arm64
#                                    guests, skopeo (a loader from a container image), gdb
#                                    (`kgate run --gdb`), the test tools; configures the tests
#                                    (.ci/run uses this)
#   --deps-only                      installs the packages and builds nothing (the package build
#                                    and the GitHub Action use that)
#   --kernel-build                   also what `kgate kernels build` needs and Debian's 6.1 source
#                                    tarball, which the kernel-build suite builds
set -eu
cd "$(dirname "$0")/.."
deps_only=""
kernel_build=""
arm64=""
all=""
for arg in "$@"; do
  case $arg in
    --deps-only) deps_only=1 ;;
    --kernel-build) kernel_build=1 ;;
    --arm64) arm64=1 ;;
    --all) all=1 arm64=1 ;;
    *) echo "setup: unknown option $arg (--arm64, --all, --deps-only, --kernel-build)"; exit 2 ;;
  esac
done

# x86_64 guests: the build, libbpf, QEMU, and bpftool (the minimized BTF for CO-RE).
PACKAGES="meson ninja-build pkg-config g++ clang llvm \
  libbpf-dev libelf-dev libzstd-dev liblzma-dev zlib1g-dev libssl-dev libarchive-dev \
  nlohmann-json3-dev libcxxopts-dev doctest-dev qemu-system-x86 bpftool"
# arm64 guests: the cross compiler and Debian's arm64 static libraries for the arm64 agent
# (dpkg multiarch), and QEMU for arm64 guests. kgate fetches the arm64 kernel as
# linux-image-arm64:arm64 through the same multiarch package lists.
if [ -n "$arm64" ]; then
  PACKAGES="$PACKAGES g++-aarch64-linux-gnu qemu-system-arm \
  libbpf-dev:arm64 libelf-dev:arm64 zlib1g-dev:arm64 libzstd-dev:arm64 linux-libc-dev:arm64"
fi
# The rest of kgate's features (skopeo: loaders from container images and `kernels pin`; gdb:
# `kgate run --gdb`) and what its own tests read (clang-format, python3-yaml, man pages).
if [ -n "$all" ]; then
  PACKAGES="$PACKAGES skopeo gdb clang-format python3-yaml man-db"
fi

if [ -n "$kernel_build" ]; then
  PACKAGES="$PACKAGES make bc flex bison dwarves xz-utils linux-source-6.1"
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

update=""
if [ -n "$arm64" ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "setup: dpkg --add-architecture arm64"
  $SUDO dpkg --add-architecture arm64
  update=1
fi
missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
# kgate resolves kernels through apt's package lists: they must be there too.
if [ -n "$update$missing" ] || ! apt-cache show --no-all-versions linux-image-amd64:amd64 >/dev/null 2>&1 ||
  { [ -n "$arm64" ] && ! apt-cache show --no-all-versions linux-image-arm64:arm64 >/dev/null 2>&1; }; then
  echo "setup: apt-get update"
  $SUDO apt-get update -q
fi
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

if [ -n "$deps_only" ]; then
  echo "setup: packages installed"
  exit 0
fi
# Without --arm64 the arm64 agent is built only if this machine happens to have its toolchain
# (meson option arm64=auto); with it, a missing piece fails the configure. The tests are
# configured by --all (and by scripts/test.sh).
wanted=""
[ -z "$arm64" ] || wanted="-Darm64=enabled"
[ -z "$all" ] || wanted="$wanted -Dtests=true"
if [ ! -f build/build.ninja ]; then
  if [ -n "$all" ]; then meson setup build $wanted; else meson setup build -Dtests=false $wanted; fi
elif [ -n "$wanted" ]; then
  meson configure build $wanted
fi
# kgate alone (with the agents and gate objects it embeds): the tests, fuzzers and test objects,
# whose build fetches Debian's kernels for their BTF, are built by scripts/test.sh or meson test.
ninja -C build -j "$(nproc)" kgate
echo "setup: built build/kgate"
