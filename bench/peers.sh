#!/usr/bin/env bash
# bench/peers.sh -- what a user would deploy instead of relay, measured on
# relay's Timely-singles load (one new event per request, wrk -t1 -c64) and
# writing to the same Kafka broker: Fluent Bit (in_http -> out_kafka, memory
# buffering) and the OpenTelemetry Collector (otlp receiver -> kafka exporter,
# once with the in-memory sending queue, once with a file_storage queue,
# fsync on). Their configuration is in bench/peers/.
#
#   bench/peers.sh build            build the peers missing from the cache
#   bench/peers.sh built            exit 0 when every peer is in the cache
#   bench/peers.sh [run] [BROKERS]  build what is missing, then measure each
#                                   peer against BROKERS (or $BENCH_BROKERS)
#
# Per peer, one line on stdout:
#   PEER name=... version=... durable=yes|no rps=... p99_us=... cpu_us_per_req=...
#        cpu_load_us_per_req=... delivered=... sent=... errors=...
# sent is wrk's count of 2xx answers, delivered the messages on the peer's own
# topic (kcat, from the beginning), cpu_us_per_req the peer process's CPU
# (all its threads) from the start of the load until it has delivered
# everything it answered (at most PEERS_DRAIN_TIMEOUT s after the load), per
# answered request; cpu_load_us_per_req the same over the load alone.
#
# Environment: BENCH_SECONDS (10), BENCH_CONNS (64), BENCH_BROKERS,
#   PEERS ("fluentbit otelcol-memory otelcol-file": which to run),
#   PEERS_CACHE (${XDG_CACHE_HOME:-~/.cache}/relay-peers), PEERS_JOBS (2),
#   PEERS_DRAIN_TIMEOUT (60), FLUENTBIT_SRC (a Fluent Bit source tree or git
#   directory holding tag v$FLB_VERSION; default: a shallow clone), GO (go).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=SCRIPTDIR/../tools/lib.sh disable=SC1091
. "$ROOT/tools/lib.sh"
PEERS_DIR=$ROOT/bench/peers

FLB_VERSION=5.1.1
OTEL_VERSION=0.165.0
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-64}
JOBS=${PEERS_JOBS:-2}
DRAIN=${PEERS_DRAIN_TIMEOUT:-60}
home=${HOME:-$(cd ~ && pwd)}
CACHE=${PEERS_CACHE:-${XDG_CACHE_HOME:-$home/.cache}/relay-peers}

if [[ -n ${GO:-} ]]; then
    :
elif command -v go >/dev/null; then
    GO=go
else
    GO=/usr/local/go/bin/go
fi

# The cache keys: the version, and for the collector the hash of its module
# (an edited go.mod or main.go builds a new binary).
FLB_HOME=$CACHE/fluent-bit-$FLB_VERSION
FLB_BIN=$FLB_HOME/bin/fluent-bit
otel_key() { cat "$PEERS_DIR/otelcol/go.mod" "$PEERS_DIR/otelcol/go.sum" "$PEERS_DIR/otelcol/main.go" | sha256sum | cut -c1-12; }
OTEL_HOME=$CACHE/otelcol-$OTEL_VERSION-$(otel_key)
OTEL_BIN=$OTEL_HOME/bin/otelcol

tmp='' peer_pid='' stage=''
cleanup() {
    if [[ -n $peer_pid ]]; then
        kill "$peer_pid" 2>/dev/null || true
        wait "$peer_pid" 2>/dev/null || true
    fi
    [[ -n $stage ]] && rm -rf "$stage"
    [[ -n $tmp ]] && rm -rf "$tmp"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- building

# flb_source DIR: lay Fluent Bit's source for tag v$FLB_VERSION into DIR.
flb_source() {
    local dir=$1 src=${FLUENTBIT_SRC:-} gitdir missing
    if [[ -n $src && -f $src/CMakeLists.txt ]]; then
        cp -a "$src/." "$dir/"
        return 0
    fi
    if [[ -z $src ]]; then
        src=$CACHE/src/fluent-bit.git
        if [[ ! -d $src ]]; then
            note "cloning Fluent Bit v$FLB_VERSION (set FLUENTBIT_SRC to use a local copy)"
            git clone -q --bare --depth 1 --branch "v$FLB_VERSION" \
                https://github.com/fluent/fluent-bit.git "$src" ||
                die "cannot clone Fluent Bit: set FLUENTBIT_SRC to a source tree or git directory"
        fi
    fi
    gitdir=$(git -C "$src" rev-parse --absolute-git-dir 2>/dev/null) ||
        die "FLUENTBIT_SRC=$src is neither a source tree nor a git directory"
    git --git-dir="$gitdir" rev-parse -q --verify "v$FLB_VERSION^{commit}" >/dev/null ||
        die "$gitdir has no tag v$FLB_VERSION"
    # Through a private index rather than `git archive`, so that a snapshot
    # whose largest blobs are absent (lib/sqlite-amalgamation-*/sqlite3.c,
    # unused: the build takes the system's SQLite) still checks out.
    local index=$dir.index
    GIT_INDEX_FILE=$index git --git-dir="$gitdir" read-tree "v$FLB_VERSION"
    missing=$(GIT_INDEX_FILE=$index git --git-dir="$gitdir" ls-files -s |
        awk '{ print $2 }' | git --git-dir="$gitdir" cat-file --batch-check | awk '$2 == "missing" { print $1 }')
    if [[ -n $missing ]]; then
        local h p
        for h in $missing; do
            p=$(GIT_INDEX_FILE=$index git --git-dir="$gitdir" ls-files -s | awk -v h="$h" '$2 == h { print $4 }')
            [[ $p == lib/sqlite-amalgamation-*/* ]] || die "the Fluent Bit snapshot lacks $p"
            GIT_INDEX_FILE=$index git --git-dir="$gitdir" rm -q --cached -- "$p"
        done
    fi
    GIT_INDEX_FILE=$index git --git-dir="$gitdir" checkout-index -a --prefix="$dir/"
    rm -f "$index"
}

# Only the two plugins measured (FLB_MINIMAL turns every plugin off), no Lua,
# WASM, Go plugins or shared library; the bundled librdkafka; the system's
# SQLite (libsqlite3-dev), OpenSSL, libyaml; flex and bison.
build_fluentbit() {
    local t0=$SECONDS log
    for tool in cmake make flex bison pkg-config; do
        command -v "$tool" >/dev/null || die "Fluent Bit build: $tool not found (apt-get install cmake flex bison pkg-config libyaml-dev libssl-dev libsqlite3-dev)"
    done
    mkdir -p "$CACHE"
    stage=$(mktemp -d "$CACHE/.fluent-bit-$FLB_VERSION.XXXXXX")
    log=$CACHE/fluent-bit-$FLB_VERSION.build.log
    note "building Fluent Bit $FLB_VERSION into $FLB_HOME (nice 19, -j$JOBS; log: $log)"
    flb_source "$stage/src"
    if ! {
        nice -n 19 cmake -S "$stage/src" -B "$stage/build" -DCMAKE_BUILD_TYPE=Release \
            -DFLB_RELEASE=On -DFLB_DEBUG=Off -DFLB_MINIMAL=On \
            -DFLB_IN_HTTP=On -DFLB_OUT_KAFKA=On -DFLB_KAFKA=On -DFLB_TLS=On \
            -DFLB_SQLDB=On -DFLB_PREFER_SYSTEM_LIB_SQLITE=On \
            -DFLB_EXAMPLES=Off -DFLB_SHARED_LIB=Off -DFLB_LUAJIT=Off -DFLB_WASM=Off \
            -DFLB_BACKTRACE=Off -DFLB_PROXY_GO=Off -DFLB_ZIG=Off -DFLB_CUSTOM_CALYPTIA=Off \
            -DFLB_TESTS_RUNTIME=Off -DFLB_TESTS_INTERNAL=Off &&
            nice -n 19 make -C "$stage/build" -j"$JOBS" fluent-bit-bin
    } >"$log" 2>&1; then
        grep -E 'error|Error' "$log" | tail -n 20 >&2 || true
        die "Fluent Bit $FLB_VERSION failed to build (log: $log)"
    fi
    mkdir -p "$stage/home/bin"
    cp "$stage/build/bin/fluent-bit" "$stage/home/bin/"
    "$stage/home/bin/fluent-bit" --version | head -1 >"$stage/home/VERSION"
    rm -rf "$FLB_HOME"
    mv "$stage/home" "$FLB_HOME"
    rm -rf "$stage"
    stage=''
    note "Fluent Bit $FLB_VERSION built in $((SECONDS - t0)) s"
}

build_otelcol() {
    local t0=$SECONDS log
    command -v "$GO" >/dev/null || die "OpenTelemetry Collector build: go not found (set GO)"
    mkdir -p "$CACHE"
    stage=$(mktemp -d "$CACHE/.otelcol-$OTEL_VERSION.XXXXXX")
    log=$CACHE/otelcol-$OTEL_VERSION.build.log
    note "building the OpenTelemetry Collector $OTEL_VERSION into $OTEL_HOME (nice 19, -p $JOBS; log: $log)"
    mkdir -p "$stage/home/bin"
    # -mod=readonly: the committed go.sum is the whole truth; a missing entry
    # fails the build instead of being added.
    if ! (cd "$PEERS_DIR/otelcol" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly nice -n 19 \
        "$GO" build -p "$JOBS" -trimpath -ldflags='-s -w' -o "$stage/home/bin/otelcol" .) >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "the OpenTelemetry Collector $OTEL_VERSION failed to build (log: $log)"
    fi
    echo "$OTEL_VERSION" >"$stage/home/VERSION"
    rm -rf "$OTEL_HOME"
    mv "$stage/home" "$OTEL_HOME"
    rm -rf "$stage"
    stage=''
    note "OpenTelemetry Collector $OTEL_VERSION built in $((SECONDS - t0)) s"
}

wanted() { [[ " ${PEERS:-fluentbit otelcol-memory otelcol-file} " == *" $1 "* ]]; }
need_flb() { wanted fluentbit && [[ ! -x $FLB_BIN ]]; }
need_otel() { { wanted otelcol-memory || wanted otelcol-file; } && [[ ! -x $OTEL_BIN ]]; }

build() {
    if need_flb; then build_fluentbit; fi
    if need_otel; then build_otelcol; fi
    return 0
}

# ---------------------------------------------------------------- measuring

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
us_per() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", n ? t / hz / n * 1e6 : 0 }'; }
# to_us 1.23ms -> 1230
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : 0
    printf "%.0f", n * f }'; }
count_topic() { # count_topic TOPIC -> messages on it, warm-up one included
    kcat -b "$BROKERS" -C -t "$1" -o beginning -e -q 2>/dev/null | wc -l
}

start_peer() { # start_peer PORT CMD... -> sets peer_pid, waits for PORT to listen
    local port=$1 i
    shift
    "$@" >>"$tmp/peer.log" 2>&1 &
    peer_pid=$!
    for ((i = 0; i < 300; i++)); do
        kill -0 "$peer_pid" 2>/dev/null || { tail -n 20 "$tmp/peer.log" >&2; die "peer $* exited at start-up"; }
        port_in_use "$port" listen && return 0
        sleep 0.1
    done
    tail -n 20 "$tmp/peer.log" >&2
    die "peer $* did not listen on $port within 30 s"
}

stop_peer() {
    kill "$peer_pid" 2>/dev/null || true
    wait "$peer_pid" 2>/dev/null || true
    peer_pid=''
}

# measure NAME VERSION DURABLE PORT LUA TOPIC: load the running peer, wait for
# its deliveries, print its PEER line.
measure() {
    local name=$1 version=$2 durable=$3 port=$4 lua=$5 topic=$6 out c0 c1 c2 sent non2xx
    local rps p99 total have last i still=0 errors
    c0=$(cpu_ticks "$peer_pid")
    out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 10s --latency -s "$lua" "http://127.0.0.1:$port")
    c1=$(cpu_ticks "$peer_pid")
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    total=$(awk '/requests in/ { print $1 }' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx/ { print $NF }' <<<"$out")
    non2xx=${non2xx:-0}
    errors=$(awk '/Socket errors/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' <<<"$out")
    errors=$((${errors:-0} + non2xx))
    sent=$((total - non2xx))
    # Wait until the topic holds every answered request (the warm-up message
    # aside), or stops growing for 10 s, or PEERS_DRAIN_TIMEOUT has passed.
    last=-1
    for ((i = 0; i < DRAIN; i++)); do
        have=$(($(count_topic "$topic") - 1))
        ((have >= sent)) && break
        if ((have == last)); then
            ((++still >= 10)) && break
        else
            still=0
        fi
        last=$have
        sleep 1
    done
    c2=$(cpu_ticks "$peer_pid")
    have=$(($(count_topic "$topic") - 1))
    printf 'PEER name=%s version=%s durable=%s rps=%s p99_us=%s cpu_us_per_req=%s cpu_load_us_per_req=%s delivered=%s sent=%s errors=%s\n' \
        "$name" "$version" "$durable" "${rps:-0}" "${p99:-0}" "$(us_per $((c2 - c0)) "$sent")" \
        "$(us_per $((c1 - c0)) "$sent")" "$have" "$sent" "$errors"
    if ((have < sent)); then
        note "$name answered $sent requests but delivered $have to Kafka"
    fi
}

new_topic() { # new_topic NAME -> a fresh topic, created by one warm-up message
    local t=relay-bench-peer.$1.$$.$RANDOM
    echo warmup | kcat -b "$BROKERS" -P -t "$t" 2>/dev/null || die "cannot produce to $BROKERS"
    printf '%s\n' "$t"
}

run_fluentbit() {
    local port topic
    port=$(freeport "${BROKERS##*:}") topic=$(new_topic fluentbit)
    FLB_PORT=$port FLB_BROKERS=$BROKERS FLB_TOPIC=$topic \
        start_peer "$port" "$FLB_BIN" -c "$PEERS_DIR/fluentbit/fluent-bit.conf"
    measure fluentbit "$FLB_VERSION" no "$port" "$ROOT/bench/timely_unique.lua" "$topic"
    stop_peer
}

run_otelcol() { # run_otelcol memory|file
    local kind=$1 port topic durable=no
    port=$(freeport "${BROKERS##*:}") topic=$(new_topic "otelcol-$kind")
    mkdir -p "$tmp/otel-storage"
    [[ $kind == file ]] && durable=yes
    OTEL_PORT=$port OTEL_BROKERS=$BROKERS OTEL_TOPIC=$topic OTEL_STORAGE_DIR=$tmp/otel-storage \
        start_peer "$port" "$OTEL_BIN" --config "$PEERS_DIR/otelcol/config-$kind.yaml"
    measure "otelcol-$kind" "$OTEL_VERSION" "$durable" "$port" "$PEERS_DIR/otelcol/otlp_timely_unique.lua" "$topic"
    stop_peer
    rm -rf "$tmp/otel-storage"
}

run() {
    BROKERS=${1:-${BENCH_BROKERS:-}}
    [[ -n $BROKERS ]] || die "no Kafka broker: give BROKERS as an argument or in BENCH_BROKERS"
    command -v wrk >/dev/null || die "wrk not found"
    command -v kcat >/dev/null || die "kcat not found"
    build
    tmp=$(mktemp -d /tmp/relay-peers.XXXXXX)
    if wanted fluentbit; then run_fluentbit; fi
    if wanted otelcol-memory; then run_otelcol memory; fi
    if wanted otelcol-file; then run_otelcol file; fi
}

case ${1:-run} in
build)
    (($# == 1)) || die "usage: ${0##*/} build"
    build
    ;;
built)
    ! need_flb && ! need_otel
    ;;
run)
    (($# <= 2)) || die "usage: ${0##*/} [run] [BROKERS]"
    run "${2:-}"
    ;;
*)
    (($# == 1)) || die "usage: ${0##*/} build | built | [run] [BROKERS]"
    run "$1"
    ;;
esac
