#!/usr/bin/env bash
# kafka.sh: a throwaway single-node Apache Kafka (KRaft, no ZooKeeper, no
# Docker) for tests and `make run`.
#   kafka.sh fetch            download the broker jars from Maven Central, once
#   kafka.sh start DIR PORT   run a broker+controller on 127.0.0.1:PORT, data in DIR
#   kafka.sh stop DIR         SIGTERM, SIGKILL after KAFKA_STOP_TIMEOUT (30 s)
#   kafka.sh kill DIR         SIGKILL (a crash, for fault tests)
#   kafka.sh classpath        print the classpath, to run Kafka's own tools
#
# `start` on a DIR that was formatted before restarts the same broker with its
# data (fault tests stop Kafka for a while and start it again).
#
# Environment:
#   RELAY_CACHE          cache root (default ${XDG_CACHE_HOME:-~/.cache}/relay)
#   KAFKA_HEAP_OPTS      JVM heap options (default -Xmx512m -Xms128m)
#   KAFKA_JVM_OPTS       other JVM options (default: tuned for a fast start)
#   KAFKA_START_TIMEOUT  seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 30)
#   JAVA_HOME / JAVA     which java to use (default: java on PATH)
set -euo pipefail
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/lib.sh
. "$TOOLS/lib.sh"

POM=$TOOLS/kafka/pom.xml
# The version lives in the pom only, so that the two can never disagree.
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
[[ -n $KAFKA_VERSION ]] || die "no <kafka.version> in $POM"
KAFKA_HOME=$(relay_cache_dir)/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs
# Written last by fetch; holds the pom's checksum so that editing the pom (a
# version bump) triggers a new download.
STAMP=$KAFKA_HOME/.complete

usage() {
    echo "usage: ${0##*/} fetch | start DIR PORT | stop DIR | kill DIR | classpath" >&2
    exit 2
}

pom_sum() {
    sha256sum "$POM" | cut -d' ' -f1
}

fetched() {
    [[ -f $STAMP && $(<"$STAMP") == "$(pom_sum)" && -d $LIBS ]]
}

cmd_fetch() {
    fetched && return 0
    mkdir -p "$KAFKA_HOME"
    # One fetch at a time per cache (two test runs starting together must not
    # write into the same directory); the second one waits, then finds the
    # stamp and does nothing. The lock's descriptor is open for the locked
    # function only, so that a broker started afterwards does not inherit it.
    fetch_locked 9>"$KAFKA_HOME/.lock"
}

fetch_locked() {
    flock -w 900 9 || die "another fetch holds $KAFKA_HOME/.lock for 15 min"
    fetched && return 0
    command -v mvn >/dev/null || die "mvn not found: run tools/deps.sh"
    note "downloading Kafka $KAFKA_VERSION and its dependencies from Maven Central into $LIBS"
    # Download into a staging directory and rename it into place only when
    # complete: an interrupted earlier run leaves at most a stale staging
    # directory (removed here) and never a half-filled libs/ with a stamp.
    rm -f "$STAMP"
    rm -rf "$KAFKA_HOME"/libs.partial.* "$KAFKA_HOME/m2"
    local stage=$KAFKA_HOME/libs.partial.$$
    # -C: fail on a checksum mismatch instead of warning. A private local
    # repository keeps ~/.m2 (and its settings) out of it; it is deleted after
    # the copy so that the cache holds the jars once, not twice. The output is
    # shown only on failure: even with -q, Debian's Maven 3.8.7 prints bare
    # colour codes.
    local mvnlog=$KAFKA_HOME/mvn.log
    if ! mvn -B -q -C --no-transfer-progress -Dstyle.color=never \
        -f "$POM" \
        -Dmaven.repo.local="$KAFKA_HOME/m2" \
        dependency:copy-dependencies \
        -DincludeScope=runtime \
        -DoutputDirectory="$stage" </dev/null >"$mvnlog" 2>&1; then
        sed 's/\x1b\[[0-9;]*m//g' "$mvnlog" >&2
        rm -rf "$stage"
        die "mvn failed to fetch Kafka $KAFKA_VERSION (is Maven Central reachable?)"
    fi
    rm -f "$mvnlog"
    [[ -f $stage/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after download"
    rm -rf "$LIBS" "$KAFKA_HOME/m2"
    mv "$stage" "$LIBS"
    pom_sum >"$STAMP"
    note "Kafka $KAFKA_VERSION ready: $(find "$LIBS" -name '*.jar' | wc -l) jars, $(du -sh "$LIBS" | cut -f1)"
}

java_bin() {
    if [[ -n ${JAVA:-} ]]; then
        printf '%s\n' "$JAVA"
    elif [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        printf '%s\n' "$JAVA_HOME/bin/java"
    elif command -v java >/dev/null; then
        command -v java
    else
        die "java not found: run tools/deps.sh (openjdk-17-jre-headless)"
    fi
}

# A cluster id is 16 random bytes in URL-safe base64 without padding (what
# `kafka-storage.sh random-uuid` prints); made here to save a JVM start.
# One that starts with '-' would be read as an option, so draw again.
random_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ ${#id} == 22 && $id != -* ]] && break
    done
    printf '%s\n' "$id"
}

write_config() {
    local dir=$1 port=$2 cport=$3
    cat >"$dir/server.properties" <<EOF
# Written by tools/kafka.sh; rewritten on every start (the data in data/ stays).
# One JVM is both the KRaft controller and the broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
# relay's topics (events.channel, events.message, ...) appear on first use,
# with 3 partitions so that per-channel ordering by key is actually tested.
auto.create.topics.enable=true
num.partitions=3
# A single node: every replication factor and ISR minimum must be 1.
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
# Fewer internal partitions than the default 50: creating them is most of the
# delay of the first consumer group or transaction on a fresh broker.
offsets.topic.num.partitions=3
transaction.state.log.num.partitions=3
# Consumers in tests should get their partitions at once, not after 3 s.
group.initial.rebalance.delay.ms=0
# After a crash (kill -9) the controller refuses the restarted broker until
# the dead one's session has expired: 9 s by default, shortened here so that a
# crash-and-restart fault test waits ~4 s, still far above the heartbeat.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
# A small machine (2 cores) runs this next to relay and the tests.
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
    cat >"$dir/log4j.properties" <<'EOF'
# Everything to stdout, which tools/kafka.sh appends to DIR/kafka.log.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
# The per-request and state-change chatter says nothing a test needs.
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
}

cmd_start() {
    local dir=$1 port=$2 cport="" java id i deadline
    check_port "$port"
    command -v kcat >/dev/null || die "kcat not found: run tools/deps.sh"
    java=$(java_bin)
    cmd_fetch
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    local pidfile=$dir/kafka.pid log=$dir/kafka.log
    if pid_alive "$pidfile" "$dir/server.properties"; then
        die "a Kafka from $dir is already running (pid $(<"$pidfile"))"
    fi
    rm -f "$pidfile"
    # Only a listener counts: TIME_WAIT connections left by the previous life
    # of this broker must not stop its restart on the same port.
    port_in_use "$port" listen && die "port $port is already in use"

    # Keep the controller port of an earlier start of this DIR when it is free
    # (the same broker comes back as it was); else draw a new one, which a
    # single-node static quorum accepts.
    if [[ -f $dir/server.properties ]]; then
        cport=$(sed -n 's/^controller.quorum.voters=.*:\([0-9]*\)$/\1/p' "$dir/server.properties")
    fi
    if [[ -z $cport || $cport == "$port" ]] || port_in_use "$cport" listen; then
        cport=$(freeport "$port")
    fi
    write_config "$dir" "$port" "$cport"

    local -a heap jvm
    local meta
    read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xmx512m -Xms128m}"
    # Serial GC and C1 only: on 2 cores the broker starts in about half the
    # time of Kafka's defaults (G1, C2), and a test broker never needs the
    # throughput C2 would bring.
    read -r -a jvm <<<"${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"
    jvm+=("-Dlog4j.configuration=file:$dir/log4j.properties" "-Dkafka.logs.dir=$dir")

    # Format once. meta.properties is written last by the storage tool, so a
    # data/ without it is an interrupted format: wipe it and start again.
    if [[ ! -f $dir/data/meta.properties ]]; then
        rm -rf "$dir/data"
        id=$(random_cluster_id)
        echo "--- $(date '+%F %T') kafka.sh: formatting $dir/data, cluster id $id" >>"$log"
        "$java" -Xmx256m "${jvm[@]}" -cp "$LIBS/*" kafka.tools.StorageTool \
            format --cluster-id "$id" --config "$dir/server.properties" \
            >>"$log" 2>&1 </dev/null ||
            { tail -n 30 "$log" >&2; die "formatting $dir/data failed"; }
    fi

    echo "--- $(date '+%F %T') kafka.sh: starting on 127.0.0.1:$port (controller $cport)" >>"$log"
    # setsid: its own session, so that a Ctrl-C in the terminal of `make run`
    # reaches relay only, and Kafka is stopped after relay has flushed to it.
    # (This script has no job control, so the child is no group leader and
    # setsid execs java in place: $! is java's pid.)
    setsid "$java" "${heap[@]}" "${jvm[@]}" -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"

    # Ready means the broker answers a metadata request and lists itself,
    # which in KRaft happens once it has caught up with the metadata log and
    # been unfenced, i.e. once producers can use it.
    deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
    while ((SECONDS < deadline)); do
        if ! pid_alive "$pidfile"; then
            tail -n 40 "$log" >&2
            rm -f "$pidfile"
            die "Kafka exited during start-up (log: $log)"
        fi
        # Into a variable: `kcat -L | grep -q` fails under pipefail when
        # kcat is still writing as grep exits.
        meta=$(kcat -b "127.0.0.1:$port" -L -m 2 2>/dev/null) || meta=
        if [[ $meta == *' 1 brokers:'* ]]; then
            return 0
        fi
        sleep 0.3
    done
    tail -n 40 "$log" >&2
    kill_pidfile "$pidfile"
    die "Kafka on 127.0.0.1:$port did not answer within ${KAFKA_START_TIMEOUT:-90} s (log: $log)"
}

(($# >= 1)) || usage
case $1 in
fetch)
    (($# == 1)) || usage
    cmd_fetch
    ;;
start)
    (($# == 3)) || usage
    cmd_start "$2" "$3"
    ;;
stop)
    (($# == 2)) || usage
    stop_pidfile "$2/kafka.pid" kafka "${KAFKA_STOP_TIMEOUT:-30}" kafka.Kafka
    ;;
kill)
    (($# == 2)) || usage
    kill_pidfile "$2/kafka.pid" kafka.Kafka
    ;;
classpath)
    (($# == 1)) || usage
    fetched || die "Kafka is not fetched yet: run ${0##*/} fetch"
    printf '%s\n' "$LIBS/*"
    ;;
*) usage ;;
esac
