#!/usr/bin/env bash
# install-test.sh: what `make install-test` (part of `make test`) checks.
#   1. make install DESTDIR=TMP puts the binary, the unit and the config where
#      docs/deployment.md says; the installed config has absolute paths.
#   2. The installed binary's default config (no -c) is $(SYSCONFDIR)/relay/relay.conf:
#      --help names it, and a second install with PREFIX=TMP/prefix (no DESTDIR)
#      loads it with --check-config and no -c.
#   3. A second make install keeps an edited relay.conf; make uninstall
#      removes the rest and keeps it.
#   4. systemd-analyze verify passes on the installed unit without a single
#      warning (it exits 0 on unknown keys, so any output fails), and
#      systemd-analyze security rates its exposure at most 2.0.
#      verify checks that ExecStart is executable, and the binary is in DESTDIR,
#      not /usr/local/bin: the unit verified is the installed one with ExecStart
#      pointed at the DESTDIR copy, nothing else changed.
# Environment: MAKE (default make); BUILD etc. come from make's own MAKEFLAGS.
set -euo pipefail
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(dirname "$TOOLS")
# shellcheck source=SCRIPTDIR/lib.sh
. "$TOOLS/lib.sh"
cd "$ROOT"

make=${MAKE:-make}
fails=0
fail() {
    printf 'install-test: FAIL: %s\n' "$*" >&2
    fails=$((fails + 1))
}
ok() {
    printf 'install-test: ok: %s\n' "$*" >&2
}

if ! command -v systemd-analyze >/dev/null; then
    note "systemd-analyze not found; installing systemd"
    "$TOOLS/deps.sh"
fi
command -v systemd-analyze >/dev/null || die "systemd-analyze not found"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/relay-install-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
dest=$TMP/dest
log=$TMP/make.log

# 1. The files.
"$make" -s --no-print-directory install DESTDIR="$dest" >"$log" 2>&1 ||
    { cat "$log" >&2; die "make install DESTDIR=$dest failed"; }
bin=$dest/usr/local/bin/relay
unit=$dest/usr/local/lib/systemd/system/relay.service
conf=$dest/usr/local/etc/relay/relay.conf
for f in "$bin" "$unit" "$conf" "$conf.example"; do
    [[ -f $f ]] || fail "make install did not create ${f#"$dest"}"
done
[[ -x $bin ]] || fail "${bin#"$dest"} is not executable"
[[ $(stat -c %a "$conf") == 644 ]] || fail "relay.conf is mode $(stat -c %a "$conf"), not 0644 (DynamicUser must read it)"
extra=$(find "$dest" -type f | sed "s|^$dest||" | grep -vxF -e /usr/local/bin/relay \
    -e /usr/local/lib/systemd/system/relay.service -e /usr/local/etc/relay/relay.conf \
    -e /usr/local/etc/relay/relay.conf.example || true)
[[ -z $extra ]] || fail "make install created unexpected files: $extra"
grep -qxF 'ExecStart=/usr/local/bin/relay' "$unit" || fail "the unit's ExecStart is not /usr/local/bin/relay"
((fails)) || ok "make install DESTDIR: bin/relay, lib/systemd/system/relay.service, etc/relay/relay.conf{,.example}"

# The installed config, checked by the installed binary: the WAL is under the
# unit's StateDirectory, and no path in it is relative.
dump=$("$bin" --check-config -c "$conf" 2>&1) || fail "relay --check-config -c ${conf#"$dest"}: $dump"
grep -Eq '^[[:space:]]*dir[[:space:]]*=[[:space:]]*/var/lib/relay/wal$' <<<"$dump" ||
    fail "the installed config's wal.dir is not /var/lib/relay/wal: $(grep -E 'dir' <<<"$dump" | head -n 3)"
if grep -Eq '=[[:space:]]*\.\.?/' "$conf"; then
    fail "the installed config has a relative path: $(grep -E '=[[:space:]]*\.\.?/' "$conf")"
fi

# 2. The default config path, compiled in.
help=$("$bin" --help)
grep -qF '(default /usr/local/etc/relay/relay.conf)' <<<"$help" ||
    fail "relay --help does not name /usr/local/etc/relay/relay.conf: $(grep -- --config <<<"$help")"
# No -c: it reads /usr/local/etc/relay/relay.conf of this machine (not ./relay.conf,
# which the repository has), whether or not that file exists here.
out=$("$bin" --check-config 2>&1) || true
grep -qF '/usr/local/etc/relay/relay.conf' <<<"$out" ||
    fail "relay --check-config without -c did not read /usr/local/etc/relay/relay.conf: $(head -n 2 <<<"$out")"
prefix=$TMP/prefix
"$make" -s --no-print-directory install PREFIX="$prefix" >"$log" 2>&1 ||
    { cat "$log" >&2; die "make install PREFIX=$prefix failed"; }
out=$(cd / && "$prefix/bin/relay" --check-config 2>&1) ||
    fail "$prefix/bin/relay --check-config (no -c): $out"
grep -qxF "# $prefix/etc/relay/relay.conf: OK" <<<"$out" ||
    fail "relay built for PREFIX=$prefix did not load $prefix/etc/relay/relay.conf: $(head -n 1 <<<"$out")"
grep -qxF "ExecStart=$prefix/bin/relay" "$prefix/lib/systemd/system/relay.service" ||
    fail "PREFIX=$prefix: the unit's ExecStart is not $prefix/bin/relay"
((fails)) || ok "default config: /usr/local/etc/relay/relay.conf (DESTDIR), $prefix/etc/relay/relay.conf loaded without -c"

# 3. An existing config is kept; uninstall keeps it too.
echo '# edited by install-test' >>"$conf"
"$make" -s --no-print-directory install DESTDIR="$dest" >"$log" 2>&1 ||
    { cat "$log" >&2; die "the second make install DESTDIR=$dest failed"; }
tail -n 1 "$conf" | grep -qxF '# edited by install-test' || fail "a second make install overwrote an edited relay.conf"
"$make" -s --no-print-directory uninstall DESTDIR="$dest" >"$log" 2>&1 ||
    { cat "$log" >&2; die "make uninstall DESTDIR=$dest failed"; }
for f in "$bin" "$unit" "$conf.example"; do
    [[ ! -e $f ]] || fail "make uninstall left ${f#"$dest"}"
done
[[ -f $conf ]] || fail "make uninstall removed the (edited) relay.conf"
((fails)) || ok "an edited relay.conf survives make install and make uninstall"

# 4. The unit, as installed (reinstall: uninstall removed it).
"$make" -s --no-print-directory install DESTDIR="$dest" >"$log" 2>&1 ||
    { cat "$log" >&2; die "make install DESTDIR=$dest failed"; }
mkdir -p "$TMP/verify"
sed "s|^ExecStart=/usr/local/bin/relay|ExecStart=$bin|" "$unit" >"$TMP/verify/relay.service"
[[ $(diff "$unit" "$TMP/verify/relay.service" | grep -c '^[<>]') == 2 ]] ||
    fail "rewriting ExecStart for verify changed more than that line"
rc=0
out=$(systemd-analyze verify "$TMP/verify/relay.service" 2>&1) || rc=$?
if ((rc != 0)) || [[ -n $out ]]; then
    fail "systemd-analyze verify (exit $rc): $out"
else
    ok "systemd-analyze verify relay.service: no warning"
fi
rc=0
out=$(systemd-analyze security --offline=yes --threshold=20 "$TMP/verify/relay.service" 2>&1) || rc=$?
score=$(sed -n 's/.*Overall exposure level for relay.service: \([0-9.]*\).*/\1/p' <<<"$out")
if ((rc != 0)) || [[ -z $score ]]; then
    fail "systemd-analyze security: exposure ${score:-?} over 2.0 (exit $rc): $(tail -n 3 <<<"$out")"
else
    ok "systemd-analyze security: exposure $score (at most 2.0)"
fi

if ((fails)); then
    echo "install-test: $fails check(s) failed" >&2
    exit 1
fi
echo "install-test: all checks passed"
