/* control.c -- relay replay and relay redrive: the server's handler of the
 * admin socket, and the command line that talks to it. */
#include "control.h"

#include "admin.h"
#include "array.h"
#include "clock.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "record.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CALL_TIMEOUT_MS 600000 /* a redrive of many letters answers when it is done */

/* ---- the server side ------------------------------------------------------ */

static json_t *failure(const char *error)
{
    return json_pack("{s:b,s:s}", "ok", 0, "error", error);
}

static json_t *with_ok(json_t *o)
{
    if (o)
        json_object_set_new(o, "ok", json_true());
    return o;
}

static json_t *do_replay(rl_control_t *c, json_t *req)
{
    char err[256];
    rl_replay_req_t r = {
        .sink = json_string_value(json_object_get(req, "sink")),
        .from_seq = (uint64_t)json_integer_value(json_object_get(req, "from_seq")),
        .until_seq = (uint64_t)json_integer_value(json_object_get(req, "until_seq")),
        .since_ms = json_integer_value(json_object_get(req, "since_ms")),
        .until_ms = json_integer_value(json_object_get(req, "until_ms")),
        .channel = json_string_value(json_object_get(req, "channel")),
        .type = json_string_value(json_object_get(req, "type")),
    };
    if (rl_replay_start(c->replay, &r, err, sizeof(err)) != 0)
        return failure(err);
    return with_ok(rl_replay_status(c->replay));
}

typedef struct letter {
    uint8_t *p; /* a copy of the payload (owned) */
    size_t len;
} letter_t;

typedef struct letters {
    const char *source;
    uint64_t since_ms;
    letter_t *v;
    size_t n, cap;
    int oom;
} letters_t;

/* rl_wal_scan's callback: copies the dead letters asked for (a redrive
 * appends to the WAL, so it must not run inside the scan). */
static void collect(void *arg, uint64_t seq, const uint8_t *payload, size_t len)
{
    letters_t *l = arg;
    (void)seq;
    if (l->oom || !rl_record_is_deadletter(payload, len, l->source, l->since_ms))
        return;
    letter_t *v = rl_array_grow(l->v, &l->cap, l->n + 1, sizeof(*v), 16);
    uint8_t *copy = v ? malloc(len) : NULL;
    if (v)
        l->v = v;
    if (!copy) {
        l->oom = 1;
        return;
    }
    memcpy(copy, payload, len);
    l->v[l->n++] = (letter_t){copy, len};
}

static json_t *do_redrive(rl_control_t *c, json_t *req)
{
    letters_t l = {.source = json_string_value(json_object_get(req, "source")),
                   .since_ms = (uint64_t)json_integer_value(json_object_get(req, "since_ms"))};
    size_t count[4] = {0}, accepted = 0, duplicates = 0;
    json_t *ans = NULL, *reasons = json_object();
    rl_wal_stats_t st;
    char err[256];

    if (!l.source || !*l.source) {
        ans = failure("redrive: say which source");
        goto out;
    }
    rl_wal_stats(c->wal, &st);
    if (rl_wal_scan(c->wal, st.first_seq, collect, &l, err, sizeof(err)) != 0) {
        ans = failure(err);
        goto out;
    }
    if (l.oom) {
        ans = failure("out of memory");
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        rl_redrive_result_t res;
        rl_redrive_outcome_t o = rl_ingest_redrive(c->ingest, l.v[i].p, l.v[i].len, &res);
        count[o]++;
        accepted += res.accepted;
        duplicates += res.duplicates;
        if (o != RL_REDRIVE_REDRIVEN && res.reason[0]) {
            json_t *k = json_object_get(reasons, res.reason);
            json_object_set_new(reasons, res.reason,
                                json_integer(k ? json_integer_value(k) + 1 : 1));
        }
    }
    rl_info("redrive: source %s: %zu dead letters, %zu re-driven (%zu events, %zu duplicates), "
            "%zu still dead, %zu skipped, %zu to try again",
            l.source, l.n, count[RL_REDRIVE_REDRIVEN], accepted, duplicates,
            count[RL_REDRIVE_STILL_DEAD], count[RL_REDRIVE_SKIPPED], count[RL_REDRIVE_ERROR]);
    ans = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:O}", "ok", 1, "letters", (json_int_t)l.n,
                    "redriven", (json_int_t)count[RL_REDRIVE_REDRIVEN], "accepted",
                    (json_int_t)accepted, "duplicates", (json_int_t)duplicates, "still_dead",
                    (json_int_t)count[RL_REDRIVE_STILL_DEAD], "skipped",
                    (json_int_t)count[RL_REDRIVE_SKIPPED], "errors",
                    (json_int_t)count[RL_REDRIVE_ERROR], "reasons", reasons);
out:
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i].p);
    free(l.v);
    json_decref(reasons);
    return ans;
}

json_t *rl_control_handle(void *arg, json_t *req)
{
    rl_control_t *c = arg;
    const char *cmd = json_string_value(json_object_get(req, "cmd"));

    if (cmd && !strcmp(cmd, "replay"))
        return do_replay(c, req);
    if (cmd && !strcmp(cmd, "status"))
        return with_ok(rl_replay_status(c->replay));
    if (cmd && !strcmp(cmd, "redrive"))
        return do_redrive(c, req);
    return failure("unknown cmd: say replay, status or redrive");
}

/* ---- the command line ----------------------------------------------------- */

/* TIME: an RFC 3339 instant, unix seconds, or a duration back from now
 * ("90s", "15m", "1h", "2d"). Unix ms, or -1. */
static int64_t parse_when(const char *s)
{
    char *end;
    long long n = strtoll(s, &end, 10);
    int64_t secs;

    if (end != s && n >= 0 && end[0] && !end[1] && strchr("smhd", end[0])) {
        long long mult = end[0] == 's' ? 1 : end[0] == 'm' ? 60 : end[0] == 'h' ? 3600 : 86400;
        return rl_clock_wall_ms() - n * mult * 1000;
    }
    if (rl_clock_parse_time(s, 1, &secs) != 0)
        return -1;
    return secs * 1000;
}

static int parse_seq(const char *s, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1;
    *out = strtoull(s, &end, 10);
    return *end ? -1 : 0;
}

static void cli_usage(FILE *out)
{
    fprintf(out, "usage: relay replay --sink redis|kafka|all (--since TIME | --from-seq N)\n"
                 "                    [--until TIME] [--until-seq N] [--channel ID] [--type T]\n"
                 "                    [--no-wait] [-c FILE | --socket PATH]\n"
                 "       relay redrive --source NAME [--since TIME] [-c FILE | --socket PATH]\n"
                 "\n"
                 "TIME: an RFC 3339 instant (2026-12-07T10:00:00Z) or a duration back from now\n"
                 "(90s, 15m, 1h, 2d). They talk to the running relay through its admin socket,\n"
                 "<wal.dir>/admin.sock (mode 0600: run them as relay's user).\n");
}

/* Polls the status until the replays to `sinks` are over; prints progress. */
static int wait_replays(const char *sock, json_t *sinks)
{
    json_t *req = json_pack("{s:s}", "cmd", "status"), *ans = NULL;
    char err[512];
    int rc = 1;

    for (;;) {
        int running = 0, bad = 0;
        json_decref(ans);
        if (rl_admin_call(sock, req, CALL_TIMEOUT_MS, &ans, err, sizeof(err)) != 0) {
            fprintf(stderr, "relay replay: %s\n", err);
            goto out;
        }
        size_t i;
        json_t *r;
        json_array_foreach (json_object_get(ans, "replays"), i, r) {
            const char *sink = json_string_value(json_object_get(r, "sink"));
            const char *state = json_string_value(json_object_get(r, "state"));
            if (!sink || !state || !json_object_get(sinks, sink))
                continue;
            printf("%s: %s: %lld events, read seq %lld of %lld..%lld, %.1f s%s\n", sink, state,
                   json_integer_value(json_object_get(r, "events")),
                   json_integer_value(json_object_get(r, "read_seq")),
                   json_integer_value(json_object_get(r, "from_seq")),
                   json_integer_value(json_object_get(r, "until_seq")),
                   json_real_value(json_object_get(r, "seconds")),
                   json_is_true(json_object_get(r, "gap"))
                       ? " (a segment was deleted before it was read: not all was replayed)"
                       : "");
            running |= !strcmp(state, "running");
            bad |= !strcmp(state, "stopped") || json_is_true(json_object_get(r, "gap"));
        }
        fflush(stdout);
        if (!running) {
            rc = bad ? 1 : 0;
            goto out;
        }
        struct timespec pause = {1, 0};
        nanosleep(&pause, NULL);
    }
out:
    json_decref(req);
    json_decref(ans);
    return rc;
}

int rl_control_cli(int argc, char **argv, const char *default_config)
{
    static const struct option opts[] = {
        {.name = "config", .has_arg = required_argument, .val = 'c'},
        {.name = "socket", .has_arg = required_argument, .val = 'S'},
        {.name = "sink", .has_arg = required_argument, .val = 'k'},
        {.name = "since", .has_arg = required_argument, .val = 's'},
        {.name = "until", .has_arg = required_argument, .val = 'u'},
        {.name = "from-seq", .has_arg = required_argument, .val = 'f'},
        {.name = "until-seq", .has_arg = required_argument, .val = 'U'},
        {.name = "channel", .has_arg = required_argument, .val = 'C'},
        {.name = "type", .has_arg = required_argument, .val = 't'},
        {.name = "source", .has_arg = required_argument, .val = 'o'},
        {.name = "no-wait", .has_arg = no_argument, .val = 'n'},
        {.name = "help", .has_arg = no_argument, .val = 'h'},
        {0},
    };
    const char *config = default_config, *sock = NULL, *sink = NULL, *channel = NULL, *type = NULL,
               *source = NULL;
    int64_t since = 0, until = 0;
    uint64_t from_seq = 0, until_seq = 0;
    int replay = !strcmp(argv[0], "replay"), nowait = 0, c, rc = 2;
    char path[4096], err[1024];
    json_t *req = NULL, *ans = NULL;
    rl_config_t *cfg = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'S': sock = optarg; break;
        case 'k': sink = optarg; break;
        case 's':
        case 'u':
            if (parse_when(optarg) < 0) {
                fprintf(stderr, "relay %s: '%s' is not a time (RFC 3339, or 1h, 30m, …)\n", argv[0],
                        optarg);
                goto out;
            }
            *(c == 's' ? &since : &until) = parse_when(optarg);
            break;
        case 'f':
        case 'U':
            if (parse_seq(optarg, c == 'f' ? &from_seq : &until_seq) != 0) {
                fprintf(stderr, "relay %s: '%s' is not a sequence number\n", argv[0], optarg);
                goto out;
            }
            break;
        case 'C': channel = optarg; break;
        case 't': type = optarg; break;
        case 'o': source = optarg; break;
        case 'n': nowait = 1; break;
        case 'h':
            cli_usage(stdout);
            rc = 0;
            goto out;
        default: cli_usage(stderr); goto out;
        }
    }
    if (optind < argc || (replay && (!sink || (!since && !from_seq))) || (!replay && !source)) {
        cli_usage(stderr);
        goto out;
    }
    rc = 1;
    if (!sock) {
        if (!(cfg = rl_config_load(config, err, sizeof(err)))) {
            fprintf(stderr, "relay %s: %s\n", argv[0], err);
            goto out;
        }
        rl_admin_default_path(cfg->wal.dir, path, sizeof(path));
        sock = path;
    }
    if (replay)
        req = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:s?,s:s?}", "cmd", "replay", "sink", sink,
                        "from_seq", (json_int_t)from_seq, "until_seq", (json_int_t)until_seq,
                        "since_ms", (json_int_t)since, "until_ms", (json_int_t)until, "channel",
                        channel, "type", type);
    else
        req = json_pack("{s:s,s:s,s:I}", "cmd", "redrive", "source", source, "since_ms",
                        (json_int_t)since);
    if (!req || rl_admin_call(sock, req, CALL_TIMEOUT_MS, &ans, err, sizeof(err)) != 0) {
        fprintf(stderr, "relay %s: %s\n", argv[0], req ? err : "out of memory");
        goto out;
    }
    if (!json_is_true(json_object_get(ans, "ok"))) {
        const char *why = json_string_value(json_object_get(ans, "error"));
        fprintf(stderr, "relay %s: %s\n", argv[0], why ? why : "refused");
        goto out;
    }
    if (!replay) {
        char *s = json_dumps(ans, JSON_COMPACT);
        printf("%s\n", s ? s : "");
        free(s);
        rc = json_integer_value(json_object_get(ans, "errors")) ? 1 : 0;
        goto out;
    }
    json_t *sinks = json_object();
    if (!strcmp(sink, "all")) {
        if (cfg ? cfg->kafka.enabled : 1)
            json_object_set_new(sinks, "kafka", json_true());
        if (cfg ? cfg->redis.enabled : 1)
            json_object_set_new(sinks, "redis", json_true());
    } else {
        json_object_set_new(sinks, sink, json_true());
    }
    rc = nowait ? 0 : wait_replays(sock, sinks);
    json_decref(sinks);
out:
    json_decref(req);
    json_decref(ans);
    rl_config_destroy(cfg);
    return rc;
}
