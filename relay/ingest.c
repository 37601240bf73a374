/* ingest.c -- the request pipeline.
 *
 * Dedup claims and the WAL append happen in one step under the dedup store's lock
 * (append_new is its commit callback). That makes "claimed" imply "appended": a
 * retry that finds the id claimed can wait for a WAL barrier and know the original
 * is durable before it answers 200 itself.
 *
 * ack = publish adds a second wait after the WAL's: for every sink's cursor to
 * pass the request's last record (a retry waits for everything appended before
 * it, which includes its original). The claims stay when that wait times out:
 * the events are durable and will be published, and the provider's retry must
 * be recognised as one. */
#include "ingest.h"

#include "codec.h"
#include "dedup_store.h"
#include "log.h"
#include "record.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAL_FULL_RETRY_AFTER 5
#define PUBLISH_RETRY_AFTER 5
#define HELD_RETRY_AFTER 2 /* another instance's claim is confirmed or expires by then */

typedef struct source_rt {
    const rl_source_conf_t *conf;
    const rl_codec_t *codec;
    int ack_publish;        /* ack = publish */
    int64_t ack_timeout_ms; /* ack_timeout */
    rl_metric_t *m_accepted, *m_dup, *m_missing_token, *m_bad_token, *m_bad_json, *m_bad_shape,
        *m_full, *m_pub_timeout;
} source_rt_t;

struct rl_ingest {
    rl_wal_t *wal;
    rl_dstore_t *dedup;
    source_rt_t *src;
    size_t nsrc;
};

/* A request waiting for the WAL. */
typedef struct pending {
    rl_ingest_t *ig;
    source_rt_t *src;
    rl_ingest_done_cb cb;
    void *opaque;
    char *ok_body; /* the 200 body, ready */
    char **claimed; /* ids claimed by this request, released if the write fails */
    size_t nclaimed;
    size_t accepted, duplicates;
    size_t held; /* events another instance claimed and has not made durable yet */
    uint64_t last_seq;   /* ack = publish: what every sink must have passed */
    int64_t deadline_ms; /* ack = publish: when to give up (rl_wal_now_ms clock) */
} pending_t;

void rl_reply_error(rl_reply_t *reply, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s,s:s}", "error", code, "message", msg);
    reply->status = status;
    reply->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    reply->retry_after = 0;
    json_decref(o);
}

static void register_source_metrics(source_rt_t *s, rl_metrics_t *m)
{
    char l[256];
    const char *n = s->conf->name;
    snprintf(l, sizeof(l), "source=\"%s\"", n);
    s->m_accepted = rl_metrics_counter(m, "relay_events_accepted_total", l,
                                       "New events made durable in the WAL.");
    s->m_dup = rl_metrics_counter(m, "relay_events_duplicate_total", l,
                                  "Events dropped as retries of events already taken.");
    s->m_full = rl_metrics_counter(m, "relay_events_rejected_wal_full_total", l,
                                   "Events refused (503) because the WAL was full.");
    s->m_pub_timeout =
        rl_metrics_counter(m, "relay_ack_publish_timeouts_total", l,
                           "ack = publish requests answered 503 because a sink had not "
                           "acknowledged their events within ack_timeout.");
    snprintf(l, sizeof(l), "source=\"%s\",reason=\"missing_token\"", n);
    s->m_missing_token = rl_metrics_counter(m, "relay_auth_failures_total", l,
                                            "Requests refused 401, by reason.");
    snprintf(l, sizeof(l), "source=\"%s\",reason=\"bad_token\"", n);
    s->m_bad_token = rl_metrics_counter(m, "relay_auth_failures_total", l,
                                        "Requests refused 401, by reason.");
    snprintf(l, sizeof(l), "source=\"%s\",reason=\"invalid_json\"", n);
    s->m_bad_json = rl_metrics_counter(m, "relay_decode_errors_total", l,
                                       "Requests refused 400, by reason.");
    snprintf(l, sizeof(l), "source=\"%s\",reason=\"invalid_payload\"", n);
    s->m_bad_shape = rl_metrics_counter(m, "relay_decode_errors_total", l,
                                        "Requests refused 400, by reason.");
}

rl_ingest_t *rl_ingest_new(const rl_config_t *cfg, rl_wal_t *wal, rl_metrics_t *metrics,
                           char *errstr, size_t errstr_size)
{
    rl_ingest_t *ig = calloc(1, sizeof(*ig));
    int ok = 0;

    if (!ig) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    ig->wal = wal;
    ig->dedup = rl_dstore_new(cfg, wal, metrics, errstr, errstr_size);
    ig->src = calloc(cfg->nsources, sizeof(*ig->src));
    if (!ig->dedup || !ig->src)
        goto out;
    ig->nsrc = cfg->nsources;
    for (size_t i = 0; i < cfg->nsources; i++) {
        ig->src[i].conf = &cfg->sources[i];
        ig->src[i].codec = rl_codec_find(cfg->sources[i].codec);
        ig->src[i].ack_publish = !strcmp(cfg->sources[i].ack, "publish");
        ig->src[i].ack_timeout_ms = cfg->sources[i].ack_timeout * 1000;
        if (!ig->src[i].codec) {
            snprintf(errstr, errstr_size, "source %s: unknown codec", cfg->sources[i].name);
            goto out;
        }
        if (metrics)
            register_source_metrics(&ig->src[i], metrics);
    }
    ok = 1;
out:
    if (!ok) {
        rl_ingest_destroy(ig);
        ig = NULL;
    }
    return ig;
}

void rl_ingest_destroy(rl_ingest_t *ig)
{
    if (!ig)
        return;
    rl_dstore_destroy(ig->dedup);
    free(ig->src);
    free(ig);
}

static void pending_free(pending_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nclaimed; i++)
        free(p->claimed[i]);
    free(p->claimed);
    free(p->ok_body);
    free(p);
}

/* Hands the reply to the HTTP side and frees the request. */
static void answer(pending_t *p, rl_reply_t *reply)
{
    p->cb(p->opaque, reply);
    pending_free(p);
}

static void answer_ok(pending_t *p)
{
    rl_reply_t reply = {0};
    reply.status = 200;
    reply.body = p->ok_body;
    p->ok_body = NULL;
    answer(p, &reply);
}

/* ack = publish: the sinks' verdict (flusher thread). */
static void on_published(void *opaque, int status)
{
    pending_t *p = opaque;
    rl_reply_t reply = {0};

    if (status == 0) {
        answer_ok(p);
        return;
    }
    if (status == RL_WAL_TIMEOUT) {
        rl_metric_add(p->src->m_pub_timeout, 1);
        rl_reply_error(&reply, 503, "publish_timeout",
                       "the events are durable but not every sink acknowledged them within "
                       "ack_timeout; a retry is answered 200 once they are published");
        reply.retry_after = PUBLISH_RETRY_AFTER;
    } else {
        rl_reply_error(&reply, 503, "unavailable",
                       "relay is shutting down; the events are durable and will be published");
        reply.retry_after = 1;
    }
    answer(p, &reply);
}

/* The WAL's verdict on a request's events (flusher thread). */
static void on_durable(void *opaque, int status)
{
    pending_t *p = opaque;
    rl_reply_t reply = {0};

    if (status != 0) {
        /* Not durable: forget the claims so that the provider's retry is taken. */
        rl_dstore_release(p->ig->dedup, p->src->conf->name, (const char *const *)p->claimed,
                          p->nclaimed);
        rl_reply_error(&reply, 503, "wal_unavailable",
                       "the events could not be written to the WAL; retry later");
        reply.retry_after = WAL_FULL_RETRY_AFTER;
        answer(p, &reply);
        return;
    }
    rl_metric_add(p->src->m_accepted, p->accepted);
    rl_metric_add(p->src->m_dup, p->duplicates);
    if (p->held) {
        /* Neither 200 (that event may still be lost) nor a second copy: the provider's
         * retry finds it confirmed, or taken over once the claim expired. */
        rl_reply_error(&reply, 503, "claimed_elsewhere",
                       "%zu event(s) are being taken by another relay instance; retry later",
                       p->held);
        reply.retry_after = HELD_RETRY_AFTER;
        answer(p, &reply);
        return;
    }
    if (p->src->ack_publish) {
        if (rl_wal_await_published(p->ig->wal, p->last_seq, p->deadline_ms, on_published, p) ==
            RL_WAL_OK)
            return; /* p is on_published's now */
        on_published(p, RL_WAL_ERR);
        return;
    }
    answer_ok(p);
}

long rl_ingest_rebuild(rl_ingest_t *ig, char *errstr, size_t errstr_size)
{
    return rl_dstore_rebuild(ig->dedup, errstr, errstr_size);
}

const char *rl_ingest_dedup_state(const rl_ingest_t *ig)
{
    return rl_dstore_state(ig->dedup);
}

static source_rt_t *find_source(rl_ingest_t *ig, const char *name)
{
    for (size_t i = 0; i < ig->nsrc; i++)
        if (!strcmp(ig->src[i].conf->name, name))
            return &ig->src[i];
    return NULL;
}

static char *ok_body(const rl_event_list_t *evs, size_t accepted, size_t dups)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < evs->n; i++)
        json_array_append_new(ids, json_string(evs->v[i].id));
    json_t *o = json_pack("{s:I,s:I,s:o}", "accepted", (json_int_t)accepted, "duplicates",
                          (json_int_t)dups, "ids", ids);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* What append_new needs; the dedup store calls it with the verdicts, under its lock. */
typedef struct append_ctx {
    rl_ingest_t *ig;
    pending_t *p;
    const rl_event_list_t *evs;
    struct iovec *iov;
    size_t nnew;
    int rc; /* RL_WAL_*: RL_WAL_ERR until the WAL was asked */
} append_ctx_t;

/* Appends the new events, compacting iov to them; with none, sets a barrier so that the
 * answer waits until what the retries repeat is durable. */
static int append_new(void *arg, const int *verdict, size_t n)
{
    append_ctx_t *a = arg;
    pending_t *p = a->p;
    uint64_t first_seq;

    for (size_t i = 0; i < n; i++) {
        if (verdict[i] == RL_DS_DUP) {
            p->duplicates++;
            continue;
        }
        if (verdict[i] == RL_DS_PENDING) {
            p->held++;
            continue;
        }
        p->claimed[p->nclaimed++] = strdup(a->evs->v[i].id);
        a->iov[a->nnew++] = a->iov[i];
    }
    p->accepted = a->nnew;
    p->ok_body = ok_body(a->evs, p->accepted, p->duplicates);
    if (a->nnew) {
        a->rc = rl_wal_append(a->ig->wal, a->iov, a->nnew, &first_seq, on_durable, p);
        p->last_seq = first_seq + a->nnew - 1;
    } else { /* all retries: answer once what they repeat is durable (and published) */
        p->last_seq = rl_wal_last_seq(a->ig->wal);
        a->rc = rl_wal_barrier(a->ig->wal, on_durable, p);
    }
    return a->rc != RL_WAL_OK;
}

/* Claims and appends. Returns 1 answered now, 0 pending. */
static int claim_and_append(rl_ingest_t *ig, pending_t *p, const rl_event_list_t *evs,
                            struct iovec *iov, rl_reply_t *reply)
{
    append_ctx_t a = {ig, p, evs, iov, 0, RL_WAL_ERR};
    const char **ids = malloc(evs->n * sizeof(*ids));
    int *verdict = malloc(evs->n * sizeof(*verdict));
    size_t nnew;
    int rc;

    if (ids && verdict) {
        for (size_t i = 0; i < evs->n; i++)
            ids[i] = evs->v[i].id;
        rl_dstore_claim(ig->dedup, p->src->conf->name, ids, evs->n, (uint64_t)time(NULL), verdict,
                        append_new, &a);
    }
    free(ids);
    free(verdict);
    rc = a.rc;
    nnew = a.nnew;

    if (rc == RL_WAL_FULL) {
        rl_metric_add(p->src->m_full, nnew);
        rl_reply_error(reply, 503, "wal_full", "the write-ahead log is full; retry later");
        reply->retry_after = WAL_FULL_RETRY_AFTER;
        return 1;
    }
    if (rc != RL_WAL_OK) {
        rl_reply_error(reply, 503, "unavailable", "relay is shutting down or out of memory");
        reply->retry_after = 1;
        return 1;
    }
    return 0;
}

int rl_ingest_submit(rl_ingest_t *ig, const rl_ingest_req_t *req, rl_ingest_done_cb cb,
                     void *opaque, rl_reply_t *reply)
{
    rl_event_list_t evs;
    struct iovec *iov = NULL;
    pending_t *p = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    const char *why = NULL;
    char err[256];
    int done = 1;

    rl_event_list_init(&evs);
    source_rt_t *src = find_source(ig, req->source);
    if (!src) {
        rl_reply_error(reply, 404, "unknown_source", "no source named '%s' is configured",
                       req->source);
        goto out;
    }
    if (rl_auth_check(src->conf, req->header, req->header_ctx, &why) != 0) {
        rl_metric_add(strcmp(why, "missing_token") ? src->m_bad_token : src->m_missing_token, 1);
        rl_reply_error(reply, 401, "unauthorized", "authentication failed: %s", why);
        goto out;
    }
    if (!(root = json_loadb((const char *)req->body, req->len, 0, &jerr))) {
        rl_metric_add(src->m_bad_json, 1);
        rl_reply_error(reply, 400, "invalid_json", "body is not JSON: %s (line %d, column %d)",
                       jerr.text, jerr.line, jerr.column);
        goto out;
    }
    err[0] = '\0';
    if (src->codec->decode(root, &evs, err, sizeof(err)) != 0 || evs.n == 0) {
        rl_metric_add(src->m_bad_shape, 1);
        rl_reply_error(reply, 400, "invalid_payload", "not a %s webhook: %s", src->codec->name,
                       err[0] ? err : "no events in body");
        goto out;
    }

    /* Every CloudEvent carries a time: where the provider gave none (Whapi users,
     * presences), it is when relay received the event. */
    char now_rfc[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(now_rfc, sizeof(now_rfc), "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (size_t i = 0; i < evs.n; i++)
        if (!evs.v[i].time && !(evs.v[i].time = strdup(now_rfc)))
            goto oom;

    p = calloc(1, sizeof(*p));
    iov = calloc(evs.n, sizeof(*iov));
    if (!p || !iov || !(p->claimed = calloc(evs.n, sizeof(char *))))
        goto oom;
    p->ig = ig;
    p->src = src;
    p->cb = cb;
    p->opaque = opaque;
    p->deadline_ms = rl_wal_now_ms() + src->ack_timeout_ms;
    for (size_t i = 0; i < evs.n; i++) {
        char *ce = rl_record_cloudevent(&evs.v[i], src->conf->name, src->codec->name);
        uint8_t *buf = NULL;
        int rc = ce ? rl_record_encode(src->conf->name, &evs.v[i], ce, now_ms, &buf,
                                           &iov[i].iov_len) : -1;
        free(ce);
        if (rc != 0)
            goto oom;
        iov[i].iov_base = buf;
    }
    /* claim_and_append compacts iov to the new events; keep the originals to free. */
    struct iovec *all = malloc(evs.n * sizeof(*all));
    if (!all)
        goto oom;
    memcpy(all, iov, evs.n * sizeof(*all));
    done = claim_and_append(ig, p, &evs, iov, reply);
    for (size_t i = 0; i < evs.n; i++)
        free(all[i].iov_base);
    free(all);
    memset(iov, 0, evs.n * sizeof(*iov));
    if (!done)
        p = NULL; /* owned by the WAL callback now */
    goto out;
oom:
    rl_reply_error(reply, 500, "internal", "out of memory or an event field too long");
    done = 1;
out:
    if (iov)
        for (size_t i = 0; i < evs.n; i++)
            free(iov[i].iov_base);
    free(iov);
    pending_free(p);
    json_decref(root);
    rl_event_list_clear(&evs);
    return done;
}
