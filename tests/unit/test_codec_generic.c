/* test_codec_generic.c -- codec = generic (codecs/codec_generic.c): a provider
 * described by JSON Pointers. The main check configures Timely as a generic
 * source and decodes every Timely fixture with both codecs: the same types,
 * ids, channels and workspaces. Run with the repository root as cwd. */
#include <criterion/criterion.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "tmpdir.h"
#include "jdoc.h"

/* Timely's mapping, written as a user would configure it. */
static rl_source_conf_t timely_as_generic(void)
{
    return (rl_source_conf_t){
        .name = "timely",
        .codec = "generic",
        .items = "",
        .id = "/event_id",
        .type = "/event",
        .channel = "/data/channel_id",
        .time = "/timestamp",
        .workspace = "/workspace_id",
        .type_map = "channel.connected=channel.connected, channel.disconnected = "
                    "channel.disconnected,channel.error=channel.error,"
                    "message.received=message.received,message.sent=message.sent,"
                    "message.delivered=message.delivered,message.read=message.read,"
                    "message.failed=message.failed",
    };
}

static void *setup(const rl_source_conf_t *sc)
{
    const rl_codec_t *c = rl_codec_find("generic");
    const char *key = NULL;
    char err[256] = "";
    void *conf;

    cr_assert_not_null(c);
    conf = c->setup(sc, &key, err, sizeof(err));
    cr_assert_not_null(conf, "setup: %s (key %s)", err, key ? key : "-");
    return conf;
}

static void teardown_conf(void *conf)
{
    rl_codec_find("generic")->teardown(conf);
}

/* Decodes `body` with codec `name` (settings conf, may be NULL) into l. */
static int decode(const char *name, const void *conf, const char *body, size_t len,
                  rl_event_list_t *l, char *err, size_t errsize)
{
    rl_codec_in_t in = {.body = body, .len = len, .conf = conf};
    rl_jdoc_t *d = rl_jdoc_new(NULL, 0);
    char perr[256];
    int rc;

    cr_assert_not_null(d);
    rl_event_list_init(l);
    err[0] = '\0';
    cr_assert_eq(rl_jdoc_parse(d, body, len, 64, perr, sizeof(perr)), 0, "%s", perr);
    rc = rl_codec_decode(rl_codec_find(name), d, &in, l, err, errsize);
    rl_jdoc_destroy(d);
    return rc;
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

Test(generic, timely_configured_as_generic_decodes_like_timely)
{
    rl_source_conf_t sc = timely_as_generic();
    void *conf = setup(&sc);
    glob_t g;
    size_t compared = 0, ids = 0;

    cr_assert_eq(glob("tests/fixtures/timely/*.json", 0, NULL, &g), 0);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *p = g.gl_pathv[i];
        size_t len, plen = strlen(p);
        rl_event_list_t a, b;
        char ea[256], eb[256];

        if (plen > 12 && !strcmp(p + plen - 12, ".expect.json"))
            continue;
        char *body = tu_slurp(p, &len);
        int ra = decode("timely", NULL, body, len, &a, ea, sizeof(ea));
        int rb = decode("generic", conf, body, len, &b, eb, sizeof(eb));
        if (ra == 0) {
            cr_expect_eq(rb, 0, "%s: timely took it, generic said %s", p, eb);
            cr_expect_eq(a.n, b.n, "%s", p);
            for (size_t e = 0; rb == 0 && e < a.n && e < b.n; e++) {
                const rl_event_t *x = &a.v[e], *y = &b.v[e];
                cr_expect_str_eq(x->type, y->type, "%s", p);
                cr_expect(same(x->channel_id, y->channel_id), "%s: channel %s vs %s", p,
                          x->channel_id, y->channel_id);
                cr_expect(same(x->workspace_id, y->workspace_id), "%s: workspace", p);
                cr_expect_str_eq(rl_event_family(x->type), rl_event_family(y->type), "%s", p);
                /* Timely derives a missing id from its own fields, generic from the
                 * whole item: equal only where the provider gave one. */
                if (!x->id_derived) {
                    cr_expect_str_eq(x->id, y->id, "%s", p);
                    ids++;
                }
                cr_expect_eq(x->id_derived, y->id_derived, "%s", p);
            }
            compared++;
        }
        rl_event_list_clear(&a);
        rl_event_list_clear(&b);
        free(body);
    }
    globfree(&g);
    cr_expect_geq(compared, 10, "only %zu Timely fixtures compared", compared);
    cr_expect_geq(ids, 10, "only %zu ids compared", ids);
    teardown_conf(conf);
}

Test(generic, items_map_types_and_derive_missing_ids)
{
    rl_source_conf_t sc = {.name = "acme",
                           .codec = "generic",
                           .items = "/batch/events",
                           .id = "/uid",
                           .type = "/kind",
                           .channel = "/line/number",
                           .time = "/at",
                           .workspace = "/~1account",
                           .type_map = "up=channel.connected,down=channel.disconnected,"
                                       "in=message.received"};
    static const char body[] =
        "{\"/account\":\"ignored at the root\",\"batch\":{\"events\":["
        "{\"uid\":\"e1\",\"kind\":\"up\",\"line\":{\"number\":42},\"at\":1700000000,"
        "\"/account\":\"acc-1\"},"
        "{\"uid\":7,\"kind\":\"in\",\"line\":{\"number\":\"l-2\"},\"at\":\"2026-01-02T03:04:05+01:"
        "00\"},"
        "{\"kind\":\"weird thing\",\"line\":{\"number\":\"l-3\"}},"
        "{\"kind\":\"weird thing\",\"line\":{\"number\":\"l-4\"}}]}}";
    void *conf = setup(&sc);
    rl_event_list_t l, again;
    char err[256];

    cr_assert_eq(decode("generic", conf, body, sizeof(body) - 1, &l, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(l.n, 4);
    cr_expect_str_eq(l.v[0].id, "e1");
    cr_expect_str_eq(l.v[0].type, "channel.connected");
    cr_expect_str_eq(l.v[0].channel_id, "42");
    cr_expect_str_eq(l.v[0].workspace_id, "acc-1");
    cr_expect_str_eq(l.v[0].time, "2023-11-14T22:13:20Z");
    cr_expect_str_eq(l.v[1].id, "7");
    cr_expect_str_eq(l.v[1].type, "message.received");
    cr_expect_str_eq(l.v[1].time, "2026-01-02T02:04:05Z");
    cr_expect_null(l.v[1].workspace_id);
    cr_expect_str_eq(l.v[2].type, "acme.weird thing");
    cr_expect_str_eq(rl_event_family(l.v[2].type), "other");
    cr_expect_eq(strncmp(l.v[2].id, "acme_", 5), 0, "%s", l.v[2].id);
    cr_expect_eq(strlen(l.v[2].id), 5 + 32);
    cr_expect(l.v[2].id_derived && !l.v[0].id_derived);
    cr_expect_str_neq(l.v[2].id, l.v[3].id, "two items, two ids");
    cr_expect_null(l.v[2].time);
    /* A channel event's status comes from its type; raw is the item. */
    int status = -1, raw = -1;
    for (size_t f = 0; f < l.v[0].nfields; f++) {
        if (!strcmp(l.v[0].fields[f].name, "status"))
            status = (int)f;
        if (!strcmp(l.v[0].fields[f].name, "raw"))
            raw = (int)f;
    }
    cr_assert(status >= 0 && raw >= 0);
    cr_expect_eq(l.v[0].fields[status].len, 9);
    cr_expect_eq(strncmp(l.v[0].fields[status].str, "connected", 9), 0);
    cr_expect_eq(strncmp(l.v[0].fields[raw].str, "{\"uid\":\"e1\"", 11), 0);

    cr_assert_eq(decode("generic", conf, body, sizeof(body) - 1, &again, err, sizeof(err)), 0);
    for (size_t i = 0; i < l.n; i++)
        cr_expect_str_eq(l.v[i].id, again.v[i].id, "a retried body repeats its ids");
    rl_event_list_clear(&l);
    rl_event_list_clear(&again);
    teardown_conf(conf);
}

Test(generic, refuses_what_its_pointers_do_not_find)
{
    rl_source_conf_t sc = {.name = "acme", .codec = "generic", .items = "/events", .type = "/t"};
    static const struct {
        const char *body, *why;
    } cases[] = {
        {"{\"events\":{}}", "no array at /events"},
        {"{}", "no array at /events"},
        {"{\"events\":[{\"t\":\"a\"},{\"x\":1}]}", "item 1 has no string at /t"},
        {"{\"events\":[{\"t\":\"\"}]}", "item 0 has no string at /t"},
        {"{\"events\":[{\"t\":[1]}]}", "item 0 has no string at /t"},
        {"[1]", "no array at /events"},
    };
    void *conf = setup(&sc);
    rl_event_list_t l;
    char err[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_expect_eq(
            decode("generic", conf, cases[i].body, strlen(cases[i].body), &l, err, sizeof(err)), -1,
            "%s", cases[i].body);
        cr_expect(strstr(err, cases[i].why), "%s: %s", cases[i].body, err);
        rl_event_list_clear(&l);
    }
    /* An empty items array decodes to no events (ingest answers 400 for that). */
    cr_expect_eq(decode("generic", conf, "{\"events\":[]}", 13, &l, err, sizeof(err)), 0);
    cr_expect_eq(l.n, 0);
    rl_event_list_clear(&l);
    teardown_conf(conf);
}

Test(generic, setup_names_the_key_at_fault)
{
    static const struct {
        const char *type, *map, *key, *why;
    } cases[] = {
        {"", "", "type", "needs 'type'"},
        {"/t", "up", "type_map", "'up' is not value=type"},
        {"/t", "up=channel.up", "type_map", "'channel.up' is not a normalized type"},
        {"/t", "=channel.connected", "type_map", "no provider value"},
        {"/t", "a=message.sent,a=message.read", "type_map", "'a' is mapped twice"},
    };
    const rl_codec_t *c = rl_codec_find("generic");

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rl_source_conf_t sc = {.name = "acme",
                               .codec = "generic",
                               .type = (char *)cases[i].type,
                               .type_map = (char *)cases[i].map};
        const char *key = NULL;
        char err[256] = "";
        cr_expect_null(c->setup(&sc, &key, err, sizeof(err)), "%s", cases[i].map);
        cr_expect(key && !strcmp(key, cases[i].key), "%s: key %s", cases[i].map, key);
        cr_expect(strstr(err, cases[i].why), "%s: %s", cases[i].map, err);
    }
    /* Spaces around pairs and values, and a trailing comma, are fine. */
    rl_source_conf_t ok = {.name = "acme",
                           .codec = "generic",
                           .type = "/t",
                           .type_map = " a = message.sent ,b=message.read,"};
    void *conf = setup(&ok);
    rl_event_list_t l;
    char err[256];
    cr_assert_eq(decode("generic", conf, "{\"t\":\"a\"}", 9, &l, err, sizeof(err)), 0, "%s", err);
    cr_expect_str_eq(l.v[0].type, "message.sent");
    rl_event_list_clear(&l);
    teardown_conf(conf);
}
