/* sink.c -- the common part of every sink. */
#include "sink_common.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void rl_sink_init(rl_sink_t *s, const char *name, const rl_config_t *cfg,
                  rl_wal_reader_t *reader, rl_metrics_t *metrics)
{
    char l[64];
    s->name = name;
    s->cfg = cfg;
    s->reader = reader;
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
    }
}

void rl_sink_set_connected(rl_sink_t *s, int up)
{
    int was = atomic_exchange(&s->connected, up);
    rl_metric_set(s->m_up, up);
    if (was != up)
        rl_log(up ? RL_LOG_INFO : RL_LOG_WARN, "%s: %s", s->name,
               up ? "connected" : "disconnected; events stay in the WAL until it is back");
}

void rl_sink_sleep(rl_sink_t *s, int ms)
{
    while (ms > 0 && !atomic_load(&s->stop)) {
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

void rl_sink_destroy(rl_sink_t *s, int grace_ms)
{
    if (!s)
        return;
    atomic_store(&s->grace_ms, grace_ms);
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    s->destroy_impl(s);
    free(s);
}
