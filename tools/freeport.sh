#!/usr/bin/env bash
# freeport.sh [EXCLUDE...]: print a TCP port on 127.0.0.1 that nothing uses,
# other than the ports given. Tests use it so that they never collide with a
# `make run` on the standard ports (6379, 9092, 8080) or with each other.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
freeport "$@"
