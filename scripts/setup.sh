#!/bin/sh
# Installs what kgate needs from Debian 12's archive with apt, then configures
# build/ and builds kgate there (not the tests: scripts/test.sh builds everything).
# Safe to run again: installed packages are skipped and an existing build
# directory is rebuilt, not recreated. With --deps-only it
# installs the packages and builds nothing (the package build and the GitHub
# Action use that).
set -eu
cd "$(dirname "$0")/.."
# With --kernel-build it also installs what `kgate kernels build` needs and Debian's 6.1 source
# tarball, which the kernel-build suite builds (meson test -C build --suite kernel-build).
deps_only=""
kernel_build=""
for arg in "$@"; do
  case $arg in
    --deps-only) deps_only=1 ;;
    --kernel-build) kernel_build=1 ;;
    *) echo "setup: unknown option $arg"; exit 2 ;;
  esac
done

PACKAGES="meson ninja-build pkg-config g++ clang llvm clang-format \
  libbpf-dev libelf-dev libzstd-dev liblzma-dev zlib1g-dev libssl-dev libarchive-dev \
  nlohmann-json3-dev libcxxopts-dev doctest-dev qemu-system-x86 bpftool gdb python3-yaml skopeo man-db"
# arm64 gates: the cross compiler and Debian's arm64 static libraries for the arm64 agent
# (dpkg multiarch), and QEMU for arm64 guests. kgate fetches the arm64 kernel as
# linux-image-arm64:arm64 through the same multiarch package lists.
PACKAGES="$PACKAGES g++-aarch64-linux-gnu qemu-system-arm \
  libbpf-dev:arm64 libelf-dev:arm64 zlib1g-dev:arm64 libzstd-dev:arm64 linux-libc-dev:arm64"

if [ -n "$kernel_build" ]; then
  PACKAGES="$PACKAGES make bc flex bison dwarves xz-utils linux-source-6.1"
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

update=""
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
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
  ! apt-cache show --no-all-versions linux-image-arm64:arm64 >/dev/null 2>&1; then
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
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
# kgate alone (with the agents and gate objects it embeds): the tests, fuzzers and test objects,
# whose build fetches Debian's kernels for their BTF, are built by scripts/test.sh or meson test.
ninja -C build -j "$(nproc)" kgate
echo "setup: built build/kgate"
