#!/usr/bin/env bash
# docs.sh update|check RELAY_BIN -- keeps README.md's configuration reference equal
# to what the binary's key table says (relay --config-reference).
set -euo pipefail
mode=$1 bin=$2
readme=README.md
begin='<!-- config-reference:begin -->'
end='<!-- config-reference:end -->'
new=$(mktemp)
trap 'rm -f "$new"' EXIT
awk -v b="$begin" -v e="$end" -v ref="$("$bin" --config-reference)" '
  $0 == b { print; print ref; skip = 1; next }
  $0 == e { skip = 0 }
  !skip { print }' "$readme" > "$new"
if [[ $mode == update ]]; then
  cp "$new" "$readme"
elif ! cmp -s "$new" "$readme"; then
  echo "README.md: the configuration reference is stale; run 'make docs'" >&2
  diff -u "$readme" "$new" >&2 || true
  exit 1
fi
