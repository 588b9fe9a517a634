#!/bin/sh
# Builds kgate's Debian package from a clean copy of this tree (scripts/build-package.sh, which
# removes that copy afterwards), installs it, and runs the installed kgate from an empty directory,
# where nothing of this tree can be found: `kgate version`, the man pages and completion,
# `kgate digest --check` of the installed objects against the installed lock, and a real
# `kgate run` of the default entry. A file the package forgot fails here. Needs root (apt);
# .ci/run calls it after the tests.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
work=$(mktemp -d /tmp/kgate-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
scripts/build-package.sh "$work/debs"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$work"/debs/kgate_*_amd64.deb
mkdir -p "$work/empty"
cd "$work/empty"
set -x
test "$(command -v kgate)" = /usr/bin/kgate
kgate version
man -w kgate kgate-run kgate-repro kgate-matrix kgate-gates kgate-digest kgate-spec kgate-fetch
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
