/* state.h -- each channel's live state, kept in Redis and on a log-compacted
 * Kafka topic, and the debounced channel.down / channel.up events.
 *
 * The state engine is a WAL reader like a sink ("state"): every channel.*
 * event (except relay's own channel.down and channel.up) is applied to the
 * channel's hash in Redis by one Lua script, which also keeps the index by
 * status and the timers of the debounce (the outbox, a sorted set). The same
 * thread takes due timers from the outbox (atomically: with several relays on
 * one Redis, one of them takes each), appends channel.down or channel.up to the
 * WAL through rl_ingest_emit (deterministic ids, so a transition taken twice
 * after a crash is a duplicate), and then removes the timer. A second reader
 * ("state-kafka") trails the first and publishes each changed channel's state
 * to the Kafka topic. docs/channels.md says what users see.
 *
 * Threads: one, "rl-state", plus librdkafka's. rl_state_get and
 * rl_state_list run on HTTP workers, on a connection of their own under a lock. */
#ifndef RL_STATE_H
#define RL_STATE_H

#include <stddef.h>

#include "config.h"
#include "ingest.h"
#include "metrics.h"
#include "wal.h"

typedef struct rl_state rl_state_t;

/* The WAL readers the state engine needs (rl_wal_opts_t.readers). */
#define RL_STATE_READER "state"
#define RL_STATE_KAFKA_READER "state-kafka"

/* 1 when cfg turns the state engine on: state.enabled and a Redis to keep it in
 * (state.redis_url, or redis.url while redis.enabled). *kafka is set to 1 when
 * it also publishes to state.kafka_topic (kafka.enabled and a topic set). */
int rl_state_wanted(const rl_config_t *cfg, int *kafka);

/* Starts the engine. cfg, wal, ig and metrics are borrowed and must outlive it;
 * the readers RL_STATE_READER (and RL_STATE_KAFKA_READER when *kafka of
 * rl_state_wanted) must be among the WAL's. Redis and Kafka are reached from the
 * engine's thread, retried there, never fatal here. NULL with errstr for bad
 * configuration or out-of-memory. */
rl_state_t *rl_state_new(const rl_config_t *cfg, rl_wal_t *wal, rl_ingest_t *ig,
                         rl_metrics_t *metrics, char *errstr, size_t errstr_size);
/* Stops the thread (what it has not applied is applied at the next start) and
 * frees everything. NULL-safe. */
void rl_state_destroy(rl_state_t *st);

/* GET /v1/channels/{id}: returns the HTTP status (200, 404 unknown_channel, 503
 * state_unavailable) with *body a malloc'd JSON object the caller frees (the
 * state or an error), or NULL on out-of-memory. Any thread. */
int rl_state_get(rl_state_t *st, const char *channel_id, char **body);
/* GET /v1/channels?status=S: channels in status S ordered by since, `offset`
 * of them skipped, at most `limit`; as rl_state_get. */
int rl_state_list(rl_state_t *st, const char *status, long offset, long limit, char **body);

#endif
