#!/usr/bin/env bash
# redis.sh: a throwaway Redis for tests and `make run`.
#   redis.sh start DIR PORT   redis-server on 127.0.0.1:PORT with its files in DIR
#   redis.sh stop DIR         SIGTERM (Redis saves DIR/dump.rdb), SIGKILL after 10 s
#   redis.sh kill DIR         SIGKILL (crash, for fault tests)
# A DIR that was used before keeps its data (dump.rdb) across stop/start, the
# same as tools/kafka.sh does, so a fault test can restart "the same" Redis.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    echo "usage: ${0##*/} start DIR PORT | stop DIR | kill DIR" >&2
    exit 2
}

cmd_start() {
    local dir=$1 port=$2 i
    check_port "$port"
    command -v redis-server >/dev/null || die "redis-server not found: run tools/deps.sh"
    command -v redis-cli >/dev/null || die "redis-cli not found: run tools/deps.sh"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if pid_alive "$dir/redis.pid" redis-server; then
        die "a Redis from $dir is already running (pid $(<"$dir/redis.pid"))"
    fi
    rm -f "$dir/redis.pid"
    port_in_use "$port" listen && die "port $port is already in use"
    # Everything on the command line, no config file: nothing in /etc/redis is
    # read, so a system Redis's settings never leak in. protected-mode stays on
    # (we bind to loopback only). appendonly no: tests want speed, not
    # durability; RDB snapshots stay at their defaults so that a stop/start
    # keeps the streams, like a real restart would.
    local out
    out=$(redis-server \
        --bind 127.0.0.1 \
        --port "$port" \
        --dir "$dir" \
        --appendonly no \
        --daemonize yes \
        --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" \
        --loglevel notice \
        2>&1 </dev/null) || die "redis-server failed to start: $out"
    echo "$port" >"$dir/redis.port"
    # Wait up to 10 s: Redis is usually up within a few milliseconds, but a
    # dump.rdb from a previous run may take a moment to load.
    for ((i = 0; i < 100; i++)); do
        if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$dir/redis.log" >&2
    die "Redis on 127.0.0.1:$port did not answer PING within 10 s"
}

(($# >= 1)) || usage
case $1 in
start)
    (($# == 3)) || usage
    cmd_start "$2" "$3"
    ;;
stop)
    (($# == 2)) || usage
    stop_pidfile "$2/redis.pid" redis-server 10 redis-server
    ;;
kill)
    (($# == 2)) || usage
    kill_pidfile "$2/redis.pid" redis-server
    ;;
*) usage ;;
esac
