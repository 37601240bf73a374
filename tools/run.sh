#!/usr/bin/env bash
# run.sh RELAY_BIN [RELAY_ARGS...]: what `make run` does after building.
# Starts Redis on 6379 and Kafka on 9092 (the ports the shipped relay.conf
# uses) in a throwaway directory .run/, prints how to send a webhook and how
# to watch what comes out, then runs relay in the foreground. Ctrl-C stops
# relay first (so that it can flush to Kafka and Redis), then Kafka and Redis,
# and removes .run/.
#
# Environment:
#   RELAY_CONF              config file (default relay.conf in the repository)
#   RELAY_RUN_REDIS_PORT    Redis port instead of 6379 (passed to relay as
#   RELAY_RUN_KAFKA_PORT    RELAY_REDIS_URL / RELAY_KAFKA_BROKERS), e.g. when a
#                           system Redis already holds 6379
set -euo pipefail
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(dirname "$TOOLS")
# shellcheck source=SCRIPTDIR/lib.sh
. "$TOOLS/lib.sh"

(($# >= 1)) || { echo "usage: ${0##*/} RELAY_BIN [ARGS...]" >&2; exit 2; }
relay_bin=$1
shift
[[ $relay_bin == /* ]] || relay_bin=$PWD/$relay_bin
cd "$ROOT"
[[ -x $relay_bin ]] || die "$relay_bin is not an executable; run make first"
conf=${RELAY_CONF:-relay.conf}
[[ -f $conf ]] || die "$conf not found (relay runs as: $relay_bin -c $conf)"

redis_port=${RELAY_RUN_REDIS_PORT:-6379}
kafka_port=${RELAY_RUN_KAFKA_PORT:-9092}
http_port=8080 # relay.conf's [http] listen
check_port "$redis_port"
check_port "$kafka_port"

# One `make run` per work tree: a second one would stop the first one's
# services when it clears .run/. The lock is on the repository directory,
# which outlives .run/; services and relay get the descriptor closed (9>&-)
# so that a leftover broker never holds it.
exec 9<"$ROOT"
flock -n 9 || die "another make run is already running in $ROOT"

RUN_DIR=$ROOT/.run
# A run that was killed (kill -9, a closed terminal) may have left its
# services running from .run/: stop them before clearing it.
if [[ -d $RUN_DIR ]]; then
    "$TOOLS/kafka.sh" stop "$RUN_DIR/kafka" 9>&-
    "$TOOLS/redis.sh" stop "$RUN_DIR/redis" 9>&-
    rm -rf "$RUN_DIR"
fi

# Refuse rather than silently use (or fight with) someone else's server.
busy() {
    local name=$1 port=$2 hint=$3
    port_in_use "$port" listen || return 0
    die "port $port ($name) is already in use. Stop whatever listens there${hint:+ ($hint)}, or pick another port."
}
busy Redis "$redis_port" "a system Redis: sudo systemctl stop redis-server; or RELAY_RUN_REDIS_PORT=6380 make run"
busy Kafka "$kafka_port" "or RELAY_RUN_KAFKA_PORT=9093 make run"
busy relay "$http_port" "another relay?"

mkdir -p "$RUN_DIR/wal"
relay_pid=
watchdog_pid=
stopping=0

# shellcheck disable=SC2317  # called from traps, not unreachable
cleanup() {
    local rc=$?
    # Clean up as much as possible whatever fails on the way.
    set +e
    trap - INT TERM HUP
    [[ -n $watchdog_pid ]] && kill "$watchdog_pid" 2>/dev/null
    if [[ -n $relay_pid ]] && kill -0 "$relay_pid" 2>/dev/null; then
        kill -TERM "$relay_pid" 2>/dev/null || true
        wait "$relay_pid" 2>/dev/null || true
    fi
    echo "run.sh: stopping Kafka and Redis" >&2
    "$TOOLS/kafka.sh" stop "$RUN_DIR/kafka" 9>&- || true
    "$TOOLS/redis.sh" stop "$RUN_DIR/redis" 9>&- || true
    rm -rf "$RUN_DIR"
    exit "$rc"
}
trap cleanup EXIT

# First Ctrl-C (or SIGTERM): ask relay to stop and let it finish; a second
# one, or 30 s without exiting, kills it.
# shellcheck disable=SC2317
on_signal() {
    [[ -n $relay_pid ]] || exit 130
    if ((stopping)); then
        echo "run.sh: killing relay" >&2
        kill -KILL "$relay_pid" 2>/dev/null || true
        # An explicit status: a bare `return` in a trap handler returns that
        # of the command the trap interrupted (wait: 130), and set -e exits.
        return 0
    fi
    stopping=1
    echo "run.sh: stopping relay (Ctrl-C again to kill it)" >&2
    kill -TERM "$relay_pid" 2>/dev/null || true
    (
        sleep 30
        kill -KILL "$relay_pid" 2>/dev/null
    ) 9>&- &
    watchdog_pid=$!
    return 0
}
trap on_signal INT TERM HUP

echo "run.sh: starting Redis on 127.0.0.1:$redis_port and Kafka on 127.0.0.1:$kafka_port in $RUN_DIR" >&2
"$TOOLS/redis.sh" start "$RUN_DIR/redis" "$redis_port" 9>&-
"$TOOLS/kafka.sh" start "$RUN_DIR/kafka" "$kafka_port" 9>&-

export RELAY_WAL_DIR=$RUN_DIR/wal
[[ $redis_port == 6379 ]] || export RELAY_REDIS_URL=redis://127.0.0.1:$redis_port
[[ $kafka_port == 9092 ]] || export RELAY_KAFKA_BROKERS=127.0.0.1:$kafka_port

cat <<EOF

relay is starting on http://127.0.0.1:$http_port (config $conf, WAL in $RELAY_WAL_DIR).

Send a Timely.ai event:
  curl -i http://127.0.0.1:$http_port/v1/webhooks/timely \\
    -H 'Content-Type: application/json' \\
    -d '{"event":"channel.connected","event_id":"evt_01HX8A1K9MFQR4YZDNV7P9WCE","timestamp":"2026-04-19T10:00:00Z","workspace_id":"ws_abc123","data":{"channel_id":"chan_789","channel_type":"whatsapp","channel_name":"Suporte WhatsApp","phone_number":"+5547988543326","provider":"waba","status":"connected","connected_by":"usr_321","connected_at":"2026-04-19T10:00:00Z"}}'

Send a Whapi.Cloud message:
  curl -i http://127.0.0.1:$http_port/v1/webhooks/whapi \\
    -H 'Content-Type: application/json' \\
    -d '{"messages":[{"id":"PsobWy36679._7w-wKmB9tMeGQ","from_me":false,"type":"text","chat_id":"919984351847@s.whatsapp.net","timestamp":1712995245,"source":"mobile","text":{"body":"Hello"},"from":"919984351847","from_name":"Gerald"}],"event":{"type":"messages","event":"post"},"channel_id":"MANTIS-M72HC"}'

Watch Kafka (key, headers, value):
  kcat -b 127.0.0.1:$kafka_port -C -t events.channel -f '%k %h %s\n'
  kcat -b 127.0.0.1:$kafka_port -C -t events.message -f '%k %h %s\n'
Watch Redis:
  redis-cli -p $redis_port --scan --pattern 'events:*'
  redis-cli -p $redis_port XREAD BLOCK 0 STREAMS events:chan_789 0
  redis-cli -p $redis_port XREAD BLOCK 0 STREAMS events:MANTIS-M72HC 0

Ctrl-C stops relay, Kafka and Redis.

EOF

# relay runs in its own session (setsid) so that Ctrl-C reaches this script
# only, which then stops relay once, cleanly, before Kafka and Redis go away.
# Its output still goes to this terminal.
setsid "$relay_bin" -c "$conf" "$@" 9>&- &
relay_pid=$!
rc=0
# `wait` returns early when a trapped signal arrives; loop until relay is gone
# and keep its real exit status.
while kill -0 "$relay_pid" 2>/dev/null; do
    rc=0
    wait "$relay_pid" || rc=$?
done
relay_pid=
if ((stopping)); then
    # Stopped by us: a clean stop is a success whatever signal it took.
    exit 0
fi
echo "run.sh: relay exited with status $rc" >&2
exit "$rc"
