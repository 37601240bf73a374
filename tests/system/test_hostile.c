/* test_hostile.c -- system tests of authentication, limits, TLS and dead letters
 * (issue 5) against the real relay, Kafka and Redis, the way providers and
 * attackers reach it: over TCP, with signatures computed here the way each
 * provider documents them (OpenSSL's HMAC, independently of relay's code).
 *
 * Clients that must look like other hosts connect from other loopback
 * addresses (127.0.0.2, ...): Linux routes all of 127/8 to lo, so the
 * per-address limit sees them as different clients.
 *
 * No assertion is about speed: where relay must cut a client off, the test
 * waits with a generous deadline for it to happen; where something must not
 * happen, the test checks what did happen instead (every good request got 200,
 * the events are all on Kafka). */
#include "harness.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>

#define WAIT_MS 15000
#define SETTLE_MS 500

TestSuite(hostile, .init = th_setup, .fini = th_teardown, .timeout = 300);

/* ------------------------------------------------------------------ helpers */

#define TIMELY_SECRETS "tm-old-secret, tm-new-secret"
#define STD_KEY_OLD "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" /* the specification's example */
#define STD_KEY_NEW "cmVsYXktdGVzdC1uZXcta2V5LTMyLWJ5dGVzIQ=="
#define HUB_SECRETS "It's a Secret to Everybody, meta-second-secret"

/* Sources signed by each scheme, besides the harness's timely/whapi/locked. */
static void add_signed_sources(th_relay_t *r)
{
    size_t n = strlen(r->extra);
    snprintf(r->extra + n, sizeof r->extra - n,
             "\n[source tsig]\ncodec = timely\nauth = timely\nsecret = " TIMELY_SECRETS "\n"
             "\n[source std]\ncodec = whapi\nauth = standard-webhooks\n"
             "secret = whsec_" STD_KEY_OLD ", whsec_" STD_KEY_NEW "\n"
             "\n[source hub]\ncodec = whapi\nauth = hub-signature-256\nsecret = " HUB_SECRETS "\n");
}

static void append_extra(th_relay_t *r, const char *text)
{
    size_t n = strlen(r->extra);
    snprintf(r->extra + n, sizeof r->extra - n, "%s", text);
}

static void hex(const unsigned char *md, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

/* hex HMAC-SHA256(key, msg) */
static void hmac_hex(const char *key, const char *msg, char out[65])
{
    unsigned char md[32];
    unsigned n = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), md, &n);
    hex(md, n, out);
}

/* "v1,<Base64 HMAC-SHA256(base64-decoded key, id.ts.body)>" (Standard Webhooks) */
static void std_signature(const char *b64key, const char *id, const char *ts, const char *body,
                          char out[64])
{
    unsigned char key[64], md[32];
    unsigned n = 0;
    int kl = EVP_DecodeBlock(key, (const unsigned char *)b64key, (int)strlen(b64key));
    size_t l = strlen(b64key);
    kl -= (l > 1 && b64key[l - 1] == '=') + (l > 2 && b64key[l - 2] == '=');
    char *msg = th_strf("%s.%s.%s", id, ts, body);
    HMAC(EVP_sha256(), key, kl, (const unsigned char *)msg, strlen(msg), md, &n);
    free(msg);
    strcpy(out, "v1,");
    EVP_EncodeBlock((unsigned char *)out + 3, md, (int)n);
}

static char *timely_body(const char *event_id, const char *channel)
{
    return th_strf("{\"event\":\"message.received\",\"event_id\":\"%s\","
                   "\"timestamp\":\"2026-04-19T10:00:00Z\",\"workspace_id\":\"ws_h\","
                   "\"data\":{\"message_id\":\"m_%s\",\"conversation_id\":\"cv\","
                   "\"contact_id\":\"cont_1\",\"channel_id\":\"%s\",\"direction\":\"inbound\","
                   "\"type\":\"text\",\"content\":\"hi\",\"sent_at\":\"2026-04-19T10:00:00Z\"}}",
                   event_id, event_id, channel);
}

/* A Whapi messages.post with n text messages whose ids start with `id`. */
static char *whapi_batch(const char *id, int n)
{
    size_t cap = 256 + (size_t)n * 200, len = 0;
    char *b = malloc(cap);
    cr_assert(b, "out of memory");
    len += (size_t)snprintf(b + len, cap - len, "{\"messages\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(b + len, cap - len,
                                "%s{\"id\":\"%s-%d\",\"from_me\":false,\"type\":\"text\","
                                "\"chat_id\":\"91998@s.whatsapp.net\",\"timestamp\":1712995245,"
                                "\"text\":{\"body\":\"m%d\"},\"from\":\"91998\"}",
                                i ? "," : "", id, i, i);
    snprintf(
        b + len, cap - len,
        "],\"event\":{\"type\":\"messages\",\"event\":\"post\"},\"channel_id\":\"HOSTILE-CH\"}");
    return b;
}

/* POSTs body to source with extra headers (NULL-terminated). */
static long post(const th_relay_t *r, const char *source, const char *body,
                 const char *const *headers, th_resp_t *resp)
{
    th_post(r, source, body, headers, resp);
    return resp->status;
}

/* POSTs and expects HTTP `want` and, when `code` is not NULL, that error code. */
static void expect_answer(const th_relay_t *r, const char *source, const char *body,
                          const char *const *headers, long want, const char *code, const char *what)
{
    th_resp_t resp;
    long got = post(r, source, body, headers, &resp);
    const char *err = json_string_value(json_object_get(resp.json, "error"));
    cr_expect(got == want && (!code || (err && !strcmp(err, code))),
              "%s: HTTP %ld %s, want %ld %s: %s %s", what, got, err ? err : "", want,
              code ? code : "", resp.body, resp.error);
    th_resp_free(&resp);
}

static void expect_status(const th_relay_t *r, const char *source, const char *body,
                          const char *const *headers, long want, const char *what)
{
    expect_answer(r, source, body, headers, want, NULL, what);
}

/* The message topic ends up with exactly `n` events (and returns them in *msgs
 * when msgs is not NULL). */
static void expect_published(const th_relay_t *r, size_t n, th_kmsgs_t *msgs)
{
    char topic[256];
    th_kmsgs_t got = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), n, WAIT_MS * 2, 1000, &got);
    cr_expect(got.n == n, "%s holds %zu events, want %zu", topic, got.n, n);
    if (msgs)
        *msgs = got;
    else
        th_kmsgs_free(&got);
}

/* The metric, or -1; polled until it reaches `want` or WAIT_MS passes (counters
 * of work relay finishes after answering, such as a dead letter's publication). */
static double metric_at_least(const th_relay_t *r, const char *name, const char *labels,
                              double want)
{
    double v = -1;
    int64_t deadline = th_now_ms() + WAIT_MS;
    do {
        v = th_relay_metric(r, name, labels);
        if (v >= want)
            break;
        th_sleep_ms(100);
    } while (th_now_ms() < deadline);
    return v;
}

/* A TCP connection to 127.0.0.1:port from source address src (NULL: any). */
static int tcp_connect(int port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    if (src) {
        struct sockaddr_in b = {.sin_family = AF_INET};
        inet_pton(AF_INET, src, &b.sin_addr);
        cr_assert(bind(fd, (struct sockaddr *)&b, sizeof b) == 0, "bind %s: %s", src,
                  strerror(errno));
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when the server closes fd (EOF or reset) within timeout_ms; what it sends
 * first (an error answer) is read and dropped. */
static int closed_by_server(int fd, int timeout_ms)
{
    char buf[4096];
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - th_now_ms());
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left > 0 ? left : 0) > 0) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                return 1;
            continue; /* an answer before the close: read on */
        }
        if (left <= 0)
            return 0;
    }
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static long read_status(int fd, int timeout_ms)
{
    return th_read_answer(fd, timeout_ms, NULL);
}

static size_t count_id(const th_kmsgs_t *l, const char *id)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        const char *h = th_kheader(&l->v[i], "ce_id");
        n += h && !strcmp(h, id);
    }
    return n;
}

/* ============================================================ authentication */

/* Each scheme: a good signature, a bad one, none, an expired one (where a
 * timestamp is signed), and one made with the second (rotated-in) secret. */
Test(hostile, signature_schemes_good_bad_missing_expired_rotated)
{
    th_relay_t *r = th_relay_new();
    add_signed_sources(r);
    TH_START(r);
    char sig[65], hdr[3][256], ts[32], now_ts[32], id[64];
    long now = (long)time(NULL);
    int accepted = 0;

    /* timely, form 1: sha256=<hex HMAC(secret, body)>. */
    char *b = timely_body("evt_sig_1", "chan_sig");
    hmac_hex("tm-old-secret", b, sig);
    snprintf(hdr[0], sizeof hdr[0], "X-Timely-Signature: sha256=%s", sig);
    const char *h1[] = {hdr[0], NULL};
    expect_status(r, "tsig", b, h1, 200, "timely body form, first secret");
    accepted++;
    snprintf(hdr[0], sizeof hdr[0], "X-Timely-Signature: sha256=%.63s0", sig);
    if (!strcmp(hdr[0] + 27, sig))
        hdr[0][strlen(hdr[0]) - 1] = '1';
    expect_status(r, "tsig", b, h1, 401, "timely, a digit changed");
    expect_status(r, "tsig", b, NULL, 401, "timely, no signature");
    free(b);
    /* timely, form 2: hex HMAC(secret, timestamp.body) + X-Timely-Timestamp, rotated secret. */
    b = timely_body("evt_sig_2", "chan_sig");
    snprintf(now_ts, sizeof now_ts, "%ld", now);
    char *content = th_strf("%s.%s", now_ts, b);
    hmac_hex("tm-new-secret", content, sig);
    free(content);
    snprintf(hdr[0], sizeof hdr[0], "X-Timely-Signature: %s", sig);
    snprintf(hdr[1], sizeof hdr[1], "X-Timely-Timestamp: %s", now_ts);
    const char *h2[] = {hdr[0], hdr[1], NULL};
    expect_status(r, "tsig", b, h2, 200, "timely timestamp form, second secret");
    accepted++;
    free(b);
    b = timely_body("evt_sig_3", "chan_sig");
    snprintf(ts, sizeof ts, "%ld", now - 3600);
    content = th_strf("%s.%s", ts, b);
    hmac_hex("tm-old-secret", content, sig);
    free(content);
    snprintf(hdr[0], sizeof hdr[0], "X-Timely-Signature: %s", sig);
    snprintf(hdr[1], sizeof hdr[1], "X-Timely-Timestamp: %s", ts);
    expect_status(r, "tsig", b, h2, 401, "timely timestamp form, an hour old");
    hmac_hex("not-a-configured-secret", b, sig);
    snprintf(hdr[0], sizeof hdr[0], "X-Timely-Signature: sha256=%s", sig);
    expect_status(r, "tsig", b, h1, 401, "timely, a secret that is not configured");
    free(b);

    /* standard-webhooks: old key, new key (rotation), tampered, missing, expired. */
    for (int k = 0; k < 2; k++) {
        snprintf(id, sizeof id, "msg_%s_%d", r->prefix, k);
        char *wb = whapi_batch(id, 1);
        char s64[64];
        std_signature(k ? STD_KEY_NEW : STD_KEY_OLD, id, now_ts, wb, s64);
        snprintf(hdr[0], sizeof hdr[0], "webhook-id: %s", id);
        snprintf(hdr[1], sizeof hdr[1], "webhook-timestamp: %s", now_ts);
        snprintf(hdr[2], sizeof hdr[2], "webhook-signature: v1,bm90IHRoaXMgb25l %s", s64);
        const char *hs[] = {hdr[0], hdr[1], hdr[2], NULL};
        expect_status(r, "std", wb, hs, 200, k ? "standard-webhooks, new key" : "old key");
        accepted++;
        const char *no_sig[] = {hdr[0], hdr[1], NULL};
        expect_status(r, "std", wb, no_sig, 401, "standard-webhooks without webhook-signature");
        const char *no_id[] = {hdr[1], hdr[2], NULL};
        expect_status(r, "std", wb, no_id, 401, "standard-webhooks without webhook-id");
        wb[strlen(wb) - 2] = ' '; /* tampered in transit */
        expect_status(r, "std", wb, hs, 401, "standard-webhooks, body changed");
        free(wb);
    }
    snprintf(id, sizeof id, "msg_%s_old", r->prefix);
    char *wb = whapi_batch(id, 1), s64[64];
    snprintf(ts, sizeof ts, "%ld", now - 301 - 60); /* past the 5 min tolerance, with room */
    std_signature(STD_KEY_OLD, id, ts, wb, s64);
    snprintf(hdr[0], sizeof hdr[0], "webhook-id: %s", id);
    snprintf(hdr[1], sizeof hdr[1], "webhook-timestamp: %s", ts);
    snprintf(hdr[2], sizeof hdr[2], "webhook-signature: %s", s64);
    const char *hs[] = {hdr[0], hdr[1], hdr[2], NULL};
    expect_status(r, "std", wb, hs, 401, "standard-webhooks, six minutes old");
    free(wb);

    /* hub-signature-256 (GitHub, Meta): both secrets, a wrong one, none. */
    static const char *const hub_keys[] = {"It's a Secret to Everybody", "meta-second-secret"};
    for (int k = 0; k < 2; k++) {
        snprintf(id, sizeof id, "%s-hub-%d", r->prefix, k);
        char *hb = whapi_batch(id, 1);
        hmac_hex(hub_keys[k], hb, sig);
        snprintf(hdr[0], sizeof hdr[0], "X-Hub-Signature-256: sha256=%s", sig);
        expect_status(r, "hub", hb, h1, 200, k ? "hub, second secret" : "hub, first secret");
        accepted++;
        snprintf(hdr[0], sizeof hdr[0], "X-Hub-Signature-256: %s", sig);
        expect_status(r, "hub", hb, h1, 401, "hub without sha256=");
        hmac_hex("wrong", hb, sig);
        snprintf(hdr[0], sizeof hdr[0], "X-Hub-Signature-256: sha256=%s", sig);
        expect_status(r, "hub", hb, h1, 401, "hub, wrong secret");
        expect_status(r, "hub", hb, NULL, 401, "hub, no signature");
        free(hb);
    }

    /* Failures are counted by reason; nothing refused is published. */
    static const struct {
        const char *labels;
        double want;
    } m[] = {
        {"source=tsig,reason=bad_signature", 2},     {"source=tsig,reason=missing_signature", 1},
        {"source=tsig,reason=expired_timestamp", 1}, {"source=std,reason=missing_signature", 2},
        {"source=std,reason=missing_id", 2},         {"source=std,reason=bad_signature", 2},
        {"source=std,reason=expired_timestamp", 1},  {"source=hub,reason=bad_signature", 4},
        {"source=hub,reason=missing_signature", 2},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        double v = th_relay_metric(r, "relay_auth_failures_total", m[i].labels);
        cr_expect(v == m[i].want, "relay_auth_failures_total{%s} = %g, want %g", m[i].labels, v,
                  m[i].want);
    }
    expect_published(r, (size_t)accepted, NULL);
}

/* Secrets appear neither in --check-config's output nor in relay's log. */
Test(hostile, secrets_stay_out_of_logs_and_check_config)
{
    th_relay_t *r = th_relay_new();
    add_signed_sources(r);
    th_relay_setenv(r, "RELAY_SOURCE_WHAPI_AUTH", "token");
    th_relay_setenv(r, "RELAY_SOURCE_WHAPI_SECRET", "env-whapi-secret");
    TH_START(r);
    /* Failures of every kind, so that whatever relay logs about them is logged. */
    static const char *const wrong[] = {"Authorization: Bearer env-whapi-secretX", NULL};
    char *b = whapi_batch("sec", 1);
    expect_status(r, "whapi", b, wrong, 401, "wrong token");
    expect_status(r, "tsig", b, wrong, 401, "unsigned");
    expect_status(r, "hub", "not json", wrong, 401, "unsigned garbage");
    free(b);
    th_relay_stop(r, 15000);

    char *argv[] = {(char *)th_env("RELAY_TEST_BIN", "build/relay"), "--check-config", "-c",
                    r->conf, NULL};
    char *out = NULL;
    int rc = th_run(argv, 15000, &out);
    cr_expect(rc == 0, "--check-config exit %d: %s", rc, out);
    static const char *const secrets[] = {"tm-old-secret", "tm-new-secret",   STD_KEY_OLD,
                                          STD_KEY_NEW,     "It's a Secret",   "meta-second-secret",
                                          "s3cret",        "env-whapi-secret"};
    char *log = th_read_file(r->log, NULL);
    cr_assert(log, "cannot read %s", r->log);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        cr_expect(!strstr(out, secrets[i]), "--check-config shows the secret %s", secrets[i]);
        cr_expect(!strstr(log, secrets[i]), "the log shows the secret %s", secrets[i]);
    }
    cr_expect(strstr(out, "secret = (set)"), "--check-config does not say the secret is set");
    free(out);
    free(log);
}

/* A signed webhook-id is the CloudEvent id of events whose codec derives ids
 * (Whapi): one event takes it as is, several number it "{id}#{position}". */
Test(hostile, standard_webhooks_id_becomes_the_event_id)
{
    th_relay_t *r = th_relay_new();
    add_signed_sources(r);
    TH_START(r);
    char id1[64], id3[64], now_ts[32], s64[64], hdr[3][256];
    snprintf(id1, sizeof id1, "msg_%s_one", r->prefix);
    snprintf(id3, sizeof id3, "msg_%s_three", r->prefix);
    snprintf(now_ts, sizeof now_ts, "%ld", (long)time(NULL));
    const char *hs[] = {hdr[0], hdr[1], hdr[2], NULL};
    const char *ids[] = {id1, id3};
    int n[] = {1, 3};
    for (int k = 0; k < 2; k++) {
        char *body = whapi_batch(ids[k], n[k]);
        std_signature(STD_KEY_OLD, ids[k], now_ts, body, s64);
        snprintf(hdr[0], sizeof hdr[0], "webhook-id: %s", ids[k]);
        snprintf(hdr[1], sizeof hdr[1], "webhook-timestamp: %s", now_ts);
        snprintf(hdr[2], sizeof hdr[2], "webhook-signature: %s", s64);
        th_resp_t resp;
        post(r, "std", body, hs, &resp);
        cr_assert(resp.status == 200, "HTTP %ld: %s", resp.status, resp.body);
        json_t *got = json_object_get(resp.json, "ids");
        for (int i = 0; i < n[k]; i++) {
            char want[96];
            if (n[k] == 1)
                snprintf(want, sizeof want, "%s", ids[k]);
            else
                snprintf(want, sizeof want, "%s#%d", ids[k], i);
            const char *g = json_string_value(json_array_get(got, (size_t)i));
            cr_expect(g && !strcmp(g, want), "ids[%d] = %s, want %s", i, g ? g : "(none)", want);
        }
        th_resp_free(&resp);
        /* The provider's retry (same webhook-id, same body) is a duplicate. */
        post(r, "std", body, hs, &resp);
        cr_expect(resp.status == 200 &&
                      json_integer_value(json_object_get(resp.json, "duplicates")) == n[k],
                  "retry: %ld %s", resp.status, resp.body);
        th_resp_free(&resp);
        free(body);
    }
    char want[96];
    th_kmsgs_t msgs = {0};
    expect_published(r, 4, &msgs);
    cr_expect(count_id(&msgs, id1) == 1, "%s not published once", id1);
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "%s#%d", id3, i);
        cr_expect(count_id(&msgs, want) == 1, "%s not published once", want);
    }
    th_kmsgs_free(&msgs);
}

/* ============================================================== dead letters */

static void check_dead_letter(const json_t *ce, const char *reason, const char *body,
                              const char *where)
{
    cr_assert(json_is_object(ce), "%s: not a JSON object", where);
    cr_expect(!strcmp(json_string_value(json_object_get(ce, "type")), "relay.deadletter"),
              "%s: type", where);
    const json_t *d = json_object_get(ce, "data");
    const char *got = json_string_value(json_object_get(d, "reason"));
    cr_expect(got && !strcmp(got, reason), "%s: reason %s, want %s", where, got ? got : "-",
              reason);
    const char *b64 = json_string_value(json_object_get(d, "body_base64"));
    cr_assert(b64, "%s: no body_base64", where);
    unsigned char *raw = malloc(strlen(b64) + 4);
    cr_assert(raw);
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)strlen(b64));
    size_t bl = strlen(body);
    cr_expect(n >= (int)bl && n - (int)bl < 3 && !memcmp(raw, body, bl),
              "%s: body_base64 is not the body sent", where);
    free(raw);
}

/* The letter keeps X-Hub-Signature-256 = "sha256=" + `hex` (hub's letters), or
 * no header at all (hex NULL: a source without authentication). */
static void check_letter_headers(const json_t *ce, const char *hex, const char *where)
{
    const json_t *d = json_object_get(ce, "data");
    const json_t *h = json_object_get(d, "headers");
    cr_expect(json_is_object(h), "%s: headers is not an object", where);
    cr_expect(json_is_null(json_object_get(d, "headers_note")), "%s: headers_note", where);
    if (!hex) {
        cr_expect(json_object_size(h) == 0, "%s: headers kept for no auth", where);
        return;
    }
    const char *got = json_string_value(json_object_get(h, "X-Hub-Signature-256"));
    cr_expect(json_object_size(h) == 1 && got && !strncmp(got, "sha256=", 7) &&
                  !strcmp(got + 7, hex),
              "%s: X-Hub-Signature-256 %s, want sha256=%s", where, got ? got : "(none)", hex);
}

/* 1 when the CloudEvent `ce` is the dead letter of a body refused for `reason`. */
static int letter_for(const json_t *ce, const char *reason)
{
    const char *why = json_string_value(json_object_get(json_object_get(ce, "data"), "reason"));
    return why && !strcmp(why, reason);
}

/* The 400 of a body that authenticated is sent once its dead letter is durable;
 * the letter reaches the dead-letter topic and stream, raw, even when Redis was
 * down at the time; a provider's retries of it make one letter. A request signed
 * with a secret relay does not know is answered 401 and kept as a letter too,
 * with its signature header, so that it can be re-driven once the secret is
 * fixed. */
Test(hostile, dead_letters_are_durable_and_published_raw)
{
    th_relay_t *r = th_relay_new();
    add_signed_sources(r);
    th_relay_setenv(r, "RELAY_HTTP_MAX_JSON_DEPTH", "8");
    TH_START(r);
    char topic[256], stream[256], sig[65], hdr[256], wrong[65], whdr[256];
    snprintf(topic, sizeof topic, "%s.events.deadletter", r->prefix);
    snprintf(stream, sizeof stream, "%s:events:deadletter", r->prefix);

    char *bad_json = th_strf("{\"event\": \"message.received\", \"id\": \"%s\" ", r->prefix);
    char *bad_shape = th_strf("{\"event\":{\"type\":\"messages\"},\"nothing\":\"%s\"}", r->prefix);
    char *too_deep = th_strf("{\"a\":[[[[[[[[[[\"%s\"]]]]]]]]]]}", r->prefix);
    expect_answer(r, "timely", bad_json, NULL, 400, "invalid_json", "invalid JSON");
    expect_answer(r, "timely", bad_json, NULL, 400, "invalid_json", "the provider's retry");
    /* Signed: authenticated, then refused by the codec. */
    hmac_hex("meta-second-secret", bad_shape, sig);
    snprintf(hdr, sizeof hdr, "X-Hub-Signature-256: sha256=%s", sig);
    const char *hh[] = {hdr, NULL};
    expect_answer(r, "hub", bad_shape, hh, 400, "invalid_payload", "bad shape");
    /* Signed with a secret relay does not have: 401, and a letter. */
    char *unauth = th_strf("{\"signed_elsewhere\":\"%s\"}", r->prefix);
    hmac_hex("a-secret-relay-lacks", unauth, wrong);
    snprintf(whdr, sizeof whdr, "X-Hub-Signature-256: sha256=%s", wrong);
    const char *wh[] = {whdr, "Content-Type: application/json", NULL};
    expect_answer(r, "hub", unauth, wh, 401, "unauthorized", "a wrong signature");

    /* Redis down: the letter waits in the WAL; the 400 does not wait for Redis. */
    cr_assert(th_redis_service("stop") == 0, "cannot stop the test Redis");
    expect_answer(r, "timely", too_deep, NULL, 400, "json_too_deep", "too deep");
    cr_assert(th_redis_service("start") == 0, "cannot start the test Redis");

    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(topic, 4, WAIT_MS * 2, 1000, &msgs);
    th_redis_read(stream, 4, WAIT_MS * 2, 1000, &xs);
    cr_expect(msgs.n == 4, "%zu dead letters on %s, want 4 (a retry is one letter)", msgs.n, topic);
    cr_expect(xs.n == 4, "%zu dead letters on %s, want 4", xs.n, stream);
    /* Each letter once, found by its reason (two sources: two Kafka keys, so
     * their order across partitions is not defined). */
    const char *reasons[] = {"invalid_json", "invalid_payload", "json_too_deep", "unauthorized"};
    const char *bodies[] = {bad_json, bad_shape, too_deep, unauth};
    const char *keys[] = {"timely", "hub", "timely", "hub"};
    for (size_t i = 0; i < 4; i++) {
        int nk = 0, nx = 0;
        for (size_t j = 0; j < msgs.n; j++) {
            if (letter_for(msgs.v[j].json, reasons[i])) {
                nk++;
                check_dead_letter(msgs.v[j].json, reasons[i], bodies[i], "kafka");
                check_letter_headers(msgs.v[j].json, i == 3 ? wrong : i == 1 ? sig : NULL, "kafka");
                cr_expect(msgs.v[j].key && !strcmp(msgs.v[j].key, keys[i]),
                          "dead letter key %s, want the source %s",
                          msgs.v[j].key ? msgs.v[j].key : "(none)", keys[i]);
            }
        }
        for (size_t j = 0; j < xs.n; j++) {
            if (letter_for(xs.v[j].event, reasons[i])) {
                nx++;
                check_dead_letter(xs.v[j].event, reasons[i], bodies[i], "redis");
                check_letter_headers(xs.v[j].event, i == 3 ? wrong : i == 1 ? sig : NULL, "redis");
            }
        }
        cr_expect(nk == 1 && nx == 1, "%s: %d letters on Kafka, %d on Redis, want 1 and 1",
                  reasons[i], nk, nx);
    }
    cr_expect(metric_at_least(r, "relay_dead_letters_total", "source=timely", 2) == 2,
              "relay_dead_letters_total{source=timely}");
    cr_expect(th_relay_metric(r, "relay_dead_letters_total", "source=hub") == 2,
              "the 400 and the 401 of hub");
    cr_expect(th_relay_metric(r, "relay_deadletters_unauthorized_dropped_total", "source=hub") ==
              0);
    cr_expect(th_relay_metric(r, "relay_limit_hits_total", "limit=max_json_depth,source=timely") ==
              1);
    cr_expect(
        th_relay_metric(r, "relay_decode_errors_total", "source=timely,reason=json_too_deep") == 1);
    cr_expect(
        th_relay_metric(r, "relay_decode_errors_total", "source=timely,reason=invalid_json") == 2,
        "both posts of the bad JSON count, though one letter is kept");
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
    free(bad_json);
    free(bad_shape);
    free(too_deep);
    free(unauth);
}

/* An event that the WAL record cannot hold (an id over 64 KiB) or whose topic
 * its template cannot form (over Kafka's 249 characters) is refused at ingest:
 * 400 invalid_payload with a dead letter, never a 500 and never a 200 that a
 * sink then drops. A good event beside them goes through. */
Test(hostile, events_no_sink_could_take_are_refused)
{
    th_relay_t *r = th_relay_new();
    char *tpl = th_strf("%s.ch.{channel_id}", r->prefix);
    th_relay_setenv(r, "RELAY_KAFKA_TOPIC", tpl);
    TH_START(r);
    char topic[256], *long_id = malloc(70001), *long_chan = malloc(301);
    cr_assert(long_id && long_chan);
    memset(long_id, 'i', 70000);
    long_id[70000] = '\0';
    memset(long_chan, 'c', 300);
    long_chan[300] = '\0';
    char *big = th_timely_message(long_id, "chan_ok", 1);
    char *wide_id = th_strf("evt_%s_wide", r->prefix);
    char *wide = th_timely_message(wide_id, long_chan, 2);
    char *good_id = th_strf("evt_%s_good", r->prefix);
    char *good = th_timely_message(good_id, "chan_ok", 3);

    expect_answer(r, "timely", big, NULL, 400, "invalid_payload", "a 70000-byte id");
    expect_answer(r, "timely", wide, NULL, 400, "invalid_payload", "a 300-character topic");
    expect_status(r, "timely", good, NULL, 200, "a good event");

    th_kmsgs_t msgs = {0}, letters = {0};
    snprintf(topic, sizeof topic, "%s.ch.chan_ok", r->prefix);
    th_kafka_read(topic, 1, WAIT_MS * 2, SETTLE_MS, &msgs);
    cr_expect(msgs.n == 1, "%zu events on %s, want the good one only", msgs.n, topic);
    snprintf(topic, sizeof topic, "%s.events.deadletter", r->prefix);
    th_kafka_read(topic, 2, WAIT_MS * 2, SETTLE_MS, &letters);
    cr_expect(letters.n == 2, "%zu dead letters, want 2", letters.n);
    for (size_t i = 0; i < letters.n; i++)
        cr_expect(letter_for(letters.v[i].json, "invalid_payload"), "letter %zu: reason", i);
    cr_expect(th_relay_metric(r, "relay_sink_dropped_total", "sink=kafka") <= 0,
              "nothing dropped by the Kafka sink");
    cr_expect(th_relay_metric(r, "relay_decode_errors_total",
                              "source=timely,reason=invalid_payload") == 2);
    th_kmsgs_free(&msgs);
    th_kmsgs_free(&letters);
    free(long_id);
    free(long_chan);
    free(big);
    free(wide);
    free(wide_id);
    free(good_id);
    free(good);
    free(tpl);
}

/* Sends request on a new connection and reads everything until relay closes
 * it or timeout_ms passes (th_raw_http stops after one answer). *closed says
 * which. Returns what was read, malloc'd. */
static char *read_until_close(int port, const char *request, int timeout_ms, int *closed)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int64_t deadline = th_now_ms() + timeout_ms;

    cr_assert(f && fd >= 0);
    *closed = 0;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    cr_assert(send(fd, request, strlen(request), MSG_NOSIGNAL) == (ssize_t)strlen(request));
    for (;;) {
        char buf[4096];
        int left = (int)(deadline - th_now_ms());
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            break;
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0) {
            *closed = 1;
            break;
        }
        fwrite(buf, 1, (size_t)got, f);
    }
    close(fd);
    fclose(f);
    return out;
}

static size_t count_answers(const char *reply)
{
    size_t n = 0;
    for (const char *p = reply; p && (p = strstr(p, "HTTP/1.1 ")); p++)
        n++;
    return n;
}

/* Content-Length and Transfer-Encoding together: the body is read as chunked,
 * the answer says Connection: close and the connection is closed, so the
 * request sent after it on the same connection is never answered (RFC 9112
 * section 6.1). A keep-alive request without the conflict is answered twice. */
Test(hostile, content_length_with_chunked_closes_the_connection)
{
    th_relay_t *r = th_relay_new();
    TH_START(r);
    char *id = th_strf("evt_%s_clte", r->prefix), *body = th_timely_message(id, "chan_clte", 1);
    char *req = th_strf("POST /v1/webhooks/timely HTTP/1.1\r\nHost: x\r\n"
                        "Content-Type: application/json\r\nContent-Length: 3\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n"
                        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                        strlen(body), body);
    int closed = 0;
    char *reply = read_until_close(r->port, req, 5000, &closed);
    cr_expect(!strncmp(reply, "HTTP/1.1 200 ", 13), "the chunked body is read and accepted:\n%s",
              reply);
    cr_expect(count_answers(reply) == 1,
              "%zu answers on the connection, want 1 (the smuggled GET unanswered):\n%s",
              count_answers(reply), reply);
    cr_expect(strcasestr(reply, "\r\nConnection: close\r\n"), "no Connection: close:\n%s", reply);
    cr_expect(closed, "relay did not close the connection within 5 s");
    cr_expect(th_relay_metric(r, "relay_http_ambiguous_framing_total", NULL) == 1);
    free(reply);
    free(req);

    /* The control: the same pipelined pair with Content-Length alone gets both answers. */
    char *id2 = th_strf("evt_%s_cl", r->prefix), *body2 = th_timely_message(id2, "chan_clte", 2);
    req = th_strf("POST /v1/webhooks/timely HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s"
                  "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                  strlen(body2), body2);
    reply = read_until_close(r->port, req, 5000, &closed);
    cr_expect(count_answers(reply) == 2, "%zu answers to a plain pipelined pair, want 2:\n%s",
              count_answers(reply), reply);
    free(reply);
    free(req);
    free(body);
    free(id);
    free(body2);
    free(id2);
}

/* ==================================================================== limits */

Test(hostile, body_limit_for_content_length_and_chunked_bodies)
{
    th_relay_t *r = th_relay_new();
    snprintf(r->max_body, sizeof r->max_body, "4k");
    TH_START(r);
    /* A chunked body a little over the limit: read to its end, answered 413. */
    int fd = tcp_connect(r->port, NULL);
    cr_assert(fd >= 0);
    char *head = th_strf("POST /v1/webhooks/timely HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    cr_assert(send_all(fd, head, strlen(head)) == 0);
    char chunk[1024 + 16];
    memset(chunk, ' ', sizeof chunk);
    memcpy(chunk, "400\r\n", 5);
    memcpy(chunk + 5 + 1024, "\r\n", 2);
    for (int i = 0; i < 6; i++) /* 6 KiB */
        cr_assert(send_all(fd, chunk, 5 + 1024 + 2) == 0);
    cr_assert(send_all(fd, "0\r\n\r\n", 5) == 0);
    long st = read_status(fd, WAIT_MS);
    cr_expect(st == 413, "6 KiB chunked with max_body 4k: %ld, want 413", st);
    close(fd);
    /* A chunked body that never ends: relay stops reading and closes the
     * connection long before the 64 MiB the client means to send. */
    fd = tcp_connect(r->port, NULL);
    cr_assert(fd >= 0);
    cr_assert(send_all(fd, head, strlen(head)) == 0);
    size_t sent = 0;
    int cut = 0;
    while (sent < 64u * 1024 * 1024) {
        if (send_all(fd, chunk, 5 + 1024 + 2) != 0) {
            cut = 1;
            break;
        }
        sent += 1024;
    }
    cr_expect(cut, "relay read a 64 MiB chunked body with max_body 4k to its end");
    close(fd);
    free(head);
    /* The server is fine, and both hits are counted. */
    char *good = timely_body("evt_after_chunked", "chan_body");
    expect_status(r, "timely", good, NULL, 200, "a normal request afterwards");
    free(good);
    cr_expect(th_relay_metric(r, "relay_limit_hits_total", "limit=max_body,source=timely") == 2,
              "relay_limit_hits_total{max_body} = %g",
              th_relay_metric(r, "relay_limit_hits_total", "limit=max_body,source=timely"));
}

Test(hostile, item_limit)
{
    th_relay_t *r = th_relay_new();
    th_relay_setenv(r, "RELAY_HTTP_MAX_ITEMS", "10");
    TH_START(r);
    char id[64];
    snprintf(id, sizeof id, "%s-ten", r->prefix);
    char *ten = whapi_batch(id, 10);
    snprintf(id, sizeof id, "%s-eleven", r->prefix);
    char *eleven = whapi_batch(id, 11);
    expect_answer(r, "whapi", eleven, NULL, 413, "too_many_items", "11 items, max_items 10");
    expect_status(r, "whapi", ten, NULL, 200, "10 items with max_items 10");
    cr_expect(th_relay_metric(r, "relay_limit_hits_total", "limit=max_items,source=whapi") == 1);
    expect_published(r, 10, NULL); /* the accepted body's, none of the refused one's */
    free(ten);
    free(eleven);
}

Test(hostile, header_size_limit)
{
    th_relay_t *r = th_relay_new();
    th_relay_setenv(r, "RELAY_HTTP_MAX_HEADER", "8k");
    TH_START(r);
    size_t big = 16 * 1024;
    char *value = malloc(big + 1);
    cr_assert(value);
    memset(value, 'h', big);
    value[big] = '\0';
    char *req = th_strf("POST /v1/webhooks/timely HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n"
                        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                        value);
    long st = th_raw_http(r->port, req, WAIT_MS, NULL);
    cr_expect(st == 431, "a 16 KiB header with max_header 8k: %ld, want 431", st);
    free(req);
    req = th_strf("GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", value);
    st = th_raw_http(r->port, req, WAIT_MS, NULL);
    cr_expect(st == 414, "a 16 KiB request line with max_header 8k: %ld, want 414", st);
    free(req);
    free(value);
    char *good = timely_body("evt_after_headers", "chan_hdr");
    expect_status(r, "timely", good, NULL, 200, "a normal request afterwards");
    free(good);
    double v = metric_at_least(r, "relay_limit_hits_total", "limit=max_header", 2);
    cr_expect(v == 2, "relay_limit_hits_total{limit=max_header} = %g, want 2", v);
}

/* Idle connections that hold places: past max_connections, and past
 * max_connections_per_ip from one address, new ones are closed at once, while
 * other addresses are still served. */
Test(hostile, connection_limits_total_and_per_ip)
{
    th_relay_t *r = th_relay_new();
    th_relay_setenv(r, "RELAY_HTTP_MAX_CONNECTIONS", "8");
    th_relay_setenv(r, "RELAY_HTTP_MAX_CONNECTIONS_PER_IP", "3");
    th_relay_setenv(r, "RELAY_HTTP_REQUEST_TIMEOUT", "120"); /* only the limits cut here */
    th_relay_setenv(r, "RELAY_HTTP_TIMEOUT", "120");
    TH_START(r);
    int fds[16], n = 0;
    /* Per address: three from 127.0.0.2 are held, the fourth is closed. */
    /* One at a time, each until relay holds it (relay_http_connections counts the
     * scrape's own connection too): its two workers accept from one queue in no set
     * order, and the 4th connect could otherwise be taken before the 3rd, which
     * would then be the one refused. */
    for (int i = 0; i < 3; i++) {
        cr_assert((fds[n++] = tcp_connect(r->port, "127.0.0.2")) >= 0);
        cr_assert(metric_at_least(r, "relay_http_connections", NULL, i + 2) >= i + 2,
                  "relay does not hold connection %d from 127.0.0.2", i);
    }
    int fourth = tcp_connect(r->port, "127.0.0.2");
    cr_assert(fourth >= 0, "the kernel accepts the connection; relay must close it");
    cr_expect(closed_by_server(fourth, WAIT_MS), "a 4th connection from 127.0.0.2 was kept");
    close(fourth);
    for (int i = 0; i < 3; i++)
        cr_expect(!closed_by_server(fds[i], 200), "held connection %d was closed", i);
    char *good = timely_body("evt_conn_1", "chan_conn");
    expect_status(r, "timely", good, NULL, 200, "127.0.0.1 is served meanwhile");
    free(good);
    cr_expect(metric_at_least(r, "relay_limit_hits_total", "limit=max_connections_per_ip", 1) == 1);

    /* In all: five more from other addresses fill the 8 places; the next is closed. */
    static const char *const srcs[] = {"127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6",
                                       "127.0.0.7"};
    /* As above, one at a time until relay holds it: a probe below accepted by
     * one worker before the other had taken the 5th would take its place. The
     * scrape needs a place too, so the 5th is only given time. */
    for (int i = 0; i < 5; i++) {
        cr_assert((fds[n++] = tcp_connect(r->port, srcs[i])) >= 0);
        if (i < 4)
            cr_assert(metric_at_least(r, "relay_http_connections", NULL, 3 + i + 2) >= 3 + i + 2,
                      "relay does not hold the connection from %s", srcs[i]);
    }
    th_sleep_ms(300);
    /* Accepting is asynchronous: wait until relay holds all eight. */
    int64_t deadline = th_now_ms() + WAIT_MS;
    double open = 0;
    int probe;
    while (th_now_ms() < deadline) {
        probe = tcp_connect(r->port, "127.0.0.8");
        cr_assert(probe >= 0);
        int refused = closed_by_server(probe, 1000);
        close(probe);
        if (refused)
            break;
    }
    cr_expect(th_now_ms() < deadline, "a 9th connection was never refused with max_connections 8");
    /* Places come back when clients leave (and only then can this test's own
     * client read the metrics). */
    for (int i = 0; i < n; i++)
        close(fds[i]);
    deadline = th_now_ms() + WAIT_MS;
    long st = 0;
    good = timely_body("evt_conn_2", "chan_conn");
    while (th_now_ms() < deadline && st != 200) {
        th_resp_t resp;
        st = post(r, "timely", good, NULL, &resp);
        th_resp_free(&resp);
        if (st != 200)
            th_sleep_ms(100);
    }
    cr_expect(st == 200, "no place came back after the idle clients left: %ld", st);
    open = th_relay_metric(r, "relay_limit_hits_total", "limit=max_connections");
    cr_expect(open >= 1, "relay_limit_hits_total{limit=max_connections} = %g", open);
    free(good);
}

/* slowloris: a request sent a header line at a time, each well within the idle
 * timeout, is cut off by request_timeout; a connection that goes quiet
 * mid-request is cut off by the idle timeout. Both are counted. */
Test(hostile, slow_and_idle_clients_are_cut_off)
{
    th_relay_t *r = th_relay_new();
    /* The idle timeout out of the way: only request_timeout may cut it. */
    th_relay_setenv(r, "RELAY_HTTP_REQUEST_TIMEOUT", "2");
    th_relay_setenv(r, "RELAY_HTTP_TIMEOUT", "120");
    TH_START(r);
    int slow = tcp_connect(r->port, "127.0.0.2");
    cr_assert(slow >= 0);
    const char *line = "POST /v1/webhooks/timely HTTP/1.1\r\n";
    cr_assert(send_all(slow, line, strlen(line)) == 0);
    int cut = 0;
    int64_t deadline = th_now_ms() + 60000;
    for (int i = 0; th_now_ms() < deadline; i++) {
        char h[64];
        snprintf(h, sizeof h, "X-Slow-%d: %d\r\n", i, i);
        if (send_all(slow, h, strlen(h)) != 0 || closed_by_server(slow, 300)) {
            cut = 1;
            break;
        }
    }
    cr_expect(cut, "a client trickling headers every 300 ms was never cut off");
    close(slow);
    cr_expect(metric_at_least(r, "relay_limit_hits_total", "limit=request_timeout", 1) >= 1);

    /* Quiet mid-request, with request_timeout raised out of the way. */
    th_relay_stop(r, 15000);
    th_relay_setenv(r, "RELAY_HTTP_REQUEST_TIMEOUT", "600");
    th_relay_setenv(r, "RELAY_HTTP_TIMEOUT", "3");
    TH_START(r);
    int idle = tcp_connect(r->port, "127.0.0.3");
    cr_assert(idle >= 0);
    const char *part = "POST /v1/webhooks/timely HTTP/1.1\r\nHost: x\r\n";
    cr_assert(send_all(idle, part, strlen(part)) == 0);
    cr_expect(closed_by_server(idle, 60000), "a connection quiet mid-request was kept");
    close(idle);
    cr_expect(metric_at_least(r, "relay_limit_hits_total", "limit=timeout", 1) >= 1);
    char *good = timely_body("evt_after_slow", "chan_slow");
    expect_status(r, "timely", good, NULL, 200, "a normal request afterwards");
    free(good);
}

/* 429 with Retry-After past the bucket; unauthenticated requests do not use it up. */
Test(hostile, rate_limit_answers_429_with_retry_after)
{
    th_relay_t *r = th_relay_new();
    /* One an hour after a burst of three: no test run is slow enough to refill it. */
    append_extra(r, "\n[source ratel]\ncodec = whapi\nauth = token\nsecret = rate-secret\n"
                    "rate_limit = 1/h\nrate_burst = 3\n");
    TH_START(r);
    static const char *const bad[] = {"Authorization: Bearer nope", NULL};
    static const char *const good[] = {"Authorization: Bearer rate-secret", NULL};
    char id[64];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "%s-unauth-%d", r->prefix, i);
        char *b = whapi_batch(id, 1);
        expect_status(r, "ratel", b, bad, 401, "wrong token");
        free(b);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "%s-rate-%d", r->prefix, i);
        char *b = whapi_batch(id, 1);
        expect_status(r, "ratel", b, good, 200, "within the burst");
        free(b);
    }
    snprintf(id, sizeof id, "%s-rate-over", r->prefix);
    char *b = whapi_batch(id, 1);
    th_resp_t resp;
    post(r, "ratel", b, good, &resp);
    cr_expect(resp.status == 429, "past the burst: %ld %s", resp.status, resp.body);
    cr_expect(json_is_object(resp.json) &&
                  !strcmp(json_string_value(json_object_get(resp.json, "error")), "rate_limited"),
              "429 body: %s", resp.body);
    long ra = strtol(resp.retry_after, NULL, 10);
    cr_expect(ra >= 1 && ra <= 3600, "Retry-After '%s', want 1..3600 s", resp.retry_after);
    th_resp_free(&resp);
    free(b);
    expect_status(r, "whapi", "{\"event\":{\"type\":\"x\"}}", NULL, 400,
                  "another source is not limited (and this body is merely refused)");
    cr_expect(th_relay_metric(r, "relay_limit_hits_total", "limit=rate_limit,source=ratel") == 1);
}

/* ======================================================================= TLS */

Test(hostile, tls_listener)
{
    th_relay_t *r = th_relay_new();
    char *cert = th_strf("%s/cert.pem", r->dir), *key = th_strf("%s/key.pem", r->dir);
    char *argv[] = {"/usr/bin/openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    key,
                    "-out",
                    cert,
                    "-days",
                    "2",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                    NULL};
    char *out = NULL;
    int rc = th_run(argv, 60000, &out);
    cr_assert(rc == 0, "openssl req failed (%d): %s", rc, out);
    free(out);
    th_relay_use_tls(r, cert, key);
    TH_START(r); /* its /healthz probe already goes over https */

    char *body = timely_body("evt_tls_1", "chan_tls");
    expect_status(r, "timely", body, NULL, 200, "POST over TLS");
    free(body);
    char url[128];
    snprintf(url, sizeof url, "%s/healthz", r->base);
    static const struct {
        long max;
        const char *what;
        int ok;
    } versions[] = {
        {CURL_SSLVERSION_MAX_TLSv1_2, "TLS 1.2", 1},
        {CURL_SSLVERSION_MAX_TLSv1_3, "TLS 1.3", 1},
        {CURL_SSLVERSION_MAX_TLSv1_1, "TLS 1.1", 0},
        {CURL_SSLVERSION_MAX_TLSv1_0, "TLS 1.0", 0},
    };
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        CURL *c = curl_easy_init();
        cr_assert(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CAINFO, cert);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_0 | versions[i].max);
        /* Let the client offer old versions at all (OpenSSL 3 refuses them at
         * its default security level): the refusal must be relay's. */
        curl_easy_setopt(c, CURLOPT_SSL_CIPHER_LIST, "DEFAULT:@SECLEVEL=0");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, th_curl_body);
        th_resp_t sink = {0};
        sink.body = calloc(1, 1);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
        CURLcode cc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (versions[i].ok)
            cr_expect(cc == CURLE_OK && code == 200, "%s: %s, HTTP %ld", versions[i].what,
                      curl_easy_strerror(cc), code);
        else
            cr_expect(cc != CURLE_OK, "%s was accepted (HTTP %ld): want TLS 1.2 or later",
                      versions[i].what, code);
        th_resp_free(&sink);
        curl_easy_cleanup(c);
    }
    /* Plain HTTP on the TLS port gets no HTTP answer. */
    long st = th_raw_http(r->port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 5000, NULL);
    cr_expect(st == 0, "plain HTTP on the TLS listener answered %ld", st);
    th_kmsgs_t msgs = {0};
    expect_published(r, 1, &msgs);
    cr_expect(count_id(&msgs, "evt_tls_1") == 1, "the event posted over TLS is not on Kafka");
    th_kmsgs_free(&msgs);
    free(cert);
    free(key);
}

/* ==================================================== hostile beside a good client */

typedef struct hostile {
    int port;
    _Atomic int stop;
    _Atomic long rounds; /* hostile actions done, summed over kinds */
    _Atomic long cut;    /* slowloris connections relay closed after holding them a while */
} hostile_t;

#define SLOWLORIS 20 /* connections a slowloris tries to hold: more than relay lets it */

/* slowloris from 127.0.0.2: tries to hold SLOWLORIS connections, each sending
 * a header line every 200 ms and never finishing its request. */
static void *slowloris(void *arg)
{
    hostile_t *h = arg;
    int fds[SLOWLORIS];
    int64_t since[SLOWLORIS];
    for (int i = 0; i < SLOWLORIS; i++)
        fds[i] = -1;
    while (!atomic_load(&h->stop)) {
        for (int i = 0; i < SLOWLORIS; i++) {
            if (fds[i] < 0) {
                fds[i] = tcp_connect(h->port, "127.0.0.2");
                since[i] = th_now_ms();
                if (fds[i] >= 0 &&
                    send_all(fds[i], "POST /v1/webhooks/tsig HTTP/1.1\r\n", 33) != 0) {
                    close(fds[i]);
                    fds[i] = -1;
                }
            } else if (send_all(fds[i], "X-a: b\r\n", 8) != 0 || closed_by_server(fds[i], 0)) {
                /* Closed by relay: refused at once (a limit), or cut off after
                 * holding a place (the deadline). Come back either way. */
                if (th_now_ms() - since[i] >= 1000)
                    atomic_fetch_add(&h->cut, 1);
                close(fds[i]);
                fds[i] = -1;
                atomic_fetch_add(&h->rounds, 1);
            }
        }
        th_sleep_ms(200);
    }
    for (int i = 0; i < SLOWLORIS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return NULL;
}

/* From 127.0.0.3: huge Content-Lengths, endless chunked bodies, raw garbage,
 * half requests. */
static void *oversized_and_garbage(void *arg)
{
    hostile_t *h = arg;
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 7919 + 13);
    for (int round = 0; !atomic_load(&h->stop); round++) {
        int fd = tcp_connect(h->port, "127.0.0.3");
        if (fd < 0) {
            th_sleep_ms(50);
            continue;
        }
        switch (round % 4) {
        case 0: {
            const char *req = "POST /v1/webhooks/tsig HTTP/1.1\r\nHost: x\r\n"
                              "Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n";
            send_all(fd, req, strlen(req));
            read_status(fd, 5000);
            break;
        }
        case 1: {
            const char *req = "POST /v1/webhooks/tsig HTTP/1.1\r\nHost: x\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n";
            send_all(fd, req, strlen(req));
            char chunk[8192 + 16];
            memset(chunk, '[', sizeof chunk);
            memcpy(chunk, "2000\r\n", 6);
            memcpy(chunk + 6 + 8192, "\r\n", 2);
            for (int i = 0; i < 512 && !atomic_load(&h->stop); i++) /* up to 4 MiB */
                if (send_all(fd, chunk, 6 + 8192 + 2) != 0)
                    break;
            break;
        }
        case 2:
            send_all(fd, junk, sizeof junk);
            read_status(fd, 2000);
            break;
        default: send_all(fd, "GET /healthz HTTP/1.1\r\nHo", 25); break;
        }
        close(fd);
        atomic_fetch_add(&h->rounds, 1);
        th_sleep_ms(20);
    }
    return NULL;
}

/* From 127.0.0.4 (libcurl cannot bind, so raw HTTP): bad signatures and
 * signed garbage, every request well-formed HTTP. */
static void *bad_signatures(void *arg)
{
    hostile_t *h = arg;
    for (int round = 0; !atomic_load(&h->stop); round++) {
        int fd = tcp_connect(h->port, "127.0.0.4");
        if (fd < 0) {
            th_sleep_ms(50);
            continue;
        }
        char sig[65];
        const char *body = round % 2 ? "{\"event\":\"message.received\"}" : "not json at all";
        /* Even rounds: garbage signed right (a dead letter); odd: a wrong signature. */
        hmac_hex(round % 2 ? "guessed-secret" : "tm-old-secret", body, sig);
        char *req = th_strf("POST /v1/webhooks/tsig HTTP/1.1\r\nHost: x\r\n"
                            "Content-Type: application/json\r\nX-Timely-Signature: sha256=%s\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                            sig, strlen(body), body);
        send_all(fd, req, strlen(req));
        read_status(fd, 10000);
        free(req);
        close(fd);
        atomic_fetch_add(&h->rounds, 1);
        th_sleep_ms(20);
    }
    return NULL;
}

/* Without its limits relay would be starved here: the slowloris alone tries to
 * hold more connections than max_connections. With them, its places are
 * capped per address and taken back at the deadline, the oversized bodies and
 * garbage are refused, and the good client's every request gets 200. */
Test(hostile, hostile_clients_beside_a_good_one, .timeout = 600)
{
    th_relay_t *r = th_relay_new();
    add_signed_sources(r);
    snprintf(r->max_body, sizeof r->max_body, "64k");
    th_relay_setenv(r, "RELAY_HTTP_REQUEST_TIMEOUT", "5");
    th_relay_setenv(r, "RELAY_HTTP_MAX_CONNECTIONS", "16");
    th_relay_setenv(r, "RELAY_HTTP_MAX_CONNECTIONS_PER_IP", "6");
    TH_START(r);
    hostile_t h = {.port = r->port};
    pthread_t t[3];
    cr_assert(pthread_create(&t[0], NULL, slowloris, &h) == 0);
    cr_assert(pthread_create(&t[1], NULL, oversized_and_garbage, &h) == 0);
    cr_assert(pthread_create(&t[2], NULL, bad_signatures, &h) == 0);

    /* The good client: signed events, one after another, for as long as it
     * takes the slowloris to be cut off a few times. */
    enum { MIN_GOOD = 60, MAX_GOOD = 1000 };
    char *ids[MAX_GOOD];
    int n = 0, ok = 0;
    int64_t deadline = th_now_ms() + 120000;
    while (n < MAX_GOOD && (n < MIN_GOOD || (atomic_load(&h.cut) < 3 && th_now_ms() < deadline))) {
        ids[n] = th_strf("evt_%s_good_%d", r->prefix, n);
        char *body = timely_body(ids[n], "chan_good"), sig[65], hdr[128];
        hmac_hex(n % 2 ? "tm-new-secret" : "tm-old-secret", body, sig);
        snprintf(hdr, sizeof hdr, "X-Timely-Signature: sha256=%s", sig);
        const char *hh[] = {hdr, NULL};
        th_resp_t resp;
        long st = post(r, "tsig", body, hh, &resp);
        cr_expect(st == 200, "good request %d: HTTP %ld %s %s", n, st, resp.body, resp.error);
        ok += st == 200;
        th_resp_free(&resp);
        free(body);
        n++;
        th_sleep_ms(100);
    }
    atomic_store(&h.stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    cr_expect(ok == n, "%d of %d good requests got 200", ok, n);
    cr_expect(atomic_load(&h.cut) >= 3, "the slowloris was cut off %ld times, want 3",
              atomic_load(&h.cut));
    cr_expect(atomic_load(&h.rounds) > 0, "the hostile clients did nothing");

    /* Every good event is published exactly once. */
    th_kmsgs_t msgs = {0};
    expect_published(r, (size_t)n, &msgs);
    for (int i = 0; i < n; i++) {
        cr_expect(count_id(&msgs, ids[i]) == 1, "%s published %zu times", ids[i],
                  count_id(&msgs, ids[i]));
        free(ids[i]);
    }
    th_kmsgs_free(&msgs);
    /* And the attacks were seen for what they are. */
    static const struct {
        const char *name, *labels;
    } seen[] = {
        {"relay_limit_hits_total", "limit=request_timeout"},
        {"relay_limit_hits_total", "limit=max_connections_per_ip"},
        {"relay_limit_hits_total", "limit=max_body,source=tsig"},
        {"relay_auth_failures_total", "source=tsig,reason=bad_signature"},
        {"relay_dead_letters_total", "source=tsig"},
    };
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++) {
        double v = th_relay_metric(r, seen[i].name, seen[i].labels);
        cr_expect(v >= 1, "%s{%s} = %g: the attack was not counted", seen[i].name, seen[i].labels,
                  v);
    }
    th_resp_t resp;
    th_get(r, "/healthz", &resp);
    cr_expect(resp.status == 200, "/healthz after the attack: %ld", resp.status);
    th_resp_free(&resp);
}
