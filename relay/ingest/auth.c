/* auth.c -- the schemes of auth.h.
 *
 * Every comparison of a secret or a signature is constant-time (sig.c), so the
 * time a wrong value takes to reject says nothing about how much of it was
 * right. A signature is decoded from the request (hex or Base64) and compared as
 * bytes with the HMAC we compute, never as text: "ABCD" and "abcd" are the same
 * signature, and no encoding detail can make two different MACs compare equal.
 *
 * Order of the checks: presence and shape of the headers first, then (for
 * standard-webhooks) the timestamp, cheap and refused when old even with a right
 * signature, then the HMACs. Timely's timestamp is judged only once the form that
 * signs it has matched: the other form signs no time. */
#include "auth.h"
#include "clock.h"

#include "sig.h"
#include "err.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_MSG_ID 255 /* webhook-id becomes a CloudEvent id: keep it short and printable */
#define MS_THRESHOLD 100000000000LL /* a unix time this large is in milliseconds */

typedef enum { S_NONE, S_TOKEN, S_TIMELY, S_STANDARD, S_HUB } scheme_t;

typedef struct key {
    uint8_t *p;
    size_t len;
} key_t_;

struct rl_auth {
    scheme_t scheme;
    const rl_source_conf_t *src;
    key_t_ *keys; /* the secrets, decoded for the scheme */
    size_t nkeys;
};

const char *const rl_auth_reasons[] = {
    "missing_token", "bad_token",         "missing_signature", "bad_signature", "missing_timestamp",
    "bad_timestamp", "expired_timestamp", "missing_id",        "bad_id",        NULL,
};

static int fail(const char **reason, const char *why)
{
    *reason = why;
    return -1;
}

/* Adds one secret, decoded for the scheme. 0, or -1 with errstr. */
static int add_key(rl_auth_t *a, const char *s, size_t len, char *errstr, size_t errstr_size)
{
    key_t_ *k = &a->keys[a->nkeys];
    int n;

    if (a->scheme != S_STANDARD) { /* the secret's bytes are the key */
        if (!(k->p = malloc(len ? len : 1)))
            goto oom;
        memcpy(k->p, s, len);
        k->len = len;
        a->nkeys++;
        return 0;
    }
    /* Standard Webhooks: "whsec_" + Base64 of the key (the prefix is optional, as
     * the reference libraries have it). */
    if (len >= 6 && !memcmp(s, "whsec_", 6))
        s += 6, len -= 6;
    if (!(k->p = malloc(len / 4 * 3 + 1)))
        goto oom;
    if ((n = rl_b64_decode(s, len, k->p, len / 4 * 3 + 1)) <= 0) {
        free(k->p);
        k->p = NULL;
        rl_seterr(errstr, errstr_size,
                  "secret #%zu is not whsec_ followed by padded Base64 (standard-webhooks)",
                  a->nkeys + 1);
        return -1;
    }
    k->len = (size_t)n;
    a->nkeys++;
    return 0;
oom:
    rl_seterr(errstr, errstr_size, "out of memory");
    return -1;
}

rl_auth_t *rl_auth_new(const rl_source_conf_t *src, char *errstr, size_t errstr_size)
{
    static const struct {
        const char *name;
        scheme_t scheme;
    } schemes[] = {{"none", S_NONE},
                   {"token", S_TOKEN},
                   {"timely", S_TIMELY},
                   {"standard-webhooks", S_STANDARD},
                   {"hub-signature-256", S_HUB}};
    const char *secret = src->secret ? src->secret : "";
    rl_auth_t *a = calloc(1, sizeof(*a));
    size_t i, max_keys = 1;
    int ok = 0;

    if (!a) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    a->src = src;
    for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (src->auth && !strcmp(src->auth, schemes[i].name))
            break;
    if (i == sizeof(schemes) / sizeof(schemes[0])) {
        rl_seterr(errstr, errstr_size, "unknown auth scheme '%s'", src->auth ? src->auth : "");
        goto out;
    }
    a->scheme = schemes[i].scheme;
    if (a->scheme == S_NONE) {
        ok = 1;
        goto out;
    }
    for (const char *c = secret; *c; c++)
        max_keys += *c == ',';
    if (!(a->keys = calloc(max_keys, sizeof(*a->keys)))) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    /* Secrets are separated by commas; white space around each is not part of
     * it (a secret may contain spaces inside, as GitHub's example does). */
    for (const char *p = secret;;) {
        size_t len = strcspn(p, ",");
        const char *next = p + len;
        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len && add_key(a, p, len, errstr, errstr_size) != 0)
            goto out;
        if (!*next)
            break;
        p = next + 1;
    }
    if (a->nkeys == 0) {
        rl_seterr(errstr, errstr_size, "auth = %s needs a secret", src->auth);
        goto out;
    }
    ok = 1;
out:
    if (!ok) {
        rl_auth_destroy(a);
        a = NULL;
    }
    return a;
}

void rl_auth_destroy(rl_auth_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nkeys; i++) {
        /* Secrets do not outlive their use in freed memory (OPENSSL_cleanse is
         * a memset the compiler may not drop). */
        OPENSSL_cleanse(a->keys[i].p, a->keys[i].len);
        free(a->keys[i].p);
    }
    free(a->keys);
    free(a);
}

/* ------------------------------------------------------------------- token */

static int token_check(const rl_auth_t *a, const rl_auth_req_t *req, const char **reason)
{
    const char *hname = a->src->token_header ? a->src->token_header : "Authorization";
    const char *got = req->header(req->header_ctx, hname);
    int match = 0;

    if (!got)
        return fail(reason, "missing_token");
    /* For Authorization the token is a bearer credential: "Bearer <secret>". */
    if (!strcasecmp(hname, "Authorization")) {
        if (strncasecmp(got, "Bearer ", 7) != 0)
            return fail(reason, "bad_token");
        got += 7;
        while (*got == ' ')
            got++;
    }
    size_t gl = strlen(got);
    for (size_t i = 0; i < a->nkeys; i++)
        match |= gl == a->keys[i].len && rl_sig_equal(got, a->keys[i].p, gl);
    return match ? 0 : fail(reason, "bad_token");
}

/* -------------------------------------------------------------- signatures */

static int within_tolerance(const rl_auth_t *a, int64_t now, int64_t t)
{
    int64_t d = now > t ? now - t : t - now;
    return d <= a->src->timestamp_tolerance;
}

/* Decodes "[sha256=]<64 hex digits>"; `need_prefix`: the prefix is required.
 * 0, or -1 when the value is not that. */
static int hex_signature(const char *v, int need_prefix, uint8_t out[RL_SHA256_LEN])
{
    int has = !strncasecmp(v, "sha256=", 7);
    if (need_prefix && !has)
        return -1;
    if (has)
        v += 7;
    size_t n = strlen(v);
    return rl_hex_decode(v, n, out, RL_SHA256_LEN) == RL_SHA256_LEN ? 0 : -1;
}

/* 1 when HMAC(key i, parts) equals want for some key. */
static int any_key_signs(const rl_auth_t *a, const rl_sig_part_t *parts, size_t nparts,
                         const uint8_t want[RL_SHA256_LEN])
{
    uint8_t mac[RL_SHA256_LEN];
    int match = 0;
    for (size_t i = 0; i < a->nkeys; i++)
        if (rl_hmac_sha256(a->keys[i].p, a->keys[i].len, parts, nparts, mac) == 0)
            match |= rl_sig_equal(mac, want, RL_SHA256_LEN);
    return match;
}

/* Timely documents two forms: HMAC of the body, and HMAC of "{timestamp}.{body}"
 * with X-Timely-Timestamp. Both are tried; only the second signs a timestamp,
 * so only then can the request be too old. */
static int timely_check(const rl_auth_t *a, const rl_auth_req_t *req, const char **reason)
{
    const char *sig = req->header(req->header_ctx, "X-Timely-Signature");
    const char *ts = req->header(req->header_ctx, "X-Timely-Timestamp");
    uint8_t want[RL_SHA256_LEN];
    int64_t t;

    if (!sig)
        return fail(reason, "missing_signature");
    if (hex_signature(sig, 0, want) != 0)
        return fail(reason, "bad_signature");
    rl_sig_part_t body = {req->body, req->len};
    if (any_key_signs(a, &body, 1, want))
        return 0;
    if (!ts)
        return fail(reason, "bad_signature");
    rl_sig_part_t parts[] = {{ts, strlen(ts)}, {".", 1}, {req->body, req->len}};
    if (!any_key_signs(a, parts, 3, want))
        return fail(reason, "bad_signature");
    if (rl_clock_parse_time(ts, 1, &t) != 0)
        return fail(reason, "bad_timestamp");
    return within_tolerance(a, req->now, t) ? 0 : fail(reason, "expired_timestamp");
}

static int printable_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > MAX_MSG_ID)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (id[i] < 0x21 || id[i] > 0x7e)
            return 0;
    return 1;
}

/* https://www.standardwebhooks.com: "{id}.{timestamp}.{body}", HMAC-SHA256,
 * Base64; webhook-signature is a space-separated list of "v1,<sig>" (several
 * during a rotation; other versions such as v1a are not ours and skipped). */
static int standard_check(const rl_auth_t *a, const rl_auth_req_t *req, const char **reason,
                          const char **msg_id)
{
    const char *id = req->header(req->header_ctx, "webhook-id");
    const char *ts = req->header(req->header_ctx, "webhook-timestamp");
    const char *sigs = req->header(req->header_ctx, "webhook-signature");
    uint8_t mac[RL_SHA256_LEN], sig[RL_SHA256_LEN + 3];
    int64_t t;
    int match = 0;

    if (!id)
        return fail(reason, "missing_id");
    if (!printable_id(id))
        return fail(reason, "bad_id");
    if (!ts)
        return fail(reason, "missing_timestamp");
    if (!sigs)
        return fail(reason, "missing_signature");
    if (rl_clock_parse_time(ts, 0, &t) != 0)
        return fail(reason, "bad_timestamp");
    if (!within_tolerance(a, req->now, t))
        return fail(reason, "expired_timestamp");
    rl_sig_part_t parts[] = {
        {id, strlen(id)}, {".", 1}, {ts, strlen(ts)}, {".", 1}, {req->body, req->len}};
    for (size_t k = 0; k < a->nkeys; k++) {
        if (rl_hmac_sha256(a->keys[k].p, a->keys[k].len, parts, 5, mac) != 0)
            continue;
        for (const char *p = sigs; *p;) {
            p += strspn(p, " ");
            size_t n = strcspn(p, " ");
            if (n > 3 && !memcmp(p, "v1,", 3) &&
                rl_b64_decode(p + 3, n - 3, sig, sizeof(sig)) == RL_SHA256_LEN)
                match |= rl_sig_equal(mac, sig, RL_SHA256_LEN);
            p += n;
        }
    }
    if (!match)
        return fail(reason, "bad_signature");
    if (msg_id)
        *msg_id = id;
    return 0;
}

static int hub_check(const rl_auth_t *a, const rl_auth_req_t *req, const char **reason)
{
    const char *sig = req->header(req->header_ctx, "X-Hub-Signature-256");
    uint8_t want[RL_SHA256_LEN];

    if (!sig)
        return fail(reason, "missing_signature");
    if (hex_signature(sig, 1, want) != 0)
        return fail(reason, "bad_signature");
    rl_sig_part_t body = {req->body, req->len};
    return any_key_signs(a, &body, 1, want) ? 0 : fail(reason, "bad_signature");
}

const char *const *rl_auth_headers(const rl_auth_t *a)
{
    static const char *const none[] = {NULL};
    static const char *const timely[] = {"X-Timely-Signature", "X-Timely-Timestamp", NULL};
    static const char *const standard[] = {"webhook-id", "webhook-timestamp", "webhook-signature",
                                           NULL};
    static const char *const hub[] = {"X-Hub-Signature-256", NULL};

    switch (a->scheme) {
    case S_NONE: return none;
    case S_TOKEN: return NULL;
    case S_TIMELY: return timely;
    case S_STANDARD: return standard;
    case S_HUB: return hub;
    }
    return NULL;
}

int rl_auth_check(const rl_auth_t *a, const rl_auth_req_t *req, const char **reason,
                  const char **msg_id)
{
    if (msg_id)
        *msg_id = NULL;
    switch (a->scheme) {
    case S_NONE: return 0;
    case S_TOKEN: return token_check(a, req, reason);
    case S_TIMELY: return timely_check(a, req, reason);
    case S_STANDARD: return standard_check(a, req, reason, msg_id);
    case S_HUB: return hub_check(a, req, reason);
    }
    return fail(reason, "bad_token"); /* not reached: rl_auth_new knows every scheme */
}
