# shellcheck shell=bash
# Helpers shared by the tools/*.sh scripts. Source it; it sets no shell options
# of its own so that it does not change the caller's behaviour.

# die MSG...: print to stderr with the calling script's name and exit 1.
die() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

# note MSG...: progress messages go to stderr so that stdout stays usable for
# values (ports, paths) that callers capture with $(...).
note() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# relay_cache_dir: where downloaded artefacts (the Kafka jars) are kept between
# runs. Outside the work tree so that a fresh clone or `git clean` does not
# throw away a 46 MB download.
relay_cache_dir() {
    # HOME may be unset under some CI runners; bash's ~ then falls back to
    # the passwd entry.
    local home=${HOME:-$(cd ~ && pwd)}
    printf '%s\n' "${RELAY_CACHE:-${XDG_CACHE_HOME:-$home/.cache}/relay}"
}

# port_in_use PORT [listen]: true when a TCP socket on this host (IPv4 or
# IPv6) has PORT as its local port. With "listen", only listening sockets
# count: a server can bind a port that still has TIME_WAIT connections from its
# previous life (SO_REUSEADDR), which is what a restart in a fault test does.
# Without it, any state counts, which is what picking a fresh port wants.
# Reading /proc/net/tcp needs neither ss (iproute2) nor python3, which a
# minimal Debian may lack, and unlike a connect() probe it also sees ports that
# are bound but not listening yet.
port_in_use() {
    local hex f sl local_addr _remote st _
    hex=$(printf '%04X' "$1")
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] || continue
        while read -r sl local_addr _remote st _; do
            [[ $sl == sl ]] && continue
            [[ ${local_addr##*:} == "$hex" ]] || continue
            # State 0A is TCP_LISTEN.
            [[ ${2:-} == listen && $st != 0A ]] && continue
            return 0
        done <"$f"
    done
    # Without /proc (unusual), fall back to asking the port directly.
    if [[ ! -r /proc/net/tcp ]]; then
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    fi
    return 1
}

# freeport [EXCLUDE...]: print a TCP port that nothing on this host uses,
# other than the ports given as arguments (so that two ports picked in a row
# for one service differ). Ports are drawn at random below the kernel's
# ephemeral range (ip_local_port_range, usually 32768-60999): a port in that
# range could be taken by some outgoing connection between the moment we pick
# it and the moment the server binds it.
freeport() {
    local lo=20000 hi=60000 eph_lo eph_hi port try ex skip
    if read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
        if ((eph_lo - 1 > lo + 1000)); then
            hi=$((eph_lo - 1))
        elif ((eph_hi + 1 < hi - 1000)); then
            lo=$((eph_hi + 1))
        fi
    fi
    for ((try = 0; try < 200; try++)); do
        port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        skip=0
        for ex in "$@"; do
            [[ $ex == "$port" ]] && skip=1
        done
        ((skip)) && continue
        port_in_use "$port" && continue
        printf '%s\n' "$port"
        return 0
    done
    note "no free TCP port found in $lo-$hi"
    return 1
}

# pid_alive PIDFILE [MATCH]: true when PIDFILE names a running process (not a
# zombie: a server that died while its starter waits is one until reaped) and,
# when MATCH is given, its command line contains MATCH, so that a stale pidfile
# left by a reboot never makes us signal an unrelated process that got the pid.
pid_alive() {
    local pid stat cmdline
    [[ -s $1 ]] || return 1
    read -r pid <"$1" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/stat ]]; then
        stat=$(<"/proc/$pid/stat") || return 1
        stat=${stat##*) }
        [[ ${stat:0:1} == Z ]] && return 1
        if [[ -n ${2:-} ]]; then
            cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
            [[ $cmdline == *"$2"* ]] || return 1
        fi
    fi
    return 0
}

# stop_pidfile PIDFILE NAME GRACE [MATCH]: SIGTERM the process in PIDFILE, wait
# up to GRACE seconds for it to exit, then SIGKILL it. Removes PIDFILE.
# Succeeds when there is nothing to stop, so `stop` is safe to call twice
# (traps do).
stop_pidfile() {
    local pidfile=$1 name=$2 grace=$3 match=${4:-} pid i
    if ! pid_alive "$pidfile" "$match"; then
        rm -f "$pidfile"
        return 0
    fi
    read -r pid <"$pidfile"
    kill -TERM "$pid" 2>/dev/null || true
    # Poll every 0.1 s: a clean shutdown usually takes well under a second for
    # Redis and a few seconds for Kafka, and callers (tests) are waiting.
    for ((i = 0; i < grace * 10; i++)); do
        pid_alive "$pidfile" || break
        sleep 0.1
    done
    if pid_alive "$pidfile"; then
        note "$name (pid $pid) still running after ${grace}s, sending SIGKILL"
        kill_pidfile "$pidfile" "$match"
    fi
    rm -f "$pidfile"
}

# kill_pidfile PIDFILE [MATCH]: SIGKILL the process and wait until it is gone
# (so that its ports are free for a restart), then remove PIDFILE.
kill_pidfile() {
    local pidfile=$1 match=${2:-} pid i
    if pid_alive "$pidfile" "$match"; then
        read -r pid <"$pidfile"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            pid_alive "$pidfile" || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
}

# check_port PORT: die unless PORT is a number in 1-65535.
check_port() {
    if [[ ! $1 =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > 65535)); then
        die "not a TCP port: '$1'"
    fi
}

# pkg_installed PACKAGE: true when dpkg has PACKAGE fully installed. dpkg -s
# alone succeeds for a package removed with its config files left behind, and
# `dpkg -s | grep -q` under pipefail fails at random: grep exits at the match,
# and dpkg, still writing a status over 4 KiB (prometheus's is 6 KiB), dies
# of SIGPIPE.
pkg_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) == ii* ]]
}
