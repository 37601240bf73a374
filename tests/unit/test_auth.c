/* test_auth.c -- per-source request authentication (relay/ingest/auth.c), tested
 * against auth.h and docs/http-api.md: scheme token (for the Authorization header a
 * bearer credential, "Bearer <secret>", RFC 6750; for any other header the exact
 * value), and the signature schemes timely, standard-webhooks and
 * hub-signature-256, each with good, bad, missing, expired and rotated
 * signatures. Expected signatures come from published vectors (the Standard
 * Webhooks specification, GitHub's documentation) or are computed here with
 * OpenSSL's one-shot HMAC(), not with relay's own sig.c. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "sig.h"

/* Request headers as name/value pairs, NULL-terminated; looked up
 * case-insensitively, as rl_header_fn promises. */
typedef struct req {
    const char *h[12];
} req_t;

static const char *lookup(void *ctx, const char *name)
{
    const req_t *r = ctx;
    for (int i = 0; r->h[i]; i += 2)
        if (!strcasecmp(r->h[i], name))
            return r->h[i + 1];
    return NULL;
}

typedef struct auth_case {
    const char *what;
    const char *auth, *token_header;
    req_t req;
    int rc;
    const char *reason; /* when rc is -1 */
} auth_case_t;

#define SECRET "s3cret-Token_value"

static const auth_case_t cases[] = {
    {"none, no headers", "none", "Authorization", {{NULL}}, 0, NULL},
    {"none ignores headers",
     "none",
     "Authorization",
     {{"Authorization", "Bearer nope", NULL}},
     0,
     NULL},

    {"bearer", "token", "Authorization", {{"Authorization", "Bearer " SECRET, NULL}}, 0, NULL},
    {"scheme is case-insensitive",
     "token",
     "Authorization",
     {{"Authorization", "bearer " SECRET, NULL}},
     0,
     NULL},
    {"header name is case-insensitive",
     "token",
     "Authorization",
     {{"authorization", "Bearer " SECRET, NULL}},
     0,
     NULL},
    {"configured header in lower case",
     "token",
     "authorization",
     {{"Authorization", "Bearer " SECRET, NULL}},
     0,
     NULL},
    {"among other headers",
     "token",
     "Authorization",
     {{"Content-Type", "application/json", "Authorization", "Bearer " SECRET, NULL}},
     0,
     NULL},
    {"missing",
     "token",
     "Authorization",
     {{"Content-Type", "application/json", NULL}},
     -1,
     "missing_token"},
    {"wrong", "token", "Authorization", {{"Authorization", "Bearer wrong", NULL}}, -1, "bad_token"},
    {"prefix of the secret",
     "token",
     "Authorization",
     {{"Authorization", "Bearer s3cret-Token_valu", NULL}},
     -1,
     "bad_token"},
    {"secret plus more",
     "token",
     "Authorization",
     {{"Authorization", "Bearer " SECRET "x", NULL}},
     -1,
     "bad_token"},
    {"other case",
     "token",
     "Authorization",
     {{"Authorization", "Bearer S3CRET-TOKEN_VALUE", NULL}},
     -1,
     "bad_token"},
    {"empty bearer",
     "token",
     "Authorization",
     {{"Authorization", "Bearer ", NULL}},
     -1,
     "bad_token"},
    {"empty header", "token", "Authorization", {{"Authorization", "", NULL}}, -1, "bad_token"},
    {"no Bearer", "token", "Authorization", {{"Authorization", SECRET, NULL}}, -1, "bad_token"},
    {"Basic",
     "token",
     "Authorization",
     {{"Authorization", "Basic " SECRET, NULL}},
     -1,
     "bad_token"},
    {"Bearer glued",
     "token",
     "Authorization",
     {{"Authorization", "Bearer" SECRET, NULL}},
     -1,
     "bad_token"},

    {"custom header", "token", "X-Relay-Token", {{"X-Relay-Token", SECRET, NULL}}, 0, NULL},
    {"custom header, any case",
     "token",
     "X-Relay-Token",
     {{"x-relay-token", SECRET, NULL}},
     0,
     NULL},
    {"custom header takes the exact value",
     "token",
     "X-Relay-Token",
     {{"X-Relay-Token", "Bearer " SECRET, NULL}},
     -1,
     "bad_token"},
    {"custom header with spaces",
     "token",
     "X-Relay-Token",
     {{"X-Relay-Token", " " SECRET, NULL}},
     -1,
     "bad_token"},
    {"custom header wrong",
     "token",
     "X-Relay-Token",
     {{"X-Relay-Token", "nope", NULL}},
     -1,
     "bad_token"},
    {"custom header missing, Authorization present",
     "token",
     "X-Relay-Token",
     {{"Authorization", "Bearer " SECRET, NULL}},
     -1,
     "missing_token"},
};

/* Builds the checker of a source with scheme `auth` and `secret` (or fails the test). */
static rl_auth_t *checker(rl_source_conf_t *src, const char *auth, const char *secret,
                          const char *token_header)
{
    char err[256] = "";
    *src = (rl_source_conf_t){.name = "s",
                              .codec = "timely",
                              .auth = (char *)auth,
                              .secret = (char *)secret,
                              .token_header = (char *)token_header,
                              .ack = "wal",
                              .timestamp_tolerance = 300};
    rl_auth_t *a = rl_auth_new(src, err, sizeof(err));
    cr_assert_not_null(a, "rl_auth_new(%s): %s", auth, err);
    return a;
}

/* rl_auth_check with the reason's checks every failure must pass. */
static int check(const rl_auth_t *a, req_t *r, const char *body, int64_t now, const char **reason,
                 const char **msg_id)
{
    rl_auth_req_t req = {lookup, r, (const uint8_t *)body, strlen(body), now};
    *reason = NULL;
    int rc = rl_auth_check(a, &req, reason, msg_id);
    if (rc != 0) {
        cr_assert_not_null(*reason, "a failure without a reason");
        int known = 0;
        for (size_t i = 0; rl_auth_reasons[i]; i++)
            known |= !strcmp(rl_auth_reasons[i], *reason);
        cr_expect(known, "reason %s is not in rl_auth_reasons", *reason);
    }
    return rc;
}

static void expect_pass(const rl_auth_t *a, req_t r, const char *body, int64_t now,
                        const char *what)
{
    const char *reason;
    cr_expect_eq(check(a, &r, body, now, &reason, NULL), 0, "%s: refused (%s)", what,
                 reason ? reason : "-");
}

static void expect_fail(const rl_auth_t *a, req_t r, const char *body, int64_t now,
                        const char *want, const char *what)
{
    const char *reason;
    int rc = check(a, &r, body, now, &reason, NULL);
    cr_expect_eq(rc, -1, "%s: passed, want %s", what, want);
    if (rc)
        cr_expect_str_eq(reason, want, "%s", what);
}

/* Hex or Base64 of HMAC-SHA256(key, msg), computed with OpenSSL's HMAC(). */
static void hmac_hex(const char *key, const char *msg, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), md, &n);
    for (unsigned int i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

static void hmac_b64(const unsigned char *key, size_t keylen, const char *msg, char out[64])
{
    unsigned char md[32];
    unsigned int n = 0;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), md, &n);
    EVP_EncodeBlock((unsigned char *)out, md, (int)n);
}

Test(auth, token_schemes)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const auth_case_t *c = &cases[i];
        rl_source_conf_t src;
        rl_auth_t *a = checker(&src, c->auth, SECRET, c->token_header);
        const char *reason = NULL;
        req_t r = c->req;
        int rc = check(a, &r, "{}", 0, &reason, NULL);
        cr_expect_eq(rc, c->rc, "%s: rc %d, expected %d (reason %s)", c->what, rc, c->rc,
                     reason ? reason : "-");
        if (c->rc != 0 && rc != 0) {
            cr_expect_str_eq(reason, c->reason, "%s", c->what);
            cr_expect_null(strstr(reason, "s3cret"), "%s: reason shows the secret", c->what);
        }
        rl_auth_destroy(a);
    }
}

Test(auth, token_rotation)
{
    rl_source_conf_t src;
    rl_auth_t *a = checker(&src, "token", " old-token , new-token,", "Authorization");
    expect_pass(a, (req_t){{"Authorization", "Bearer old-token", NULL}}, "{}", 0, "old");
    expect_pass(a, (req_t){{"Authorization", "Bearer new-token", NULL}}, "{}", 0, "new");
    expect_fail(a, (req_t){{"Authorization", "Bearer old-token,new-token", NULL}}, "{}", 0,
                "bad_token", "the whole list");
    expect_fail(a, (req_t){{"Authorization", "Bearer ", NULL}}, "{}", 0, "bad_token",
                "an empty token never matches the empty space between commas");
    rl_auth_destroy(a);
}

Test(auth, unknown_scheme_fails_closed)
{
    rl_source_conf_t src = {.name = "s",
                            .codec = "timely",
                            .auth = "hmac",
                            .secret = SECRET,
                            .token_header = "Authorization",
                            .ack = "wal"};
    char err[128] = "";
    cr_expect_null(rl_auth_new(&src, err, sizeof(err)));
    cr_expect(err[0], "no reason");
    src.auth = "token";
    src.secret = " , ";
    cr_expect_null(rl_auth_new(&src, err, sizeof(err)), "only separators is no secret");
    rl_auth_destroy(NULL);
}

/* ------------------------------------------------------------- standard-webhooks */

#define SW_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SW_TS "1614265330"
#define SW_BODY "{\"test\": 2432232314}"
#define SW_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

/* The specification's test vector. */
Test(auth, standard_webhooks_test_vector)
{
    rl_source_conf_t src;
    rl_auth_t *a = checker(&src, "standard-webhooks", SW_SECRET, "Authorization");
    req_t r = {
        {"webhook-id", SW_ID, "webhook-timestamp", SW_TS, "webhook-signature", SW_SIG, NULL}};
    const char *reason = NULL, *msg_id = NULL;
    cr_expect_eq(check(a, &r, SW_BODY, 1614265330, &reason, &msg_id), 0, "refused: %s",
                 reason ? reason : "-");
    cr_expect(msg_id && !strcmp(msg_id, SW_ID), "webhook-id not handed back: %s",
              msg_id ? msg_id : "(null)");
    /* Within the tolerance on either side. */
    expect_pass(a, r, SW_BODY, 1614265330 + 300, "+300 s");
    expect_pass(a, r, SW_BODY, 1614265330 - 300, "-300 s");
    /* One byte of the body, id or timestamp changed. */
    expect_fail(a, r, "{\"test\": 2432232315}", 1614265330, "bad_signature", "body changed");
    req_t other_id = {{"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJeK", "webhook-timestamp", SW_TS,
                       "webhook-signature", SW_SIG, NULL}};
    expect_fail(a, other_id, SW_BODY, 1614265330, "bad_signature", "id changed");
    req_t other_ts = {{"webhook-id", SW_ID, "webhook-timestamp", "1614265331", "webhook-signature",
                       SW_SIG, NULL}};
    expect_fail(a, other_ts, SW_BODY, 1614265330, "bad_signature", "timestamp changed");
    rl_auth_destroy(a);

    /* The secret without its whsec_ prefix is the same key. */
    a = checker(&src, "standard-webhooks", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "Authorization");
    expect_pass(a, r, SW_BODY, 1614265330, "secret without whsec_");
    rl_auth_destroy(a);
}

Test(auth, standard_webhooks_signature_lists_and_rotation)
{
    rl_source_conf_t src;
    rl_auth_t *a = checker(&src, "standard-webhooks", SW_SECRET, "Authorization");
    /* Several signatures during a key rotation; unknown versions are skipped. */
    static const char *const lists[] = {
        "v1,Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE= " SW_SIG,
        SW_SIG " v1,Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=",
        "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= " SW_SIG,
        "  " SW_SIG "  ",
    };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        req_t r = {
            {"webhook-id", SW_ID, "webhook-timestamp", SW_TS, "webhook-signature", lists[i], NULL}};
        expect_pass(a, r, SW_BODY, 1614265330, lists[i]);
    }
    static const char *const bad[] = {
        "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", /* right bytes, wrong version */
        "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",   /* padding cut */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE==", /* too long */
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OI=",  /* a bit of the last byte changed */
        "v1,",
        "",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=,v1,x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        req_t r = {
            {"webhook-id", SW_ID, "webhook-timestamp", SW_TS, "webhook-signature", bad[i], NULL}};
        expect_fail(a, r, SW_BODY, 1614265330, "bad_signature", bad[i]);
    }
    rl_auth_destroy(a);

    /* Rotation on our side: the old and the new secret are both accepted. */
    unsigned char newkey[] = "0123456789abcdef0123456789abcdef";
    char newsig[64], b64key[64], secrets[256], content[256];
    EVP_EncodeBlock((unsigned char *)b64key, newkey, 32);
    snprintf(secrets, sizeof(secrets), "%s, whsec_%s", SW_SECRET, b64key);
    snprintf(content, sizeof(content), "%s.%s.%s", SW_ID, SW_TS, SW_BODY);
    hmac_b64(newkey, 32, content, newsig);
    char header[128];
    snprintf(header, sizeof(header), "v1,%s", newsig);
    a = checker(&src, "standard-webhooks", secrets, "Authorization");
    req_t r_old = {
        {"webhook-id", SW_ID, "webhook-timestamp", SW_TS, "webhook-signature", SW_SIG, NULL}};
    req_t r_new = {
        {"webhook-id", SW_ID, "webhook-timestamp", SW_TS, "webhook-signature", header, NULL}};
    expect_pass(a, r_old, SW_BODY, 1614265330, "signed with the old secret");
    expect_pass(a, r_new, SW_BODY, 1614265330, "signed with the new secret");
    rl_auth_destroy(a);
    a = checker(&src, "standard-webhooks", SW_SECRET, "Authorization");
    expect_fail(a, r_new, SW_BODY, 1614265330, "bad_signature", "new secret not configured");
    rl_auth_destroy(a);
}

Test(auth, standard_webhooks_missing_expired_and_malformed)
{
    rl_source_conf_t src;
    rl_auth_t *a = checker(&src, "standard-webhooks", SW_SECRET, "Authorization");
    int64_t now = 1614265330;
    expect_fail(a, (req_t){{"webhook-timestamp", SW_TS, "webhook-signature", SW_SIG, NULL}},
                SW_BODY, now, "missing_id", "no webhook-id");
    expect_fail(a, (req_t){{"webhook-id", SW_ID, "webhook-signature", SW_SIG, NULL}}, SW_BODY, now,
                "missing_timestamp", "no webhook-timestamp");
    expect_fail(a, (req_t){{"webhook-id", SW_ID, "webhook-timestamp", SW_TS, NULL}}, SW_BODY, now,
                "missing_signature", "no webhook-signature");
    expect_fail(a, (req_t){{NULL}}, SW_BODY, now, "missing_id", "no headers");
    req_t r = {
        {"webhook-id", SW_ID, "webhook-timestamp", SW_TS, "webhook-signature", SW_SIG, NULL}};
    expect_fail(a, r, SW_BODY, now + 301, "expired_timestamp", "301 s old");
    expect_fail(a, r, SW_BODY, now - 301, "expired_timestamp", "301 s in the future");
    expect_fail(a, r, SW_BODY, now + 86400 * 365, "expired_timestamp", "a year old");
    static const char *const bad_ts[] = {"",           "16142653300000000000", "1614265330.5",
                                         "-1",         "2021-02-25T15:02:10Z", "0x6037bdf2",
                                         " 1614265330"};
    for (size_t i = 0; i < sizeof(bad_ts) / sizeof(bad_ts[0]); i++) {
        req_t t = {{"webhook-id", SW_ID, "webhook-timestamp", bad_ts[i], "webhook-signature",
                    SW_SIG, NULL}};
        expect_fail(a, t, SW_BODY, now, "bad_timestamp", bad_ts[i]);
    }
    /* The id becomes a CloudEvent id and a Kafka header: short printable ASCII. */
    static const char *const bad_id[] = {"", "msg 1", "msg\x01", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad_id) / sizeof(bad_id[0]); i++) {
        req_t t = {{"webhook-id", bad_id[i], "webhook-timestamp", SW_TS, "webhook-signature",
                    SW_SIG, NULL}};
        expect_fail(a, t, SW_BODY, now, "bad_id", bad_id[i]);
    }
    char long_id[300];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    req_t t = {
        {"webhook-id", long_id, "webhook-timestamp", SW_TS, "webhook-signature", SW_SIG, NULL}};
    expect_fail(a, t, SW_BODY, now, "bad_id", "a 299-character id");
    rl_auth_destroy(a);

    /* A tolerance of its own. */
    src.timestamp_tolerance = 10;
    a = checker(&src, "standard-webhooks", SW_SECRET, "Authorization");
    src.timestamp_tolerance = 10; /* checker reset it: the checker borrows src */
    expect_pass(a, r, SW_BODY, now + 10, "10 s with a tolerance of 10");
    expect_fail(a, r, SW_BODY, now + 11, "expired_timestamp", "11 s with a tolerance of 10");
    rl_auth_destroy(a);
}

Test(auth, standard_webhooks_bad_secrets_are_refused_at_start)
{
    static const char *const bad[] = {"whsec_", "whsec_not base64!", "whsec_abc",
                                      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_@@@@"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rl_source_conf_t src = {.name = "s",
                                .codec = "whapi",
                                .auth = "standard-webhooks",
                                .secret = (char *)bad[i],
                                .token_header = "Authorization",
                                .ack = "wal"};
        char err[256] = "";
        rl_auth_t *a = rl_auth_new(&src, err, sizeof(err));
        cr_expect_null(a, "secret '%s' accepted", bad[i]);
        rl_auth_destroy(a);
        cr_expect(err[0] && !strstr(err, "MfKQ9r8G") && !strstr(err, "@@@@"),
                  "reason missing or shows the secret: %s", err);
    }
}

/* -------------------------------------------------------------------- timely */

#define T_BODY "{\"event\":\"message.received\",\"event_id\":\"evt_01\"}"

Test(auth, timely_both_forms)
{
    rl_source_conf_t src;
    rl_auth_t *a = checker(&src, "timely", "tm-secret", "Authorization");
    char body_sig[65], ts_sig[65], prefixed[80], upper[65], content[256];
    int64_t now = 1776592800; /* 2026-04-19T10:00:00Z */

    hmac_hex("tm-secret", T_BODY, body_sig);
    snprintf(prefixed, sizeof(prefixed), "sha256=%s", body_sig);
    for (size_t i = 0; i <= 64; i++)
        upper[i] = (char)toupper((unsigned char)body_sig[i]);
    /* Form 1: sha256=<hex HMAC(secret, body)>, with or without the prefix, any case. */
    expect_pass(a, (req_t){{"X-Timely-Signature", prefixed, NULL}}, T_BODY, now, "sha256=hex");
    expect_pass(a, (req_t){{"X-Timely-Signature", body_sig, NULL}}, T_BODY, now, "bare hex");
    expect_pass(a, (req_t){{"x-timely-signature", upper, NULL}}, T_BODY, now, "upper-case hex");
    /* The body form signs no time: an old X-Timely-Timestamp beside it changes nothing. */
    expect_pass(a, (req_t){{"X-Timely-Signature", prefixed, "X-Timely-Timestamp", "1", NULL}},
                T_BODY, now, "body form with an unsigned old timestamp");

    /* Form 2: hex HMAC(secret, timestamp + "." + body). */
    snprintf(content, sizeof(content), "1776592790.%s", T_BODY);
    hmac_hex("tm-secret", content, ts_sig);
    req_t r = {{"X-Timely-Signature", ts_sig, "X-Timely-Timestamp", "1776592790", NULL}};
    expect_pass(a, r, T_BODY, now, "timestamp form");
    snprintf(prefixed, sizeof(prefixed), "sha256=%s", ts_sig);
    expect_pass(a,
                (req_t){{"X-Timely-Signature", prefixed, "X-Timely-Timestamp", "1776592790", NULL}},
                T_BODY, now, "timestamp form with sha256=");
    expect_fail(a, r, T_BODY, now + 311, "expired_timestamp", "timestamp form, 321 s old");
    expect_fail(a, r, T_BODY, now - 311, "expired_timestamp", "timestamp form, 301 s ahead");
    expect_fail(a, (req_t){{"X-Timely-Signature", ts_sig, NULL}}, T_BODY, now, "bad_signature",
                "timestamp form without its timestamp");
    expect_fail(a,
                (req_t){{"X-Timely-Signature", ts_sig, "X-Timely-Timestamp", "1776592791", NULL}},
                T_BODY, now, "bad_signature", "another timestamp");

    /* Timestamps in milliseconds and RFC 3339 (the docs do not say which). */
    static const char *const stamps[] = {"1776592790000", "2026-04-19T09:59:50Z",
                                         "2026-04-19T11:59:50+02:00", "2026-04-19T09:59:50.123Z"};
    for (size_t i = 0; i < sizeof(stamps) / sizeof(stamps[0]); i++) {
        snprintf(content, sizeof(content), "%s.%s", stamps[i], T_BODY);
        hmac_hex("tm-secret", content, ts_sig);
        req_t t = {{"X-Timely-Signature", ts_sig, "X-Timely-Timestamp", stamps[i], NULL}};
        expect_pass(a, t, T_BODY, now, stamps[i]);
        expect_fail(a, t, T_BODY, now + 3600, "expired_timestamp", stamps[i]);
    }
    snprintf(content, sizeof(content), "yesterday.%s", T_BODY);
    hmac_hex("tm-secret", content, ts_sig);
    expect_fail(a, (req_t){{"X-Timely-Signature", ts_sig, "X-Timely-Timestamp", "yesterday", NULL}},
                T_BODY, now, "bad_timestamp", "a signed timestamp that is no time");
    rl_auth_destroy(a);
}

Test(auth, timely_bad_missing_rotated)
{
    rl_source_conf_t src;
    rl_auth_t *a = checker(&src, "timely", "old-secret,new-secret", "Authorization");
    char sig[65], other[65], prefixed[80];
    hmac_hex("new-secret", T_BODY, sig);
    hmac_hex("old-secret", T_BODY, other);
    expect_pass(a, (req_t){{"X-Timely-Signature", sig, NULL}}, T_BODY, 0, "new secret");
    expect_pass(a, (req_t){{"X-Timely-Signature", other, NULL}}, T_BODY, 0, "old secret");
    hmac_hex("third-secret", T_BODY, other);
    expect_fail(a, (req_t){{"X-Timely-Signature", other, NULL}}, T_BODY, 0, "bad_signature",
                "a secret not configured");
    expect_fail(a, (req_t){{"Content-Type", "application/json", NULL}}, T_BODY, 0,
                "missing_signature", "no header");
    expect_fail(a, (req_t){{"X-Timely-Signature", sig, NULL}}, T_BODY "\n", 0, "bad_signature",
                "a byte added to the body");
    static const char *const malformed[] = {"", "sha256=", "sha256", "zz", "sha1=abc"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        expect_fail(a, (req_t){{"X-Timely-Signature", malformed[i], NULL}}, T_BODY, 0,
                    "bad_signature", malformed[i]);
    snprintf(prefixed, sizeof(prefixed), "%.62s", sig);
    expect_fail(a, (req_t){{"X-Timely-Signature", prefixed, NULL}}, T_BODY, 0, "bad_signature",
                "a signature cut short");
    snprintf(prefixed, sizeof(prefixed), "%s00", sig);
    expect_fail(a, (req_t){{"X-Timely-Signature", prefixed, NULL}}, T_BODY, 0, "bad_signature",
                "a signature too long");
    rl_auth_destroy(a);
}

/* --------------------------------------------------------- hub-signature-256 */

/* GitHub's documented example ("Validating webhook deliveries"). */
#define GH_SECRET "It's a Secret to Everybody"
#define GH_BODY "Hello, World!"
#define GH_SIG "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

Test(auth, hub_signature_256)
{
    rl_source_conf_t src;
    rl_auth_t *a = checker(&src, "hub-signature-256", GH_SECRET, "Authorization");
    expect_pass(a, (req_t){{"X-Hub-Signature-256", GH_SIG, NULL}}, GH_BODY, 0, "GitHub's example");
    expect_fail(a, (req_t){{"X-Hub-Signature-256", GH_SIG + 7, NULL}}, GH_BODY, 0, "bad_signature",
                "without sha256=");
    expect_fail(a, (req_t){{"X-Hub-Signature", "sha1=01ab", NULL}}, GH_BODY, 0, "missing_signature",
                "only the SHA-1 header");
    expect_fail(a, (req_t){{"X-Hub-Signature-256", GH_SIG, NULL}}, "Hello, World?", 0,
                "bad_signature", "another body");
    rl_auth_destroy(a);

    /* Meta app secret rotation: both secrets while the app switches. */
    a = checker(&src, "hub-signature-256", "first-app-secret, " GH_SECRET, "Authorization");
    expect_pass(a, (req_t){{"X-Hub-Signature-256", GH_SIG, NULL}}, GH_BODY, 0, "second of two");
    char sig[65], hdr[80];
    hmac_hex("first-app-secret", GH_BODY, sig);
    snprintf(hdr, sizeof(hdr), "sha256=%s", sig);
    expect_pass(a, (req_t){{"X-Hub-Signature-256", hdr, NULL}}, GH_BODY, 0, "first of two");
    rl_auth_destroy(a);
}

/* --------------------------------------------------------------------- sig.c */

Test(auth, sig_codecs)
{
    uint8_t out[64];
    cr_expect_eq(rl_hex_decode("00ffAb", 6, out, sizeof(out)), 3);
    cr_expect(out[0] == 0 && out[1] == 0xff && out[2] == 0xab);
    cr_expect_eq(rl_hex_decode("0", 1, out, sizeof(out)), -1, "odd length");
    cr_expect_eq(rl_hex_decode("0g", 2, out, sizeof(out)), -1, "not hex");
    cr_expect_eq(rl_hex_decode("0011", 4, out, 1), -1, "too long for out");
    static const struct {
        const char *in;
        int n;
    } b64[] = {{"TWFu", 3},  {"TWE=", 2},  {"TQ==", 1},  {"", -1},         {"TQ=", -1},
               {"T===", -1}, {"TQ=a", -1}, {"T Q=", -1}, {"TQ==TQ==", -1}, {"====", -1}};
    for (size_t i = 0; i < sizeof(b64) / sizeof(b64[0]); i++)
        cr_expect_eq(rl_b64_decode(b64[i].in, strlen(b64[i].in), out, sizeof(out)), b64[i].n,
                     "b64 '%s'", b64[i].in);
    char *e = rl_b64_encode((const uint8_t *)"Man", 3);
    cr_expect_str_eq(e, "TWFu");
    free(e);
    e = rl_b64_encode((const uint8_t *)"", 0);
    cr_expect_str_eq(e, "");
    free(e);
    uint8_t mac[RL_SHA256_LEN];
    rl_sig_part_t parts[] = {{"Hello, ", 7}, {"World!", 6}};
    cr_assert_eq(rl_hmac_sha256((const uint8_t *)GH_SECRET, strlen(GH_SECRET), parts, 2, mac), 0);
    char hex[65];
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", mac[i]);
    cr_expect_str_eq(hex, GH_SIG + 7, "HMAC over two parts");
}
