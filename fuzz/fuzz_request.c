/* fuzz_request.c -- libFuzzer target for the request path without sockets:
 * rl_ingest_submit (auth, rate limit, depth check, JSON, codec, webhook-id,
 * dedup, dead letters) with a real WAL in a temporary directory (no fsync; one
 * reader, standing for the sinks, acknowledges whatever is durable, so old
 * segments are deleted and the WAL never fills).
 *
 * Random bytes almost never carry a valid HMAC, so the harness signs most
 * inputs itself, the way each provider would, and lets the fuzzer choose the
 * body and how the request deviates. Input: byte 0 picks the source, byte 1 is
 * a set of flags (below), the rest is the body; with F_RAW_HEADER the body's
 * first line is sent as the token or signature header instead of a valid one.
 *
 * Invariants: every answer is one of the contract's statuses with a JSON body;
 * a correctly signed, fresh request is never refused 401; a request whose valid
 * signature had one bit flipped always is; a 200 lists one id per event and
 * counts accepted + duplicates; a 400 names one of the dead-letter reasons. */
#include "fuzz.h"

#include "config.h"
#include "ingest.h"
#include "metrics.h"
#include "wal.h"

#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum {
    F_RAW_HEADER = 1 << 0, /* the body's first line is the auth header, unsigned */
    F_SECOND_KEY = 1 << 1, /* sign with the second secret (rotation) */
    F_VARIANT = 1 << 2,    /* timely: timestamp form; standard-webhooks: junk entry first */
    F_STALE = 1 << 3,      /* a timestamp 1000 s old */
    F_NO_CTYPE = 1 << 4,   /* no Content-Type header */
    F_FLIP = 1 << 5,       /* flip one bit of a valid signature */
    F_NO_PREFIX = 1 << 6,  /* timely: signature without "sha256=" */
};

#define SW_KEY1 "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_KEY2 "MDEyMzQ1Njc4OWFiY2RlZg=="

static const char *const sources[] = {"open", "tok", "tim", "std", "hub", "rate", "nosuch"};
#define NSOURCES (sizeof(sources) / sizeof(sources[0]))

static char dir[64];
static rl_config_t *cfg;
static rl_metrics_t *metrics;
static rl_wal_t *wal;
static rl_wal_reader_t *reader; /* stands for the sinks: acknowledges what is durable */
static rl_ingest_t *ingest;

typedef struct hdrs {
    const char *kv[16];
    size_t n;
} hdrs_t;

static const char *lookup(void *ctx, const char *name)
{
    hdrs_t *h = ctx;
    for (size_t i = 0; i + 1 < h->n; i += 2)
        if (!strcasecmp(h->kv[i], name))
            return h->kv[i + 1];
    return NULL;
}

static void add(hdrs_t *h, const char *k, const char *v)
{
    h->kv[h->n++] = k;
    h->kv[h->n++] = v;
}

typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int done;
    rl_reply_t reply;
} waiter_t;

static void on_done(void *opaque, rl_reply_t *r)
{
    waiter_t *w = opaque;
    pthread_mutex_lock(&w->m);
    w->reply = *r;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->m);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void cleanup(void)
{
    rl_ingest_destroy(ingest);
    rl_wal_close(wal);
    rl_metrics_destroy(metrics);
    rl_config_destroy(cfg);
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[128], err[512];
    (void)argc, (void)argv;
    snprintf(dir, sizeof(dir), "/tmp/relay-fuzz-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/relay.conf", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fprintf(f,
            "[http]\nmax_json_depth = 16\nmax_items = 50\n"
            "[wal]\ndir = %s/wal\nsegment_size = 64k\nmax_size = 8m\nfsync = false\n"
            "[dedup]\nwindow = 1h\nmax_entries = 20000\n"
            "[kafka]\nenabled = false\n[redis]\nenabled = false\n"
            "[source open]\ncodec = timely\n"
            "[source tok]\ncodec = whapi\nauth = token\nsecret = tok-a, tok-b\n"
            "[source tim]\ncodec = timely\nauth = timely\nsecret = tm-a,tm-b\n"
            "[source std]\ncodec = whapi\nauth = standard-webhooks\n"
            "secret = whsec_" SW_KEY1 ", whsec_" SW_KEY2 "\n"
            "[source hub]\ncodec = whapi\nauth = hub-signature-256\nsecret = hub-a,hub-b\n"
            "[source rate]\ncodec = whapi\nrate_limit = 1000/s\nrate_burst = 5\n",
            dir);
    fclose(f);
    if (!(cfg = rl_config_load(path, err, sizeof(err))) ||
        !(metrics = rl_metrics_new(err, sizeof(err))))
        goto fail;
    snprintf(path, sizeof(path), "%s/wal", dir);
    static const char *const readers[] = {"fuzz"};
    rl_wal_opts_t wo = {.dir = path,
                        .segment_size = 64 * 1024,
                        .max_size = 8 * 1024 * 1024,
                        .readers = readers,
                        .nreaders = 1};
    if (!(wal = rl_wal_open(&wo, metrics, err, sizeof(err))) ||
        !(reader = rl_wal_reader(wal, "fuzz")) ||
        !(ingest = rl_ingest_new(cfg, wal, metrics, err, sizeof(err))))
        goto fail;
    atexit(cleanup);
    return 0;
fail:
    fprintf(stderr, "fuzz_request: set-up failed: %s\n", err);
    abort();
}

static void hex(const unsigned char *md, unsigned int n, char *out)
{
    for (unsigned int i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

/* HMAC-SHA256(key, a || b || c) with OpenSSL's one-shot API. */
static unsigned int mac3(const void *key, int keylen, const char *a, const char *b,
                         const uint8_t *c, size_t clen, unsigned char md[32])
{
    unsigned int n = 0;
    size_t al = strlen(a), bl = strlen(b);
    unsigned char *msg = malloc(al + bl + clen + 1);
    if (!msg)
        abort();
    memcpy(msg, a, al);
    memcpy(msg + al, b, bl);
    if (clen)
        memcpy(msg + al + bl, c, clen);
    HMAC(EVP_sha256(), key, keylen, msg, al + bl + clen, md, &n);
    free(msg);
    return n;
}

/* Signs the request the way source s's provider would. Returns 1 when it
 * carries valid credentials, 0 for a source without authentication. */
static int sign(size_t s, unsigned flags, const uint8_t *body, size_t len, int64_t now, hdrs_t *h,
                char bufs[4][512])
{
    unsigned char md[32], key[64];
    int second = (flags & F_SECOND_KEY) != 0;
    int64_t ts = (flags & F_STALE) ? now - 1000 : now;

    switch (s) {
    case 1:
        snprintf(bufs[0], 512, "Bearer %s", second ? "tok-b" : "tok-a");
        add(h, "Authorization", bufs[0]);
        return 1;
    case 2:
        if (flags & F_VARIANT) {
            snprintf(bufs[1], 512, "%lld", (long long)ts);
            mac3(second ? "tm-b" : "tm-a", 4, bufs[1], ".", body, len, md);
            add(h, "X-Timely-Timestamp", bufs[1]);
        } else {
            mac3(second ? "tm-b" : "tm-a", 4, "", "", body, len, md);
        }
        snprintf(bufs[0], 512, "%s", (flags & F_NO_PREFIX) ? "" : "sha256=");
        hex(md, 32, bufs[0] + strlen(bufs[0]));
        add(h, "X-Timely-Signature", bufs[0]);
        return 1;
    case 3: {
        int kl = EVP_DecodeBlock(key, (const unsigned char *)(second ? SW_KEY2 : SW_KEY1),
                                 (int)strlen(second ? SW_KEY2 : SW_KEY1));
        kl -= second ? 2 : 0; /* SW_KEY2 has two padding characters */
        snprintf(bufs[1], 512, "%lld", (long long)ts);
        snprintf(bufs[2], 512, "msg_fuzz.%s.", bufs[1]);
        mac3(key, kl, bufs[2], "", body, len, md);
        char b64[64];
        EVP_EncodeBlock((unsigned char *)b64, md, 32);
        snprintf(bufs[0], 512, "%sv1,%s",
                 (flags & F_VARIANT) ? "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " : "",
                 b64);
        add(h, "webhook-id", "msg_fuzz");
        add(h, "webhook-timestamp", bufs[1]);
        add(h, "webhook-signature", bufs[0]);
        return 1;
    }
    case 4:
        mac3(second ? "hub-b" : "hub-a", 5, "", "", body, len, md);
        strcpy(bufs[0], "sha256=");
        hex(md, 32, bufs[0] + 7);
        add(h, "X-Hub-Signature-256", bufs[0]);
        return 1;
    default: return 0;
    }
}

/* The header a fuzzed first line replaces, for source s. */
static const char *raw_header_name(size_t s)
{
    static const char *const names[] = {
        "Authorization",       "Authorization", "X-Timely-Signature", "webhook-signature",
        "X-Hub-Signature-256", "Authorization", "Authorization"};
    return names[s];
}

static void check_reply(const rl_reply_t *r)
{
    static const int ok[] = {200, 400, 401, 404, 413, 429, 500, 503};
    int known = 0;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        known |= r->status == ok[i];
    FUZZ_CHECK(known, "status %d is not in the contract", r->status);
    FUZZ_CHECK(r->body, "status %d without a body", r->status);
    json_t *j = json_loads(r->body, 0, NULL);
    FUZZ_CHECK(j && json_is_object(j), "body is not a JSON object: %.200s", r->body);
    if (r->status == 200) {
        json_t *ids = json_object_get(j, "ids");
        json_int_t acc = json_integer_value(json_object_get(j, "accepted"));
        json_int_t dup = json_integer_value(json_object_get(j, "duplicates"));
        FUZZ_CHECK(json_is_array(ids) && json_array_size(ids) > 0 &&
                       (size_t)(acc + dup) == json_array_size(ids),
                   "200 body does not add up: %.200s", r->body);
    } else {
        const char *code = json_string_value(json_object_get(j, "error"));
        FUZZ_CHECK(code && json_string_value(json_object_get(j, "message")),
                   "error body without error/message: %.200s", r->body);
        if (r->status == 400)
            FUZZ_CHECK(!strcmp(code, "invalid_json") || !strcmp(code, "invalid_payload") ||
                           !strcmp(code, "json_too_deep"),
                       "400 with code %s", code);
    }
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char bufs[4][512], raw[257];
    hdrs_t h = {{0}, 0};
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0, NULL, 0}};
    rl_reply_t reply = {0, NULL, 0};

    if (size < 2)
        return 0;
    size_t s = data[0] % NSOURCES;
    unsigned flags = data[1];
    const uint8_t *body = data + 2;
    size_t len = size - 2;
    int valid = 0;

    if (!(flags & F_NO_CTYPE))
        add(&h, "Content-Type", "application/json");
    if (flags & F_RAW_HEADER) {
        /* What a header can hold: no NUL, CR or LF. */
        size_t n = 0;
        while (n < len && n < sizeof(raw) - 1 && body[n] && body[n] != '\r' && body[n] != '\n')
            n++;
        memcpy(raw, body, n);
        raw[n] = '\0';
        add(&h, raw_header_name(s), raw);
        body += n < len ? n + 1 : n;
        len -= n < len ? n + 1 : n;
    } else {
        valid = sign(s, flags, body, len, (int64_t)time(NULL), &h, bufs);
        if (valid && (flags & F_FLIP) && s >= 2 && s <= 4) {
            /* A character inside the (last) signature moved to another of the
             * same alphabet: still well-formed, no longer right. (Not the last
             * Base64 digit: its low bits are padding and may not count.) */
            char *v = bufs[0] + strlen(bufs[0]) - 10;
            *v = *v == 'A' ? 'B' : *v == '0' ? '1' : (*v == 'a' ? 'b' : 'a');
            valid = -1;
        }
    }
    rl_ingest_req_t req = {
        .source = sources[s], .body = body, .len = len, .header = lookup, .header_ctx = &h};
    if (!rl_ingest_submit(ingest, &req, on_done, &w, &reply)) {
        pthread_mutex_lock(&w.m);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.m);
        pthread_mutex_unlock(&w.m);
        reply = w.reply;
    }
    /* As if every sink had published it: the WAL deletes its old segments. */
    rl_wal_reader_commit(reader, rl_wal_durable_seq(wal));
    check_reply(&reply);
    int stale = (flags & F_STALE) && (s == 3 || (s == 2 && (flags & F_VARIANT)));
    if (valid == 1 && !stale)
        FUZZ_CHECK(reply.status != 401, "a valid signature was refused: %s", reply.body);
    if (valid == -1)
        FUZZ_CHECK(reply.status == 401, "a flipped signature was taken (%d)", reply.status);
    free(reply.body);
    return 0;
}
