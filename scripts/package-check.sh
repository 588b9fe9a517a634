#!/bin/sh
# Builds kgate's Debian package from a clean copy of this tree (dpkg-buildpackage -b, debian/),
# installs it, and runs the installed kgate with that copy moved out of reach, from an empty
# directory: `kgate version`, the man pages and completion, `kgate digest --check` of the
# installed objects against the installed lock, and a real `kgate run` of the default entry.
# A file the package forgot fails here. Needs root (apt); .ci/run calls it after the tests.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
work=$(mktemp -d /tmp/kgate-package.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! dpkg-query -W -f='${Status}' debhelper 2>/dev/null | grep -q "install ok installed"; then
  echo "package-check: installing debhelper"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debhelper
fi
# What git has, without build/ or anything else the checkout holds besides.
mkdir -p "$work/src/kgate" "$work/empty"
git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$work/src/kgate"
echo "package-check: dpkg-buildpackage -b (log: $work/build.log)"
start=$(date +%s)
if ! (cd "$work/src/kgate" && dpkg-buildpackage -b -us -uc) >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log"
  echo "package-check: dpkg-buildpackage failed"
  exit 1
fi
echo "package-check: built in $(($(date +%s) - start)) s: $(cd "$work/src" && ls ./*.deb)"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$work"/src/kgate_*_amd64.deb
# The tree the package was built from is gone from where it was built: the installed kgate
# must find all it needs in what the package installed.
mv "$work/src/kgate" "$work/src/moved-away"
cd "$work/empty"
set -x
test "$(command -v kgate)" = /usr/bin/kgate
kgate version
man -w kgate kgate-run kgate-repro kgate-matrix kgate-gates kgate-digest kgate-fetch
bash -c '. /usr/share/bash-completion/completions/kgate && COMP_WORDS=(kgate run --lock) COMP_CWORD=2 && _kgate &&
  test "${COMPREPLY[*]}" = --lockdown'
kgate digest --check /usr/share/kgate/bpf/digests.lock
status=0
kgate run --out "$work/run" || status=$?
set +x
test -s "$work/run/console.log"
verdict=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["verdict"])' "$work/run/receipt.json")
echo "package-check: installed kgate run exited $status, verdict '$verdict'"
test "$status" = 0 && test "$verdict" = pass
test -z "$(ls -A "$work/empty")"  # the run wrote only where it was told
echo "package-check: passed"
