/* main.c -- command line, start-up order and shutdown.
 *
 * Start-up: config -> metrics -> WAL (recovery) -> ingest -> sinks -> HTTP.
 * Shutdown (SIGTERM/SIGINT): stop accepting, let in-flight requests get their
 * answer, give the sinks a grace period to drain, close the WAL (cursors
 * persisted, fsynced). What was not published is replayed at the next start. */
#include "auth.h"
#include "codec.h"
#include "config.h"
#include "http.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "sink.h"
#include "version.h"
#include "wal.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define SHUTDOWN_GRACE_MS 5000

typedef struct app {
    rl_config_t *cfg;
    rl_metrics_t *metrics;
    rl_wal_t *wal;
    rl_ingest_t *ingest;
    rl_sink_t *sinks[2];
    size_t nsinks;
    rl_http_t *http;
} app_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: relay [-c FILE] [--check-config] [--version] [--help]\n"
            "\n"
            "  -c, --config FILE   configuration file (default ./relay.conf)\n"
            "      --check-config  validate the configuration, print it (secrets hidden), exit\n"
            "      --config-reference  print every configuration key as a Markdown table\n"
            "  -V, --version       print the version\n"
            "  -h, --help          this text\n"
            "\n"
            "Every key can be overridden by the environment: RELAY_<SECTION>_<KEY>,\n"
            "RELAY_SOURCE_<NAME>_<KEY>; unknown [kafka] keys go to librdkafka.\n"
            "\ncodecs:\n");
    for (size_t i = 0; rl_codecs[i]; i++)
        fprintf(out, "  %-8s %s\n", rl_codecs[i]->name, rl_codecs[i]->help);
}

/* Checks that need more than the config module knows about. */
static int check_more(const rl_config_t *cfg, char *errstr, size_t errstr_size)
{
    char why[256];
    if (cfg->kafka.enabled && rl_record_template_check(cfg->kafka.topic, why, sizeof(why))) {
        snprintf(errstr, errstr_size, "%s: kafka.topic: %s", cfg->path, why);
        return -1;
    }
    if (cfg->redis.enabled && rl_record_template_check(cfg->redis.stream, why, sizeof(why))) {
        snprintf(errstr, errstr_size, "%s: redis.stream: %s", cfg->path, why);
        return -1;
    }
    if (cfg->kafka.enabled &&
        rl_record_template_check(cfg->kafka.deadletter_topic, why, sizeof(why))) {
        snprintf(errstr, errstr_size, "%s: kafka.deadletter_topic: %s", cfg->path, why);
        return -1;
    }
    if (cfg->redis.enabled &&
        rl_record_template_check(cfg->redis.deadletter_stream, why, sizeof(why))) {
        snprintf(errstr, errstr_size, "%s: redis.deadletter_stream: %s", cfg->path, why);
        return -1;
    }
    /* Secrets the scheme cannot use (a whsec_ secret that is not Base64) stop
     * start-up here, so that --check-config finds them too. */
    for (size_t i = 0; i < cfg->nsources; i++) {
        rl_auth_t *a = rl_auth_new(&cfg->sources[i], why, sizeof(why));
        if (!a) {
            snprintf(errstr, errstr_size, "%s:%d: [source %s] %s", cfg->path, cfg->sources[i].line,
                     cfg->sources[i].name, why);
            return -1;
        }
        rl_auth_destroy(a);
    }
    for (int i = 0; i < 2 && *cfg->http.tls_cert; i++) {
        const char *path = i ? cfg->http.tls_key : cfg->http.tls_cert;
        if (access(path, R_OK) != 0) {
            snprintf(errstr, errstr_size, "%s: http.%s %s: %s", cfg->path,
                     i ? "tls_key" : "tls_cert", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int ready(void *arg, char *why, size_t whysz)
{
    app_t *a = arg;
    int ok = rl_wal_writable(a->wal);
    size_t o = (size_t)snprintf(why, whysz, "wal:%s", ok ? "ok" : "write_error");
    for (size_t i = 0; i < a->nsinks && o < whysz; i++)
        o += (size_t)snprintf(why + o, whysz - o, " %s:%s", rl_sink_name(a->sinks[i]),
                              rl_sink_connected(a->sinks[i]) ? "up" : "down(buffering)");
    return ok;
}

static void app_stop(app_t *a)
{
    if (a->http) {
        rl_http_quiesce(a->http);
        for (int i = 0; i < 200 && rl_http_inflight(a->http) > 0; i++) {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
        rl_http_destroy(a->http);
    }
    for (size_t i = 0; i < a->nsinks; i++)
        rl_sink_destroy(a->sinks[i], SHUTDOWN_GRACE_MS);
    rl_ingest_destroy(a->ingest);
    rl_wal_close(a->wal);
    rl_metrics_destroy(a->metrics);
    rl_config_destroy(a->cfg);
}

static int app_start(app_t *a, char *errstr, size_t errstr_size)
{
    const rl_config_t *cfg = a->cfg;
    const char *readers[2];
    size_t nreaders = 0;

    if (cfg->kafka.enabled)
        readers[nreaders++] = "kafka";
    if (cfg->redis.enabled)
        readers[nreaders++] = "redis";
    rl_wal_opts_t wo = {cfg->wal.dir,        (uint64_t)cfg->wal.segment_size,
                        (uint64_t)cfg->wal.max_size, (int)cfg->wal.fsync,
                        readers,             nreaders};
    if (!(a->metrics = rl_metrics_new(errstr, errstr_size)))
        return -1;
    if (!(a->wal = rl_wal_open(&wo, a->metrics, errstr, errstr_size)))
        return -1;
    if (!(a->ingest = rl_ingest_new(cfg, a->wal, a->metrics, errstr, errstr_size)))
        return -1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long n = rl_ingest_rebuild(a->ingest, errstr, errstr_size);
    if (n < 0)
        return -1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rl_info("dedup: %ld ids remembered from the WAL in %ld ms", n,
            (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
    if (cfg->kafka.enabled) {
        rl_sink_t *s = rl_sink_kafka_new(cfg, rl_wal_reader(a->wal, "kafka"), a->metrics, errstr,
                                         errstr_size);
        if (!s)
            return -1;
        a->sinks[a->nsinks++] = s;
    }
    if (cfg->redis.enabled) {
        rl_sink_t *s = rl_sink_redis_new(cfg, rl_wal_reader(a->wal, "redis"), a->metrics, errstr,
                                         errstr_size);
        if (!s)
            return -1;
        a->sinks[a->nsinks++] = s;
    }
    if (!(a->http = rl_http_new(cfg, a->ingest, a->metrics, ready, a, errstr, errstr_size)))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", no_argument, NULL, 'k'},
                                         {"config-reference", no_argument, NULL, 'r'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = "relay.conf";
    int check = 0, c, rc = 1, sig = 0;
    char errstr[1024];
    app_t app = {0};
    sigset_t set;

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
    if (!(app.cfg = rl_config_load(path, errstr, sizeof(errstr))) ||
        check_more(app.cfg, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "%s\n", errstr);
        rl_config_destroy(app.cfg);
        return 1;
    }
    if (check) {
        printf("# %s: OK\n", path);
        rl_config_dump(app.cfg, stdout);
        rl_config_destroy(app.cfg);
        return 0;
    }
    rl_log_set_level(app.cfg->log.level);
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
