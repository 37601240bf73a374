#!/usr/bin/env bash
# docs.sh update|check RELAY_BIN -- keeps the configuration reference in
# docs/configuration.md (between the config-reference markers) equal to what
# the binary's key table says (relay --config-reference).
set -euo pipefail
mode=$1 bin=$2
doc=docs/configuration.md
begin='<!-- config-reference:begin -->'
end='<!-- config-reference:end -->'
[[ -f $doc ]] || { echo "$doc: not found (run from the repository's top directory)" >&2; exit 1; }
if ! grep -qxF "$begin" "$doc" || ! grep -qxF "$end" "$doc"; then
  echo "$doc: the config-reference markers are missing" >&2
  exit 1
fi
new=$(mktemp)
trap 'rm -f "$new"' EXIT
awk -v b="$begin" -v e="$end" -v ref="$("$bin" --config-reference)" '
  $0 == b { print; print ref; skip = 1; next }
  $0 == e { skip = 0 }
  !skip { print }' "$doc" > "$new"
if [[ $mode == update ]]; then
  cp "$new" "$doc"
elif ! cmp -s "$new" "$doc"; then
  echo "$doc: the configuration reference is stale; run 'make docs'" >&2
  diff -u "$doc" "$new" >&2 || true
  exit 1
fi
