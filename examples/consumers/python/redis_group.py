#!/usr/bin/env python3
"""Reads one of relay's Redis streams in a consumer group (redis-py; Debian:
python3-redis) and prints one line per entry:
    STREAM_ID ID TYPE
The group is created at the start of the stream if it does not exist (MKSTREAM), each
entry is acknowledged (XACK) after it is handled, and entries that another consumer took
but never acknowledged for MIN_IDLE_MS are claimed first (XAUTOCLAIM, Redis 6.2+).

    redis_group.py REDIS_URL STREAM GROUP CONSUMER [MAX_EVENTS] [IDLE_SECONDS]
"""
import json
import sys

import redis


def handle(entry_id, fields):
    event = json.loads(fields[b"event"])
    print(entry_id.decode(), fields[b"id"].decode(), event["type"], flush=True)


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    url, stream, group, consumer = sys.argv[1:5]
    max_events = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    idle_ms = int(float(sys.argv[6]) * 1000) if len(sys.argv) > 6 else 5000
    r = redis.Redis.from_url(url)
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    n = 0
    # Entries a crashed member left pending for over a minute come first.
    _, claimed, *_ = r.xautoclaim(stream, group, consumer, min_idle_time=60000, start_id="0-0")
    for entry_id, fields in claimed:
        handle(entry_id, fields)
        r.xack(stream, group, entry_id)
        n += 1
    while max_events == 0 or n < max_events:
        got = r.xreadgroup(group, consumer, {stream: ">"}, count=100, block=idle_ms)
        if not got:
            break  # nothing new for IDLE_SECONDS
        for _, entries in got:
            for entry_id, fields in entries:
                handle(entry_id, fields)
                r.xack(stream, group, entry_id)
                n += 1


if __name__ == "__main__":
    main()
