#!/usr/bin/env bash
# bench/run.sh -- what `make bench` runs: relay against its ceiling, with real
# Redis and Kafka on this machine, the same load generator (wrk + bench/mix.lua),
# payloads and connections for both, and a table of medians at the end.
#
# Environment: BENCH_RUNS (3), BENCH_SECONDS (10, per load phase), BENCH_CONNS (64),
#              BENCH_REPLAY_EVENTS (1000000), BENCH_KEEP=1 keeps the scratch dir,
#              BENCH_PEERS (1: measure the peers of bench/peers.sh in each run,
#              building them first if need be; 0: not; unset: when already built).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
TOOLS=$ROOT/tools
# shellcheck source=SCRIPTDIR/../tools/lib.sh
. "$TOOLS/lib.sh"
BIN=$ROOT/build
RUNS=${BENCH_RUNS:-3}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-64}
REPLAY=${BENCH_REPLAY_EVENTS:-1000000}

# The peers (Fluent Bit, the OpenTelemetry Collector): by default only when
# bench/peers.sh has built them already, since a first build takes about
# 5 minutes of both cores (docs/performance.md, "Beside the peers"); built here,
# before Kafka and Redis start, so that a failed build stops the bench at once.
case ${BENCH_PEERS:-} in
1) peers=1 ;;
0) peers=0 ;;
*)
    if "$ROOT/bench/peers.sh" built; then
        peers=1
    else
        peers=0
        echo "bench: the peers are not built (bench/peers.sh build, or BENCH_PEERS=1): skipping them" >&2
    fi
    ;;
esac
((peers)) && "$ROOT/bench/peers.sh" build

tmp=$(mktemp -d /tmp/relay-bench.XXXXXX)
relay_pid='' ceiling_pid=''
cleanup() {
    [[ -n $relay_pid ]] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
    [[ -n $ceiling_pid ]] && kill "$ceiling_pid" 2>/dev/null && wait "$ceiling_pid" 2>/dev/null
    "$TOOLS/kafka.sh" stop "$tmp/kafka" >/dev/null 2>&1 || true
    "$TOOLS/redis.sh" stop "$tmp/redis" >/dev/null 2>&1 || true
    [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_port=$(freeport) && kafka_port=$(freeport "$redis_port")
"$TOOLS/redis.sh" start "$tmp/redis" "$redis_port" >/dev/null
# No RDB snapshots during the runs: at these rates Redis would fork and write its
# dataset every minute (save 60 10000), and that stall on the shared cores would
# be measured as relay's latency.
redis-cli -p "$redis_port" config set save "" >/dev/null
"$TOOLS/kafka.sh" start "$tmp/kafka" "$kafka_port" >/dev/null
brokers=127.0.0.1:$kafka_port
kafka_pid=$(<"$tmp/kafka/kafka.pid") redis_pid=$(<"$tmp/redis/redis.pid")
# Create the topics up front so that no run pays for auto-creation.
for t in events.message events.channel events.other; do
    echo warmup | kcat -b "$brokers" -P -t "$t" 2>/dev/null
done

metric() { # metric PORT REGEX -> sum of matching series
    curl -s "http://127.0.0.1:$1/metrics" | awk -v re="$2" '$0 !~ /^#/ && $1 ~ re { s += $2 } END { printf "%d\n", s }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
pct() { awk -v t="$1" -v s="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", 100 * t / hz / s }'; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
wrk_us() { # wrk_us 1.23ms -> 1230 (wrk --latency's units)
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        printf "%.0f", n * ((u == "us") ? 1 : (u == "ms") ? 1e3 : (u == "s") ? 1e6 : 0) }'
}
wrk_mix() { # wrk_mix PORT PREFIX DELAY_MS -> RESULT line
    BENCH_PATH_PREFIX=$2 BENCH_DELAY_MS=$3 wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s \
        -s "$ROOT/bench/mix.lua" "http://127.0.0.1:$1" | grep '^RESULT'
}

start_relay() { # start_relay WAL_DIR [ENV=VALUE...] -> sets relay_pid, relay_port
    local dir=$1
    shift
    relay_port=$(freeport)
    env "$@" RELAY_HTTP_LISTEN="127.0.0.1:$relay_port" RELAY_WAL_DIR="$dir" RELAY_WAL_MAX_SIZE=16g \
        RELAY_KAFKA_BROKERS="$brokers" RELAY_REDIS_URL="redis://127.0.0.1:$redis_port/0" \
        RELAY_LOG_LEVEL=warn "$BIN/relay" -c "$ROOT/relay.conf" 2>>"$tmp/relay.log" &
    relay_pid=$!
    local want='kafka:up redis:up'
    [[ " $* " == *" RELAY_KAFKA_ENABLED=false "* ]] && want='wal:ok'
    for _ in $(seq 200); do
        [[ $(curl -sf "http://127.0.0.1:$relay_port/readyz" 2>/dev/null) == *"$want"* ]] && return 0
        sleep 0.1
    done
    echo "bench: relay did not become ready" >&2
    tail -20 "$tmp/relay.log" >&2
    exit 1
}
stop_relay() { kill "$relay_pid"; wait "$relay_pid" || true; relay_pid=; }
# drained_cpu -> relay's CPU ticks once both sinks have published everything
# (at most 60 s after the load): what an event costs relay includes its sink
# threads' work, which goes on after the load stops.
drained_cpu() {
    for _ in $(seq 1200); do
        [[ $(metric "$relay_port" '^relay_sink_lag_events') == 0 ]] && break
        sleep 0.05
    done
    cpu_ticks "$relay_pid"
}
us_per() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", n ? t / hz / n * 1e6 : 0 }'; }

declare -A R # R[name,run] = value
for run in $(seq "$RUNS"); do
    # 1. The ceiling: same load, a server that answers 200 at once.
    cport=$(freeport)
    "$BIN/bench/ceiling" "$cport" 2 & ceiling_pid=$!
    sleep 0.3
    res=$(wrk_mix "$cport" /ceiling/ 0)
    kill "$ceiling_pid"; wait "$ceiling_pid" || true; ceiling_pid=
    R[ceil_rps,$run]=$(field "$res" rps)
    R[ceil_eps,$run]=$(field "$res" eps)

    # 2. relay at saturation, both sinks live; the CPU of relay, the Kafka broker
    #    and Redis over the run (the rest of the two cores is wrk and the kernel).
    start_relay "$tmp/wal-$run"
    e0=$(metric "$relay_port" '^relay_events_(accepted|duplicate)_total')
    c0=$(cpu_ticks "$relay_pid") k0=$(cpu_ticks "$kafka_pid") r0=$(cpu_ticks "$redis_pid")
    res=$(wrk_mix "$relay_port" /v1/webhooks/ 0)
    c1=$(cpu_ticks "$relay_pid") k1=$(cpu_ticks "$kafka_pid") r1=$(cpu_ticks "$redis_pid")
    e1=$(metric "$relay_port" '^relay_events_(accepted|duplicate)_total')
    # Did the sinks keep up? Their lag the moment the load stops, in events.
    R[sat_lag,$run]=$(metric "$relay_port" '^relay_sink_lag_events\{sink="(kafka|redis)"\}')
    secs=$(field "$res" seconds)
    R[rps,$run]=$(field "$res" rps)
    R[eps,$run]=$(awk -v e=$((e1 - e0)) -v s="$secs" 'BEGIN { printf "%.1f", e / s }')
    R[errors,$run]=$(field "$res" errors)
    R[cpu,$run]=$(pct $((c1 - c0)) "$secs")
    R[kcpu,$run]=$(pct $((k1 - k0)) "$secs")
    R[rcpu,$run]=$(pct $((r1 - r0)) "$secs")
    R[ratio,$run]=$(awk -v a="${R[rps,$run]}" -v b="${R[ceil_rps,$run]}" 'BEGIN { printf "%.3f", a / b }')
    R[rss_sat,$run]=$(rss_kib "$relay_pid")
    R[us_event,$run]=$(us_per $(($(drained_cpu) - c0)) $((e1 - e0)))

    # 3. Half the saturation rate: ack latency, end-to-end latency, RSS.
    delay=$(awk -v c="$CONNS" -v r="${R[rps,$run]}" 'BEGIN { d = c / (0.5 * r) * 1000; printf "%d", d < 1 ? 1 : d }')
    "$BIN/bench/e2e" "$brokers" events.message,events.channel "$redis_port" \
        'events:chan_,events:WHAPI-' $((SECS + 3)) >"$tmp/e2e.out" 2>>"$tmp/e2e.err" &
    e2e_pid=$!
    for _ in $(seq 300); do grep -q READY "$tmp/e2e.out" && break; sleep 0.1; done
    res=$(wrk_mix "$relay_port" /v1/webhooks/ "$delay")
    R[half_rps,$run]=$(field "$res" rps)
    R[p50,$run]=$(field "$res" p50_us)
    R[p99,$run]=$(field "$res" p99_us)
    R[p999,$run]=$(field "$res" p999_us)
    R[rss,$run]=$(rss_kib "$relay_pid")
    wait "$e2e_pid" || true
    R[k50,$run]=$(sed -n 's/.*sink=kafka .*p50_ms=\([^ ]*\).*/\1/p' "$tmp/e2e.out")
    R[k99,$run]=$(sed -n 's/.*sink=kafka .*p99_ms=\([^ ]*\).*/\1/p' "$tmp/e2e.out")
    R[r50,$run]=$(sed -n 's/.*sink=redis .*p50_ms=\([^ ]*\).*/\1/p' "$tmp/e2e.out")
    R[r99,$run]=$(sed -n 's/.*sink=redis .*p99_ms=\([^ ]*\).*/\1/p' "$tmp/e2e.out")
    R[dedup_mib,$run]=$(awk -v m="$(metric "$relay_port" '^relay_dedup_memory_bytes$')" 'BEGIN { printf "%.1f", m / 1048576 }')
    R[dedup_bytes,$run]=$(awk -v m="$(metric "$relay_port" '^relay_dedup_memory_bytes$')" \
        -v n="$(metric "$relay_port" '^relay_dedup_entries$')" 'BEGIN { printf "%.1f", n ? m / n : 0 }')
    stop_relay
    rm -rf "$tmp/wal-$run"

    # 4. relay with both sinks disabled (fsync on), the same load: what decoding,
    #    dedup and the WAL cost without Kafka and Redis on the same cores.
    start_relay "$tmp/wal-$run" RELAY_KAFKA_ENABLED=false RELAY_REDIS_ENABLED=false
    res=$(wrk_mix "$relay_port" /v1/webhooks/ 0)
    R[nosink_rps,$run]=$(field "$res" rps)
    R[nosink_ratio,$run]=$(awk -v a="${R[nosink_rps,$run]}" -v b="${R[ceil_rps,$run]}" 'BEGIN { printf "%.3f", a / b }')
    stop_relay
    rm -rf "$tmp/wal-$run"

    # 5. Timely singles (one event per request, each new), both sinks: relay's
    #    own CPU per event, its sink threads' included.
    start_relay "$tmp/wal-$run"
    e0=$(metric "$relay_port" '^relay_events_accepted_total')
    c0=$(cpu_ticks "$relay_pid")
    res=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 10s --latency -s "$ROOT/bench/timely_unique.lua" \
        "http://127.0.0.1:$relay_port")
    e1=$(metric "$relay_port" '^relay_events_accepted_total')
    R[timely_rps,$run]=$(awk '/^Requests\/sec/ { print $2 }' <<<"$res")
    R[timely_p99,$run]=$(wrk_us "$(awk '$1 == "99%" { print $2 }' <<<"$res")")
    R[timely_us,$run]=$(us_per $(($(drained_cpu) - c0)) $((e1 - e0)))
    stop_relay
    rm -rf "$tmp/wal-$run"

    # 6. The peers on the same Timely-singles load, writing to the same broker
    #    (bench/peers.sh): requests/s, p99, their CPU per request until
    #    delivered, and how many of the answered events reached Kafka.
    if ((peers)); then
        out=$(BENCH_SECONDS=$SECS BENCH_CONNS=$CONNS "$ROOT/bench/peers.sh" run "$brokers")
        best=0
        for p in fluentbit otelcol-memory otelcol-file; do
            line=$(grep "^PEER name=$p " <<<"$out") || line=
            for k in version rps p99_us cpu_us_per_req delivered sent; do
                R[$p.$k,$run]=$(field "$line" "$k")
            done
            if [[ $(field "$line" durable) == no ]]; then
                best=$(awk -v a="$best" -v b="$(field "$line" rps)" 'BEGIN { print (b > a) ? b : a }')
            fi
        done
        R[peer_ratio,$run]=$(awk -v a="${R[timely_rps,$run]}" -v b="$best" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
    fi
    echo "bench: run $run: ceiling ${R[ceil_rps,$run]} req/s, relay ${R[rps,$run]} req/s" \
         "(${R[eps,$run]} events/s, ratio ${R[ratio,$run]}), ack p99 ${R[p99,$run]} us," \
         "e2e p99 kafka ${R[k99,$run]} ms redis ${R[r99,$run]} ms, RSS ${R[rss,$run]} KiB" >&2
done

# 5. Replay: REPLAY events queued in the WAL, relay restarted, time until both
#    sinks have caught up.
"$BIN/bench/walgen" "$ROOT/relay.conf" "$tmp/replay" "$REPLAY" >/dev/null
for run in $(seq "$RUNS"); do
    rm -rf "$tmp/replay-$run" && cp -r "$tmp/replay" "$tmp/replay-$run"
    k0=$(cpu_ticks "$kafka_pid") r0=$(cpu_ticks "$redis_pid")
    t0=$(date +%s.%N)
    start_relay "$tmp/replay-$run"
    while :; do
        lag=$(metric "$relay_port" '^relay_sink_lag_events')
        [[ $lag == 0 ]] && break
        sleep 0.05
    done
    t1=$(date +%s.%N)
    R[replay,$run]=$(awk -v n="$REPLAY" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    # What publishing one event costs the machine, whoever pays: relay's sink
    # threads (its own and librdkafka's), the broker and Redis, over the replay.
    k1=$(cpu_ticks "$kafka_pid") r1=$(cpu_ticks "$redis_pid")
    s1=$(cat /proc/"$relay_pid"/task/*/stat 2>/dev/null |
        awk '$2 ~ /^\((rl-kafka|rl-redis|rdk:)/ { s += $14 + $15 } END { print s + 0 }')
    R[pubus,$run]=$(awk -v t=$((s1 + k1 - k0 + r1 - r0)) -v n="$REPLAY" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
    stop_relay
    rm -rf "$tmp/replay-$run"
    echo "bench: replay run $run: ${R[replay,$run]} events/s" >&2
done

# 6. Instructions per request (deterministic: one run is enough).
cg=$("$ROOT/bench/callgrind.sh")
cg_timely=$(sed -n 's/.*kind=timely .*ir_per_request=\([0-9]*\).*/\1/p' <<<"$cg")
cg_whapi=$(sed -n 's/.*kind=whapi .*ir_per_request=\([0-9]*\).*/\1/p' <<<"$cg")

median() { # median NAME
    for run in $(seq "$RUNS"); do echo "${R[$1,$run]:-0}"; done | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
all() { for run in $(seq "$RUNS"); do printf '%s ' "${R[$1,$run]:-?}"; done; }

peer_rows=
if ((peers)); then
    peer_row() { # peer_row NAME LABEL
        local v=${R[$1.version,1]:-?}
        printf '| %s %s: requests/s / p99 (us) / CPU per request until delivered (us) | %s / %s / %s | %s | |\n' \
            "$2" "$v" "$(median "$1.rps")" "$(median "$1.p99_us")" "$(median "$1.cpu_us_per_req")" "$(all "$1.rps")"
    }
    peer_rows=$(
        peer_row fluentbit "Fluent Bit (in_http -> out_kafka, memory buffer, not durable)"
        peer_row otelcol-memory "OTel Collector (memory queue, not durable)"
        peer_row otelcol-file "OTel Collector (file queue, fsync, durable)"
        printf '| peers: events delivered to Kafka / answered, per run (Fluent Bit; OTel memory; OTel file) | | %s| |\n' \
            "$(for run in $(seq "$RUNS"); do
                for p in fluentbit otelcol-memory otelcol-file; do
                    printf '%s/%s' "${R[$p.delivered,$run]:-?}" "${R[$p.sent,$run]:-?}"
                    [[ $p == otelcol-file ]] && printf ' ' || printf '; '
                done
            done)"
        printf '| relay Timely singles / best in-memory peer (same run), requests/s | %s | %s | |\n' \
            "$(median peer_ratio)" "$(all peer_ratio)"
    )
    peer_rows=$'\n'$peer_rows
fi

cat <<EOF

relay benchmark: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
load: wrk -t2 -c$CONNS, ${SECS}s per phase, bench/mix.lua (Timely singles + Whapi batches of 1-20, 5% retries); medians of $RUNS runs

| measure | median | runs | target |
| --- | --- | --- | --- |
| ceiling (bench/ceiling.c) requests/s | $(median ceil_rps) | $(all ceil_rps) | |
| relay requests/s at saturation | $(median rps) | $(all rps) | |
| relay events/s at saturation | $(median eps) | $(all eps) | |
| relay / ceiling (same run) | $(median ratio) | $(all ratio) | |
| ack latency p50 / p99 / p99.9 at 50% (us) | $(median p50) / $(median p99) / $(median p999) | $(all p99) | p99 <= 5000 |
| end-to-end p50 / p99 Kafka (ms) | $(median k50) / $(median k99) | $(all k99) | p99 <= 20 |
| end-to-end p50 / p99 Redis (ms) | $(median r50) / $(median r99) | $(all r99) | p99 <= 20 |
| relay RSS at 50% load / saturation (MiB) | $(awk -v k="$(median rss)" 'BEGIN { printf "%.1f", k / 1024 }') / $(awk -v k="$(median rss_sat)" 'BEGIN { printf "%.1f", k / 1024 }') | $(all rss) | <= 64 |
| of which the dedup window (ids of both phases) at 50% load (MiB) | $(median dedup_mib) | $(all dedup_mib) | |
| CPU at saturation, % of one core: relay / Kafka broker / Redis | $(median cpu) / $(median kcpu) / $(median rcpu) | $(all cpu) | |
| sink lag when the saturation load stops, Kafka + Redis (events) | $(median sat_lag) | $(all sat_lag) | |
| relay CPU per event, mix, both sinks, until published (us) | $(median us_event) | $(all us_event) | <= 8 |
| Timely singles, both sinks: requests/s | $(median timely_rps) | $(all timely_rps) | |
| Timely singles, both sinks: ack p99 at saturation (us) | $(median timely_p99) | $(all timely_p99) | |
| relay CPU per event, Timely singles, both sinks, until published (us) | $(median timely_us) | $(all timely_us) | <= 15 |$peer_rows
| relay instructions per request, callgrind, no sinks, no fsync: Timely single / Whapi batch of 10 | $cg_timely / $cg_whapi | | |
| relay without sinks, fsync on, requests/s (ratio to the ceiling) | $(median nosink_rps) ($(median nosink_ratio)) | $(all nosink_ratio) | ratio >= 0.5 |
| WAL replay, $REPLAY events, both sinks (events/s) | $(median replay) | $(all replay) | >= 300000 |
| publishing cost per event during replay: CPU of relay's sink threads + broker + Redis (us) | $(median pubus) | $(all pubus) | |
| cores publishing alone would take at 0.5 x the ceiling's events/s | $(awk -v u="$(median pubus)" -v e="$(median ceil_eps)" 'BEGIN { printf "%.2f", u * 0.5 * e / 1e6 }') | | |
| dedup bytes per remembered id | $(median dedup_bytes) | $(all dedup_bytes) | <= 40 |
| HTTP errors during relay runs | $(median errors) | $(all errors) | 0 |
EOF
