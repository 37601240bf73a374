#!/usr/bin/env bash
# docker-test.sh: what `make docker-test` checks (CI runs it after make test).
# The container image of docker/Dockerfile, built and run for real, on a
# machine with no image registry:
#   1. installs what is missing (docker.io for dockerd, debootstrap), and starts
#      a dockerd of its own when none answers (stopped again at exit; no
#      iptables rules, no bridge: every container here uses --network host);
#   2. makes the base image with debootstrap --variant=minbase bookworm and
#      docker import, once (kept as $RELAY_DOCKER_BASE), and checks that the
#      engine runs a container at all;
#   3. builds relay's image on it (--build-arg BASE=...), checks its metadata
#      (user, volume, stop signal, health check) and its default config;
#   4. starts Redis and Kafka on free ports (tools/redis.sh, tools/kafka.sh),
#      runs the image against them on a fresh named volume, waits for the
#      image's own HEALTHCHECK to say healthy, posts a Timely and a Whapi event
#      and reads them back from Kafka (kcat) and Redis (XRANGE);
#   5. stops Redis, posts a third event, and docker stop: relay spends its
#      shutdown grace on Redis and still exits 0 within the stop timeout;
#   6. a new container on the same volume (Redis back): it replays the third
#      event into Redis; the three events posted again are answered as
#      duplicates and not published again; a fourth is published once;
#   7. runs systemd/relay.service, as make install puts it, under systemd as
#      PID 1 in a container: active (Type=notify), unprivileged, seccomp, the
#      pipeline works, systemctl stop exits 0, a restart drops the retry;
#   8. validates docker/compose.yaml (docker compose or docker-compose config).
# It removes its containers and volume and stops only what it started.
#
# Environment:
#   RELAY_DOCKER_BASE        base image name (default relay-base:bookworm-minbase)
#   RELAY_DOCKER_IMAGE       relay's image tag (default relay:docker-test)
#   RELAY_DEBIAN_MIRROR      debootstrap mirror (default http://deb.debian.org/debian)
#   RELAY_DOCKER_DATA_ROOT   data root of a dockerd this script starts (default
#                            /var/lib/relay-docker-test: the base image and the
#                            build cache are kept there between runs)
#   RELAY_DOCKER_KEEP=1      keep the temporary directory (logs) for a post-mortem
set -euo pipefail
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(dirname "$TOOLS")
# shellcheck source=SCRIPTDIR/lib.sh
. "$TOOLS/lib.sh"
cd "$ROOT"

BASE_IMAGE=${RELAY_DOCKER_BASE:-relay-base:bookworm-minbase}
IMAGE=${RELAY_DOCKER_IMAGE:-relay:docker-test}
MIRROR=${RELAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DATA_ROOT=${RELAY_DOCKER_DATA_ROOT:-/var/lib/relay-docker-test}
# A dockerd of ours: its socket, pid file and state under /run (short paths:
# a unix socket path is limited to 108 bytes).
DRUN=/run/relay-docker-test
STOP_TIMEOUT=15 # docker stop -t: over http.shutdown_grace (5 s), as docs/deployment.md says
t_start=$SECONDS

# Every docker object of this run has this prefix; cleanup removes them.
NAME=relay-docker-test-$$
VOLUME=$NAME-wal
TMP=$(mktemp -d "${TMPDIR:-/tmp}/relay-docker-test.XXXXXX")
started_dockerd=0
services_up=0
containers=()
volume_made=0

fail() {
    printf '%s: FAIL: %s\n' "${0##*/}" "$*" >&2
    exit 1
}
ok() {
    printf '%s: ok: %s\n' "${0##*/}" "$*" >&2
}

# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    local rc=$? c i pid
    set +e
    trap - INT TERM HUP
    if ((rc != 0)); then
        for c in "${containers[@]}"; do
            note "logs of $c:"
            docker logs --tail 30 "$c" 2>&1 | sed 's/^/    /' >&2
        done
    fi
    for c in "${containers[@]}"; do
        docker rm -f "$c" >/dev/null 2>&1
    done
    ((volume_made)) && docker volume rm "$VOLUME" >/dev/null
    if ((services_up)); then
        "$TOOLS/kafka.sh" stop "$TMP/kafka"
        "$TOOLS/redis.sh" stop "$TMP/redis"
    fi
    if ((started_dockerd)); then
        note "stopping the dockerd this test started"
        # dockerd writes its pid file without a newline: not for pid_alive.
        pid=$(cat "$DRUN/dockerd.pid" 2>/dev/null)
        if [[ $pid =~ ^[0-9]+$ ]] && grep -qa dockerd "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid"
            for ((i = 0; i < 300; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && { note "dockerd still running after 30 s: SIGKILL"; kill -KILL "$pid"; }
        fi
        # dockerd leaves its default network namespace mounted in its exec root.
        while read -r _ m _; do
            [[ $m == "$DRUN"/* ]] && "${sudo[@]}" umount "$m"
        done < <(tac /proc/mounts)
    fi
    if [[ ${RELAY_DOCKER_KEEP:-0} == 1 || $rc != 0 ]]; then
        note "kept $TMP (logs)"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ---- 1. packages and the engine
sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null || die "not root and no sudo: docker-test starts dockerd and installs packages"
    sudo=(sudo)
fi
"$TOOLS/deps.sh" # kcat, redis, java and the Kafka jars, curl
missing=()
# A docker client alone (e.g. a static one in /usr/local/bin) is no engine:
# what counts is dockerd. Debian's docker.io brings dockerd, containerd, runc.
command -v dockerd >/dev/null || pkg_installed docker.io || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# To validate docker/compose.yaml: Debian's docker-compose (1.29) when the
# client has no compose plugin.
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
    missing+=(docker-compose)
fi
if ((${#missing[@]})); then
    note "installing ${missing[*]}"
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
    if ! { "${sudo[@]}" "${apt[@]}" update -qq &&
        "${sudo[@]}" "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"; } \
        </dev/null >"$TMP/apt.log" 2>&1; then
        tail -n 20 "$TMP/apt.log" >&2
        die "apt-get install ${missing[*]} failed"
    fi
fi
command -v docker >/dev/null || die "no docker client after installing docker.io"

# An engine that answers already (DOCKER_HOST, the system's docker.service, a
# dockerd of an earlier run): use it, never stop it.
if docker info >/dev/null 2>&1; then
    note "using the running Docker engine ($(docker info -f '{{.ServerVersion}}' 2>/dev/null))"
else
    command -v dockerd >/dev/null || die "dockerd not found after installing docker.io"
    # One dockerd of ours at a time: a second docker-test waits for the first.
    "${sudo[@]}" mkdir -p "$DRUN"
    exec 8>"$DRUN/lock"
    flock -w 1800 8 || die "another docker-test holds $DRUN/lock"
    export DOCKER_HOST=unix://$DRUN/docker.sock
    if docker info >/dev/null 2>&1; then
        note "using the dockerd of another docker-test ($DRUN)"
    else
        note "starting dockerd (data root $DATA_ROOT, no iptables rules, no bridge)"
        # setsid: its own session, so that a Ctrl-C here does not reach it
        # before cleanup stops it. The lock is not passed on (8>&-).
        "${sudo[@]}" setsid dockerd \
            --host="$DOCKER_HOST" --pidfile="$DRUN/dockerd.pid" \
            --exec-root="$DRUN/exec" --data-root="$DATA_ROOT" \
            --iptables=false --ip6tables=false --bridge=none --ip-masq=false \
            >"$TMP/dockerd.log" 2>&1 </dev/null 8>&- &
        dockerd_pid=$!
        started_dockerd=1
        for ((i = 0; i < 600; i++)); do
            docker info >/dev/null 2>&1 && break
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.1
        done
        if ! docker info >/dev/null 2>&1; then
            tail -n 20 "$TMP/dockerd.log" >&2
            fail "the Docker engine cannot run on this machine: dockerd did not answer within 60 s (log above, $TMP/dockerd.log)"
        fi
        note "dockerd $(docker info -f '{{.ServerVersion}}') up, storage driver $(docker info -f '{{.Driver}}')"
    fi
fi

# ---- 2. the base image, once
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    note "base image $BASE_IMAGE exists: not rebuilt (docker rmi it to rebuild)"
else
    note "making $BASE_IMAGE: debootstrap --variant=minbase bookworm from $MIRROR"
    t0=$SECONDS
    rootfs=$TMP/rootfs
    "${sudo[@]}" debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 ||
        { tail -n 20 "$TMP/debootstrap.log" >&2; fail "debootstrap failed (is $MIRROR reachable?)"; }
    # What debian:bookworm-slim leaves out too: downloaded packages, package
    # lists and apt's caches (80 MB).
    "${sudo[@]}" rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/*
    "${sudo[@]}" tar -C "$rootfs" --numeric-owner -c . |
        docker import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    "${sudo[@]}" rm -rf "$rootfs"
    note "base image made in $((SECONDS - t0)) s: $(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | numfmt --to=si)B"
fi
if ! out=$(docker run --rm --network host "$BASE_IMAGE" true 2>&1); then
    fail "the Docker engine cannot run a container on this machine: docker run $BASE_IMAGE true: $out"
fi
ok "the engine runs containers ($BASE_IMAGE)"

# ---- 3. relay's image
note "building $IMAGE on $BASE_IMAGE"
t0=$SECONDS
# The legacy builder: docker.io's buildx is a separate package. The build
# stage's apt-get needs the network, which is the host's here.
DOCKER_BUILDKIT=0 docker build --network host --build-arg BASE="$BASE_IMAGE" \
    -f docker/Dockerfile -t "$IMAGE" . >"$TMP/build.log" 2>&1 ||
    { tail -n 30 "$TMP/build.log" >&2; fail "docker build failed ($TMP/build.log)"; }
build_s=$((SECONDS - t0))
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
base_size=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
note "image built in $build_s s: $(numfmt --to=si "$size")B, $(numfmt --to=si $((size - base_size)))B over the base"

meta=$(docker image inspect -f '{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.Volumes}}|{{json .Config.Healthcheck.Test}}' "$IMAGE")
IFS='|' read -r m_user m_stop m_vol m_health <<<"$meta"
[[ $m_user == relay ]] || fail "image user is '$m_user', not relay"
[[ $m_stop == SIGTERM ]] || fail "image stop signal is '$m_stop', not SIGTERM"
[[ $m_vol == *'"/var/lib/relay"'* ]] || fail "image volumes $m_vol lack /var/lib/relay"
[[ $m_health == *relay-healthcheck* ]] || fail "image health check is $m_health"
out=$(docker run --rm --network host "$IMAGE" --help)
grep -qF '(default /etc/relay/relay.conf)' <<<"$out" || fail "relay --help in the image: $(grep -- --config <<<"$out")"
out=$(docker run --rm --network host "$IMAGE" --check-config 2>&1) || fail "relay --check-config in the image: $out"
grep -qxF '# /etc/relay/relay.conf: OK' <<<"$out" || fail "the image's default config is not /etc/relay/relay.conf: $(head -n 1 <<<"$out")"
grep -Eq '^[[:space:]]*dir[[:space:]]*=[[:space:]]*/var/lib/relay/wal$' <<<"$out" || fail "the image's wal.dir is not /var/lib/relay/wal"
if out=$(docker run --rm --network host --entrypoint sh "$IMAGE" -c 'command -v cc gcc make pkg-config'); then
    fail "the run image has build tools: $out"
fi
ok "image: user relay, SIGTERM, volume /var/lib/relay, health check, /etc/relay/relay.conf by default, no compiler"

# ---- 4. Kafka, Redis, relay
redis_port=$(freeport)
kafka_port=$(freeport "$redis_port")
http_port=$(freeport "$redis_port" "$kafka_port")
services_up=1
"$TOOLS/redis.sh" start "$TMP/redis" "$redis_port"
"$TOOLS/kafka.sh" start "$TMP/kafka" "$kafka_port"
note "Redis on 127.0.0.1:$redis_port, Kafka on 127.0.0.1:$kafka_port, relay on 127.0.0.1:$http_port"
docker volume create "$VOLUME" >/dev/null
volume_made=1
url=http://127.0.0.1:$http_port

# start_relay N: container $NAME-N on the volume, host network, configured by
# RELAY_* variables over the image's /etc/relay/relay.conf. A 1 s health
# interval (the image says 10 s) so that the test need not wait; the command
# checked is the image's own.
start_relay() {
    local c=$NAME-$1 i status
    containers+=("$c")
    docker run -d --name "$c" --network host --stop-timeout "$STOP_TIMEOUT" \
        -v "$VOLUME:/var/lib/relay" \
        -e RELAY_HTTP_LISTEN="127.0.0.1:$http_port" \
        -e RELAY_KAFKA_BROKERS="127.0.0.1:$kafka_port" \
        -e RELAY_REDIS_URL="redis://127.0.0.1:$redis_port/0" \
        --health-interval 1s --health-start-period 30s \
        "$IMAGE" >/dev/null
    for ((i = 0; i < 60; i++)); do
        status=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$c")
        [[ $status == "running healthy" ]] && break
        [[ $status == running* ]] || fail "$c is $status"
        sleep 1
    done
    [[ $status == "running healthy" ]] || fail "$c not healthy after 60 s: $status"
    code=$(curl -s -o "$TMP/readyz" -w '%{http_code}' "$url/readyz")
    [[ $code == 200 ]] || fail "$c: GET /readyz: $code $(cat "$TMP/readyz")"
    ok "$c healthy (image HEALTHCHECK), /readyz 200"
}

# The README's examples.
timely_body='{"event":"channel.connected","event_id":"evt_01HX8A1K9MFQR4YZDNV7P9WCE","timestamp":"2026-04-19T10:00:00Z","workspace_id":"ws_abc123","data":{"channel_id":"chan_789","channel_type":"whatsapp","provider":"waba","status":"connected","connected_at":"2026-04-19T10:00:00Z"}}'
timely_id=evt_01HX8A1K9MFQR4YZDNV7P9WCE
whapi_body='{"messages":[{"id":"PsobWy36679._7w-wKmB9tMeGQ","from_me":false,"type":"text","chat_id":"919984351847@s.whatsapp.net","timestamp":1712995245,"source":"mobile","text":{"body":"Hello"},"from":"919984351847","from_name":"Gerald"}],"event":{"type":"messages","event":"post"},"channel_id":"MANTIS-M72HC"}'
# Posted while Redis is down, so that the first container stops with it
# unpublished and the second one replays it.
timely2_body='{"event":"channel.disconnected","event_id":"evt_01HX8A1K9MFQR4YZDNV7P9WCF","timestamp":"2026-04-19T11:00:00Z","workspace_id":"ws_abc123","data":{"channel_id":"chan_789","channel_type":"whatsapp","provider":"waba","status":"disconnected","disconnected_at":"2026-04-19T11:00:00Z"}}'
timely2_id=evt_01HX8A1K9MFQR4YZDNV7P9WCF
# Posted to the second container only.
timely3_body='{"event":"channel.connected","event_id":"evt_01HX8A1K9MFQR4YZDNV7P9WCG","timestamp":"2026-04-19T12:00:00Z","workspace_id":"ws_abc123","data":{"channel_id":"chan_789","channel_type":"whatsapp","provider":"waba","status":"connected","connected_at":"2026-04-19T12:00:00Z"}}'
timely3_id=evt_01HX8A1K9MFQR4YZDNV7P9WCG

# post SOURCE BODY WANT: POST and check the answer holds WANT (a JSON fragment).
post() {
    local out code
    out=$(curl -s -w '\n%{http_code}' -X POST "$url/v1/webhooks/$1" -H 'Content-Type: application/json' -d "$2")
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    [[ $code == 200 && $out == *"$3"* ]] || fail "POST /v1/webhooks/$1: $code $out (want 200 and $3)"
    ok "POST /v1/webhooks/$1: $out"
}

# kafka_values TOPIC: every message's key and value, from the beginning.
kafka_values() {
    timeout 30 kcat -b "127.0.0.1:$kafka_port" -C -t "$1" -o beginning -e -q -f '%k %s\n' 2>/dev/null || true
}
# redis_ids STREAM: the CloudEvent ids in a stream, one a line.
# (relay's entries are: id ID type TYPE event CLOUDEVENT; --raw prints one
# field or value a line, and the CloudEvent is one line of JSON.)
redis_ids() {
    redis-cli -h 127.0.0.1 -p "$redis_port" --raw XRANGE "$1" - + | awk 'prev == "id" { print } { prev = $0 }'
}
# wait_for WHAT CMD...: poll CMD (true when done) up to 30 s.
wait_for() {
    local what=$1 i
    shift
    for ((i = 0; i < 60; i++)); do
        "$@" && return 0
        sleep 0.5
    done
    fail "after 30 s: $what"
}
# count_in TEXT WORD: lines of TEXT holding WORD.
count_in() {
    grep -cF -- "$2" <<<"$1" || true
}
in_kafka() { # in_kafka ID TOPIC
    [[ $(count_in "$(kafka_values "$2")" "\"id\":\"$1\"") -ge 1 ]]
}
in_redis() { # in_redis ID STREAM
    [[ $(count_in "$(redis_ids "$2")" "$1") -ge 1 ]]
}
published() { # published ID TOPIC STREAM: in both
    in_kafka "$1" "$2" && in_redis "$1" "$3"
}

whapi_published() {
    [[ -n $(redis_ids events:MANTIS-M72HC) && $(count_in "$(kafka_values events.message)" MANTIS-M72HC) -ge 1 ]]
}
# Every sink's lag is 0 (and /metrics has them).
sinks_caught_up() {
    local m
    m=$(curl -s "$url/metrics" | grep '^relay_sink_lag_bytes') || return 1
    ! grep -qv ' 0$' <<<"$m"
}

# stop_relay N: docker stop; exit code 0, within the stop timeout.
stop_relay() {
    local c=$NAME-$1 t0 took state logs
    t0=$(date +%s.%N)
    docker stop -t "$STOP_TIMEOUT" "$c" >/dev/null
    took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}' "$c")
    [[ $state == "exited 0 false" ]] || fail "docker stop $c: state $state after $took s (137 = SIGKILL after the timeout)"
    awk -v t="$took" -v m="$STOP_TIMEOUT" 'BEGIN { exit !(t < m) }' || fail "docker stop $c took $took s (timeout $STOP_TIMEOUT s)"
    # Into a variable first: `docker logs | grep -q` fails under pipefail
    # when grep exits at the first match and docker logs gets SIGPIPE.
    logs=$(docker logs "$c" 2>&1)
    grep -qF 'SIGTERM: shutting down' <<<"$logs" || fail "$c: no 'SIGTERM: shutting down' in its log"
    grep -qE 'info +stopped$' <<<"$logs" || fail "$c: no 'stopped' in its log"
    ok "docker stop $c: exit 0 in $took s (timeout $STOP_TIMEOUT s)"
}

start_relay 1
post timely "$timely_body" '"accepted":1,"duplicates":0'
post whapi "$whapi_body" '"accepted":1,"duplicates":0'
wait_for "$timely_id in Kafka events.channel and Redis events:chan_789" \
    published "$timely_id" events.channel events:chan_789
wait_for "the Whapi message in Kafka events.message and Redis events:MANTIS-M72HC" whapi_published
whapi_id=$(redis_ids events:MANTIS-M72HC | head -n 1)
channel=$(kafka_values events.channel)
[[ $channel == "chan_789 {\"specversion\":\"1.0\",\"id\":\"$timely_id\""* ]] ||
    fail "events.channel does not hold the CloudEvent keyed chan_789: ${channel:0:200}"
ok "read back: $timely_id (Kafka events.channel key chan_789, Redis events:chan_789), $whapi_id (events.message, events:MANTIS-M72HC)"

# Redis goes away (ours; its data is kept): an event is still answered 200,
# Kafka gets it, Redis cannot. docker stop then spends http.shutdown_grace
# trying, and must still exit 0 within the stop timeout.
"$TOOLS/redis.sh" stop "$TMP/redis"
post timely "$timely2_body" '"accepted":1,"duplicates":0'
wait_for "$timely2_id in Kafka events.channel" in_kafka "$timely2_id" events.channel
stop_relay 1
docker logs "$NAME-1" 2>&1 | grep -F 'shutdown: redis: 1 events not acknowledged yet' >&2 ||
    fail "$NAME-1 did not stop with the event for Redis unpublished: $(docker logs "$NAME-1" 2>&1 | grep -F 'shutdown: redis')"
"$TOOLS/redis.sh" start "$TMP/redis" "$redis_port"

# ---- 6. the same volume, a new container: it replays what Redis missed, and
# drops the retries of what it took before.
start_relay 2
docker logs "$NAME-2" 2>&1 | grep -E 'dedup: [0-9]+ ids remembered' >&2 || true
wait_for "$timely2_id replayed into Redis events:chan_789" in_redis "$timely2_id" events:chan_789
ok "$NAME-2 replayed $timely2_id into Redis"
post timely "$timely_body" '"accepted":0,"duplicates":1'
post whapi "$whapi_body" '"accepted":0,"duplicates":1'
post timely "$timely2_body" '"accepted":0,"duplicates":1'
post timely "$timely3_body" '"accepted":1,"duplicates":0'
# Per channel, events are published in the order taken: once the new event is
# out, a republished duplicate of chan_789 would be out too.
wait_for "$timely3_id in Kafka and Redis" published "$timely3_id" events.channel events:chan_789
wait_for "relay_sink_lag_bytes 0 for every sink" sinks_caught_up
channel=$(kafka_values events.channel)
stream=$(redis_ids events:chan_789)
for id in "$timely_id" "$timely2_id" "$timely3_id"; do
    n_k=$(count_in "$channel" "\"id\":\"$id\"")
    n_r=$(count_in "$stream" "$id")
    ((n_k == 1 && n_r == 1)) || fail "$id published $n_k times in Kafka events.channel, $n_r in Redis events:chan_789, not once"
done
n_k=$(count_in "$channel" '"specversion"')
n_r=$(wc -l <<<"$stream")
((n_k == 3 && n_r == 3)) || fail "events.channel / events:chan_789 hold $n_k / $n_r events, not 3"
n_w=$(count_in "$(kafka_values events.message)" MANTIS-M72HC)
n_wr=$(redis_ids events:MANTIS-M72HC | wc -l)
((n_w == 1 && n_wr == 1)) || fail "the Whapi message is published $n_w times in Kafka, $n_wr in Redis, not once"
ok "after a restart on the same volume: 3 retries answered duplicates:1, nothing republished, one replay, a new event published once"

stop_relay 2

# ---- 7. the systemd unit under systemd, with all its hardening: make install
# DESTDIR= into an image with systemd as PID 1 (the host network, so that
# relay reaches our Kafka and Redis; RELAY_* from the unit's EnvironmentFile).
# The container gets CAP_SYS_ADMIN (systemd sets up the unit's namespaces),
# not --privileged, and its own cgroup namespace; no host path is mounted.
sd_ctx=$TMP/systemd-image
sd_port=$(freeport "$redis_port" "$kafka_port" "$http_port")
"${MAKE:-make}" -s --no-print-directory install DESTDIR="$sd_ctx/dest" >"$TMP/install.log" 2>&1 ||
    { cat "$TMP/install.log" >&2; fail "make install DESTDIR=$sd_ctx/dest"; }
cat >"$sd_ctx/dest/usr/local/etc/relay/relay.env" <<EOF
RELAY_HTTP_LISTEN=127.0.0.1:$sd_port
RELAY_KAFKA_BROKERS=127.0.0.1:$kafka_port
RELAY_REDIS_URL=redis://127.0.0.1:$redis_port/0
EOF
chmod 0600 "$sd_ctx/dest/usr/local/etc/relay/relay.env"
cat >"$sd_ctx/Dockerfile" <<'EOF'
ARG BASE
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd \
        libmicrohttpd12 librdkafka1 libhiredis0.14 libjansson4 libssl3 libjemalloc2 \
        libinih1 libsystemd0 zlib1g libisal2 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && systemctl mask systemd-logind.service getty.target console-getty.service systemd-udevd.service
COPY dest/ /
RUN systemctl enable relay.service
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
EOF
note "building the systemd image (make install DESTDIR=, systemd as PID 1)"
DOCKER_BUILDKIT=0 docker build --network host --build-arg BASE="$BASE_IMAGE" \
    -t "$IMAGE-systemd" "$sd_ctx" >"$TMP/build-systemd.log" 2>&1 ||
    { tail -n 30 "$TMP/build-systemd.log" >&2; fail "docker build of the systemd image failed"; }
sd=$NAME-systemd
containers+=("$sd")
docker run -d --name "$sd" --network host --cap-add SYS_ADMIN --cgroupns private \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --tmpfs /run --tmpfs /run/lock "$IMAGE-systemd" >/dev/null
sdx() {
    docker exec "$sd" "$@"
}
state=
for ((i = 0; i < 60; i++)); do
    state=$(sdx systemctl is-active relay.service 2>/dev/null) || true
    [[ $state == active || $state == failed ]] && break
    sleep 0.5
done
if [[ $state != active ]]; then
    sdx journalctl -u relay.service --no-pager 2>&1 | tail -n 20 >&2
    fail "relay.service under systemd is '$state', not active (journal above)"
fi
pid=$(sdx systemctl show -p MainPID --value relay.service)
st=$(sdx cat "/proc/$pid/status")
grep -Eq '^Uid:[[:space:]]+[1-9][0-9]*' <<<"$st" || fail "relay.service runs as root: $(grep ^Uid <<<"$st")"
grep -Eq '^NoNewPrivs:[[:space:]]+1$' <<<"$st" || fail "relay.service: NoNewPrivs is not set"
grep -Eq '^Seccomp:[[:space:]]+2$' <<<"$st" || fail "relay.service: no seccomp filter (SystemCallFilter)"
grep -Eq '^CapEff:[[:space:]]+0+$' <<<"$st" || fail "relay.service has capabilities: $(grep ^CapEff <<<"$st")"
ok "relay.service active under systemd (Type=notify): dynamic uid $(awk '/^Uid:/ { print $2 }' <<<"$st"), no capabilities, NoNewPrivs, seccomp"
url=http://127.0.0.1:$sd_port
sd_id=evt_01HX8A1K9MFQR4YZDNV7P9WCH
sd_body='{"event":"channel.connected","event_id":"evt_01HX8A1K9MFQR4YZDNV7P9WCH","timestamp":"2026-04-19T13:00:00Z","workspace_id":"ws_abc123","data":{"channel_id":"chan_sd","channel_type":"whatsapp","provider":"waba","status":"connected","connected_at":"2026-04-19T13:00:00Z"}}'
post timely "$sd_body" '"accepted":1,"duplicates":0'
wait_for "the systemd relay's event in Kafka and Redis" published "$sd_id" events.channel events:chan_sd
sdx test -d /var/lib/private/relay/wal || fail "no WAL in the StateDirectory (/var/lib/private/relay/wal)"
t0=$(date +%s.%N)
sdx systemctl stop relay.service
took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
res=$(sdx systemctl show -p Result -p ExecMainStatus relay.service | sort | tr '\n' ' ')
[[ $res == "ExecMainStatus=0 Result=success " ]] || fail "systemctl stop relay.service: $res after $took s"
ok "systemctl stop relay.service: exit 0 in $took s (TimeoutStopSec=15)"
sdx systemctl start relay.service || fail "systemctl start relay.service (second start) failed"
post timely "$sd_body" '"accepted":0,"duplicates":1'
ok "relay.service restarted on its StateDirectory: the retry is a duplicate"

# ---- 8. compose.yaml: no registry here to pull apache/kafka and redis, so the
# file is validated, not run.
compose=()
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
fi
if ((${#compose[@]})); then
    out=$("${compose[@]}" -f docker/compose.yaml config -q 2>&1) || fail "${compose[*]} config: $out"
    ok "docker/compose.yaml is valid (${compose[*]} config)"
else
    note "no docker compose or docker-compose: docker/compose.yaml not validated"
fi

for c in "${containers[@]}"; do
    docker rm -f "$c" >/dev/null
done
containers=()
docker volume rm "$VOLUME" >/dev/null
volume_made=0
echo "docker-test: all checks passed in $((SECONDS - t_start)) s (image build $build_s s, $(numfmt --to=si "$size")B)"
