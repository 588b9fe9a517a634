#!/bin/bash
# The action's gate step: `kgate matrix` with the action's inputs (INPUT_*), in the workspace.
# kgate appends its Markdown summary to $GITHUB_STEP_SUMMARY itself; this step writes the outputs
# (verdict, exit-code, passed, total, summary) to $GITHUB_OUTPUT and exits with kgate's code.
set -uo pipefail
kgate=${KGATE:-kgate}
out=${INPUT_OUT:-kgate-out}
args=(matrix --out "$out" --jobs "${INPUT_JOBS:-2}")
[ -n "${INPUT_SPEC:-}" ] && args+=(--spec "$INPUT_SPEC")
[ -n "${INPUT_OBJECT:-}" ] && args+=(--object "$INPUT_OBJECT")
[ -n "${INPUT_MATRIX:-}" ] && args+=(--matrix "$INPUT_MATRIX")
[ -n "${INPUT_ENTRIES:-}" ] && args+=(--only "$INPUT_ENTRIES")
[ -n "${INPUT_LOCKDOWN:-}" ] && args+=(--lockdown "$INPUT_LOCKDOWN")
[ -n "${INPUT_SHARD:-}" ] && args+=(--shard "$INPUT_SHARD")
if [ -n "${INPUT_BASELINE:-}" ]; then
  args+=(--baseline "$INPUT_BASELINE" --max-growth "${INPUT_MAX_GROWTH:-10}")
fi
echo "kgate ${args[*]}"
log=$(mktemp)
"$kgate" "${args[@]}" | tee "$log"
status=${PIPESTATUS[0]}
# The closing line: "<passed> of <total> entries passed[ (interrupted)][; ...]; summary: <path>".
last=$(grep -E '^[0-9]+ of [0-9]+ entries passed' "$log" | tail -n 1)
rm -f "$log"
passed=$(sed -E 's/^([0-9]+) of .*/\1/' <<<"$last")
total=$(sed -E 's/^[0-9]+ of ([0-9]+) .*/\1/' <<<"$last")
summary=$(sed -E 's/.*; summary: //' <<<"$last")
{
  echo "verdict=$([ "$status" = 0 ] && echo pass || echo fail)"
  echo "exit-code=$status"
  echo "passed=${passed:-0}"
  echo "total=${total:-0}"
  echo "summary=$summary"
} >>"${GITHUB_OUTPUT:?}"
if [ "$status" != 0 ]; then
  echo "::error title=kgate::kgate matrix exited $status: ${passed:-0} of ${total:-0} entries passed (docs/exit-codes.md)"
fi
exit "$status"
