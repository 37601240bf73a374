#!/usr/bin/env bash
# deps.sh: installs what building, testing and running relay needs on Debian
# (12, bookworm) and caches the Kafka broker jars. Idempotent and quiet when
# everything is there already, so `make test` and `make run` call it each time.
set -euo pipefail
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=SCRIPTDIR/lib.sh
. "$TOOLS/lib.sh"

PACKAGES=(
    # build
    build-essential pkg-config
    libmicrohttpd-dev librdkafka-dev libhiredis-dev libjansson-dev libssl-dev libjemalloc-dev
    libinih-dev libsystemd-dev zlib1g-dev libisal-dev
    # tests (Criterion; libcurl for the system tests' HTTP client; the openssl
    # CLI makes the TLS test's self-signed certificate)
    libcriterion-dev libcurl4-openssl-dev openssl
    # systemd-analyze verify checks the unit (make install-test, in make test)
    systemd
    # fuzzing (make fuzz): clang with libFuzzer's runtime; clang-format for
    # `make check-format` and shellcheck for `make shellcheck`, which `make test` runs
    clang libclang-rt-14-dev clang-format shellcheck
    # the services the system tests and `make run` start, and their clients
    redis-server redis-tools kcat
    # the Python consumer examples (examples/consumers/, tests/system/test_consumers.c)
    python3-confluent-kafka python3-redis
    # promtool (Prometheus's linter) checks the /metrics exposition in a system test
    prometheus
    # load generator for bench/, and valgrind for its instruction counts (bench/callgrind.sh)
    wrk valgrind
    # Kafka's broker is a JVM program; maven fetches its jars (tools/kafka.sh)
    openjdk-17-jre-headless maven
    # curl for the examples `make run` prints; ca-certificates so that TLS to
    # Maven Central works on a minimal image (installs skip recommends)
    curl ca-certificates
)

command -v dpkg >/dev/null || die "this script installs with apt-get (Debian/Ubuntu); install the packages listed in it by hand"

missing=()
for p in "${PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} as root"
        sudo=(sudo)
    fi
    note "installing ${missing[*]}"
    # `apt-get update` only now: a fresh machine has no package lists, and a
    # machine that has everything should not touch the network at all.
    # DEBIAN_FRONTEND through env, because sudo may drop the environment; no
    # stdin, so that CI (which has none) and a terminal behave the same.
    # Lock::Timeout: wait for another apt/dpkg (unattended-upgrades, a second
    # deps.sh) instead of failing at once.
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
    "${sudo[@]}" "${apt[@]}" update -qq </dev/null >&2
    "${sudo[@]}" "${apt[@]}" install -y -qq --no-install-recommends \
        "${missing[@]}" </dev/null >&2
    for p in "${missing[@]}"; do
        pkg_installed "$p" || die "apt-get did not install $p"
    done
fi

# The jars live in a user cache, not a package: fetch them if they are not
# there yet (a no-op, and silent, when they are).
"$TOOLS/kafka.sh" fetch
