/* test_codec_meta.c -- codec = meta (codecs/codec_meta.c): the subscription
 * handshake, which the fixtures of test_codecs.c cannot express, and decoding
 * with the source's settings in place. Run with the repository root as cwd. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "jdoc.h"
#include "tmpdir.h"

#define TOKEN "a-verify-token-1f8e"
#define CHALLENGE "1158201444"

/* A query: NULL-terminated name, value pairs. */
typedef struct query {
    const char *kv[8];
} query_t;

static const char *query_arg(void *ctx, const char *name)
{
    const query_t *q = ctx;

    for (size_t i = 0; q->kv[i]; i += 2)
        if (strcmp(q->kv[i], name) == 0)
            return q->kv[i + 1];
    return NULL;
}

static void *setup(const char *verify_token)
{
    static rl_source_conf_t sc;
    const rl_codec_t *c = rl_codec_find("meta");
    const char *key = NULL;
    char err[256] = "";
    void *conf;

    cr_assert_not_null(c);
    cr_assert_not_null(c->setup);
    cr_assert_not_null(c->handshake);
    sc = (rl_source_conf_t){.name = "meta", .codec = "meta", .verify_token = (char *)verify_token};
    conf = c->setup(&sc, &key, err, sizeof(err));
    cr_assert_not_null(conf, "setup: %s", err);
    return conf;
}

/* The handshake's status for query q; its body in *body (malloc'd). */
static int handshake(void *conf, query_t *q, char **body)
{
    rl_handshake_t hs = {0};

    cr_assert_eq(rl_codec_find("meta")->handshake(conf, query_arg, q, &hs), 0);
    cr_assert_not_null(hs.body, "every answer says something");
    *body = hs.body;
    return hs.status;
}

Test(meta_handshake, good_token_answers_the_challenge)
{
    void *conf = setup(TOKEN);
    query_t q = {
        {"hub.mode", "subscribe", "hub.verify_token", TOKEN, "hub.challenge", CHALLENGE, NULL}};
    char *body;

    cr_expect_eq(handshake(conf, &q, &body), 200);
    cr_expect_str_eq(body, CHALLENGE, "exactly the challenge, nothing around it");
    free(body);
    rl_codec_find("meta")->teardown(conf);
}

Test(meta_handshake, refusals)
{
    static const struct {
        const char *mode, *token, *challenge;
        int status;
    } cases[] = {
        {"subscribe", "a-verify-token-1f8f", CHALLENGE, 403}, /* one byte off */
        {"subscribe", TOKEN "x", CHALLENGE, 403},             /* longer */
        {"subscribe", "a-verify-token", CHALLENGE, 403},      /* a prefix */
        {"subscribe", "", CHALLENGE, 403},
        {"subscribe", NULL, CHALLENGE, 403},
        {"unsubscribe", TOKEN, CHALLENGE, 403},
        {NULL, TOKEN, CHALLENGE, 403},
        {"subscribe", TOKEN, NULL, 400},
        {"subscribe", TOKEN, "", 400},
    };
    void *conf = setup(TOKEN);
    char *body;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        query_t q = {{NULL}};
        size_t n = 0;
        if (cases[i].mode) {
            q.kv[n++] = "hub.mode";
            q.kv[n++] = cases[i].mode;
        }
        if (cases[i].token) {
            q.kv[n++] = "hub.verify_token";
            q.kv[n++] = cases[i].token;
        }
        if (cases[i].challenge) {
            q.kv[n++] = "hub.challenge";
            q.kv[n++] = cases[i].challenge;
        }
        cr_expect_eq(handshake(conf, &q, &body), cases[i].status, "case %zu: %s", i, body);
        cr_expect(body[0] && strstr(body, CHALLENGE) == NULL && strstr(body, "token-1f") == NULL,
                  "case %zu: a reason, without echoing the challenge or a token: %s", i, body);
        free(body);
    }
    rl_codec_find("meta")->teardown(conf);
}

/* Without a verify_token nothing can subscribe, not even an empty token. */
Test(meta_handshake, no_token_configured)
{
    const char *unset[] = {"", NULL};

    for (size_t i = 0; i < 2; i++) {
        void *conf = setup(unset[i]);
        query_t q = {
            {"hub.mode", "subscribe", "hub.verify_token", "", "hub.challenge", CHALLENGE, NULL}};
        char *body;
        cr_expect_eq(handshake(conf, &q, &body), 403);
        cr_expect(strstr(body, "verify_token"), "%s", body);
        free(body);
        rl_codec_find("meta")->teardown(conf);
    }
}

/* rl_codec_check, as --check-config does: an empty verify_token is allowed. */
Test(meta_handshake, check_config)
{
    rl_source_conf_t sc = {.name = "meta", .codec = "meta", .verify_token = ""};
    const char *key = NULL;
    char err[256] = "";

    cr_expect_eq(rl_codec_check(rl_codec_find("meta"), &sc, &key, err, sizeof(err)), 0, "%s", err);
    cr_expect(rl_codec_owns_key("verify_token"));
}

/* Decoding with the source's settings, as ingest calls it. */
Test(meta_decode, with_settings)
{
    void *conf = setup(TOKEN);
    rl_codec_in_t in = {.conf = conf};
    rl_jdoc_t *d = rl_jdoc_new(NULL, 0);
    rl_event_list_t l;
    size_t len;
    char err[256] = "", *text = tu_slurp("tests/fixtures/meta/statuses-all.json", &len);

    rl_event_list_init(&l);
    in.body = text;
    in.len = len;
    cr_assert_eq(rl_jdoc_parse(d, text, len, 64, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(rl_codec_decode(rl_codec_find("meta"), d, &in, &l, err, sizeof(err)), 0, "%s",
                 err);
    cr_expect_eq(l.n, 4);
    cr_expect_str_eq(l.v[3].type, "message.failed");
    cr_expect(l.v[3].id_derived);
    rl_event_list_clear(&l);
    rl_jdoc_destroy(d);
    free(text);
    rl_codec_find("meta")->teardown(conf);
}
