/* test_auth.c -- per-source request authentication (relay/auth.c), tested
 * against auth.h: schemes none and token; for the Authorization header the token
 * is a bearer credential ("Bearer <secret>", RFC 6750), for any other header
 * the exact value. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth.h"

/* Request headers as name/value pairs, NULL-terminated; looked up
 * case-insensitively, as rl_header_fn promises. */
typedef struct req {
    const char *h[8];
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

Test(auth, schemes)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const auth_case_t *c = &cases[i];
        rl_source_conf_t src = {.name = "s",
                                .codec = "timely",
                                .auth = (char *)c->auth,
                                .secret = SECRET,
                                .token_header = (char *)c->token_header,
                                .ack = "wal"};
        const char *reason = NULL;
        int rc = rl_auth_check(&src, lookup, (void *)&c->req, &reason);
        cr_expect_eq(rc, c->rc, "%s: rc %d, expected %d (reason %s)", c->what, rc, c->rc,
                     reason ? reason : "-");
        if (c->rc != 0 && rc != 0) {
            cr_assert_not_null(reason, "%s: no reason", c->what);
            cr_expect_str_eq(reason, c->reason, "%s", c->what);
            cr_expect_null(strstr(reason, "s3cret"), "%s: reason shows the secret", c->what);
        }
    }
}

Test(auth, unknown_scheme_fails_closed)
{
    rl_source_conf_t src = {.name = "s",
                            .codec = "timely",
                            .auth = "hmac",
                            .secret = SECRET,
                            .token_header = "Authorization",
                            .ack = "wal"};
    req_t req = {{"Authorization", "Bearer " SECRET, NULL}};
    const char *reason = NULL;
    cr_expect_eq(rl_auth_check(&src, lookup, &req, &reason), -1);
    cr_expect_not_null(reason);
}
