/* replay.h -- re-publishing retained events to one sink (relay replay).
 *
 * A replay reads a range of the WAL through a range reader (wal.h) and feeds
 * it to a second instance of the sink ("redis-replay", "kafka-replay"), built
 * by the same constructor as the sink itself: the same bytes, the same
 * CloudEvent ids and keys, in WAL order (so in per-channel order). The sink's
 * own instance goes on publishing new events meanwhile, and its cursor is not
 * touched: a replay moves nothing that decides what is deleted or answered.
 * Replaying a range twice publishes it twice; consumers drop the copies by
 * CloudEvent source + id, as for any at-least-once delivery. */
#ifndef RL_REPLAY_H
#define RL_REPLAY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "wal.h"

typedef struct rl_replay rl_replay_t;

typedef struct rl_replay_req {
    const char *sink;    /* "kafka", "redis" or "all" (every enabled sink) */
    uint64_t from_seq;   /* first seq; 0: the first segment written at or after since_ms */
    uint64_t until_seq;  /* last seq; 0: the last durable one when the replay starts */
    int64_t since_ms;    /* only events received at or after (unix ms); 0: any */
    int64_t until_ms;    /* only events received at or before (unix ms); 0: any */
    const char *channel; /* only this channel_id; NULL: any */
    const char *type;    /* only this type; NULL: any */
} rl_replay_req_t;

/* cfg, wal and metrics are borrowed and outlive the replayer. NULL with errstr
 * on out-of-memory. */
rl_replay_t *rl_replay_new(const rl_config_t *cfg, rl_wal_t *wal, rl_metrics_t *metrics,
                           char *errstr, size_t errstr_size);
/* Starts a replay to each sink the request names; strings are copied. 0, or
 * -1 with errstr (an unknown or disabled sink, a replay to it still running,
 * nothing retained in the range, out of memory): then nothing was started. */
int rl_replay_start(rl_replay_t *rp, const rl_replay_req_t *req, char *errstr, size_t errstr_size);
/* The replays running and the last finished one per sink:
 * {"replays":[{"sink","state":"running|done|stopped","from_seq","until_seq",
 * "read_seq","events","published_seq","gap","seconds"}]}. A new reference
 * (caller decrefs); NULL on out-of-memory. */
json_t *rl_replay_status(rl_replay_t *rp);
/* Stops running replays (what they did not publish is not published) and
 * frees everything; before the WAL is closed. NULL-safe. */
void rl_replay_destroy(rl_replay_t *rp);

#endif
