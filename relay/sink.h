/* sink.h -- what every sink shows the rest of relay. Each sink runs on its own
 * thread, reading the WAL through its own reader, so one sink being down never
 * stops another or the HTTP side. */
#ifndef RL_SINK_H
#define RL_SINK_H

#include <stddef.h>

#include "config.h"
#include "metrics.h"
#include "wal.h"

typedef struct rl_sink rl_sink_t;

/* Sink constructors: cfg, reader and metrics are borrowed and must outlive the
 * sink. The thread starts at once; connection failures are retried there, never
 * fatal here. NULL with errstr only for bad configuration or out-of-memory. */
rl_sink_t *rl_sink_kafka_new(const rl_config_t *cfg, rl_wal_reader_t *reader,
                             rl_metrics_t *metrics, char *errstr, size_t errstr_size);
rl_sink_t *rl_sink_redis_new(const rl_config_t *cfg, rl_wal_reader_t *reader,
                             rl_metrics_t *metrics, char *errstr, size_t errstr_size);

const char *rl_sink_name(const rl_sink_t *s);
/* 1 while the sink has a working connection to its service. */
int rl_sink_connected(const rl_sink_t *s);
/* Stops the thread after giving in-flight publications up to grace_ms to be
 * acknowledged (their cursor is then persisted by the WAL); frees. NULL-safe. */
void rl_sink_destroy(rl_sink_t *s, int grace_ms);

#endif
