#!/bin/sh
# Builds kgate's Debian package (debian/, dpkg-buildpackage -b) from a clean copy of this tree
# and puts the .deb files into DIR. The copy is what git tracks (or, outside git, the tree without
# build/ and kgate-out/), built in a temporary directory that is removed afterwards.
# Needs the build dependencies (scripts/setup.sh --deps-only --arm64) and debhelper, which it installs.
# Usage: scripts/build-package.sh DIR
set -eu
out=${1:?usage: scripts/build-package.sh DIR}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
if ! dpkg-query -W -f='${Status}' debhelper 2>/dev/null | grep -q "install ok installed"; then
  echo "build-package: installing debhelper"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debhelper
fi
work=$(mktemp -d /tmp/kgate-build-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/kgate"
# One archive written to a file, then unpacked: a tar that fails (a tracked file deleted) stops here.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z >"$work/files"
  tar --null -T "$work/files" -cf "$work/tree.tar"
else
  tar -cf "$work/tree.tar" --exclude=./build --exclude=./kgate-out --exclude=./.git .
fi
tar -xf "$work/tree.tar" -C "$work/kgate"
echo "build-package: dpkg-buildpackage -b"
start=$(date +%s)
if ! (cd "$work/kgate" && dpkg-buildpackage -b -us -uc) >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log"
  echo "build-package: dpkg-buildpackage failed"
  exit 1
fi
mkdir -p "$out"
mv "$work"/*.deb "$out"/
echo "build-package: built in $(($(date +%s) - start)) s: $(cd "$out" && ls ./*.deb | tr '\n' ' ')"
