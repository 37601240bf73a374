/* sink_common.h -- the part of a sink shared by its implementations (private to
 * sink_*.c: not a public interface). */
#ifndef RL_SINK_COMMON_H
#define RL_SINK_COMMON_H

#include <pthread.h>
#include <stdatomic.h>

#include "sink.h"

struct rl_sink {
    const char *name;
    const rl_config_t *cfg;
    rl_wal_reader_t *reader;
    pthread_t thread;
    _Atomic int stop, connected, grace_ms;
    rl_metric_t *m_published, *m_errors, *m_up, *m_dropped;
    void (*destroy_impl)(rl_sink_t *s); /* frees the implementation's part */
    void *impl;
};

/* Fills the common part and registers the per-sink metrics. */
void rl_sink_init(rl_sink_t *s, const char *name, const rl_config_t *cfg,
                  rl_wal_reader_t *reader, rl_metrics_t *metrics);
void rl_sink_set_connected(rl_sink_t *s, int up);
/* Sleeps up to ms, returning early when the sink is asked to stop. */
void rl_sink_sleep(rl_sink_t *s, int ms);

#endif
