#!/usr/bin/env bash
# bench/callgrind.sh -- relay's instructions per request on a fixed input, for
# `make bench` (and `make bench-callgrind` alone). callgrind counts
# instructions, not time, so the figure is the same on a busy machine and a
# change to a hot path can be judged by it.
#
# relay runs under valgrind --tool=callgrind with both sinks off, wal.fsync and
# wal.preallocate off (what is counted is relay's own work, not the disk's or
# a broker's), and bench/post sends N requests over one connection; once with
# N1 and once with N2 requests, so that start-up and shutdown cancel out:
#   instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1).
# Every relay thread is counted, libmicrohttpd's and the WAL flusher's too.
#
# Environment: BENCH_CG_N1 (200), BENCH_CG_N2 (1200), BENCH_CG_KINDS ("timely
# whapi"), RELAY_* (passed to relay), BENCH_KEEP=1 keeps the
# scratch directory (callgrind.out.* files for callgrind_annotate).
# Prints one line per input:
#   CALLGRIND kind=timely events_per_request=1 ir_per_request=212345 ir_per_event=212345
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
TOOLS=$ROOT/tools
# shellcheck source=SCRIPTDIR/../tools/lib.sh
. "$TOOLS/lib.sh"
BIN=${BENCH_BIN_DIR:-$ROOT/build}
N1=${BENCH_CG_N1:-200}
N2=${BENCH_CG_N2:-1200}

command -v valgrind >/dev/null || die "valgrind is not installed (tools/deps.sh installs it)"
tmp=$(mktemp -d /tmp/relay-callgrind.XXXXXX)
vg_pid=''
cleanup() {
    [[ -n $vg_pid ]] && kill "$vg_pid" 2>/dev/null && wait "$vg_pid" 2>/dev/null
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then note "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# count KIND N -> total instructions of one relay run that served N requests
count() {
    local kind=$1 n=$2 port out=$tmp/callgrind.out.$1.$2 i
    port=$(freeport 0)
    rm -rf "$tmp/wal"
    env RELAY_HTTP_LISTEN="127.0.0.1:$port" RELAY_WAL_DIR="$tmp/wal" RELAY_WAL_FSYNC=false \
        RELAY_WAL_PREALLOCATE=false RELAY_KAFKA_ENABLED=false RELAY_REDIS_ENABLED=false \
        RELAY_LOG_LEVEL=warn \
        valgrind --tool=callgrind --callgrind-out-file="$out" --dump-line=no \
        "$BIN/relay" -c "$ROOT/relay.conf" 2>>"$tmp/valgrind.log" &
    vg_pid=$!
    for i in $(seq 600); do
        [[ $(curl -sf "http://127.0.0.1:$port/healthz" 2>/dev/null) ]] && break
        ((i < 600)) || die "relay under valgrind did not answer (log: $tmp/valgrind.log)"
        sleep 0.1
    done
    "$BIN/bench/post" "$port" "$kind" "$n" >>"$tmp/post.log" || die "bench/post failed: $(tail -n 2 "$tmp/post.log")"
    kill -TERM "$vg_pid"
    wait "$vg_pid" || die "relay under valgrind exited with $? (log: $tmp/valgrind.log)"
    vg_pid=''
    # The totals line of the output file sums every thread.
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

# shellcheck disable=SC2086 # a list of words
for kind in ${BENCH_CG_KINDS:-timely whapi}; do
    epr=1
    [[ $kind == whapi ]] && epr=10
    a=$(count "$kind" "$N1")
    b=$(count "$kind" "$N2")
    awk -v a="$a" -v b="$b" -v n=$((N2 - N1)) -v k="$kind" -v e="$epr" 'BEGIN {
        r = (b - a) / n
        printf "CALLGRIND kind=%s events_per_request=%d ir_per_request=%.0f ir_per_event=%.0f\n", k, e, r, r / e
    }'
done
