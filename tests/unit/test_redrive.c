/* test_redrive.c -- dead letters of requests refused 401 and rl_ingest_redrive
 * (relay/ingest/ingest.c), in-process: a config, a real WAL in a mkdtemp
 * directory (published segments retained, as wal.retention keeps them) and an
 * ingest, the way fuzz/fuzz_request.c builds one. A source's secret is
 * "fixed" by closing everything and opening a new config and ingest on the
 * same WAL directory, as a restart of relay with the corrected config does.
 *
 * Signatures are computed here with OpenSSL's HMAC, independently of relay's
 * code. */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "clock.h"
#include "config.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "tmpdir.h"
#include "wal.h"

static char tmpdir[64];

static void setup(void)
{
    tu_tmpdir_make(tmpdir, sizeof(tmpdir), "redrive");
    rl_log_set_level("error");
}

static void teardown(void)
{
    tu_tmpdir_remove(tmpdir);
}

TestSuite(redrive, .init = setup, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------------ fixture -- */

#define STD_KEY "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" /* the specification's example */
#define STD_OTHER "cmVsYXktdGVzdC1uZXcta2V5LTMyLWJ5dGVzIQ=="

typedef struct env {
    rl_config_t *cfg;
    rl_metrics_t *metrics;
    rl_wal_t *wal;
    rl_ingest_t *ig;
} env_t;

/* Opens config + WAL + ingest; hub's secret is `hub_secret`, std's key `std_key`. */
static void env_open(env_t *e, const char *hub_secret, const char *std_key)
{
    static const char *const readers[] = {"dedup"};
    char path[192], err[512] = "";
    snprintf(path, sizeof(path), "%s/relay.conf", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "[wal]\ndir = %s/wal\nsegment_size = 64k\n[dedup]\nwindow = 1h\n"
            "[kafka]\nenabled = false\n[redis]\nenabled = false\n"
            "[source hub]\ncodec = whapi\nauth = hub-signature-256\nsecret = %s\n"
            "[source tok]\ncodec = whapi\nauth = token\nsecret = tok-secret\n"
            "[source std]\ncodec = whapi\nauth = standard-webhooks\nsecret = whsec_%s\n",
            tmpdir, hub_secret, std_key);
    fclose(f);
    e->cfg = rl_config_load(path, err, sizeof(err));
    cr_assert_not_null(e->cfg, "config: %s", err);
    e->metrics = rl_metrics_new(err, sizeof(err));
    cr_assert_not_null(e->metrics);
    rl_wal_opts_t wo = {.dir = e->cfg->wal.dir,
                        .segment_size = (uint64_t)e->cfg->wal.segment_size,
                        .max_size = (uint64_t)e->cfg->wal.max_size,
                        .fsync = 0,
                        .readers = readers,
                        .nreaders = 1,
                        .retention_s = 3600};
    e->wal = rl_wal_open(&wo, e->metrics, err, sizeof(err));
    cr_assert_not_null(e->wal, "wal: %s", err);
    e->ig = rl_ingest_new(e->cfg, e->wal, e->metrics, err, sizeof(err));
    cr_assert_not_null(e->ig, "ingest: %s", err);
    cr_assert_geq(rl_ingest_rebuild(e->ig, err, sizeof(err)), 0, "rebuild: %s", err);
}

static void env_close(env_t *e)
{
    rl_ingest_destroy(e->ig);
    rl_wal_close(e->wal);
    rl_metrics_destroy(e->metrics);
    rl_config_destroy(e->cfg);
    memset(e, 0, sizeof(*e));
}

/* The value of metric `name{labels}`, -1 when absent. */
static double metric(env_t *e, const char *name, const char *labels)
{
    size_t len;
    char *text = rl_metrics_render(e->metrics, &len), want[256];
    double v = -1;
    snprintf(want, sizeof(want), "%s{%s} ", name, labels);
    char *at = strstr(text, want);
    if (at)
        v = strtod(at + strlen(want), NULL);
    free(text);
    return v;
}

/* A request's headers, "Name: value" each. */
typedef struct hdrs {
    const char *line[8];
    size_t n;
} hdrs_t;

static const char *lookup(void *ctx, const char *name)
{
    hdrs_t *h = ctx;
    size_t nl = strlen(name);
    for (size_t i = 0; i < h->n; i++)
        if (!strncasecmp(h->line[i], name, nl) && h->line[i][nl] == ':')
            return h->line[i] + nl + 1 + strspn(h->line[i] + nl + 1, " ");
    return NULL;
}

/* A reply that arrives on the WAL's flusher thread. */
typedef struct waiter {
    sem_t sem;
    rl_reply_t reply;
} waiter_t;

static void on_done(void *opaque, rl_reply_t *r)
{
    waiter_t *w = opaque;
    w->reply = *r;
    sem_post(&w->sem);
}

/* Submits and waits for the answer; returns its status (the body freed). */
static int post(env_t *e, const char *source, const char *body, hdrs_t *h)
{
    waiter_t w;
    rl_ingest_req_t req = {.source = source,
                           .body = (const uint8_t *)body,
                           .len = strlen(body),
                           .header = lookup,
                           .header_ctx = h};
    cr_assert_eq(sem_init(&w.sem, 0, 0), 0);
    if (rl_ingest_submit(e->ig, &req, on_done, &w, &w.reply))
        sem_post(&w.sem);
    while (sem_wait(&w.sem) != 0)
        ;
    sem_destroy(&w.sem);
    free(w.reply.body);
    return w.reply.status;
}

/* A hub request's headers: JSON, and X-Hub-Signature-256 = sig = "sha256=" + hex
 * HMAC(secret, body), in line (borrowed by h). */
static void hub_sign(const char *secret, const char *body, char sig[80], char line[128], hdrs_t *h)
{
    unsigned char md[32];
    unsigned n = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, strlen(body), md,
         &n);
    strcpy(sig, "sha256=");
    for (unsigned i = 0; i < n; i++)
        sprintf(sig + 7 + 2 * i, "%02x", md[i]);
    snprintf(line, 128, "X-Hub-Signature-256: %s", sig);
    *h = (hdrs_t){{"Content-Type: application/json", line}, 2};
}

/* "v1,<Base64 HMAC-SHA256(key, id.ts.body)>" (Standard Webhooks) */
static void std_sign(const char *b64key, const char *id, const char *ts, const char *body,
                     char out[64])
{
    unsigned char key[64], md[32];
    unsigned n = 0;
    size_t l = strlen(b64key);
    int kl = EVP_DecodeBlock(key, (const unsigned char *)b64key, (int)l);
    kl -= (b64key[l - 1] == '=') + (b64key[l - 2] == '=');
    char *msg = NULL;
    cr_assert_geq(asprintf(&msg, "%s.%s.%s", id, ts, body), 0);
    HMAC(EVP_sha256(), key, kl, (const unsigned char *)msg, strlen(msg), md, &n);
    free(msg);
    strcpy(out, "v1,");
    EVP_EncodeBlock((unsigned char *)out + 3, md, (int)n);
}

/* A Whapi messages.post with one text message `id` (malloc'd). */
static char *whapi_body(const char *id)
{
    char *b = NULL;
    cr_assert_geq(asprintf(&b,
                           "{\"messages\":[{\"id\":\"%s\",\"from_me\":false,\"type\":\"text\","
                           "\"chat_id\":\"91998@s.whatsapp.net\",\"timestamp\":1712995245,"
                           "\"text\":{\"body\":\"hi\"},\"from\":\"91998\"}],"
                           "\"event\":{\"type\":\"messages\",\"event\":\"post\"},"
                           "\"channel_id\":\"CH\"}",
                           id),
                  0);
    return b;
}

/* The WAL's records: every payload copied, and how many are events. */
typedef struct recs {
    struct iovec v[256];
    size_t n, events;
} recs_t;

static void collect(void *arg, uint64_t seq, const uint8_t *payload, size_t len)
{
    recs_t *r = arg;
    rl_record_t rec;
    (void)seq;
    if (r->n == sizeof(r->v) / sizeof(r->v[0]))
        return;
    r->v[r->n].iov_base = malloc(len);
    cr_assert_not_null(r->v[r->n].iov_base);
    memcpy(r->v[r->n].iov_base, payload, len);
    r->v[r->n++].iov_len = len;
    if (rl_record_decode(payload, len, &rec) == 0 && rec.kind == RL_RECORD_EVENT)
        r->events++;
}

static void scan(env_t *e, recs_t *r)
{
    char err[256];
    memset(r, 0, sizeof(*r));
    cr_assert_eq(rl_wal_scan(e->wal, 0, collect, r, err, sizeof(err)), 0, "scan: %s", err);
}

static void recs_free(recs_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].iov_base);
    r->n = 0;
}

/* The index of the only dead letter of `source` among r's records (asserted). */
static size_t only_letter(const recs_t *r, const char *source)
{
    size_t at = 0, n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (rl_record_is_deadletter(r->v[i].iov_base, r->v[i].iov_len, source, 0))
            at = i, n++;
    cr_assert_eq(n, 1, "%zu dead letters of %s, want 1", n, source);
    return at;
}

/* The `data` of the dead letter in payload v (a new reference). */
static json_t *letter_data(const struct iovec *v)
{
    rl_record_t rec;
    cr_assert_eq(rl_record_decode(v->iov_base, v->iov_len, &rec), 0);
    json_t *ce = json_loadb(rec.event, rec.event_len, 0, NULL);
    cr_assert_not_null(ce);
    json_t *d = json_incref(json_object_get(ce, "data"));
    json_decref(ce);
    return d;
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* -------------------------------------------------------------------- tests -- */

/* A provider's correctly signed request refused because relay's secret was
 * wrong: 401, and a dead letter with the signature. Re-driven under the same
 * secret it stays dead (no new record); once the secret is fixed, its event is
 * accepted, and a second re-drive is a duplicate, not a second copy. */
Test(redrive, wrong_secret_then_fixed)
{
    env_t e;
    recs_t r;
    rl_redrive_result_t res;
    char sig[80];
    char *body = whapi_body("wamid.redrive1");
    char sh[128];
    hdrs_t h;
    hub_sign("right-secret", body, sig, sh, &h);

    env_open(&e, "wrong-secret", STD_KEY);
    cr_expect_eq(post(&e, "hub", body, &h), 401);
    cr_expect_eq(metric(&e, "relay_dead_letters_total", "source=\"hub\""), 1);
    cr_expect_eq(metric(&e, "relay_auth_failures_total", "source=\"hub\",reason=\"bad_signature\""),
                 1);
    cr_expect_eq(post(&e, "hub", body, &h), 401, "the provider's retry");
    scan(&e, &r);
    cr_expect_eq(r.n, 1, "%zu records, want one letter (a retry is the same letter)", r.n);
    size_t at = only_letter(&r, "hub");
    json_t *d = letter_data(&r.v[at]);
    cr_expect_str_eq(str(d, "reason"), "unauthorized");
    cr_expect_str_eq(str(d, "message"), "bad_signature");
    cr_expect_str_eq(str(d, "content_type"), "application/json");
    json_t *hd = json_object_get(d, "headers");
    cr_assert(json_is_object(hd), "headers is not an object");
    cr_expect_eq(json_object_size(hd), 1);
    cr_expect_str_eq(str(hd, "X-Hub-Signature-256"), sig);
    cr_expect(json_is_null(json_object_get(d, "headers_note")));
    json_decref(d);

    /* The secret is still wrong: still dead, nothing appended. */
    cr_expect_eq(rl_ingest_redrive(e.ig, r.v[at].iov_base, r.v[at].iov_len, &res),
                 RL_REDRIVE_STILL_DEAD);
    cr_expect_str_eq(res.reason, "bad_signature");
    cr_expect_eq(rl_wal_last_seq(e.wal), 1, "a still-dead re-drive appended a record");
    recs_free(&r);
    env_close(&e);

    /* Fixed. */
    env_open(&e, "old-secret, right-secret", STD_KEY);
    scan(&e, &r);
    at = only_letter(&r, "hub");
    cr_expect_eq(rl_ingest_redrive(e.ig, r.v[at].iov_base, r.v[at].iov_len, &res),
                 RL_REDRIVE_REDRIVEN, "%s: %s", res.reason, res.message);
    cr_expect_eq(res.accepted, 1);
    cr_expect_eq(res.duplicates, 0);
    cr_expect_eq(rl_ingest_redrive(e.ig, r.v[at].iov_base, r.v[at].iov_len, &res),
                 RL_REDRIVE_REDRIVEN, "%s: %s", res.reason, res.message);
    cr_expect_eq(res.accepted, 0, "the second re-drive appended a copy");
    cr_expect_eq(res.duplicates, 1);
    cr_expect_eq(metric(&e, "relay_events_accepted_total", "source=\"hub\""), 1);
    cr_expect_eq(metric(&e, "relay_events_duplicate_total", "source=\"hub\""), 1);
    /* The provider's own retry, signed right, is the event already taken. */
    cr_expect_eq(post(&e, "hub", body, &h), 200);
    cr_expect_eq(metric(&e, "relay_events_duplicate_total", "source=\"hub\""), 2);
    recs_free(&r);
    scan(&e, &r);
    cr_expect_eq(r.events, 1, "%zu events in the WAL, want 1", r.events);
    cr_expect_eq(r.n, 2, "%zu records, want the letter and the event", r.n);
    recs_free(&r);
    env_close(&e);
    free(body);
}

/* A letter refused 400 (it authenticated, it did not decode): kept with the
 * signature; re-driven while the body still does not decode it stays dead,
 * with its reason, and nothing is appended. */
Test(redrive, undecodable_stays_dead)
{
    env_t e;
    recs_t r;
    rl_redrive_result_t res;
    char sig[80];
    const char *body = "{\"messages\": [ not json";
    char sh[128];
    hdrs_t h;
    hub_sign("right-secret", body, sig, sh, &h);

    env_open(&e, "right-secret", STD_KEY);
    cr_expect_eq(post(&e, "hub", body, &h), 400);
    scan(&e, &r);
    size_t at = only_letter(&r, "hub");
    json_t *d = letter_data(&r.v[at]);
    cr_expect_str_eq(str(d, "reason"), "invalid_json");
    cr_expect_str_eq(str(json_object_get(d, "headers"), "X-Hub-Signature-256"), sig);
    json_decref(d);
    uint64_t last = rl_wal_last_seq(e.wal);
    cr_expect_eq(rl_ingest_redrive(e.ig, r.v[at].iov_base, r.v[at].iov_len, &res),
                 RL_REDRIVE_STILL_DEAD);
    cr_expect_str_eq(res.reason, "invalid_json");
    cr_expect(strstr(res.message, "not JSON"), "message: %s", res.message);
    cr_expect_eq(rl_wal_last_seq(e.wal), last, "a still-dead re-drive appended a record");
    cr_expect_eq(metric(&e, "relay_dead_letters_total", "source=\"hub\""), 1);
    cr_expect_eq(metric(&e, "relay_decode_errors_total", "source=\"hub\",reason=\"invalid_json\""),
                 1, "a re-drive is not a request");
    /* Not a dead letter, and the scan filter. */
    cr_expect_eq(rl_ingest_redrive(e.ig, (const uint8_t *)"x", 1, &res), RL_REDRIVE_SKIPPED);
    cr_expect_str_eq(res.reason, "not_a_dead_letter");
    rl_record_t rec;
    cr_assert_eq(rl_record_decode(r.v[at].iov_base, r.v[at].iov_len, &rec), 0);
    cr_expect(rl_record_is_deadletter(r.v[at].iov_base, r.v[at].iov_len, "hub", rec.received_ms));
    cr_expect(
        !rl_record_is_deadletter(r.v[at].iov_base, r.v[at].iov_len, "hub", rec.received_ms + 1));
    cr_expect(!rl_record_is_deadletter(r.v[at].iov_base, r.v[at].iov_len, "hu", 0));
    recs_free(&r);
    env_close(&e);
}

/* auth = token: the header is the secret or a guess at it, never kept; the
 * letter says so and is skipped by a re-drive. */
Test(redrive, token_letter_keeps_no_header)
{
    env_t e;
    recs_t r;
    rl_redrive_result_t res;
    char *body = whapi_body("wamid.tok1");
    hdrs_t h = {{"Content-Type: application/json", "Authorization: Bearer guessed-Zq7"}, 2};

    env_open(&e, "right-secret", STD_KEY);
    cr_expect_eq(post(&e, "tok", body, &h), 401);
    scan(&e, &r);
    size_t at = only_letter(&r, "tok");
    cr_expect_null(memmem(r.v[at].iov_base, r.v[at].iov_len, "guessed-Zq7", 11),
                   "the token is in the letter");
    json_t *d = letter_data(&r.v[at]);
    cr_expect_str_eq(str(d, "message"), "bad_token");
    cr_expect(json_is_null(json_object_get(d, "headers")), "headers is not null");
    cr_expect(str(d, "headers_note") && strstr(str(d, "headers_note"), "token"));
    json_decref(d);
    uint64_t last = rl_wal_last_seq(e.wal);
    cr_expect_eq(rl_ingest_redrive(e.ig, r.v[at].iov_base, r.v[at].iov_len, &res),
                 RL_REDRIVE_SKIPPED);
    cr_expect_str_eq(res.reason, "headers_not_kept");
    cr_expect_eq(rl_wal_last_seq(e.wal), last);
    recs_free(&r);
    env_close(&e);
    free(body);
}

/* Standard Webhooks: a letter refused for a wrong key is re-driven once the key
 * is right, its webhook-id naming the event; one refused for a stale timestamp
 * is judged as it was received and stays dead (a re-drive opens no replay). */
Test(redrive, standard_webhooks_time_judged_at_receipt)
{
    env_t e;
    recs_t r;
    rl_redrive_result_t res;
    char ts[32], old[32], sig[64], sig_old[64];
    char *body = whapi_body("wamid.std1"), *stale = whapi_body("wamid.std2");
    int64_t now = rl_clock_wall_ms() / 1000;
    snprintf(ts, sizeof(ts), "%lld", (long long)now);
    snprintf(old, sizeof(old), "%lld", (long long)now - 3600);
    std_sign(STD_KEY, "msg_std1", ts, body, sig);
    std_sign(STD_KEY, "msg_std2", old, stale, sig_old);
    char l[6][96];
    snprintf(l[0], sizeof(l[0]), "webhook-id: msg_std1");
    snprintf(l[1], sizeof(l[1]), "webhook-timestamp: %s", ts);
    snprintf(l[2], sizeof(l[2]), "webhook-signature: %s", sig);
    snprintf(l[3], sizeof(l[3]), "webhook-id: msg_std2");
    snprintf(l[4], sizeof(l[4]), "webhook-timestamp: %s", old);
    snprintf(l[5], sizeof(l[5]), "webhook-signature: %s", sig_old);
    hdrs_t h = {{l[0], l[1], l[2]}, 3}, ho = {{l[3], l[4], l[5]}, 3};

    env_open(&e, "right-secret", STD_OTHER);
    cr_expect_eq(post(&e, "std", body, &h), 401);
    cr_expect_eq(post(&e, "std", stale, &ho), 401);
    env_close(&e);
    env_open(&e, "right-secret", STD_KEY);
    scan(&e, &r);
    cr_assert_eq(r.n, 2);
    int seen = 0;
    for (size_t i = 0; i < r.n; i++) {
        json_t *d = letter_data(&r.v[i]);
        const char *why = str(d, "message");
        cr_expect_str_eq(str(json_object_get(d, "headers"), "webhook-signature"),
                         !strcmp(why, "bad_signature") ? sig : sig_old);
        rl_redrive_outcome_t o = rl_ingest_redrive(e.ig, r.v[i].iov_base, r.v[i].iov_len, &res);
        if (!strcmp(why, "bad_signature")) {
            cr_expect_eq(o, RL_REDRIVE_REDRIVEN, "%s: %s", res.reason, res.message);
            cr_expect_eq(res.accepted, 1);
            seen |= 1;
        } else {
            cr_expect_str_eq(why, "expired_timestamp");
            cr_expect_eq(o, RL_REDRIVE_STILL_DEAD);
            cr_expect_str_eq(res.reason, "expired_timestamp");
            seen |= 2;
        }
        json_decref(d);
    }
    cr_expect_eq(seen, 3);
    recs_free(&r);
    scan(&e, &r);
    cr_expect_eq(r.events, 1, "%zu events, want the re-driven one", r.events);
    recs_free(&r);
    env_close(&e);
    free(body);
    free(stale);
}

/* An attacker cannot fill the WAL: past the cap, a 401 keeps no letter, and
 * the drop is counted. */
Test(redrive, unauthorized_letters_are_capped)
{
    enum { N = RL_DEADLETTER_UNAUTH_BURST + 20 };
    env_t e;
    recs_t r;
    char body[64];
    hdrs_t h = {{"X-Hub-Signature-256: sha256=00"}, 1};

    env_open(&e, "right-secret", STD_KEY);
    int64_t t0 = rl_clock_mono_ms();
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof(body), "{\"junk\":%d}", i);
        cr_expect_eq(post(&e, "hub", body, &h), 401);
    }
    double secs = (double)(rl_clock_mono_ms() - t0) / 1000;
    scan(&e, &r);
    size_t letters = r.n;
    double cap = RL_DEADLETTER_UNAUTH_BURST + RL_DEADLETTER_UNAUTH_RATE * secs + 1;
    cr_expect_geq(letters, RL_DEADLETTER_UNAUTH_BURST);
    cr_expect_leq((double)letters, cap, "%zu letters in %.2f s, over the cap", letters, secs);
    cr_expect_eq(metric(&e, "relay_deadletters_unauthorized_dropped_total", "source=\"hub\""),
                 (double)(N - letters));
    cr_expect_eq(metric(&e, "relay_dead_letters_total", "source=\"hub\""), (double)letters);
    cr_expect_eq(metric(&e, "relay_auth_failures_total", "source=\"hub\",reason=\"bad_signature\""),
                 N, "every 401 counts");
    recs_free(&r);
    env_close(&e);
}

/* A letter that kept only a part of its body cannot be re-driven. */
Test(redrive, truncated_body_is_skipped)
{
    env_t e;
    rl_redrive_result_t res;
    size_t len = RL_DEADLETTER_MAX_BODY + 10, plen;
    uint8_t *big = malloc(len), *payload;
    char *id;
    cr_assert_not_null(big);
    memset(big, '{', len);
    rl_deadletter_t dl = {.source = "hub",
                          .provider = "whapi",
                          .reason = "json_too_deep",
                          .message = "deep",
                          .body = big,
                          .len = len};
    cr_assert_eq(rl_record_deadletter(&dl, (uint64_t)rl_clock_wall_ms(), &payload, &plen, &id), 0);
    env_open(&e, "right-secret", STD_KEY);
    cr_expect_eq(rl_ingest_redrive(e.ig, payload, plen, &res), RL_REDRIVE_SKIPPED);
    cr_expect_str_eq(res.reason, "body_truncated");
    cr_expect_eq(rl_wal_last_seq(e.wal), 0);
    env_close(&e);
    free(payload);
    free(id);
    free(big);
}
