/* main.c -- command line, start-up order, readiness and shutdown.
 *
 * Start-up: config -> metrics -> WAL (recovery) -> ingest -> sinks -> HTTP.
 * Shutdown (SIGTERM/SIGINT), within http.shutdown_grace: stop accepting, let
 * in-flight requests get their answer, let the sinks publish what the WAL
 * holds, then close the WAL (cursors persisted, fsynced) and exit 0. What was
 * not published is replayed at the next start. */
#include "admin.h"
#include "clock.h"
#include "control.h"
#include "codec.h"
#include "config.h"
#include "http.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "procmetrics.h"
#include "replay.h"
#include "sink.h"
#include "state.h"
#include "version.h"
#include "wal.h"
#include "waltool.h"

#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#ifndef RL_DEFAULT_CONFIG /* make install: -DRL_DEFAULT_CONFIG=\"$(CONFDIR)/relay.conf\" */
#define RL_DEFAULT_CONFIG "relay.conf"
#endif

typedef struct app {
    rl_config_t *cfg;
    rl_metrics_t *metrics;
    rl_procmetrics_t *proc;
    rl_wal_t *wal;
    rl_ingest_t *ingest;
    rl_sink_t *sinks[2];
    size_t nsinks;
    rl_state_t *state; /* NULL: off */
    rl_http_t *http;
    rl_replay_t *replay;
    rl_control_t control;
    rl_admin_t *admin;
} app_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: relay [-c FILE] [--check-config] [--version] [--help]\n"
            "       relay replay --sink redis|kafka|all --since TIME|--from-seq N [...]\n"
            "       relay redrive --source NAME [--since TIME]\n"
            "       (relay replay --help: the rest; both talk to the running relay)\n"
            "       relay wal stat|dump|verify [OPTIONS]   look inside the WAL (below)\n"
            "\n"
            "  -c, --config FILE   configuration file (default " RL_DEFAULT_CONFIG ")\n"
            "      --check-config  validate the configuration, print it (secrets hidden), exit\n"
            "      --config-reference  print every configuration key as a Markdown table\n"
            "  -V, --version       print the version\n"
            "  -h, --help          this text\n"
            "\n"
            "Every key can be overridden by the environment: RELAY_<SECTION>_<KEY>,\n"
            "RELAY_SOURCE_<NAME>_<KEY>; unknown [kafka] keys go to librdkafka.\n"
            "\nwal commands:\n");
    rl_waltool_usage(out);
    fprintf(out, "\ncodecs:\n");
    for (size_t i = 0; rl_codecs[i]; i++)
        fprintf(out, "  %-8s %s\n", rl_codecs[i]->name, rl_codecs[i]->help);
}

/* /readyz: ready while the WAL can take events (writable, under its cap) and
 * no sink has been down longer than its outage budget. A sink that is down
 * within its budget (none by default) keeps relay ready: the WAL buffers for
 * it, which is the point of relay. The body details the WAL and every sink. */
static char *ready(void *arg, int *ok)
{
    app_t *a = arg;
    rl_wal_stats_t ws;
    char detail[256];
    size_t o;
    json_t *reasons = json_array(), *sinks = json_object();

    rl_wal_stats(a->wal, &ws);
    *ok = ws.writable && !ws.full;
    if (!ws.writable)
        json_array_append_new(reasons, json_string("wal_not_writable"));
    if (ws.full)
        json_array_append_new(reasons, json_string("wal_full"));
    o = (size_t)snprintf(detail, sizeof(detail), "wal:%s",
                         !ws.writable ? "write_error"
                         : ws.full    ? "full"
                                      : "ok");
    for (size_t i = 0; i < a->nsinks; i++) {
        rl_sink_status_t st;
        const char *name = rl_sink_name(a->sinks[i]);
        rl_sink_status(a->sinks[i], &st);
        if (st.over_budget) {
            char r[64];
            *ok = 0;
            snprintf(r, sizeof(r), "%s_down_past_outage_budget", name);
            json_array_append_new(reasons, json_string(r));
        }
        json_object_set_new(
            sinks, name,
            json_pack("{s:s,s:b,s:I,s:I,s:b,s:I,s:I,s:I}", "state", st.connected ? "up" : "down",
                      "connected", st.connected, "down_seconds", (json_int_t)(st.down_ms / 1000),
                      "outage_budget_seconds", (json_int_t)(st.outage_budget_ms / 1000),
                      "over_budget", st.over_budget, "lag_events", (json_int_t)st.lag_events,
                      "lag_bytes", (json_int_t)st.lag_bytes, "errors", (json_int_t)st.errors));
        if (o < sizeof(detail))
            o += (size_t)snprintf(detail + o, sizeof(detail) - o, " %s:%s", name,
                                  st.connected ? "up" : "down(buffering)");
    }
    /* A degraded dedup store (Redis down with store = redis) still takes
     * events, from its local window: ready, and said. */
    const char *dedup = rl_ingest_dedup_state(a->ingest);
    if (o < sizeof(detail))
        snprintf(detail + o, sizeof(detail) - o, " dedup:%s", dedup);
    /* Retention: what relay replay can still give back, and since when. */
    char since[32] = "";
    if (ws.retained_segments) {
        time_t t = (time_t)(ws.retained_since_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    json_t *body =
        json_pack("{s:s,s:o,s:s,s:{s:b,s:b,s:I,s:I,s:f,s:I,s:I,s:I,s:o},s:o,s:s}", "status",
                  *ok ? "ready" : "not_ready", "reasons", reasons, "detail", detail, "wal",
                  "writable", ws.writable, "full", ws.full, "bytes", (json_int_t)ws.bytes,
                  "max_bytes", (json_int_t)ws.max_bytes, "fill_ratio",
                  ws.max_bytes ? (double)ws.bytes / (double)ws.max_bytes : 0.0, "segments",
                  (json_int_t)ws.segments, "retained_bytes", (json_int_t)ws.retained_bytes,
                  "retained_first_seq", (json_int_t)ws.retained_first_seq, "retained_since",
                  since[0] ? json_string(since) : json_null(), "sinks", sinks, "dedup", dedup);
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return s;
}

/* Waits until no request waits for its answer, or until `until` (ms). */
static void wait_inflight(app_t *a, int64_t until)
{
    int64_t next_note = rl_clock_mono_ms() + 5000;
    while (rl_http_inflight(a->http) > 0 && rl_clock_mono_ms() < until) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000L};
        nanosleep(&ts, NULL);
        if (rl_clock_mono_ms() >= next_note) {
            rl_warn("shutdown: %d requests still wait for the WAL", rl_http_inflight(a->http));
            next_note += 5000;
        }
    }
}

static void app_stop(app_t *a)
{
    int64_t until = rl_clock_mono_ms() + a->cfg->http.shutdown_grace * 1000;
    rl_admin_destroy(a->admin);   /* no new replay or redrive */
    rl_replay_destroy(a->replay); /* a running replay stops: it can be started again */
    if (a->http) {
        /* Answer what is in flight: ack = wal requests as soon as their batch
         * is written, ack = publish ones once the sinks acknowledged them or
         * the grace period is over, and then with 503 (the events stay in the
         * WAL). Every answer comes from the WAL's flusher, so the last wait is
         * short; it has no limit because the connections must not be freed
         * while their answer may still come. */
        rl_http_quiesce(a->http);
        wait_inflight(a, until);
        rl_wal_cancel_published(a->wal);
        wait_inflight(a, INT64_MAX);
        rl_http_destroy(a->http);
    }
    rl_state_destroy(a->state); /* before the sinks drain: what it appends is published */
    /* The sinks drain together, within what is left of the grace period. */
    int64_t left = until - rl_clock_mono_ms();
    int grace = left > 0 ? (int)left : 0;
    for (size_t i = 0; i < a->nsinks; i++) {
        uint64_t events = 0, bytes = 0;
        rl_wal_reader_lag(rl_wal_reader(a->wal, rl_sink_name(a->sinks[i])), &events, &bytes);
        rl_info("shutdown: %s: publishing the %llu events it has not acknowledged, for up to "
                "%d ms",
                rl_sink_name(a->sinks[i]), (unsigned long long)events, grace);
        rl_sink_stop(a->sinks[i], grace);
    }
    for (size_t i = 0; i < a->nsinks; i++) {
        const char *name = rl_sink_name(a->sinks[i]); /* a literal */
        uint64_t events = 0, bytes = 0;
        rl_sink_destroy(a->sinks[i]);
        rl_wal_reader_lag(rl_wal_reader(a->wal, name), &events, &bytes);
        if (events)
            rl_info("shutdown: %s: %llu events not acknowledged yet; they are published at the "
                    "next start",
                    name, (unsigned long long)events);
        else
            rl_info("shutdown: %s: everything acknowledged", name);
    }
    rl_ingest_destroy(a->ingest);
    rl_wal_close(a->wal);
    rl_procmetrics_destroy(a->proc);
    rl_metrics_destroy(a->metrics);
    rl_config_destroy(a->cfg);
}

static int app_start(app_t *a, char *errstr, size_t errstr_size)
{
    const rl_config_t *cfg = a->cfg;
    const char *readers[5] = {"dedup"}; /* the dedup window's persister (dedup_store.h) */
    size_t nreaders = 1;
    int state_kafka = 0, state_on = rl_state_wanted(cfg, &state_kafka);

    if (cfg->kafka.enabled)
        readers[nreaders++] = "kafka";
    if (cfg->redis.enabled)
        readers[nreaders++] = "redis";
    if (state_on)
        readers[nreaders++] = RL_STATE_READER;
    if (state_kafka)
        readers[nreaders++] = RL_STATE_KAFKA_READER;
    rl_wal_opts_t wo = {
        .dir = cfg->wal.dir,
        .segment_size = (uint64_t)cfg->wal.segment_size,
        .max_size = (uint64_t)cfg->wal.max_size,
        .fsync = (int)cfg->wal.fsync,
        .readers = readers,
        .nreaders = nreaders,
        .preallocate = (int)cfg->wal.preallocate,
        .retention_s = (uint64_t)cfg->wal.retention,
        .retention_bytes = (uint64_t)cfg->wal.retention_size,
    };
    if (!(a->metrics = rl_metrics_new(errstr, errstr_size)))
        return -1;
    if (!(a->proc = rl_procmetrics_new(a->metrics, RELAY_VERSION, errstr, errstr_size)))
        return -1;
    if (!(a->wal = rl_wal_open(&wo, a->metrics, errstr, errstr_size)))
        return -1;
    /* The sinks start before the dedup window is loaded: they need only the
     * WAL, and after an outage the backlog drains while the window (up to
     * max_entries ids) is read back. HTTP starts last, once ingest is whole. */
    if (cfg->kafka.enabled) {
        rl_sink_t *s = rl_sink_kafka_new(cfg, "kafka", rl_wal_reader(a->wal, "kafka"), a->metrics,
                                         errstr, errstr_size);
        if (!s)
            return -1;
        a->sinks[a->nsinks++] = s;
    }
    if (cfg->redis.enabled) {
        rl_sink_t *s = rl_sink_redis_new(cfg, "redis", rl_wal_reader(a->wal, "redis"), a->metrics,
                                         errstr, errstr_size);
        if (!s)
            return -1;
        a->sinks[a->nsinks++] = s;
    }
    if (!(a->ingest = rl_ingest_new(cfg, a->wal, a->metrics, errstr, errstr_size)))
        return -1;
    int64_t t0 = rl_clock_mono_ms();
    long n = rl_ingest_rebuild(a->ingest, errstr, errstr_size);
    if (n < 0)
        return -1;
    rl_info("dedup: %ld ids remembered from the WAL in %ld ms", n, (long)(rl_clock_mono_ms() - t0));
    if (state_on &&
        !(a->state = rl_state_new(cfg, a->wal, a->ingest, a->metrics, errstr, errstr_size)))
        return -1;
    if (!state_on)
        rl_info("state: off (state.enabled, or no Redis): no channel state, channel.down or "
                "channel.up");
    if (!(a->http =
              rl_http_new(cfg, a->ingest, a->state, a->metrics, ready, a, errstr, errstr_size)))
        return -1;
    if (!(a->replay = rl_replay_new(cfg, a->wal, a->metrics, errstr, errstr_size)))
        return -1;
    a->control = (rl_control_t){.replay = a->replay, .ingest = a->ingest, .wal = a->wal};
    char sock[4096];
    rl_admin_default_path(cfg->wal.dir, sock, sizeof(sock));
    /* Without it relay still does its job: say so, and go on. */
    char why[512];
    if (!(a->admin = rl_admin_new(sock, rl_control_handle, &a->control, why, sizeof(why))))
        rl_warn("%s: relay replay and relay redrive cannot reach this relay", why);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {.name = "config", .has_arg = required_argument, .val = 'c'},
        {.name = "check-config", .has_arg = no_argument, .val = 'k'},
        {.name = "config-reference", .has_arg = no_argument, .val = 'r'},
        {.name = "version", .has_arg = no_argument, .val = 'V'},
        {.name = "help", .has_arg = no_argument, .val = 'h'},
        {0},
    };
    const char *path = RL_DEFAULT_CONFIG;
    int check = 0, c, rc = 1, sig = 0;
    char errstr[1024];
    app_t app = {0};
    sigset_t set;

    if (argc > 1 && (!strcmp(argv[1], "replay") || !strcmp(argv[1], "redrive")))
        return rl_control_cli(argc - 1, argv + 1, RL_DEFAULT_CONFIG);
    if (argc > 1 && !strcmp(argv[1], "wal"))
        return rl_waltool_main(argc - 1, argv + 1, RL_DEFAULT_CONFIG);
    while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'k': check = 1; break;
        case 'r': rl_config_reference(stdout); return 0;
        case 'V': printf("relay %s\n", RELAY_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (!(app.cfg = rl_config_load(path, errstr, sizeof(errstr)))) {
        fprintf(stderr, "%s\n", errstr);
        return 1;
    }
    if (check) {
        printf("# %s: OK\n", path);
        rl_config_dump(app.cfg, stdout);
        rl_config_destroy(app.cfg);
        return 0;
    }
    rl_log_set_level(app.cfg->log.level);
    rl_log_set_format(app.cfg->log.format);
    for (size_t i = 0; i < app.cfg->nsources; i++)
        if (!app.cfg->sources[i].secret[0])
            rl_warn("source %s has no secret: anyone who can reach relay can post to it",
                    app.cfg->sources[i].name);

    /* Signals are taken synchronously by this thread; every thread created
     * after this inherits the mask and never sees them. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (app_start(&app, errstr, sizeof(errstr)) != 0) {
        rl_error("start-up failed: %s", errstr);
        goto out;
    }
    rl_info("relay %s ready (%zu sources)", RELAY_VERSION, app.cfg->nsources);
    sd_notify(0, "READY=1");
    sigwait(&set, &sig);
    rl_info("%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    sd_notify(0, "STOPPING=1");
    rc = 0;
out:
    app_stop(&app);
    if (rc == 0)
        rl_info("stopped");
    return rc;
}
