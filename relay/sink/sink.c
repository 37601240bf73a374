/* sink.c -- the common part of every sink. */
#include "sink_common.h"

#include "clock.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void render_hook(void *arg)
{
    rl_sink_t *s = arg;
    int64_t since = atomic_load(&s->down_since_ms);
    rl_metric_set(s->m_down_seconds, since ? (rl_clock_mono_ms() - since) / 1000 : 0);
}

void rl_sink_init(rl_sink_t *s, const char *name, const rl_config_t *cfg, rl_wal_reader_t *reader,
                  rl_metrics_t *metrics, long long outage_budget_s)
{
    char l[64];
    s->name = name;
    s->cfg = cfg;
    s->reader = reader;
    s->outage_budget_ms = outage_budget_s * 1000;
    atomic_store(&s->down_since_ms, rl_clock_mono_ms()); /* down until it first connects */
    snprintf(l, sizeof(l), "sink=\"%s\"", name);
    if (metrics) {
        s->m_published =
            rl_metrics_counter(metrics, "relay_sink_published_total", l,
                               "Records (events and dead letters) acknowledged by the sink.");
        s->m_errors = rl_metrics_counter(metrics, "relay_sink_errors_total", l,
                                         "Failed publications or connections (retried).");
        s->m_dropped = rl_metrics_counter(
            metrics, "relay_sink_dropped_total", l,
            "WAL records the sink can never publish (malformed, or no valid destination name); "
            "each is logged.");
        s->m_up = rl_metrics_gauge(metrics, "relay_sink_up", l,
                                   "1 while the sink is connected to its service.");
        s->m_down_seconds =
            rl_metrics_gauge(metrics, "relay_sink_down_seconds", l,
                             "How long the sink has been unreachable (0 while connected).");
        rl_metrics_on_render(metrics, render_hook, s);
        s->metrics = metrics;
    }
}

void rl_sink_fini(rl_sink_t *s)
{
    rl_metrics_off_render(s->metrics, render_hook, s);
    s->metrics = NULL;
}

/* "events=N bytes=B" of the sink's backlog, into kv. */
static void backlog_kv(rl_sink_t *s, char *kv, size_t size, const char *more)
{
    uint64_t events = 0, bytes = 0;

    rl_wal_reader_lag(s->reader, &events, &bytes);
    snprintf(kv, size, "%sbacklog_events=%llu backlog_bytes=%llu", more ? more : "",
             (unsigned long long)events, (unsigned long long)bytes);
}

/* Starts a replay when the WAL holds what the sink has not published. */
static void replay_begin(rl_sink_t *s)
{
    uint64_t events = 0, bytes = 0;

    rl_wal_reader_lag(s->reader, &events, &bytes);
    s->replay_start_ms = 0;
    if (events == 0)
        return;
    s->replay_start_ms = s->replay_log_ms = rl_clock_mono_ms();
    s->replay_start_cursor = rl_wal_reader_cursor(s->reader);
    s->replay_start_lag = events;
    char kv[128];
    snprintf(kv, sizeof(kv), "events=%llu bytes=%llu", (unsigned long long)events,
             (unsigned long long)bytes);
    rl_log_kv(RL_LOG_INFO, kv, "%s: replay started: publishing the WAL's backlog", s->name);
}

void rl_sink_set_connected(rl_sink_t *s, int up)
{
    int was = atomic_exchange(&s->connected, up);
    char kv[192], more[64];

    rl_metric_set(s->m_up, up);
    if (up) {
        int64_t since = atomic_exchange(&s->down_since_ms, 0);
        if (was)
            return;
        long long attempts = atomic_exchange(&s->failed_attempts, 0);
        atomic_store(&s->last_unreachable_log_ms, 0);
        if (!atomic_exchange(&s->ever_up, 1)) {
            if (attempts)
                rl_info("%s: connected after %lld failed attempts", s->name, attempts);
            else
                rl_info("%s: connected", s->name);
        } else {
            int64_t down = since ? rl_clock_mono_ms() - since : 0;
            snprintf(more, sizeof(more), "down_ms=%lld attempts=%lld ", (long long)down, attempts);
            backlog_kv(s, kv, sizeof(kv), more);
            rl_log_kv(RL_LOG_INFO, kv, "%s: outage ended after %.1f s: connected again", s->name,
                      (double)down / 1000.0);
        }
        /* The sink's own thread calls with up = 1 (librdkafka's delivery
         * reports are served on it): the replay fields are its alone. */
        replay_begin(s);
        return;
    }
    if (was) {
        atomic_store(&s->down_since_ms, rl_clock_mono_ms());
        backlog_kv(s, kv, sizeof(kv), NULL);
        rl_log_kv(RL_LOG_WARN, kv,
                  "%s: outage started: disconnected; events stay in the WAL until it is back",
                  s->name);
    }
}

void rl_sink_connect_failed(rl_sink_t *s, const char *why)
{
    long long n = atomic_fetch_add(&s->failed_attempts, 1) + 1;
    int64_t now = rl_clock_mono_ms(), last = atomic_load(&s->last_unreachable_log_ms);
    int64_t since = atomic_load(&s->down_since_ms);
    char kv[192], more[64];

    rl_sink_set_connected(s, 0);
    if (last && now - last < 30000)
        return;
    atomic_store(&s->last_unreachable_log_ms, now);
    snprintf(more, sizeof(more), "attempts=%lld down_ms=%lld ", n,
             since ? (long long)(now - since) : 0LL);
    backlog_kv(s, kv, sizeof(kv), more);
    if (!atomic_load(&s->ever_up) && !atomic_exchange(&s->start_logged, 1))
        rl_log_kv(RL_LOG_INFO, kv,
                  "%s: unreachable at start-up (%s); retrying, events stay in the WAL", s->name,
                  why);
    else
        rl_log_kv(RL_LOG_INFO, kv, "%s: still unreachable (%s); retrying", s->name, why);
}

void rl_sink_progress(rl_sink_t *s)
{
    if (!s->replay_start_ms)
        return;
    int64_t now = rl_clock_mono_ms();
    uint64_t events = 0, bytes = 0;
    char kv[192];

    rl_wal_reader_lag(s->reader, &events, &bytes);
    if (events != 0 && now - s->replay_log_ms < 10000)
        return;
    uint64_t done = rl_wal_reader_cursor(s->reader) - s->replay_start_cursor;
    double secs = (double)(now - s->replay_start_ms) / 1000.0;
    long long rate = secs > 0 ? (long long)((double)done / secs) : (long long)done;
    snprintf(kv, sizeof(kv), "published=%llu events_per_s=%lld lag_events=%llu lag_bytes=%llu",
             (unsigned long long)done, rate, (unsigned long long)events, (unsigned long long)bytes);
    s->replay_log_ms = now;
    if (events == 0) {
        rl_log_kv(RL_LOG_INFO, kv, "%s: replay caught up in %.1f s", s->name, secs);
        s->replay_start_ms = 0;
    } else {
        rl_log_kv(RL_LOG_INFO, kv, "%s: replay in progress", s->name);
    }
}

int rl_sink_should_stop(rl_sink_t *s)
{
    if (atomic_load(&s->stop))
        return 1;
    int64_t until = atomic_load(&s->drain_until_ms);
    return until && (rl_clock_mono_ms() >= until || rl_wal_reader_caught_up(s->reader));
}

int rl_sink_grace_left(rl_sink_t *s)
{
    int64_t until = atomic_load(&s->drain_until_ms), left = until - rl_clock_mono_ms();
    return until && !atomic_load(&s->stop) && left > 0 ? (int)left : 0;
}

void rl_sink_sleep(rl_sink_t *s, int ms)
{
    while (ms > 0 && !rl_sink_should_stop(s)) {
        int step = ms < 50 ? ms : 50;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

const char *rl_sink_name(const rl_sink_t *s)
{
    return s->name;
}

int rl_sink_connected(const rl_sink_t *s)
{
    return atomic_load(&((rl_sink_t *)s)->connected);
}

void rl_sink_status(const rl_sink_t *s, rl_sink_status_t *st)
{
    rl_sink_t *m = (rl_sink_t *)s; /* atomics are read through a non-const lvalue */
    int64_t since = atomic_load(&m->down_since_ms);
    st->connected = atomic_load(&m->connected);
    st->down_ms = since ? rl_clock_mono_ms() - since : 0;
    st->outage_budget_ms = s->outage_budget_ms;
    st->over_budget = s->outage_budget_ms > 0 && st->down_ms > s->outage_budget_ms;
    st->errors = (uint64_t)rl_metric_get(s->m_errors);
    rl_wal_reader_lag(s->reader, &st->lag_events, &st->lag_bytes);
}

void rl_sink_stop(rl_sink_t *s, int grace_ms)
{
    if (!s)
        return;
    if (grace_ms <= 0)
        atomic_store(&s->stop, 1);
    else
        atomic_store(&s->drain_until_ms, rl_clock_mono_ms() + grace_ms);
}

void rl_sink_destroy(rl_sink_t *s)
{
    if (!s)
        return;
    if (!atomic_load(&s->drain_until_ms))
        atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    rl_sink_fini(s);
    s->destroy_impl(s);
    free(s);
}
