/* sink.h -- what every sink shows the rest of relay. Each sink runs on its own
 * thread, reading the WAL through its own reader, so one sink being down never
 * stops another or the HTTP side. */
#ifndef RL_SINK_H
#define RL_SINK_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "metrics.h"
#include "wal.h"

typedef struct rl_sink rl_sink_t;

/* Sink constructors: cfg, name, reader and metrics are borrowed and must
 * outlive the sink. `name` names it in logs and metrics: "kafka", "redis", or
 * for a replay's second instance (reading a range reader) "kafka-replay",
 * "redis-replay". The thread starts at once; connection failures are retried
 * there, never fatal here. NULL with errstr only for bad configuration or
 * out-of-memory. */
/* The librdkafka configuration every relay producer starts from: kafka.brokers,
 * relay's defaults (idempotent, acks=all, lz4, never giving up), the [kafka]
 * pass-through properties after them, relay's log callback and thread priority.
 * The caller owns it (rd_kafka_new takes it on success); NULL with errstr for a
 * property librdkafka refuses. */
rd_kafka_conf_t *rl_sink_kafka_conf(const rl_config_t *cfg, char *errstr, size_t errstr_size);
rl_sink_t *rl_sink_kafka_new(const rl_config_t *cfg, const char *name, rl_wal_reader_t *reader,
                             rl_metrics_t *metrics, char *errstr, size_t errstr_size);
rl_sink_t *rl_sink_redis_new(const rl_config_t *cfg, const char *name, rl_wal_reader_t *reader,
                             rl_metrics_t *metrics, char *errstr, size_t errstr_size);

const char *rl_sink_name(const rl_sink_t *s);
/* 1 while the sink has a working connection to its service. */
int rl_sink_connected(const rl_sink_t *s);

/* What /readyz shows of a sink. */
typedef struct rl_sink_status {
    int connected;
    int64_t down_ms;                /* how long it has been unreachable; 0 while connected */
    int64_t outage_budget_ms;       /* <sink>.outage_budget; 0: none */
    int over_budget;                /* down longer than a non-zero budget */
    uint64_t errors;                /* relay_sink_errors_total */
    uint64_t lag_events, lag_bytes; /* what it has not acknowledged yet */
} rl_sink_status_t;
void rl_sink_status(const rl_sink_t *s, rl_sink_status_t *st);

/* Shutdown, first step: the sink goes on publishing what the WAL holds until
 * it has acknowledged all of it or grace_ms have passed, then its thread ends
 * (what is left is replayed at the next start). Returns at once, so that every
 * sink drains at the same time. */
void rl_sink_stop(rl_sink_t *s, int grace_ms);
/* Waits for the thread (stopping it at once unless rl_sink_stop was called) and
 * frees the sink. NULL-safe. */
void rl_sink_destroy(rl_sink_t *s);

#endif
