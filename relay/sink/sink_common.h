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
    /* What the operator's log says (sink.c): whether it ever connected, whether
     * start-up's failure was logged, the current outage's failed attempts and
     * when the last "still unreachable" line was written. */
    _Atomic int ever_up, start_logged;
    _Atomic long long failed_attempts;
    _Atomic int64_t last_unreachable_log_ms;
    /* A replay (the WAL's backlog published after start or an outage), kept
     * by the sink's thread alone: 0 when none runs. */
    int64_t replay_start_ms, replay_log_ms;
    uint64_t replay_start_cursor, replay_start_lag;
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
/* Records that the sink is (up = 1) or is not (0) connected. Logs, once each:
 * the first failure at start-up (info), an outage's start (warn, with the
 * backlog) and end (info, with its length and backlog), and starts a replay
 * when the WAL holds events the sink has not published. */
void rl_sink_set_connected(rl_sink_t *s, int up);
/* A failed connection attempt (why: what failed, never a secret): counted and
 * logged at info on the first failure of an outage, then at most every 30 s. */
void rl_sink_connect_failed(rl_sink_t *s, const char *why);
/* Called by the sink's thread after each round: logs a running replay's
 * progress every 10 s and "caught up" when the backlog is gone. */
void rl_sink_progress(rl_sink_t *s);
/* 1 when the thread should end: destroyed, or draining and either caught up
 * with the WAL or out of time. */
int rl_sink_should_stop(rl_sink_t *s);
/* Milliseconds of the drain period left (0 when not draining or past it). */
int rl_sink_grace_left(rl_sink_t *s);
/* Sleeps up to ms, returning early when the sink should stop. */
void rl_sink_sleep(rl_sink_t *s, int ms);

#endif
