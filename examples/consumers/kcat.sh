#!/usr/bin/env bash
# kcat.sh -- relay's topics with kcat (Debian: kcat).
#   kcat.sh BROKERS TOPIC          everything there, then exit
#   kcat.sh BROKERS TOPIC GROUP    as a member of a consumer group (committed offsets)
set -euo pipefail
brokers=${1:?usage: kcat.sh BROKERS TOPIC [GROUP]} topic=${2:?usage: kcat.sh BROKERS TOPIC [GROUP]}
if (($# > 2)); then
    # -G: a balanced consumer; -o beginning applies to a group with no offsets yet.
    exec kcat -b "$brokers" -G "$3" -o beginning -X auto.offset.reset=earliest \
        -f '%k %h %s\n' "$topic"
fi
exec kcat -b "$brokers" -C -t "$topic" -o beginning -e -q -f '%k %h %s\n'
