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
 * be recognised as one.
 *
 * A body that authenticates but cannot be decoded becomes a dead letter: one
 * record that goes through the same claim-and-append path as events, so its 400
 * is sent only once it is durable, and a provider's retries of it are recorded
 * once.
 *
 * A request refused 401 is kept as a dead letter too (at most
 * RL_DEADLETTER_UNAUTH_RATE a second per source: an attacker must not fill the
 * WAL), with the headers the source's scheme reads, so that it can be re-driven
 * once relay's secret is fixed. Its 401 never waits on the WAL's verdict beyond
 * durability: a refused or failed write still answers 401.
 *
 * rl_ingest_redrive sends a retained dead letter through the same path
 * (ingest_run) as a request, with the differences run_t lists. */
#include "ingest.h"

#include "codec.h"
#include "dedup_store.h"
#include "jdoc.h"
#include "clock.h"
#include "log.h"
#include "ratelimit.h"
#include "record.h"
#include "err.h"
#include "sig.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define WAL_FULL_RETRY_AFTER 5
#define PUBLISH_RETRY_AFTER 5
#define HELD_RETRY_AFTER 2 /* another instance's claim is confirmed or expires by then */

#define NAUTH_REASONS 16 /* room for rl_auth_reasons */
#define NKEPT_HEADERS 4  /* room for rl_auth_headers */
#define TOKEN_NOTE                                                                                 \
    "auth = token: its header carries the secret (or a guess at it) and is never kept; a letter "  \
    "refused 401 cannot be authenticated again"

#define DOC_POOL 16
#define DOC_KEEP_BYTES (4u << 20)

typedef struct source_rt {
    const rl_source_conf_t *conf;
    const rl_codec_t *codec;
    void *codec_conf;       /* what codec->setup made, NULL without one */
    int ack_publish;        /* ack = publish */
    int64_t ack_timeout_ms; /* ack_timeout */
    rl_auth_t *auth;
    rl_ratelimit_t *rate;        /* NULL: no rate limit */
    rl_ratelimit_t *unauth_rate; /* dead letters of requests refused 401 */
    const char *const *kept;     /* rl_auth_headers: what a dead letter keeps (NULL: none) */
    rl_metric_t *m_accepted, *m_dup, *m_bad_json, *m_bad_shape, *m_too_deep, *m_full, *m_dead,
        *m_pub_timeout, *m_ack, *m_unauth_dropped;
    rl_metric_t *m_auth[NAUTH_REASONS];      /* by index in rl_auth_reasons */
    rl_metric_t *m_rate, *m_depth, *m_items; /* relay_limit_hits_total */
} source_rt_t;

struct rl_ingest {
    const rl_config_t *cfg; /* borrowed; sources[i] is src[i].conf */
    rl_wal_t *wal;
    rl_dstore_t *dedup;
    source_rt_t *src;
    size_t nsrc;
    int max_depth;    /* http.max_json_depth */
    size_t max_items; /* http.max_items */
    /* Parsed bodies' arenas, kept between requests (at most DOC_POOL, none that
     * grew past DOC_KEEP_BYTES): one per request being decoded. */
    pthread_mutex_t doc_lock;
    rl_jdoc_t *docs[DOC_POOL];
    size_t ndocs;
};

/* A request waiting for the WAL. */
typedef struct pending {
    rl_ingest_t *ig;
    source_rt_t *src;
    rl_ingest_done_cb cb;
    void *opaque;
    int status;       /* the answer once durable: 200, or 400 for a dead letter */
    char *body;       /* its body, ready before the append (the WAL may call back at once) */
    int deadletter;   /* the records are a dead letter, not events */
    int keep_answer;  /* a 401's letter: answered status/body whatever the WAL says */
    int durable_only; /* answered once durable, even with ack = publish */
    char **claimed;   /* ids claimed by this request, released if the write fails */
    size_t nclaimed;
    size_t accepted, duplicates;
    size_t held;         /* events another instance claimed and has not made durable yet */
    uint64_t first_seq;  /* first appended record: rl_wal_append writes it under its lock,
                          * before the flusher can call back (p may be gone after it) */
    uint64_t last_seq;   /* barrier: what every sink must have passed (ack = publish) */
    int64_t deadline_ms; /* ack = publish: when to give up (rl_clock_mono_ms clock) */
    uint64_t
        start_us; /* when ingest began (rl_clock_mono_us), for relay_ack_seconds; 0: not timed */
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
    for (size_t i = 0; rl_auth_reasons[i] && i < NAUTH_REASONS; i++) {
        snprintf(l, sizeof(l), "source=\"%s\",reason=\"%s\"", n, rl_auth_reasons[i]);
        s->m_auth[i] = rl_metrics_counter(m, "relay_auth_failures_total", l,
                                          "Requests refused 401, by reason.");
    }
    snprintf(l, sizeof(l), "limit=\"rate_limit\",source=\"%s\"", n);
    s->m_rate = rl_metrics_counter(m, RL_LIMIT_HITS, l, RL_LIMIT_HITS_HELP);
    snprintf(l, sizeof(l), "limit=\"max_json_depth\",source=\"%s\"", n);
    s->m_depth = rl_metrics_counter(m, RL_LIMIT_HITS, l, RL_LIMIT_HITS_HELP);
    snprintf(l, sizeof(l), "limit=\"max_items\",source=\"%s\"", n);
    s->m_items = rl_metrics_counter(m, RL_LIMIT_HITS, l, RL_LIMIT_HITS_HELP);
    snprintf(l, sizeof(l), "source=\"%s\"", n);
    s->m_ack = rl_metrics_histogram(
        m, "relay_ack_seconds", l,
        "From a request's body being in to its answer, for requests that reached the WAL "
        "(decoding, dedup, the group commit, and with ack = publish the sinks).");
    s->m_dead = rl_metrics_counter(m, "relay_dead_letters_total", l,
                                   "Bodies answered 400 and kept raw on the dead-letter topic and "
                                   "stream (durable in the WAL).");
    s->m_unauth_dropped = rl_metrics_counter(
        m, "relay_deadletters_unauthorized_dropped_total", l,
        "Requests refused 401 kept as no dead letter: past the cap of unauthorized letters.");
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
    snprintf(l, sizeof(l), "source=\"%s\",reason=\"invalid_json\"", n);
    s->m_bad_json =
        rl_metrics_counter(m, "relay_decode_errors_total", l, "Requests refused 400, by reason.");
    snprintf(l, sizeof(l), "source=\"%s\",reason=\"invalid_payload\"", n);
    s->m_bad_shape =
        rl_metrics_counter(m, "relay_decode_errors_total", l, "Requests refused 400, by reason.");
    snprintf(l, sizeof(l), "source=\"%s\",reason=\"json_too_deep\"", n);
    s->m_too_deep =
        rl_metrics_counter(m, "relay_decode_errors_total", l, "Requests refused 400, by reason.");
}

rl_ingest_t *rl_ingest_new(const rl_config_t *cfg, rl_wal_t *wal, rl_metrics_t *metrics,
                           char *errstr, size_t errstr_size)
{
    rl_ingest_t *ig = calloc(1, sizeof(*ig));
    int ok = 0;

    if (!ig) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    pthread_mutex_init(&ig->doc_lock, NULL);
    ig->cfg = cfg;
    ig->wal = wal;
    ig->dedup = rl_dstore_new(cfg, wal, metrics, errstr, errstr_size);
    ig->src = calloc(cfg->nsources, sizeof(*ig->src));
    if (!ig->dedup || !ig->src)
        goto out;
    ig->nsrc = cfg->nsources;
    ig->max_depth = (int)cfg->http.max_json_depth;
    ig->max_items = (size_t)cfg->http.max_items;
    for (size_t i = 0; i < cfg->nsources; i++) {
        const rl_source_conf_t *sc = &cfg->sources[i];
        char why[200];
        ig->src[i].conf = sc;
        ig->src[i].codec = rl_codec_find(sc->codec);
        ig->src[i].ack_publish = !strcmp(sc->ack, "publish");
        ig->src[i].ack_timeout_ms = sc->ack_timeout * 1000;
        if (!ig->src[i].codec) {
            rl_seterr(errstr, errstr_size, "source %s: unknown codec", sc->name);
            goto out;
        }
        if (ig->src[i].codec->setup) {
            const char *key = NULL;
            if (!(ig->src[i].codec_conf = ig->src[i].codec->setup(sc, &key, why, sizeof(why)))) {
                rl_seterr(errstr, errstr_size, "source %s: %s", sc->name, why);
                goto out;
            }
        }
        if (!(ig->src[i].auth = rl_auth_new(sc, why, sizeof(why)))) {
            rl_seterr(errstr, errstr_size, "source %s: %s", sc->name, why);
            goto out;
        }
        ig->src[i].kept = rl_auth_headers(ig->src[i].auth);
        if (!(ig->src[i].unauth_rate =
                  rl_ratelimit_new(RL_DEADLETTER_UNAUTH_RATE * 3600LL, RL_DEADLETTER_UNAUTH_BURST,
                                   why, sizeof(why)))) {
            rl_seterr(errstr, errstr_size, "source %s: %s", sc->name, why);
            goto out;
        }
        if (sc->rate_limit > 0) {
            /* Default burst: one second's worth, at least one request. */
            long long burst = sc->rate_burst ? sc->rate_burst : (sc->rate_limit + 3599) / 3600;
            if (!(ig->src[i].rate = rl_ratelimit_new(sc->rate_limit, burst, why, sizeof(why)))) {
                rl_seterr(errstr, errstr_size, "source %s: %s", sc->name, why);
                goto out;
            }
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
    for (size_t i = 0; ig->src && i < ig->nsrc; i++) {
        rl_auth_destroy(ig->src[i].auth);
        rl_ratelimit_destroy(ig->src[i].rate);
        rl_ratelimit_destroy(ig->src[i].unauth_rate);
        if (ig->src[i].codec && ig->src[i].codec->teardown)
            ig->src[i].codec->teardown(ig->src[i].codec_conf);
    }
    free(ig->src);
    for (size_t i = 0; i < ig->ndocs; i++)
        rl_jdoc_destroy(ig->docs[i]);
    pthread_mutex_destroy(&ig->doc_lock);
    free(ig);
}

/* A document for one request: a kept one, or a new one (NULL on out-of-memory). */
static rl_jdoc_t *doc_take(rl_ingest_t *ig)
{
    rl_jdoc_t *d = NULL;

    pthread_mutex_lock(&ig->doc_lock);
    if (ig->ndocs)
        d = ig->docs[--ig->ndocs];
    pthread_mutex_unlock(&ig->doc_lock);
    return d ? d : rl_jdoc_new(NULL, 0);
}

/* Keeps d for the next request, or frees it. NULL-safe. */
static void doc_give(rl_ingest_t *ig, rl_jdoc_t *d)
{
    if (d && rl_jdoc_capacity(d) <= DOC_KEEP_BYTES) {
        pthread_mutex_lock(&ig->doc_lock);
        if (ig->ndocs < DOC_POOL) {
            ig->docs[ig->ndocs++] = d;
            d = NULL;
        }
        pthread_mutex_unlock(&ig->doc_lock);
    }
    rl_jdoc_destroy(d);
}

static void pending_free(pending_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nclaimed; i++)
        free(p->claimed[i]);
    free(p->claimed);
    free(p->body);
    free(p);
}

/* Hands the reply to the HTTP side and frees the request. */
static void answer(pending_t *p, rl_reply_t *reply)
{
    if (p->start_us)
        rl_metric_observe_us(p->src->m_ack, rl_clock_mono_us() - p->start_us);
    p->cb(p->opaque, reply);
    pending_free(p);
}

/* The answer prepared for durable records: 200, or 400 for a dead letter. */
static void answer_ok(pending_t *p)
{
    rl_reply_t reply = {0};
    reply.status = p->status;
    reply.body = p->body;
    p->body = NULL;
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
        if (p->keep_answer) {
            answer_ok(p);
            return;
        }
        rl_reply_error(&reply, 503, "wal_unavailable",
                       "the events could not be written to the WAL; retry later");
        reply.retry_after = WAL_FULL_RETRY_AFTER;
        answer(p, &reply);
        return;
    }
    if (p->deadletter) {
        rl_metric_add(p->src->m_dead, p->accepted);
    } else {
        rl_metric_add(p->src->m_accepted, p->accepted);
        rl_metric_add(p->src->m_dup, p->duplicates);
    }
    if (p->keep_answer) {
        answer_ok(p);
        return;
    }
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
    if (p->src->ack_publish && !p->durable_only) {
        uint64_t last = p->accepted ? p->first_seq + p->accepted - 1 : p->last_seq;
        if (rl_wal_await_published(p->ig->wal, last, p->deadline_ms, on_published, p) == RL_WAL_OK)
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

/* The runtime entry of the source named `name` (the configuration's lookup: src[i] is
 * built from cfg->sources[i]), or NULL. */
static source_rt_t *find_source(rl_ingest_t *ig, const char *name)
{
    const rl_source_conf_t *sc = rl_config_source(ig->cfg, name);
    return sc ? &ig->src[sc - ig->cfg->sources] : NULL;
}

/* What append_new needs; the dedup store calls it with the verdicts, under its lock. */
typedef struct append_ctx {
    rl_ingest_t *ig;
    pending_t *p;
    const char *const *ids;
    const rl_event_list_t *evs; /* events: the 200 body is built from the counts; NULL for a
                                 * dead letter, whose body is in p already */
    struct iovec *iov;
    size_t nnew;
    int rc; /* RL_WAL_*: RL_WAL_ERR until the WAL was asked */
} append_ctx_t;

/* Appends the new records, compacting iov to them; with none, sets a barrier so that the
 * answer waits until what the retries repeat is durable. */
static int append_new(void *arg, const int *verdict, size_t n)
{
    append_ctx_t *a = arg;
    pending_t *p = a->p;

    for (size_t i = 0; i < n; i++) {
        if (verdict[i] == RL_DS_DUP) {
            p->duplicates++;
            continue;
        }
        if (verdict[i] == RL_DS_PENDING) {
            p->held++;
            continue;
        }
        p->claimed[p->nclaimed++] = strdup(a->ids[i]);
        a->iov[a->nnew++] = a->iov[i];
    }
    p->accepted = a->nnew;
    if (a->evs)
        p->body = rl_record_ack_body(a->evs, p->accepted, p->duplicates);
    if (a->nnew) {
        /* Nothing of p may be touched once the append succeeded: the flusher may
         * already have answered and freed it. */
        a->rc = rl_wal_append(a->ig->wal, a->iov, a->nnew, &p->first_seq, on_durable, p);
    } else { /* all retries: answer once what they repeat is durable (and published) */
        p->last_seq = rl_wal_last_seq(a->ig->wal);
        a->rc = rl_wal_barrier(a->ig->wal, on_durable, p);
    }
    return a->rc != RL_WAL_OK;
}

/* Claims ids[i] for iov[i] and appends the new ones. Returns 1 answered now, 0 pending. */
static int claim_and_append(rl_ingest_t *ig, pending_t *p, const char *const *ids, size_t n,
                            const rl_event_list_t *evs, struct iovec *iov, rl_reply_t *reply)
{
    append_ctx_t a = {
        .ig = ig, .p = p, .ids = ids, .evs = evs, .iov = iov, .nnew = 0, .rc = RL_WAL_ERR};
    int *verdict = malloc(n * sizeof(*verdict));
    size_t nnew;
    int rc;

    if (verdict)
        rl_dstore_claim(ig->dedup, p->src->conf->name, (const char **)ids, n,
                        (uint64_t)(rl_clock_wall_ms() / 1000), verdict, append_new, &a);
    free(verdict);
    rc = a.rc;
    nnew = a.nnew;

    if (rc == RL_WAL_FULL) {
        if (!p->deadletter)
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

static pending_t *pending_new(rl_ingest_t *ig, source_rt_t *src, size_t n, rl_ingest_done_cb cb,
                              void *opaque)
{
    pending_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->claimed = calloc(n, sizeof(char *)))) {
        free(p);
        return NULL;
    }
    p->ig = ig;
    p->src = src;
    p->cb = cb;
    p->opaque = opaque;
    p->status = 200;
    p->deadline_ms = rl_clock_mono_ms() + src->ack_timeout_ms;
    return p;
}

/* One pass through the pipeline: a request, or a dead letter re-driven
 * (rl_ingest_redrive), which differs in what the flags say. */
typedef struct run {
    const rl_ingest_req_t *req;
    /* When the body was received: the events' default time, and the time a signed
     * timestamp is judged against (a letter's signature is checked as it was then:
     * a re-drive opens no window for a replayed request). */
    uint64_t received_ms;
    /* A re-drive: no rate limit, no metric of a request, a refusal answered without a new dead
     * letter, and the events answered once durable, even with ack = publish. */
    int redrive;
    int skip_auth;      /* a letter refused 400: it authenticated when it was received */
    const char *msg_id; /* its signed webhook-id then, or NULL */
    const char *why;    /* out: the reason of a refusal (auth or decode; static) */
} run_t;

/* Adds n to a counter of requests (not of re-drives). */
static void count(const run_t *run, rl_metric_t *m, uint64_t n)
{
    if (!run->redrive)
        rl_metric_add(m, n);
}

/* What a dead letter says and is answered with. */
typedef struct letter {
    const char *msg_id, *reason, *msg;
    rl_reply_t answer; /* sent once the letter is durable; its body is taken */
    int keep_answer;   /* a 401: sent even when the WAL refuses or fails the letter */
} letter_t;

/* Records the body as a dead letter, with the request headers the source's
 * scheme reads, and answers lt->answer once it is durable (or 503 when it cannot
 * be written: the provider's retry will be recorded then; with keep_answer,
 * lt->answer all the same). Returns as claim_and_append. */
static int dead_letter(rl_ingest_t *ig, source_rt_t *src, const rl_ingest_req_t *req,
                       uint64_t now_ms, letter_t *lt, rl_ingest_done_cb cb, void *opaque,
                       rl_reply_t *reply)
{
    const char *hv[2 * NKEPT_HEADERS];
    size_t nh = 0;
    rl_deadletter_t dl = {.source = src->conf->name,
                          .provider = src->codec->name,
                          .reason = lt->reason,
                          .message = lt->msg,
                          .content_type = req->header(req->header_ctx, "Content-Type"),
                          .msg_id = lt->msg_id,
                          .body = req->body,
                          .len = req->len,
                          .headers = hv,
                          .headers_note = src->kept ? NULL : TOKEN_NOTE};
    struct iovec iov = {.iov_base = NULL, .iov_len = 0};
    uint8_t *buf = NULL;
    char *id = NULL;
    pending_t *p = pending_new(ig, src, 1, cb, opaque);
    int done = 1;

    for (size_t i = 0; src->kept && src->kept[i] && nh < NKEPT_HEADERS; i++) {
        const char *v = req->header(req->header_ctx, src->kept[i]);
        if (v) {
            hv[2 * nh] = src->kept[i];
            hv[2 * nh++ + 1] = v;
        }
    }
    dl.nheaders = nh;
    if (!p || !lt->answer.body || rl_record_deadletter(&dl, now_ms, &buf, &iov.iov_len, &id) != 0) {
        rl_reply_error(reply, 500, "internal", "out of memory");
        goto out;
    }
    iov.iov_base = buf;
    p->status = lt->answer.status;
    p->body = lt->answer.body;
    lt->answer.body = NULL;
    p->deadletter = 1;
    p->keep_answer = p->durable_only = lt->keep_answer;
    done = claim_and_append(ig, p, (const char *const *)&id, 1, NULL, &iov, reply);
    if (!done) {
        p = NULL; /* owned by the WAL callback now */
    } else if (lt->keep_answer) {
        free(reply->body);
        reply->body = p->body;
        p->body = NULL;
    }
out:
    if (done && lt->keep_answer) { /* whatever happened to the letter: the 401 */
        if (lt->answer.body) {
            free(reply->body);
            reply->body = lt->answer.body;
            lt->answer.body = NULL;
        }
        reply->status = lt->answer.status;
        reply->retry_after = 0;
    }
    free(lt->answer.body);
    pending_free(p);
    free(buf);
    free(id);
    return done;
}

/* A request refused 401 (reply holds the answer): kept as a dead letter while
 * the source's cap allows, answered 401 either way. Returns as claim_and_append. */
static int unauthorized(rl_ingest_t *ig, source_rt_t *src, const rl_ingest_req_t *req,
                        uint64_t now_ms, const char *why, rl_ingest_done_cb cb, void *opaque,
                        rl_reply_t *reply)
{
    letter_t lt = {.reason = "unauthorized", .msg = why, .answer = *reply, .keep_answer = 1};
    int retry_after;

    if (!rl_ratelimit_take(src->unauth_rate, (uint64_t)rl_clock_mono_ms(), &retry_after)) {
        rl_metric_add(src->m_unauth_dropped, 1);
        return 1;
    }
    reply->body = NULL; /* lt.answer's now */
    return dead_letter(ig, src, req, now_ms, &lt, cb, opaque, reply);
}

/* Where the codec had no id of its own, the signed message id is the better
 * one: it is what the provider retries with. A body of several events numbers
 * them: "{webhook-id}#{position}". Returns 0, -1 on out-of-memory. */
static int adopt_msg_id(rl_event_list_t *evs, const char *msg_id)
{
    for (size_t i = 0; msg_id && i < evs->n; i++) {
        char *id = NULL;
        if (!evs->v[i].id_derived)
            continue;
        if (evs->n == 1)
            id = strdup(msg_id);
        else if (asprintf(&id, "%s#%zu", msg_id, i) < 0)
            id = NULL;
        if (!id)
            return -1;
        free(evs->v[i].id);
        evs->v[i].id = id;
        evs->v[i].id_derived = 0;
    }
    return 0;
}

/* The WAL record of every event of evs into iov[i] (malloc'd, freed by the
 * caller whatever the result), its dedup id into ids[i] (borrowed from evs, or
 * for an event with its own CloudEvent source malloc'd into own[i], which the
 * caller frees).
 * Returns 0; 1 with msg set when an event cannot be stored or published (a
 * field over the record's 64 KiB, a topic or stream name its template cannot
 * form within the sinks' limits); -1 on out-of-memory. The names are checked
 * here, with the sinks' own rl_record_render, so that nothing answered 200 is
 * dropped by a sink later. */
static int encode_events(const rl_ingest_t *ig, const source_rt_t *src, const rl_event_list_t *evs,
                         uint64_t now_ms, struct iovec *iov, char **ids, char **own, char *msg,
                         size_t msgsz)
{
    const rl_config_t *cfg = ig->cfg;
    char name[RL_RECORD_KEY_MAX + 1];
    rl_record_t rec;

    for (size_t i = 0; i < evs->n; i++) {
        const rl_event_t *ev = &evs->v[i];
        const char *field = rl_record_too_long(src->conf->name, ev);
        uint8_t *buf = NULL;

        if (field) {
            snprintf(msg, msgsz, "event %zu: its %s is longer than %u bytes", i, field,
                     RL_RECORD_FIELD_MAX);
            return 1;
        }
        if (rl_record_event(src->conf->name, src->codec->name, ev, now_ms, &buf, &iov[i].iov_len) !=
            0)
            return -1;
        iov[i].iov_base = buf;
        ids[i] = ev->id;
        if (rl_record_decode(buf, iov[i].iov_len, &rec) != 0)
            return -1;    /* cannot happen: it was just encoded */
        if (rec.scoped) { /* the same id the dedup rebuild computes from the record */
            size_t len;
            if (!rl_record_dedup_id(&rec, NULL, 0, &len, &own[i]))
                return -1;
            ids[i] = own[i];
        }
        if (cfg->kafka.enabled &&
            rl_record_render(cfg->kafka.topic, &rec, 1, name, RL_RECORD_TOPIC_MAX + 1) < 0) {
            snprintf(msg, msgsz,
                     "event %zu: kafka.topic makes a topic name over %d characters from it", i,
                     RL_RECORD_TOPIC_MAX);
            return 1;
        }
        if (cfg->redis.enabled &&
            rl_record_render(cfg->redis.stream, &rec, 0, name, RL_RECORD_KEY_MAX + 1) < 0) {
            snprintf(msg, msgsz, "event %zu: redis.stream makes a key over %d bytes from it", i,
                     RL_RECORD_KEY_MAX);
            return 1;
        }
    }
    return 0;
}

static size_t reason_index(const char *why)
{
    size_t i = 0;
    while (rl_auth_reasons[i] && strcmp(rl_auth_reasons[i], why) != 0)
        i++;
    return i < NAUTH_REASONS ? i : 0;
}

/* Authentication, then the rate limit. 0 to go on (*msg_id: the signed
 * message id, or NULL); 1 when reply holds the answer; 2 when it holds a 401
 * (run->why: the reason). */
static int admit(source_rt_t *src, run_t *run, const char **msg_id, rl_reply_t *reply)
{
    const rl_ingest_req_t *req = run->req;
    const char *why = NULL;
    int retry_after = 0;
    rl_auth_req_t areq = {.header = req->header,
                          .header_ctx = req->header_ctx,
                          .body = req->body,
                          .len = req->len,
                          .now = (int64_t)(run->received_ms / 1000)};

    if (run->skip_auth) {
        *msg_id = run->msg_id;
    } else if (rl_auth_check(src->auth, &areq, &why, msg_id) != 0) {
        count(run, src->m_auth[reason_index(why)], 1);
        rl_reply_error(reply, 401, "unauthorized", "authentication failed: %s", why);
        run->why = why;
        return 2;
    }
    /* After authentication: requests that cannot prove who sent them must not
     * use up the provider's allowance. */
    if (!run->redrive && src->rate &&
        !rl_ratelimit_take(src->rate, (uint64_t)rl_clock_mono_ms(), &retry_after)) {
        rl_metric_add(src->m_rate, 1);
        rl_reply_error(reply, 429, "rate_limited",
                       "more requests than this source's rate_limit; retry after %d s",
                       retry_after);
        reply->retry_after = retry_after;
        return 1;
    }
    return 0;
}

/* The body into events: 0 with evs filled (they borrow nothing from doc); 1
 * with *reason and msg set, for a dead letter; 2 when reply holds the answer
 * (too many items, or out of memory). */
static int decode_body(const rl_ingest_t *ig, source_rt_t *src, const run_t *run, rl_jdoc_t *doc,
                       rl_event_list_t *evs, const char **reason, char *msg, size_t msgsz,
                       rl_reply_t *reply)
{
    const rl_ingest_req_t *req = run->req;
    rl_codec_in_t in = {.body = (const char *)req->body,
                        .len = req->len,
                        .content_type = req->header(req->header_ctx, "Content-Type"),
                        .header = req->header,
                        .each_header = req->each_header,
                        .header_ctx = req->header_ctx,
                        .conf = src->codec_conf};
    char err[256] = "";
    int rc;

    if (!doc)
        goto oom;
    rc = rl_jdoc_parse(doc, (const char *)req->body, req->len, ig->max_depth, err, sizeof(err));
    if (rc == RL_JDOC_NOMEM)
        goto oom;
    if (rc == RL_JDOC_SYNTAX && (src->codec->flags & RL_CODEC_ANY_BODY)) {
        rc = rl_codec_decode(src->codec, NULL, &in, evs, err, sizeof(err));
        goto decoded; /* a body that is not JSON, which this codec may take */
    }
    if (rc == RL_JDOC_TOO_DEEP) {
        count(run, src->m_depth, 1); /* a limit hit, and a 400 like the others */
        count(run, src->m_too_deep, 1);
        snprintf(msg, msgsz, "body nests arrays and objects deeper than %d (http.max_json_depth)",
                 ig->max_depth);
        *reason = "json_too_deep";
        return 1;
    }
    if (rc != 0) {
        count(run, src->m_bad_json, 1);
        snprintf(msg, msgsz, "body is not JSON: %s", err);
        *reason = "invalid_json";
        return 1;
    }
    rc = rl_codec_decode(src->codec, doc, &in, evs, err, sizeof(err));
decoded:
    if (rc == RL_CODEC_NOMEM) /* the body may be good: the provider retries */
        goto oom;
    if (rc != 0 || evs->n == 0) {
        count(run, src->m_bad_shape, 1);
        snprintf(msg, msgsz, "not a %s webhook: %s", src->codec->name,
                 err[0] ? err : "no events in body");
        *reason = "invalid_payload";
        return 1;
    }
    if (evs->n > ig->max_items) {
        count(run, src->m_items, 1);
        rl_reply_error(reply, 413, "too_many_items",
                       "the body carries %zu events, more than http.max_items (%zu)", evs->n,
                       ig->max_items);
        return 2;
    }
    return 0;
oom:
    rl_reply_error(reply, 500, "internal", "out of memory");
    return 2;
}

/* Every CloudEvent carries a time: where the provider gave none (Whapi users,
 * presences), it is when relay received the event. 0, or -1 on out-of-memory. */
static int stamp_time(rl_event_list_t *evs, uint64_t now_ms)
{
    char now_rfc[32];
    struct tm tm;
    time_t now_s = (time_t)(now_ms / 1000);

    gmtime_r(&now_s, &tm);
    strftime(now_rfc, sizeof(now_rfc), "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (size_t i = 0; i < evs->n; i++)
        if (!evs->v[i].time && !(evs->v[i].time = strdup(now_rfc)))
            return -1;
    return 0;
}

/* The decoded events `evs` of source src from their records to the WAL: encoded,
 * claimed in the dedup window, the new ones appended. Returns 1 answered now
 * (*reply), 0 when cb(opaque, reply) comes later, -1 out of memory, or 2 when an
 * event could not be published by a sink (msg says why; counted). */
static int append_events(rl_ingest_t *ig, source_rt_t *src, const run_t *run,
                         const rl_event_list_t *evs, uint64_t now_ms, uint64_t start_us,
                         rl_ingest_done_cb cb, void *opaque, char *msg, size_t msg_size,
                         rl_reply_t *reply)
{
    size_t n = evs->n;
    pending_t *p = pending_new(ig, src, n, cb, opaque);
    struct iovec *iov = calloc(n, sizeof(*iov)), *all = malloc(n * sizeof(*all));
    char **ids = calloc(n, sizeof(*ids)), **own = calloc(n, sizeof(*own));
    int rc = -1;

    if (!p || !iov || !ids || !own || !all)
        goto out;
    p->start_us = run->redrive ? 0 : start_us;
    p->durable_only = run->redrive;
    rc = encode_events(ig, src, evs, now_ms, iov, ids, own, msg, msg_size);
    if (rc < 0)
        goto out;
    if (rc > 0) {
        count(run, src->m_bad_shape, 1);
        rc = 2;
        goto out;
    }
    /* claim_and_append compacts iov to the new events; keep the originals to free. */
    memcpy(all, iov, n * sizeof(*all));
    rc = claim_and_append(ig, p, (const char *const *)ids, n, evs, iov, reply);
    for (size_t i = 0; i < n; i++)
        free(all[i].iov_base);
    memset(iov, 0, n * sizeof(*iov));
    if (!rc)
        p = NULL; /* owned by the WAL callback now */
out:
    if (iov)
        for (size_t i = 0; i < n; i++)
            free(iov[i].iov_base);
    free(iov);
    free(all);
    free(ids);
    if (own)
        for (size_t i = 0; i < n; i++)
            free(own[i]);
    free(own);
    pending_free(p);
    return rc;
}

/* The pipeline from the source on: as rl_ingest_submit, for a request or a
 * re-drive (run_t). */
static int ingest_run(rl_ingest_t *ig, source_rt_t *src, run_t *run, rl_ingest_done_cb cb,
                      void *opaque, rl_reply_t *reply)
{
    const rl_ingest_req_t *req = run->req;
    rl_event_list_t evs;
    rl_jdoc_t *doc = NULL;
    const char *msg_id = NULL, *reason = NULL;
    char msg[512];
    int done = 1, rc;
    uint64_t start_us = rl_clock_mono_us(), now_ms = (uint64_t)rl_clock_wall_ms();

    rl_event_list_init(&evs);
    rc = admit(src, run, &msg_id, reply);
    if (rc == 2 && !run->redrive)
        done = unauthorized(ig, src, req, now_ms, run->why, cb, opaque, reply);
    if (rc != 0)
        goto out;
    doc = doc_take(ig);
    rc = decode_body(ig, src, run, doc, &evs, &reason, msg, sizeof(msg), reply);
    doc_give(ig, doc); /* the events hold copies of all they need */
    if (rc == 2)
        goto out;
    if (rc == 1)
        goto dead;
    if (adopt_msg_id(&evs, msg_id) != 0 || stamp_time(&evs, run->received_ms) != 0)
        goto oom;
    rc = append_events(ig, src, run, &evs, now_ms, start_us, cb, opaque, msg, sizeof(msg), reply);
    if (rc < 0)
        goto oom;
    if (rc == 2) { /* an event no sink could publish: refused now, not dropped later */
        reason = "invalid_payload";
        goto dead;
    }
    done = rc;
    goto out;
dead:
    run->why = reason;
    if (run->redrive) { /* still dead: its letter is already kept */
        rl_reply_error(reply, 400, reason, "%s", msg);
        done = 1;
        goto out;
    }
    letter_t lt = {.msg_id = msg_id, .reason = reason, .msg = msg};
    rl_reply_error(&lt.answer, 400, reason, "%s", msg);
    done = dead_letter(ig, src, req, now_ms, &lt, cb, opaque, reply);
    goto out;
oom:
    rl_reply_error(reply, 500, "internal", "out of memory");
    done = 1;
out:
    rl_event_list_clear(&evs);
    return done;
}

int rl_ingest_submit(rl_ingest_t *ig, const rl_ingest_req_t *req, rl_ingest_done_cb cb,
                     void *opaque, rl_reply_t *reply)
{
    run_t run = {.req = req, .received_ms = (uint64_t)rl_clock_wall_ms()};
    source_rt_t *src = find_source(ig, req->source);

    if (!src) {
        rl_reply_error(reply, 404, "unknown_source", "no source named '%s' is configured",
                       req->source);
        return 1;
    }
    return ingest_run(ig, src, &run, cb, opaque, reply);
}

/* ---- re-drive -------------------------------------------------------------- */

/* A dead letter's request: its headers for rl_header_fn / rl_header_each_fn. */
typedef struct letter_req {
    const char *content_type;
    json_t *headers; /* the kept headers' object, NULL when none */
} letter_req_t;

static const char *letter_header(void *ctx, const char *name)
{
    letter_req_t *l = ctx;
    const char *k;
    json_t *v;

    if (!strcasecmp(name, "Content-Type"))
        return l->content_type;
    json_object_foreach (l->headers, k, v) {
        if (!strcasecmp(k, name))
            return json_string_value(v);
    }
    return NULL;
}

static void letter_each_header(void *ctx, int (*fn)(void *arg, const char *name, const char *value),
                               void *arg)
{
    letter_req_t *l = ctx;
    const char *k;
    json_t *v;

    if (l->content_type && fn(arg, "Content-Type", l->content_type))
        return;
    json_object_foreach (l->headers, k, v) {
        if (json_is_string(v) && fn(arg, k, json_string_value(v)))
            return;
    }
}

/* rl_ingest_redrive waits for its reply here. */
typedef struct redrive_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    rl_reply_t reply;
} redrive_wait_t;

static void redrive_done(void *opaque, rl_reply_t *reply)
{
    redrive_wait_t *w = opaque;
    pthread_mutex_lock(&w->mu);
    w->reply = *reply;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static rl_redrive_outcome_t redrive_set(rl_redrive_result_t *res, rl_redrive_outcome_t outcome,
                                        const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static rl_redrive_outcome_t redrive_set(rl_redrive_result_t *res, rl_redrive_outcome_t outcome,
                                        const char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
    snprintf(res->reason, sizeof(res->reason), "%s", reason);
    res->outcome = outcome;
    return outcome;
}

/* The outcome of a re-drive from the pipeline's answer. */
static rl_redrive_outcome_t redrive_outcome(const run_t *run, const rl_reply_t *reply,
                                            rl_redrive_result_t *res)
{
    json_t *j = reply->body ? json_loads(reply->body, 0, NULL) : NULL;
    const char *code = json_string_value(json_object_get(j, "error"));
    const char *msg = json_string_value(json_object_get(j, "message"));
    rl_redrive_outcome_t o;

    if (reply->status == 200) {
        res->accepted = (size_t)json_integer_value(json_object_get(j, "accepted"));
        res->duplicates = (size_t)json_integer_value(json_object_get(j, "duplicates"));
        o = redrive_set(res, RL_REDRIVE_REDRIVEN, "", "%zu event(s) accepted, %zu duplicate(s)",
                        res->accepted, res->duplicates);
    } else if (reply->status == 400 || reply->status == 401 || reply->status == 413) {
        o = redrive_set(res, RL_REDRIVE_STILL_DEAD,
                        run->why ? run->why : (code ? code : "invalid_payload"), "%s",
                        msg ? msg : "refused");
    } else {
        o = redrive_set(res, RL_REDRIVE_ERROR, code ? code : "internal", "%s",
                        msg ? msg : "out of memory");
    }
    json_decref(j);
    return o;
}

rl_redrive_outcome_t rl_ingest_redrive(rl_ingest_t *ig, const uint8_t *payload, size_t len,
                                       rl_redrive_result_t *res)
{
    redrive_wait_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0, NULL, 0}};
    rl_reply_t reply = {0, NULL, 0};
    rl_record_t rec;
    json_t *ce = NULL, *data;
    uint8_t *body = NULL;
    char name[256];
    source_rt_t *src;
    rl_redrive_outcome_t o;

    memset(res, 0, sizeof(*res));
    if (rl_record_decode(payload, len, &rec) != 0 || rec.kind != RL_RECORD_DEADLETTER) {
        o = redrive_set(res, RL_REDRIVE_SKIPPED, "not_a_dead_letter", "not a dead letter");
        goto out;
    }
    snprintf(name, sizeof(name), "%.*s", (int)rec.source_len, rec.source);
    if (rec.source_len >= sizeof(name) || !(src = find_source(ig, name))) {
        o = redrive_set(res, RL_REDRIVE_SKIPPED, "unknown_source",
                        "no source named '%s' is configured", name);
        goto out;
    }
    ce = json_loadb(rec.event, rec.event_len, 0, NULL);
    data = json_object_get(ce, "data");
    const char *reason = json_string_value(json_object_get(data, "reason"));
    const char *b64 = json_string_value(json_object_get(data, "body_base64"));
    json_t *size = json_object_get(data, "body_size");
    letter_req_t lr = {.content_type = json_string_value(json_object_get(data, "content_type")),
                       .headers = json_object_get(data, "headers")};
    int unauth = reason && !strcmp(reason, "unauthorized");
    size_t blen = b64 ? strlen(b64) : 0;

    if (!reason || !b64 || !json_is_integer(size)) {
        o = redrive_set(res, RL_REDRIVE_SKIPPED, "bad_letter", "the letter's data is malformed");
        goto out;
    }
    if (json_is_true(json_object_get(data, "body_truncated"))) {
        o = redrive_set(res, RL_REDRIVE_SKIPPED, "body_truncated",
                        "the letter kept only the first %u of %lld bytes of the body",
                        RL_DEADLETTER_MAX_BODY, (long long)json_integer_value(size));
        goto out;
    }
    if (unauth && !json_is_object(lr.headers)) {
        o = redrive_set(res, RL_REDRIVE_SKIPPED, "headers_not_kept",
                        "refused 401, and its headers were not kept: it cannot be "
                        "authenticated again");
        goto out;
    }
    if (!json_is_object(lr.headers))
        lr.headers = NULL;
    if (!(body = malloc(blen / 4 * 3 + 1))) {
        o = redrive_set(res, RL_REDRIVE_ERROR, "internal", "out of memory");
        goto out;
    }
    int n = blen ? rl_b64_decode(b64, blen, body, blen / 4 * 3 + 1) : 0;
    if (n < 0 || (json_int_t)n != json_integer_value(size)) {
        o = redrive_set(res, RL_REDRIVE_SKIPPED, "bad_letter",
                        "the letter's body_base64 is not its body");
        goto out;
    }
    rl_ingest_req_t req = {.source = name,
                           .body = body,
                           .len = (size_t)n,
                           .header = letter_header,
                           .each_header = letter_each_header,
                           .header_ctx = &lr};
    run_t run = {.req = &req,
                 .received_ms = rec.received_ms,
                 .redrive = 1,
                 .skip_auth = !unauth,
                 .msg_id = json_string_value(json_object_get(data, "webhook_id"))};
    if (!ingest_run(ig, src, &run, redrive_done, &w, &reply)) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        reply = w.reply;
    }
    o = redrive_outcome(&run, &reply, res);
out:
    free(reply.body);
    free(body);
    json_decref(ce);
    return o;
}

int rl_ingest_emit(rl_ingest_t *ig, const char *source, const rl_event_list_t *evs,
                   size_t *accepted, size_t *duplicates, char *errstr, size_t errstr_size)
{
    redrive_wait_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0, NULL, 0}};
    rl_reply_t reply = {0, NULL, 0};
    run_t run = {.received_ms = (uint64_t)rl_clock_wall_ms(), .redrive = 1};
    source_rt_t *src = find_source(ig, source);
    json_t *j = NULL;
    char msg[512];
    int rc = -1;

    if (!src) {
        rl_seterr(errstr, errstr_size, "no source named '%s' is configured", source);
        goto out;
    }
    rc = append_events(ig, src, &run, evs, run.received_ms, 0, redrive_done, &w, msg, sizeof(msg),
                       &reply);
    if (rc < 0 || rc == 2) {
        rl_seterr(errstr, errstr_size, "%s", rc < 0 ? "out of memory" : msg);
        rc = -1;
        goto out;
    }
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        reply = w.reply;
    }
    j = reply.body ? json_loads(reply.body, 0, NULL) : NULL;
    if (reply.status != 200) {
        const char *m = json_string_value(json_object_get(j, "message"));
        rl_seterr(errstr, errstr_size, "%d %s", reply.status, m ? m : "refused");
        rc = -1;
        goto out;
    }
    *accepted = (size_t)json_integer_value(json_object_get(j, "accepted"));
    *duplicates = (size_t)json_integer_value(json_object_get(j, "duplicates"));
    rc = 0;
out:
    json_decref(j);
    free(reply.body);
    return rc;
}

int rl_ingest_handshake(rl_ingest_t *ig, const char *source, rl_header_fn arg, void *arg_ctx,
                        rl_handshake_t *out)
{
    source_rt_t *src = find_source(ig, source);

    out->status = 0;
    out->body = NULL;
    if (!src || !src->codec->handshake)
        return 0;
    if (src->codec->handshake(src->codec_conf, arg, arg_ctx, out) != 0) {
        free(out->body);
        out->status = 500;
        out->body = strdup("out of memory");
    }
    return 1;
}
