#!/usr/bin/env python3
"""Reads relay's Kafka topics in a consumer group (confluent-kafka, librdkafka's Python
binding; Debian: python3-confluent-kafka) and prints one line per event:
    KEY CE_ID TYPE
Offsets are committed after an event is handled, never before (at least once), and
repeats are dropped on the CloudEvent's source + id, as relay's docs ask.

    consumer.py BROKERS GROUP TOPIC[,TOPIC...] [MAX_EVENTS] [IDLE_SECONDS]
"""
import json
import sys

from confluent_kafka import Consumer


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    brokers, group, topics = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    max_events = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    idle = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": group,
        "auto.offset.reset": "earliest",  # a new group starts at the beginning
        "enable.auto.commit": False,      # commit after handling, below
    })
    c.subscribe(topics)
    seen, n = set(), 0
    try:
        while max_events == 0 or n < max_events:
            m = c.poll(idle)
            if m is None:
                break  # nothing for IDLE_SECONDS
            if m.error():
                print("error:", m.error(), file=sys.stderr)
                continue
            headers = dict((k, v.decode() if v else None) for k, v in (m.headers() or []))
            ident = (headers.get("ce_source"), headers.get("ce_id"))
            if ident not in seen:  # a repeat after a relay restart is skipped
                seen.add(ident)
                event = json.loads(m.value())
                print(m.key().decode() if m.key() else "", headers.get("ce_id"), event["type"],
                      flush=True)
                n += 1
            c.commit(message=m, asynchronous=False)
    finally:
        c.close()


if __name__ == "__main__":
    main()
