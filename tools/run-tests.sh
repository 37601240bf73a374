#!/usr/bin/env bash
# run-tests.sh: runs relay's Criterion test binaries and prints one summary.
#   run-tests.sh unit   BIN...            unit and codec tests
#   run-tests.sh system BIN...            system tests against real Redis + Kafka
#   run-tests.sh all    BIN... -- BIN...  both (what `make test` calls)
#
# System tests get a throwaway directory with their own Redis and Kafka on free
# ports (never the 6379/9092/8080 of a `make run`), described to them by:
#   RELAY_TEST_BIN            absolute path of the relay binary under test
#                             (build/relay, or build-san/relay for build-san/)
#   RELAY_TEST_REDIS_PORT     Redis port on 127.0.0.1
#   RELAY_TEST_REDIS_DIR      its directory (for tools/redis.sh stop|start|kill)
#   RELAY_TEST_KAFKA_BROKERS  127.0.0.1:PORT
#   RELAY_TEST_KAFKA_PORT     PORT alone
#   RELAY_TEST_KAFKA_DIR      its directory (for tools/kafka.sh stop|start|kill)
#   RELAY_TEST_TOOLS          absolute path of tools/
#   RELAY_TEST_TMP            the throwaway directory, removed at the end
# A system test that stops Kafka or Redis should start it again; if it does
# not, the next binary finds it restarted (same data) anyway.
#
# Knobs: RELAY_TEST_UNIT_TIMEOUT (s, default 300) and RELAY_TEST_SYSTEM_TIMEOUT
# (s, default 1800) per binary; RELAY_TEST_KEEP=1 keeps the throwaway
# directory (logs of Kafka, Redis and relay) for a post-mortem.
#
# The last line is "N passed, N failed" (crashes count as failed); the exit
# status is non-zero when anything failed, a binary exited non-zero, or no
# test ran at all.
set -euo pipefail
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(dirname "$TOOLS")
# shellcheck source=SCRIPTDIR/lib.sh
. "$TOOLS/lib.sh"

usage() {
    echo "usage: ${0##*/} unit BIN... | system BIN... | all UNIT_BIN... -- SYS_BIN..." >&2
    exit 2
}

# abspath PATH: PATH made absolute against the caller's directory, before we
# change into the repository root.
abspath() {
    if [[ $1 == /* ]]; then printf '%s\n' "$1"; else printf '%s\n' "$PWD/$1"; fi
}

(($# >= 1)) || usage
mode=$1
shift
unit_bins=()
sys_bins=()
case $mode in
unit)
    for b in "$@"; do unit_bins+=("$(abspath "$b")"); done
    ;;
system)
    for b in "$@"; do sys_bins+=("$(abspath "$b")"); done
    ;;
all)
    seen_sep=0
    for b in "$@"; do
        if [[ $b == -- ]]; then
            seen_sep=1
        elif ((seen_sep)); then
            sys_bins+=("$(abspath "$b")")
        else
            unit_bins+=("$(abspath "$b")")
        fi
    done
    ;;
*) usage ;;
esac

# Tests open fixtures by paths relative to the repository root.
cd "$ROOT"

passed=0      # tests that passed, summed over binaries
failed=0      # tests that failed or crashed, plus binaries that broke
bin_failed=0  # set when any binary exited non-zero or could not run
report=()     # one line per binary, repeated before the summary
services_up=0

TMP=$(mktemp -d "${TMPDIR:-/tmp}/relay-test.XXXXXX")
export RELAY_TEST_TMP=$TMP
export RELAY_TEST_TOOLS=$TOOLS
export RELAY_TEST_REDIS_DIR=$TMP/redis
export RELAY_TEST_KAFKA_DIR=$TMP/kafka

current_pid= # the test binary running now (its timeout process)
tail_pid=    # the tail that shows its output

# shellcheck disable=SC2317  # called from the EXIT trap, not unreachable
cleanup() {
    local rc=$?
    # Clean up as much as possible whatever fails on the way.
    set +e
    # Interrupted mid-binary: stop it (timeout passes the signal on to the
    # binary's whole process group) before its services go away.
    if [[ -n $current_pid ]]; then
        kill -TERM "$current_pid" 2>/dev/null || true
        wait "$current_pid" 2>/dev/null || true
    fi
    [[ -n $tail_pid ]] && kill "$tail_pid" 2>/dev/null
    # Never let a failing stop skip the rest of the clean-up.
    if ((services_up)); then
        "$TOOLS/kafka.sh" stop "$RELAY_TEST_KAFKA_DIR" || true
        "$TOOLS/redis.sh" stop "$RELAY_TEST_REDIS_DIR" || true
    fi
    if [[ ${RELAY_TEST_KEEP:-0} == 1 ]]; then
        echo "run-tests.sh: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
# An interrupted run still stops its services: the EXIT trap runs on exit.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# run_bin KIND TIMEOUT BIN ARGS...: run one Criterion binary, show its output,
# add its counts to the totals.
run_bin() {
    local kind=$1 limit=$2 bin=$3 rel log rc synth t p f c
    shift 3
    rel=${bin#"$ROOT"/}
    log=$TMP/$kind-$(basename "$bin").log
    echo "=== $kind: $rel"
    if [[ ! -x $bin ]]; then
        echo "run-tests.sh: $rel is missing or not executable"
        failed=$((failed + 1))
        bin_failed=1
        report+=("FAIL  $rel (missing)")
        return
    fi
    # timeout puts the binary in its own process group and kills the whole
    # group (Criterion forks a child per test) if it hangs. The output goes to
    # a file, not a pipe, and is followed by tail until the binary exits: a
    # relay daemon that a test leaked with our stdout open could otherwise
    # keep a pipe (and this script) open forever.
    rc=0
    : >"$log"
    timeout -k 10 "$limit" "$bin" "$@" </dev/null >"$log" 2>&1 &
    current_pid=$!
    tail -n +1 -s 0.2 -f --pid="$current_pid" "$log" &
    tail_pid=$!
    # `wait` (unlike a command in the foreground) returns as soon as a
    # trapped signal arrives, so an interrupted run cleans up at once.
    wait "$current_pid" || rc=$?
    current_pid=
    wait "$tail_pid" || true
    tail_pid=
    # The colours Criterion uses on a terminal would break the parse.
    synth=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep 'Synthesis: Tested:' | tail -n 1 || true)
    if [[ $synth =~ Tested:\ *([0-9]+).*Passing:\ *([0-9]+).*Failing:\ *([0-9]+).*Crashing:\ *([0-9]+) ]]; then
        t=${BASH_REMATCH[1]} p=${BASH_REMATCH[2]} f=${BASH_REMATCH[3]} c=${BASH_REMATCH[4]}
    else
        t=0 p=0 f=0 c=0
    fi
    # Criterion's Failing already includes the crashed tests (Tested =
    # Passing + Failing); max() in case a version counts them apart.
    ((c > f)) && f=$c
    # A test whose setup or teardown crashed (the system harness aborts there
    # when relay exited badly or its log holds a sanitizer report) is counted
    # as passing by Criterion 2.4, which only prints a warning: count it failed.
    torn=$(grep -c 'crashed during its setup or teardown' "$log" || true)
    if ((torn > 0)); then
        f=$((f + torn))
        p=$((p - torn))
        rc=${rc:-0}
        ((rc == 0)) && rc=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if ((rc == 124 || rc == 137)); then
        echo "run-tests.sh: $rel timed out after ${limit}s"
    fi
    if ((rc != 0)) || [[ -z $synth ]]; then
        bin_failed=1
        # A binary that broke without a failing test to show for it (no
        # synthesis line, a timeout, a sanitizer report at exit) still counts
        # once, so that the summary line never reads as all green.
        ((f == 0)) && failed=$((failed + 1))
    fi
    if ((rc == 0 && f == 0)) && [[ -n $synth ]]; then
        report+=("ok    $rel: $p/$t passed")
    else
        report+=("FAIL  $rel: $p/$t passed, $f failed ($c crashed), exit $rc")
    fi
}

# ensure_services: (re)start Redis and Kafka if they are not running, e.g.
# first time, or after a test binary that stopped one and did not restart it.
ensure_services() {
    if ! pid_alive "$RELAY_TEST_REDIS_DIR/redis.pid"; then
        "$TOOLS/redis.sh" start "$RELAY_TEST_REDIS_DIR" "$RELAY_TEST_REDIS_PORT" || return 1
    fi
    if ! pid_alive "$RELAY_TEST_KAFKA_DIR/kafka.pid"; then
        "$TOOLS/kafka.sh" start "$RELAY_TEST_KAFKA_DIR" "$RELAY_TEST_KAFKA_PORT" || return 1
    fi
}

# The relay binary that goes with the test binaries: $(BUILD)/tests/x comes
# with $(BUILD)/relay, so a sanitizer build tests the sanitizer relay.
first=${sys_bins[0]:-${unit_bins[0]:-}}
if [[ -n $first ]]; then
    export RELAY_TEST_BIN
    RELAY_TEST_BIN=$(dirname "$(dirname "$first")")/relay
fi

for bin in "${unit_bins[@]}"; do
    run_bin unit "${RELAY_TEST_UNIT_TIMEOUT:-300}" "$bin"
done

if ((${#sys_bins[@]})); then
    sys_ok=1
    if [[ ! -x $RELAY_TEST_BIN ]]; then
        echo "run-tests.sh: relay binary $RELAY_TEST_BIN not found; build it first"
        sys_ok=0
    else
        # Redis first: it is up in milliseconds; Kafka takes a few seconds.
        export RELAY_TEST_REDIS_PORT RELAY_TEST_KAFKA_PORT RELAY_TEST_KAFKA_BROKERS
        RELAY_TEST_REDIS_PORT=$(freeport)
        RELAY_TEST_KAFKA_PORT=$(freeport "$RELAY_TEST_REDIS_PORT")
        RELAY_TEST_KAFKA_BROKERS=127.0.0.1:$RELAY_TEST_KAFKA_PORT
        services_up=1
        echo "=== services: Redis 127.0.0.1:$RELAY_TEST_REDIS_PORT, Kafka $RELAY_TEST_KAFKA_BROKERS, in $TMP"
        ensure_services || sys_ok=0
    fi
    for bin in "${sys_bins[@]}"; do
        if ((sys_ok)) && ensure_services; then
            # --jobs 1: the tests share one Redis and one Kafka, and some stop
            # them on purpose; in parallel they would break each other.
            run_bin system "${RELAY_TEST_SYSTEM_TIMEOUT:-1800}" "$bin" --jobs 1
        else
            echo "=== system: ${bin#"$ROOT"/} not run: no relay binary, Redis or Kafka"
            failed=$((failed + 1))
            bin_failed=1
            report+=("FAIL  ${bin#"$ROOT"/}: not run (no relay binary, Redis or Kafka)")
        fi
    done
fi

echo "=== summary"
if ((${#report[@]})); then
    printf '%s\n' "${report[@]}"
fi
if ((passed + failed == 0)); then
    echo "run-tests.sh: no test ran"
fi
echo "$passed passed, $failed failed"
if ((failed > 0 || bin_failed || passed == 0)); then
    exit 1
fi
exit 0
