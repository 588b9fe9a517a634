#!/bin/sh
# meson install into a scratch root: kgate, its data, a man page for every command `kgate --help`
# lists (each rendered by man without a troff warning), the bash completion (sourced and asked),
# and the docs. The installed kgate finds its catalog under the scratch prefix's share/kgate.
# Usage: install.sh BUILD_DIR
set -eu
build=$1
dest=$(mktemp -d /tmp/kgate-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet
prefix=$(meson introspect "$build" --buildoptions | python3 -c \
  'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
root=$dest$prefix
fail() { echo "install: $*"; exit 1; }
test -x "$root/bin/kgate" || fail "no bin/kgate"
for f in kernels/catalog.json kernels/matrix.json bpf/digests.lock bpf/probe.x86.bpf.o bpf/probe.arm64.bpf.o \
  bpf/clang-version.txt; do
  test -s "$root/share/kgate/$f" || fail "no share/kgate/$f"
done
commands=$("$root/bin/kgate" --help | sed -n 's/^  \([a-z]*\)  .*/\1/p' | grep -v -e '^version$' -e '^help$')
test -n "$commands" || fail "kgate --help lists no commands"
for c in "" $commands; do
  page=$root/share/man/man1/kgate${c:+-$c}.1
  test -s "$page" || fail "no man page for '${c:-kgate}' ($page)"
  warnings=$(MANWIDTH=100 man --warnings -l "$page" 2>&1 >/dev/null) || fail "man cannot show $page"
  test -z "$warnings" || fail "$page: $warnings"
done
# Every command's page names every option its --help lists.
for c in $commands; do
  for opt in $("$root/bin/kgate" "$c" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    grep -qF -- "$(printf '%s' "$opt" | sed 's/-/\\-/g')" "$root/share/man/man1/kgate-$c.1" ||
      fail "kgate-$c.1 lacks $opt"
  done
done
completion=$root/share/bash-completion/completions/kgate
test -s "$completion" || fail "no bash completion"
got=$(bash -c '. "$1"; COMP_WORDS=(kgate ma); COMP_CWORD=1; _kgate; echo "${COMPREPLY[*]}"' sh "$completion")
test "$got" = matrix || fail "completion of 'kgate ma': '$got'"
got=$(bash -c '. "$1"; COMP_WORDS=(kgate run --lockdown in); COMP_CWORD=3; _kgate; echo "${COMPREPLY[*]}"' sh "$completion")
test "$got" = integrity || fail "completion of 'kgate run --lockdown in': '$got'"
got=$(bash -c '. "$1"; COMP_WORDS=(kgate repro x --o); COMP_CWORD=3; _kgate; echo "${COMPREPLY[*]}"' sh "$completion")
test "$got" = --out || fail "completion of 'kgate repro x --o': '$got'"
test -s "$root/share/doc/kgate/docs/cli.md" || fail "no docs"
echo "install: $(find "$dest" -type f | wc -l) files, $(echo $commands | wc -w) commands with man pages"
