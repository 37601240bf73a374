/* faults.h -- what the fault tests share: a load generator that posts ordered streams
 * of events, and a checker that reads both sinks and counts what arrived, what was
 * lost, duplicated or reordered.
 *
 * It builds on harness.h. Only test_faults.c uses it, so unlike the harness (built
 * once into $(BUILD)/libtests.a) it stays a header of static functions, FAULTS_API.
 *
 * The load generator runs one thread per channel. Each thread posts Timely events
 * "evt_<prefix>_c<channel>_<n>" for channel "chan_<channel>", n = 0, 1, 2, ... one at a
 * time over a keep-alive connection, and retries an event (same body, same id) until
 * it is answered 200, the way a provider retries a webhook. So the order in which
 * relay accepted a channel's events is n's order, and events 0 .. acked-1 of every
 * channel are exactly the ones answered 200.
 *
 * The checker reads the Kafka topic and every channel's Redis stream and, per sink:
 *   found      events answered 200 that arrived (at least one copy)
 *   lost       events answered 200 that did not arrive (the promise: 0)
 *   duplicated extra copies of an event (allowed: at-least-once, same CloudEvent id;
 *              counted, and each must be byte-identical to the first copy)
 *   disorder   first copies of a channel's events out of the accepted order (0)
 *   unanswered events that arrived but were never answered 200 (allowed: the answer
 *              was lost in a crash, or the test gave up on it) */
#ifndef RELAY_TEST_FAULTS_H
#define RELAY_TEST_FAULTS_H

#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

/* Static, and maybe unused by the one file that includes this header. */
#define FAULTS_API static __attribute__((unused))

#define LG_MAX_CHANNELS 16

/* The long forms (make faults: RELAY_FAULTS_LONG=1) or the short ones (make test). */
FAULTS_API int faults_long(void)
{
    const char *v = getenv("RELAY_FAULTS_LONG");
    return v && *v && strcmp(v, "0") != 0;
}

/* A random seed, printed so that a failing run can be repeated (RELAY_FAULTS_SEED). */
FAULTS_API unsigned faults_seed(const char *test)
{
    const char *v = getenv("RELAY_FAULTS_SEED");
    unsigned seed = v ? (unsigned)strtoul(v, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "FAULT %s: seed %u (RELAY_FAULTS_SEED=%u repeats it)\n", test, seed, seed);
    return seed;
}

/* ------------------------------------------------------------------ load generator */

typedef struct lg lg_t;

typedef struct lg_worker {
    lg_t *lg;
    int ch;
    pthread_t thread;
    _Atomic int acked; /* events 0 .. acked-1 were answered 200 */
} lg_worker_t;

enum { LG_RUN = 0, LG_FINISH = 1, LG_ABANDON = 2 };

struct lg {
    char url[256];
    char prefix[64];
    char source[32];
    int nch;
    int pad;      /* bytes of padding in every event (a WAL fills faster) */
    int pause_ms; /* between two events of a channel: the pace of the load */
    _Atomic int stop;
    /* Answers, by kind: 200 (of which retries recognised as duplicates), 503, any
     * other status, no connection (refused), and a connection that broke mid-request. */
    _Atomic long ok, ok_dup, s503, other, refused, broken;
    lg_worker_t w[LG_MAX_CHANNELS];
};

static size_t lg_discard(char *p, size_t size, size_t nmemb, void *ud)
{
    char *buf = ud;
    size_t n = size * nmemb, have = strlen(buf);
    if (have < 255) /* keep the start of the body: "duplicates":1 tells a retry */
        snprintf(buf + have, 256 - have, "%.*s", (int)n, p);
    return n;
}

static char *lg_body(const lg_t *lg, const char *id, const char *channel, int n)
{
    char *body = th_timely_message(id, channel, n);
    if (!lg->pad)
        return body;
    char *pad = malloc((size_t)lg->pad + 1);
    cr_assert(pad, "out of memory");
    memset(pad, 'x', (size_t)lg->pad);
    pad[lg->pad] = '\0';
    /* Inside data, so that it is part of the event like any provider field. */
    char *fat = th_strf("%.*s,\"note\":\"%s\"}}", (int)strlen(body) - 2, body, pad);
    free(pad);
    free(body);
    return fat;
}

static void *lg_main(void *arg)
{
    lg_worker_t *w = arg;
    lg_t *lg = w->lg;
    CURL *c = curl_easy_init();
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    char answer[256];
    th_curl_prepare(c, lg->url, hl, 120000, 5000, lg_discard, answer);
    char channel[32];
    snprintf(channel, sizeof channel, "chan_%d", w->ch);
    for (int n = 0; atomic_load(&lg->stop) == LG_RUN; n++) {
        char id[160];
        snprintf(id, sizeof id, "evt_%s_c%d_%d", lg->prefix, w->ch, n);
        char *body = lg_body(lg, id, channel, n);
        int backoff = 20;
        while (atomic_load(&lg->stop) != LG_ABANDON) {
            answer[0] = '\0';
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
            CURLcode rc = curl_easy_perform(c);
            long status = 0;
            if (rc == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            if (status == 200) {
                atomic_fetch_add(&lg->ok, 1);
                if (strstr(answer, "\"duplicates\":1"))
                    atomic_fetch_add(&lg->ok_dup, 1);
                atomic_store(&w->acked, n + 1);
                break;
            }
            if (status == 503)
                atomic_fetch_add(&lg->s503, 1);
            else if (status)
                atomic_fetch_add(&lg->other, 1);
            else if (rc == CURLE_COULDNT_CONNECT)
                atomic_fetch_add(&lg->refused, 1);
            else
                atomic_fetch_add(&lg->broken, 1);
            th_sleep_ms(backoff);
            backoff = backoff < 200 ? backoff * 2 : 200;
        }
        free(body);
        if (lg->pause_ms)
            th_sleep_ms(lg->pause_ms);
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return NULL;
}

/* Starts posting to relay r's source `source` on nch channels. */
FAULTS_API lg_t *lg_start(const th_relay_t *r, const char *source, int nch, int pause_ms, int pad)
{
    cr_assert(nch > 0 && nch <= LG_MAX_CHANNELS);
    lg_t *lg = calloc(1, sizeof *lg);
    cr_assert(lg, "out of memory");
    snprintf(lg->url, sizeof lg->url, "%s/v1/webhooks/%s", r->base, source);
    snprintf(lg->prefix, sizeof lg->prefix, "%s", r->prefix);
    snprintf(lg->source, sizeof lg->source, "%s", source);
    lg->nch = nch;
    lg->pause_ms = pause_ms;
    lg->pad = pad;
    for (int i = 0; i < nch; i++) {
        lg->w[i].lg = lg;
        lg->w[i].ch = i;
        cr_assert(pthread_create(&lg->w[i].thread, NULL, lg_main, &lg->w[i]) == 0);
    }
    return lg;
}

/* Events answered 200 so far, over all channels. */
FAULTS_API long lg_acked(lg_t *lg)
{
    long n = 0;
    for (int i = 0; i < lg->nch; i++)
        n += atomic_load(&lg->w[i].acked);
    return n;
}

/* Waits until `more` further events were answered 200, or timeout_ms. Returns 1 when
 * they were. */
FAULTS_API int lg_wait_acked(lg_t *lg, long more, int timeout_ms)
{
    long want = lg_acked(lg) + more;
    int64_t deadline = th_now_ms() + timeout_ms;
    while (lg_acked(lg) < want && th_now_ms() < deadline)
        th_sleep_ms(20);
    return lg_acked(lg) >= want;
}

/* Stops the threads: LG_FINISH lets every channel get its event in hand answered
 * 200 first (relay must be up), LG_ABANDON stops at once. The counters stay. */
FAULTS_API void lg_stop(lg_t *lg, int how)
{
    atomic_store(&lg->stop, how);
    for (int i = 0; i < lg->nch; i++)
        pthread_join(lg->w[i].thread, NULL);
}

/* ------------------------------------------------------------------------- checker */

typedef struct ck_chan {
    int acked;      /* events 0 .. acked-1 were answered 200 */
    int *copies;    /* per event */
    uint64_t *hash; /* of its first copy */
    int contig;     /* events 0 .. contig-1 have all been seen */
} ck_chan_t;

typedef struct ck_sink {
    const char *name;
    const lg_t *lg;
    ck_chan_t ch[LG_MAX_CHANNELS];
    long expected, found, dups, disorder, mismatch, unanswered, foreign;
    char first_disorder[200];
} ck_sink_t;

static uint64_t ck_fnv(const void *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ULL;
    return h;
}

FAULTS_API void ck_init(ck_sink_t *k, const char *name, lg_t *lg)
{
    memset(k, 0, sizeof *k);
    k->name = name;
    k->lg = lg;
    for (int i = 0; i < lg->nch; i++) {
        ck_chan_t *c = &k->ch[i];
        c->acked = atomic_load(&lg->w[i].acked);
        c->copies = calloc((size_t)c->acked + 1, sizeof *c->copies);
        c->hash = calloc((size_t)c->acked + 1, sizeof *c->hash);
        cr_assert(c->copies && c->hash, "out of memory");
        k->expected += c->acked;
    }
}

FAULTS_API void ck_free(ck_sink_t *k)
{
    for (int i = 0; i < LG_MAX_CHANNELS; i++) {
        free(k->ch[i].copies);
        free(k->ch[i].hash);
    }
}

/* Clears what was seen (a sink read again from the start). */
static void ck_reset(ck_sink_t *k)
{
    k->found = k->dups = k->disorder = k->mismatch = k->unanswered = k->foreign = 0;
    k->first_disorder[0] = '\0';
    for (int i = 0; i < k->lg->nch; i++) {
        ck_chan_t *c = &k->ch[i];
        memset(c->copies, 0, ((size_t)c->acked + 1) * sizeof *c->copies);
        c->contig = 0;
    }
}

/* One copy of event `id` arrived on the stream of `channel` ("chan_N"); `value` is
 * what the sink holds for it (the CloudEvent), to compare copies. */
static void ck_see(ck_sink_t *k, const char *channel, const char *id, size_t idlen,
                   const void *value, size_t vlen)
{
    char buf[256];
    int ch = -1, n = -1, ch2 = -1;
    snprintf(buf, sizeof buf, "%.*s", (int)idlen, id);
    size_t plen = strlen(k->lg->prefix);
    /* evt_<prefix>_c<ch>_<n> */
    if (!channel || sscanf(channel, "chan_%d", &ch) != 1 || strncmp(buf, "evt_", 4) != 0 ||
        strncmp(buf + 4, k->lg->prefix, plen) != 0 ||
        sscanf(buf + 4 + plen, "_c%d_%d", &ch2, &n) != 2 || ch != ch2 || ch < 0 ||
        ch >= k->lg->nch || n < 0) {
        k->foreign++;
        return;
    }
    ck_chan_t *c = &k->ch[ch];
    if (n >= c->acked) {
        k->unanswered++;
        return;
    }
    uint64_t h = ck_fnv(value, vlen);
    if (c->copies[n]++) {
        k->dups++;
        if (c->hash[n] != h)
            k->mismatch++;
        return;
    }
    c->hash[n] = h;
    k->found++;
    if (n != c->contig) {
        if (!k->disorder++)
            snprintf(k->first_disorder, sizeof k->first_disorder,
                     "%s: chan_%d event %d arrived before event %d", k->name, ch, n, c->contig);
    }
    while (c->contig < c->acked && c->copies[c->contig])
        c->contig++;
}

static void ck_kafka_msg(void *arg, const rd_kafka_message_t *km)
{
    ck_sink_t *k = arg;
    char channel[64];
    rd_kafka_headers_t *hdrs = NULL;
    const void *id = NULL;
    size_t idlen = 0;
    snprintf(channel, sizeof channel, "%.*s", km->key ? (int)km->key_len : 0,
             km->key ? (const char *)km->key : "");
    if (rd_kafka_message_headers(km, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, "ce_id", &id, &idlen) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        k->foreign++;
        return;
    }
    ck_see(k, channel, id, idlen, km->payload, km->len);
}

static int ck_done(void *arg)
{
    ck_sink_t *k = arg;
    return k->found >= k->expected;
}

/* Reads the whole Kafka topic of r (events.message) into k, waiting up to timeout_ms
 * for every event answered 200. */
FAULTS_API void ck_read_kafka(ck_sink_t *k, const th_relay_t *r, int timeout_ms)
{
    char topic[256];
    ck_reset(k);
    th_kafka_consume(th_topic(r, "message", topic, sizeof topic), ck_kafka_msg, ck_done, k,
                     timeout_ms, 2000);
}

/* Reads every channel's Redis stream into k, again and again until every event
 * answered 200 is there or timeout_ms passed, then once more after a pause so that
 * late copies count too. */
FAULTS_API void ck_read_redis(ck_sink_t *k, const th_relay_t *r, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (int settled = 0;;) {
        ck_reset(k);
        for (int i = 0; i < k->lg->nch; i++) {
            char channel[32], stream[256];
            th_xentries_t xs = {0};
            snprintf(channel, sizeof channel, "chan_%d", i);
            th_redis_read(th_stream(r, channel, stream, sizeof stream), 0, 0, 0, &xs);
            for (size_t e = 0; e < xs.n; e++) {
                const char *id = th_xfield(&xs.v[e], "id"), *ev = th_xfield(&xs.v[e], "event");
                if (!id || !ev)
                    k->foreign++;
                else
                    ck_see(k, channel, id, strlen(id), ev, strlen(ev));
            }
            th_xentries_free(&xs);
        }
        if (settled || (!ck_done(k) && th_now_ms() >= deadline))
            break;
        if (ck_done(k))
            settled = 1;
        th_sleep_ms(ck_done(k) ? 1000 : 200);
    }
}

/* Prints the numbers of a fault test and checks the promise: nothing answered 200
 * is lost, first copies are in the accepted order, extra copies are identical. */
FAULTS_API void ck_report(const char *test, const lg_t *lg, const ck_sink_t *kafka,
                          const ck_sink_t *redis)
{
    fprintf(stderr,
            "FAULT %s: answered 200: %ld | on kafka: %ld, lost %ld, duplicated %ld | on redis: "
            "%ld, lost %ld, duplicated %ld | out of order: %ld | published but never answered "
            "200: kafka %ld, redis %ld | answers: 200 %ld (retries answered as duplicates %ld), "
            "503 %ld, other %ld, refused %ld, broken %ld\n",
            test, kafka->expected, kafka->found, kafka->expected - kafka->found, kafka->dups,
            redis->found, redis->expected - redis->found, redis->dups,
            kafka->disorder + redis->disorder, kafka->unanswered, redis->unanswered,
            atomic_load(&lg->ok), atomic_load(&lg->ok_dup), atomic_load(&lg->s503),
            atomic_load(&lg->other), atomic_load(&lg->refused), atomic_load(&lg->broken));
    const ck_sink_t *both[] = {kafka, redis};
    for (int i = 0; i < 2; i++) {
        const ck_sink_t *k = both[i];
        cr_expect(k->expected > 0, "%s: no event was answered 200", test);
        cr_expect(k->found == k->expected, "%s: %ld events answered 200 are not on %s", test,
                  k->expected - k->found, k->name);
        cr_expect(k->disorder == 0, "%s: %ld events out of order on %s; first: %s", test,
                  k->disorder, k->name, k->first_disorder);
        cr_expect(k->mismatch == 0, "%s: %ld duplicates on %s differ from the first copy", test,
                  k->mismatch, k->name);
        cr_expect(k->foreign == 0, "%s: %ld messages on %s were never posted", test, k->foreign,
                  k->name);
    }
}

/* Reads both sinks of r and reports (ck_report). */
FAULTS_API void ck_check(const char *test, lg_t *lg, const th_relay_t *r, int timeout_ms)
{
    ck_sink_t k, x;
    ck_init(&k, "kafka", lg);
    ck_init(&x, "redis", lg);
    ck_read_kafka(&k, r, timeout_ms);
    ck_read_redis(&x, r, timeout_ms);
    ck_report(test, lg, &k, &x);
    ck_free(&k);
    ck_free(&x);
}

/* ---------------------------------------------------------------- relay's own view */

/* GET /readyz parsed (the caller decrefs), *status its HTTP status (0: no answer). */
FAULTS_API json_t *fault_readyz(const th_relay_t *r, long *status)
{
    th_resp_t resp;
    json_t *j = NULL;
    *status = 0;
    if (th_get(r, "/readyz", &resp) == 0) {
        *status = resp.status;
        j = json_incref(resp.json);
    }
    th_resp_free(&resp);
    return j;
}

/* readyz.sinks.<sink>.<field> as an integer (-1 when absent), or the state string. */
FAULTS_API long long fault_sink_num(json_t *rz, const char *sink, const char *field)
{
    json_t *v = json_object_get(json_object_get(json_object_get(rz, "sinks"), sink), field);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

FAULTS_API const char *fault_sink_state(json_t *rz, const char *sink)
{
    const char *s = json_string_value(
        json_object_get(json_object_get(json_object_get(rz, "sinks"), sink), "state"));
    return s ? s : "";
}

/* 1 when readyz.reasons holds `reason`. */
FAULTS_API int fault_has_reason(json_t *rz, const char *reason)
{
    json_t *reasons = json_object_get(rz, "reasons");
    for (size_t i = 0; i < json_array_size(reasons); i++) {
        const char *s = json_string_value(json_array_get(reasons, i));
        if (s && !strcmp(s, reason))
            return 1;
    }
    return 0;
}

#endif
