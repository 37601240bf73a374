#!/usr/bin/env bash
# healthcheck.sh [HOST:PORT]: the container's HEALTHCHECK. GET /healthz from
# relay and succeed on a 200. The address is relay's own, RELAY_HTTP_LISTEN
# (default 0.0.0.0:8080; a wildcard host is asked on loopback). Bash's
# /dev/tcp speaks the HTTP, so that the run image needs no curl; the check is
# plain HTTP only (with http.tls_cert set, override HEALTHCHECK).
set -euo pipefail
listen=${1:-${RELAY_HTTP_LISTEN:-0.0.0.0:8080}}
port=${listen##*:}
host=${listen%:*}
host=${host#[}
host=${host%]}
case $host in
'' | 0.0.0.0 | '*' | :: | localhost) host=127.0.0.1 ;;
esac
exec 3<>"/dev/tcp/$host/$port"
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
status=
IFS=$' \r' read -r _ status _ <&3 || true
exec 3<&-
if [[ $status != 200 ]]; then
    echo "relay-healthcheck: GET http://$host:$port/healthz: ${status:-no answer}" >&2
    exit 1
fi
echo "relay-healthcheck: GET http://$host:$port/healthz: 200"
