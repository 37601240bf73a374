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
    _Atomic int stop, connected;
    /* Set by rl_sink_stop: drain until caught up or this CLOCK_MONOTONIC ms. */
    _Atomic int64_t drain_until_ms;
    _Atomic int64_t down_since_ms; /* when it became unreachable; 0 while connected */
    int64_t outage_budget_ms;
    rl_metric_t *m_published, *m_errors, *m_up, *m_dropped, *m_down_seconds;
    rl_metrics_t *metrics;              /* where rl_sink_init registered its render hook */
    void (*destroy_impl)(rl_sink_t *s); /* frees the implementation's part */
    void *impl;
};

/* Fills the common part and registers the per-sink metrics and a render hook
 * on s, which rl_sink_fini unregisters: a constructor that fails after this,
 * and rl_sink_destroy, call rl_sink_fini before freeing s. */
void rl_sink_init(rl_sink_t *s, const char *name, const rl_config_t *cfg, rl_wal_reader_t *reader,
                  rl_metrics_t *metrics, long long outage_budget_s);
void rl_sink_fini(rl_sink_t *s);
void rl_sink_set_connected(rl_sink_t *s, int up);
/* 1 when the thread should end: destroyed, or draining and either caught up
 * with the WAL or out of time. */
int rl_sink_should_stop(rl_sink_t *s);
/* Milliseconds of the drain period left (0 when not draining or past it). */
int rl_sink_grace_left(rl_sink_t *s);
/* Sleeps up to ms, returning early when the sink should stop. */
void rl_sink_sleep(rl_sink_t *s, int ms);

#endif
