#!/usr/bin/env bash
# fuzz.sh BUILD_DIR TARGET... -- runs relay's libFuzzer targets (make fuzz).
#
# Each target runs over its corpus BUILD_DIR/corpus/TARGET (kept between runs,
# so coverage accumulates; never committed) and its seeds BUILD_DIR/seeds/TARGET,
# made afresh from tests/fixtures and fuzz/seeds (read-only for libFuzzer).
# Crashing inputs go to BUILD_DIR/artifacts/, each run's output to
# BUILD_DIR/logs/TARGET.log. The summary gives, per target, the executions, the
# executions per second, and libFuzzer's coverage (cov: edges) at start and end.
#
# Knobs (environment):
#   FUZZ_RUNS   executions per target (default 100000)
#   FUZZ_TIME   seconds per target, instead of or besides FUZZ_RUNS (default: none)
#   FUZZ_NICE   nice level of the targets (default 0; 19 on a shared machine)
#   FUZZ_JOBS   targets run at the same time (default 1)
#   FUZZ_UNIT_TIMEOUT  seconds one input may take before it counts as a hang
#               (default 30; a niced run on a busy machine can be starved for
#               minutes at a time: give it 1800 there, or a stall is reported)
# Exit status non-zero when a target crashed, leaked, or broke an invariant.
set -euo pipefail
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(dirname "$TOOLS")
cd "$ROOT"

(($# >= 2)) || { echo "usage: ${0##*/} BUILD_DIR TARGET..." >&2; exit 2; }
build=$1
shift
runs=${FUZZ_RUNS:-100000}
secs=${FUZZ_TIME:-}
nice_level=${FUZZ_NICE:-0}
jobs=${FUZZ_JOBS:-1}
unit_timeout=${FUZZ_UNIT_TIMEOUT:-30}
mkdir -p "$build/corpus" "$build/seeds" "$build/artifacts" "$build/logs"

# fixtures CODEC: the request bodies of tests/fixtures/CODEC (not the .expect.json).
fixtures() {
    local f
    for f in tests/fixtures/"$1"/*.json; do
        [[ $f == *.expect.json ]] || printf '%s\n' "$f"
    done
    if [[ $1 == timely ]]; then
        ls tests/system/fixtures/timely/*.json 2>/dev/null || true
    fi
}

# seeds TARGET: fills $build/seeds/TARGET.
seeds() {
    local t=$1 dir=$build/seeds/$1 f i=0 src flags
    rm -rf "$dir"
    mkdir -p "$dir"
    case $t in
    timely | whapi)
        while read -r f; do cp "$f" "$dir/$(basename "$f")"; done < <(fixtures "$t")
        ;;
    config)
        cp relay.conf "$dir/relay.conf"
        cp fuzz/seeds/config/*.conf "$dir/"
        ;;
    request)
        # Byte 0: the source (fuzz_request.c: 0 open/timely, 1 tok, 2 tim/timely,
        # 3 std, 4 hub, 5 rate: whapi); byte 1: flags (0 signed, 2 second key,
        # 4 variant form).
        while read -r f; do
            for src in 0 2; do
                for flags in 0 2 4; do
                    { printf '%b%b' "\\x$(printf %02x "$src")" "\\x$(printf %02x "$flags")"; cat "$f"; } >"$dir/s$((i++))"
                done
            done
        done < <(fixtures timely)
        while read -r f; do
            for src in 1 3 4 5; do
                for flags in 0 2 4; do
                    { printf '%b%b' "\\x$(printf %02x "$src")" "\\x$(printf %02x "$flags")"; cat "$f"; } >"$dir/s$((i++))"
                done
            done
        done < <(fixtures whapi)
        ;;
    generic)
        while read -r f; do cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"; done < <(fixtures timely; fixtures whapi)
        ;;
    *)
        # Any other codec target: its own fixtures.
        if [[ -d tests/fixtures/$t ]]; then
            while read -r f; do cp "$f" "$dir/$(basename "$f")"; done < <(fixtures "$t")
        else
            echo "fuzz.sh: no seeds for $t" >&2
        fi
        ;;
    esac
}

# run TARGET: one libFuzzer run; its log is $build/logs/TARGET.log.
run() {
    local t=$1 bin=$build/fuzz_$1 dict=() limits=(-runs="$runs")
    case $t in
    config) dict=(-dict=fuzz/config.dict) ;;
    *) dict=(-dict=fuzz/json.dict) ;;
    esac
    [[ -n $secs ]] && limits+=(-max_total_time="$secs")
    mkdir -p "$build/corpus/$t"
    # exec: the background job is the fuzzer itself, so stopping fuzz.sh stops it.
    exec nice -n "$nice_level" "$bin" "${limits[@]}" "${dict[@]}" -print_final_stats=1 \
        -max_len=65536 -timeout="$unit_timeout" -rss_limit_mb=4096 \
        -artifact_prefix="$build/artifacts/$t-" "$build/corpus/$t" "$build/seeds/$t" \
        >"$build/logs/$t.log" 2>&1
}

# report TARGET RC: one summary line from the log.
report() {
    local t=$1 rc=$2 log=$build/logs/$1.log execs eps cov0 cov1
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov0=$(grep -m1 -o 'INITED cov: [0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov1=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)
    printf '%-8s %s  executions %-10s exec/s %-7s cov %s -> %s  (%s)\n' "$t" \
        "$( ((rc == 0)) && echo ok || echo FAIL)" "${execs:-?}" "${eps:-?}" "${cov0:-?}" \
        "${cov1:-?}" "$log"
}

for t in "$@"; do
    [[ -x $build/fuzz_$t ]] || { echo "fuzz.sh: $build/fuzz_$t is not built" >&2; exit 2; }
    seeds "$t"
done

failed=0
declare -A pids=()
# Interrupted: the fuzzers go too.
trap 'kill "${pids[@]}" 2>/dev/null; exit 130' INT TERM
for t in "$@"; do
    while ((${#pids[@]} >= jobs)); do
        wait -n -p done_pid || true
        for k in "${!pids[@]}"; do
            if [[ ${pids[$k]} == "${done_pid:-}" ]]; then
                wait "${pids[$k]}" 2>/dev/null && rc=0 || rc=$?
                report "$k" "$rc"
                ((rc == 0)) || failed=1
                unset "pids[$k]"
            fi
        done
    done
    echo "fuzz.sh: $t ($runs runs${secs:+, at most ${secs}s}, nice $nice_level)..."
    run "$t" &
    pids[$t]=$!
done
for k in "${!pids[@]}"; do
    wait "${pids[$k]}" && rc=0 || rc=$?
    report "$k" "$rc"
    ((rc == 0)) || failed=1
done
if ((failed)); then
    echo "fuzz.sh: a target failed; see its log and $build/artifacts/" >&2
    exit 1
fi
