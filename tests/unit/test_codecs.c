/* test_codecs.c -- table-driven codec tests over tests/fixtures/CODEC/NAME.json.
 *
 * Each body has a sibling NAME.expect.json: {"error": true} when the codec must
 * reject it, else {"events":[{...}]} with, per event, any of "id", "type",
 * "channel_id", "workspace_id", "time" (null = the member is NULL) and "data" (a
 * subset of the event's data, compared with json_equal). Every fixture also gets
 * the generic checks: the family's full schema, "raw", ids stable across two
 * decodes and distinct within one body. Bodies are given to the codecs as text
 * (the fixture's own bytes, or jansson's dump of a changed copy) parsed by
 * rl_jdoc_parse; the events' data is read back from the CloudEvent record.c
 * writes of them. Run with the repository root as cwd. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <glob.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "tmpdir.h"
#include "codec_util.h"
#include "jdoc.h"
#include "record.h"

#define FIXTURES "tests/fixtures"

typedef struct fixture {
    char codec[32];
    char path[256];
} fixture_t;

static const char *const channel_fields[] = {
    "channel_id", "channel_type",  "provider",       "status",      "reason",
    "error_code", "error_message", "error_category", "occurred_at", NULL};
static const char *const message_fields[] = {
    "message_id", "conversation_id", "contact_id",   "direction",  "content_type",  "content",
    "media_url",  "occurred_at",     "sent_by_type", "error_code", "error_message", NULL};
static const char *const other_fields[] = {"channel_id", "occurred_at", NULL};

/* ----------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

/* Every body (not *.expect.json) under tests/fixtures/ * /; fills up to `cap`
 * entries of v (v may be NULL to count) and returns how many there are. */
static size_t scan_fixtures(fixture_t *v, size_t cap)
{
    glob_t g;
    size_t n = 0;

    if (glob(FIXTURES "/*/*.json", 0, NULL, &g) != 0)
        return 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *p = g.gl_pathv[i];
        const char *dir = p + strlen(FIXTURES "/");
        size_t len = strlen(p);
        if (len > 12 && strcmp(p + len - 12, ".expect.json") == 0)
            continue;
        if (v && n < cap) {
            snprintf(v[n].path, sizeof(v[n].path), "%s", p);
            snprintf(v[n].codec, sizeof(v[n].codec), "%.*s", (int)strcspn(dir, "/"), dir);
        }
        n++;
    }
    globfree(&g);
    return n;
}

static json_t *load(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, JSON_DECODE_ANY, &e);

    cr_assert_not_null(j, "%s:%d: %s", path, e.line, e.text);
    return j;
}

/* Decodes `text` with `codec`, its allocations failing after `fail_after`
 * (< 0: never): returns rl_codec_decode's result, events in *l; *allocs (when
 * not NULL) counts the document's allocations during the decode. */
static int decode_text(const char *codec, const char *text, size_t len, long fail_after,
                       long *allocs, rl_event_list_t *l, char *err, size_t errsize)
{
    const rl_codec_t *c = rl_codec_find(codec);
    rl_jdoc_t *d = rl_jdoc_new(NULL, 0);
    char perr[256];
    int rc;

    cr_assert_not_null(c, "no codec named %s", codec);
    cr_assert_not_null(d);
    rl_event_list_init(l);
    err[0] = '\0';
    cr_assert_eq(rl_jdoc_parse(d, text, len, 2000, perr, sizeof(perr)), 0, "%s", perr);
    long before = rl_jdoc_test_allocs(d);
    rl_jdoc_test_fail_after(d, fail_after);
    rc = rl_codec_decode(c, d, NULL, l, err, errsize);
    if (allocs)
        *allocs = rl_jdoc_test_allocs(d) - before;
    rl_jdoc_destroy(d);
    return rc;
}

/* Decodes jansson's dump of `body` with `codec`. */
static int decode(const char *codec, json_t *body, rl_event_list_t *l, char *err, size_t errsize)
{
    char *text = json_dumps(body, JSON_ENCODE_ANY);
    int rc;

    cr_assert_not_null(text);
    rc = decode_text(codec, text, strlen(text), -1, NULL, l, err, errsize);
    free(text);
    return rc;
}

/* The event's `data` as the CloudEvent carries it (a new reference). */
static json_t *data_of(const rl_event_t *ev)
{
    char *ce = rl_record_cloudevent(ev, "test", "test");
    json_error_t e;
    json_t *j, *data;

    cr_assert_not_null(ce);
    j = json_loads(ce, 0, &e);
    cr_assert_not_null(j, "CloudEvent is not JSON: %s: %s", e.text, ce);
    data = json_incref(json_object_get(j, "data"));
    json_decref(j);
    free(ce);
    return data;
}

static void expect_str(const char *path, size_t i, const char *what, json_t *want, const char *got)
{
    if (json_is_null(want)) {
        cr_expect_null(got, "%s: event %zu: %s is \"%s\", expected NULL", path, i, what, got);
        return;
    }
    cr_assert(json_is_string(want), "%s: expect file: %s must be a string or null", path, what);
    cr_expect(got && strcmp(got, json_string_value(want)) == 0,
              "%s: event %zu: %s is \"%s\", expected \"%s\"", path, i, what, got ? got : "(NULL)",
              json_string_value(want));
}

static void expect_event(const char *path, size_t i, json_t *want, const rl_event_t *ev)
{
    const char *key;
    json_t *v;

    json_object_foreach (want, key, v) {
        if (strcmp(key, "id") == 0)
            expect_str(path, i, key, v, ev->id);
        else if (strcmp(key, "type") == 0)
            expect_str(path, i, key, v, ev->type);
        else if (strcmp(key, "channel_id") == 0)
            expect_str(path, i, key, v, ev->channel_id);
        else if (strcmp(key, "workspace_id") == 0)
            expect_str(path, i, key, v, ev->workspace_id);
        else if (strcmp(key, "time") == 0)
            expect_str(path, i, key, v, ev->time);
        else if (strcmp(key, "data") == 0) {
            const char *dk;
            json_t *dv, *data = data_of(ev);
            json_object_foreach (v, dk, dv) {
                json_t *got = json_object_get(data, dk);
                char *g = got ? json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY)
                              : NULL,
                     *w = json_dumps(dv, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
                cr_expect(got && json_equal(got, dv), "%s: event %zu: data.%s is %s, expected %s",
                          path, i, dk, g ? g : "(missing)", w);
                free(g);
                free(w);
            }
            json_decref(data);
        } else {
            cr_assert_fail("%s: expect file: unknown key \"%s\"", path, key);
        }
    }
}

/* Is `raw` the body itself or a value inside it (Whapi: an item of one of its
 * arrays; Meta: an item or a change's value, deeper down)? */
static int raw_comes_from(json_t *raw, json_t *body)
{
    const char *key;
    json_t *v;
    size_t i;

    if (json_equal(raw, body))
        return 1;
    json_object_foreach (body, key, v)
        if (raw_comes_from(raw, v))
            return 1;
    json_array_foreach (body, i, v)
        if (raw_comes_from(raw, v))
            return 1;
    return 0;
}

/* The checks every accepted body gets, whatever its expect file says. */
static void generic_checks(const fixture_t *fx, json_t *body, const char *text, size_t text_len,
                           const rl_event_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const rl_event_t *ev = &l->v[i];
        const char *fam = rl_event_family(ev->type);
        const char *const *fields = strcmp(fam, "channel") == 0   ? channel_fields
                                    : strcmp(fam, "message") == 0 ? message_fields
                                                                  : other_fields;
        cr_assert(ev->id && ev->id[0] && ev->type && ev->type[0] && ev->channel_id,
                  "%s: event %zu: id, type and channel_id must be set", fx->path, i);
        /* A CloudEvent passed through (cloudevents) keeps its own data and types:
         * no normalized schema, no raw, no prefix. test_codec_cloudevents.c checks
         * that its envelope is the one that came. */
        if (ev->ce_rest)
            continue;
        json_t *data = data_of(ev);
        cr_assert(json_is_object(data), "%s: event %zu: data is not an object", fx->path, i);
        for (size_t f = 0; fields[f]; f++)
            cr_expect(json_object_get(data, fields[f]) != NULL,
                      "%s: event %zu (%s): data.%s missing", fx->path, i, ev->type, fields[f]);
        cr_expect(json_object_get(data, "raw") != NULL, "%s: event %zu: no raw", fx->path, i);
        /* Timely: raw is the whole envelope. Whapi: the item, or the body. */
        if (strcmp(fx->codec, "timely") == 0)
            cr_expect(json_equal(json_object_get(data, "raw"), body), "%s: raw is not the envelope",
                      fx->path);
        else
            cr_expect(raw_comes_from(json_object_get(data, "raw"), body),
                      "%s: event %zu: raw is neither an item nor the body", fx->path, i);
        /* raw is the provider's bytes verbatim: a span of the body. */
        const rl_field_t *raw = &ev->fields[ev->nfields - 1];
        cr_expect(!strcmp(raw->name, "raw") && raw->kind == RL_FIELD_JSON &&
                      memmem(text, text_len, raw->str, raw->len) != NULL,
                  "%s: event %zu: raw is not a span of the body", fx->path, i);
        json_decref(data);
        /* Distinct ids within one body: a batch never dedups against itself. */
        for (size_t j = 0; j < i; j++)
            cr_expect(strcmp(l->v[j].id, ev->id) != 0, "%s: events %zu and %zu share id %s",
                      fx->path, j, i, ev->id);
        /* Provider-scoped types are prefixed with the codec's name. */
        if (strcmp(fam, "other") == 0)
            cr_expect(strncmp(ev->type, fx->codec, strlen(fx->codec)) == 0 &&
                          ev->type[strlen(fx->codec)] == '.',
                      "%s: scoped type %s lacks the %s. prefix", fx->path, ev->type, fx->codec);
    }
}

/* ----------------------------------------------------------------------------
 * The table: one test per fixture
 * ------------------------------------------------------------------------- */

static void free_fixtures(struct criterion_test_params *crp)
{
    cr_free(crp->params);
}

ParameterizedTestParameters(codecs, fixture)
{
    size_t n = scan_fixtures(NULL, 0);
    fixture_t *v = cr_malloc(sizeof(*v) * (n ? n : 1));

    scan_fixtures(v, n);
    return cr_make_param_array(fixture_t, v, n, free_fixtures);
}

ParameterizedTest(fixture_t *fx, codecs, fixture)
{
    char expect_path[300], err[256];
    rl_event_list_t l, again;
    json_t *body = load(fx->path), *expect, *events, *want;
    size_t i, text_len;
    char *text = tu_slurp(fx->path, &text_len);
    int rc;

    snprintf(expect_path, sizeof(expect_path), "%.*s.expect.json",
             (int)(strlen(fx->path) - strlen(".json")), fx->path);
    expect = load(expect_path);
    rc = decode_text(fx->codec, text, text_len, -1, NULL, &l, err, sizeof(err));

    if (json_is_true(json_object_get(expect, "error"))) {
        cr_expect_eq(rc, -1, "%s: accepted a body that must be rejected", fx->path);
        cr_expect(err[0] != '\0', "%s: rejected without a reason", fx->path);
        cr_expect(strncmp(err, fx->codec, strlen(fx->codec)) == 0,
                  "%s: reason \"%s\" does not name the codec", fx->path, err);
        goto done;
    }
    cr_assert_eq(rc, 0, "%s: rejected: %s", fx->path, err);
    events = json_object_get(expect, "events");
    cr_assert(json_is_array(events), "%s: expect file has neither events nor error", expect_path);
    cr_assert_eq(l.n, json_array_size(events), "%s: %zu events, expected %zu", fx->path, l.n,
                 json_array_size(events));
    json_array_foreach (events, i, want)
        expect_event(fx->path, i, want, &l.v[i]);
    generic_checks(fx, body, text, text_len, &l);

    /* The same body again (a provider's retry, here as jansson dumps it) must
     * give the same ids. */
    cr_assert_eq(decode(fx->codec, body, &again, err, sizeof(err)), 0);
    cr_assert_eq(again.n, l.n);
    for (i = 0; i < l.n; i++)
        cr_expect_str_eq(again.v[i].id, l.v[i].id, "%s: event %zu: id changed on a retry", fx->path,
                         i);
    rl_event_list_clear(&again);
done:
    rl_event_list_clear(&l);
    json_decref(expect);
    json_decref(body);
    free(text);
}

/* A wrong cwd would make the table empty and the suite pass vacuously. */
Test(codecs, fixtures_present)
{
    fixture_t v[256];
    size_t n = scan_fixtures(v, 256), timely = 0, whapi = 0, meta = 0;

    for (size_t i = 0; i < n && i < 256; i++) {
        timely += strcmp(v[i].codec, "timely") == 0;
        whapi += strcmp(v[i].codec, "whapi") == 0;
        meta += strcmp(v[i].codec, "meta") == 0;
    }
    cr_assert(timely >= 15 && whapi >= 30 && meta >= 15,
              "found %zu timely, %zu whapi and %zu meta fixtures (cwd?)", timely, whapi, meta);
}

/* ----------------------------------------------------------------------------
 * Ids
 * ------------------------------------------------------------------------- */

/* The derived id of a Timely body without event_id, against a value computed
 * outside this code: printf 'message.received\x1fmsg_01HY0001\x1f2026-04-20T09:15:00Z'
 * | sha256sum | cut -c1-32. */
Test(ids, timely_derived_id_is_stable)
{
    char err[256];
    rl_event_list_t l;
    json_t *body = load(FIXTURES "/timely/no-event-id-message.json");

    for (int round = 0; round < 2; round++) {
        cr_assert_eq(decode("timely", body, &l, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(l.n, 1);
        cr_expect_str_eq(l.v[0].id, "timely_eeb6bf679ba27970418c4a030731a327");
        rl_event_list_clear(&l);
    }
    json_decref(body);
}

/* A copy of `v` with every object's keys in reverse order (new reference). */
static json_t *reversed(json_t *v)
{
    json_t *copy, *item;
    const char **keys;
    const char *key;
    size_t i, n = 0;

    if (json_is_array(v)) {
        copy = json_array();
        json_array_foreach (v, i, item)
            json_array_append_new(copy, reversed(item));
        return copy;
    }
    if (!json_is_object(v))
        return json_incref(v);
    copy = json_object();
    keys = malloc(sizeof(*keys) * (json_object_size(v) + 1));
    json_object_foreach (v, key, item)
        keys[n++] = key;
    while (n--)
        json_object_set_new(copy, keys[n], reversed(json_object_get(v, keys[n])));
    free(keys);
    return copy;
}

/* A retry whose keys come in another order still hashes the same: ids use the
 * canonical (sorted) JSON. */
Test(ids, whapi_ids_ignore_key_order)
{
    static const char *files[] = {
        "presences",         "seed-users-post", "chats-post",          "calls-ms",
        "channels-patch-qr", "statuses-all",    "messages-post-batch", "seed-health-init"};
    char path[128], err[256];
    rl_event_list_t a, b;

    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        snprintf(path, sizeof(path), FIXTURES "/whapi/%s.json", files[f]);
        json_t *body = load(path), *copy = reversed(body);
        char *t1 = json_dumps(body, 0), *t2 = json_dumps(copy, 0);
        cr_assert(strcmp(t1, t2) != 0, "%s: the copy should differ in key order", path);
        cr_assert_eq(decode("whapi", body, &a, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(decode("whapi", copy, &b, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(a.n, b.n);
        for (size_t i = 0; i < a.n; i++)
            cr_expect_str_eq(a.v[i].id, b.v[i].id, "%s: event %zu", path, i);
        rl_event_list_clear(&a);
        rl_event_list_clear(&b);
        free(t1);
        free(t2);
        json_decref(copy);
        json_decref(body);
    }
}

/* Items of one batch get distinct ids even when they share a message id. */
Test(ids, whapi_batch_ids_distinct)
{
    char err[256];
    rl_event_list_t l;
    json_t *body = load(FIXTURES "/whapi/statuses-all.json");

    cr_assert_eq(decode("whapi", body, &l, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(l.n, 7);
    /* Items 0 and 1 are two statuses of the same message. */
    json_t *d0 = data_of(&l.v[0]), *d1 = data_of(&l.v[1]);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d0, "raw"), "id")),
                     json_string_value(json_object_get(json_object_get(d1, "raw"), "id")));
    json_decref(d0);
    json_decref(d1);
    for (size_t i = 0; i < l.n; i++)
        for (size_t j = i + 1; j < l.n; j++)
            cr_expect_str_neq(l.v[i].id, l.v[j].id);
    rl_event_list_clear(&l);
    json_decref(body);
}

/* A health body differing only in uptime is another event. */
Test(ids, whapi_health_uptime_changes_id)
{
    char err[256];
    rl_event_list_t a, b;
    json_t *body = load(FIXTURES "/whapi/health-auth.json");
    json_t *later = json_deep_copy(body);

    json_object_set_new(json_object_get(later, "health"), "uptime", json_integer(96));
    cr_assert_eq(decode("whapi", body, &a, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(decode("whapi", later, &b, err, sizeof(err)), 0, "%s", err);
    cr_expect_str_neq(a.v[0].id, b.v[0].id);
    cr_expect_str_eq(b.v[0].time, "2024-04-22T08:36:19Z");
    rl_event_list_clear(&a);
    rl_event_list_clear(&b);
    json_decref(later);
    json_decref(body);
}

Test(ids, derive_id_vector)
{
    /* printf 'a\x1fb' | sha256sum | cut -c1-32 */
    const char *parts[] = {"a", "b"};
    const char *with_null[] = {"a", NULL, "c"}, *with_empty[] = {"a", "", "c"};
    char *id = cu_derive_id("x_", parts, 2);
    char *n1 = cu_derive_id("p_", with_null, 3), *n2 = cu_derive_id("p_", with_empty, 3);

    cr_expect_str_eq(id, "x_f04cdced9736a69da6103f08a4daaf8c");
    cr_expect_eq(strlen(n1), 2 + 32);
    cr_expect_str_eq(n1, n2, "a NULL part hashes as \"\"");
    free(id);
    free(n1);
    free(n2);
}

/* ----------------------------------------------------------------------------
 * Bodies the fixtures cannot express
 * ------------------------------------------------------------------------- */

Test(codecs, null_root_and_tiny_errstr)
{
    static const rl_codec_in_t none = {0};
    char err[4] = "xyz";
    rl_event_list_t l;

    for (size_t i = 0; rl_codecs[i]; i++) {
        rl_event_list_init(&l);
        cr_expect_eq(rl_codecs[i]->decode(NULL, &none, &l, err, sizeof(err)), -1);
        cr_expect_eq(strlen(err), 3, "truncated, NUL-terminated");
        cr_expect_eq(rl_codecs[i]->decode(NULL, &none, &l, NULL, 0), -1);
        cr_expect_eq(l.n, 0);
        rl_event_list_clear(&l);
    }
}

/* Every allocation of the document a decode makes is failed in turn: the
 * decode must answer -1 or RL_CODEC_NOMEM with a reason (never crash, never
 * report success), and ASan checks that nothing leaks on those paths. */
Test(codecs, out_of_memory)
{
    fixture_t v[256];
    size_t n = scan_fixtures(v, 256), len;
    char err[256];
    rl_event_list_t l;
    long allocs;

    for (size_t f = 0; f < n && f < 256; f++) {
        char *text = tu_slurp(v[f].path, &len);
        for (long fail_at = 0;; fail_at++) {
            int rc = decode_text(v[f].codec, text, len, fail_at, &allocs, &l, err, sizeof(err));
            rl_event_list_clear(&l);
            if (allocs <= fail_at) /* nothing left to fail */
                break;
            cr_expect(rc == -1 || rc == RL_CODEC_NOMEM,
                      "%s: allocation %ld failed yet decode answered %d", v[f].path, fail_at, rc);
            cr_expect(err[0] != '\0', "%s: no reason", v[f].path);
            if (rc == RL_CODEC_NOMEM)
                cr_expect(strstr(err, "out of memory"), "%s: %s", v[f].path, err);
        }
        free(text);
    }
}

/* A body whose root is a scalar is refused with a reason, not mistaken. */
Test(codecs, scalar_root)
{
    static const char *const bodies[] = {"1", "\"x\"", "null", "true", "[]", "[{}]"};
    char err[256];
    rl_event_list_t l;

    for (size_t i = 0; rl_codecs[i]; i++)
        for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]) && !rl_codecs[i]->setup; b++) {
            /* (A codec with settings decodes nothing without them: its own tests.) */
            cr_expect_eq(decode_text(rl_codecs[i]->name, bodies[b], strlen(bodies[b]), -1, NULL, &l,
                                     err, sizeof(err)),
                         -1);
            cr_expect(strstr(err, "not a JSON object"), "%s on %s: %s", rl_codecs[i]->name,
                      bodies[b], err);
            rl_event_list_clear(&l);
        }
}

/* ----------------------------------------------------------------------------
 * Registry, families, list
 * ------------------------------------------------------------------------- */

Test(registry, find)
{
    size_t n = 0;

    while (rl_codecs[n])
        n++;
    cr_expect_geq(n, 3);
    cr_expect_str_eq(rl_codec_find("timely")->name, "timely");
    cr_expect_str_eq(rl_codec_find("cloudevents")->name, "cloudevents");
    cr_expect_str_eq(rl_codec_find("whapi")->name, "whapi");
    cr_expect_str_eq(rl_codec_find("generic")->name, "generic");
    cr_expect_str_eq(rl_codec_find("meta")->name, "meta");
    cr_expect_null(rl_codec_find("nosuch"));
    cr_expect_null(rl_codec_find(""));
    cr_expect_null(rl_codec_find(NULL));
    for (size_t i = 0; i < n; i++)
        cr_expect(rl_codecs[i]->help && rl_codecs[i]->help[0] && rl_codecs[i]->decode);
}

Test(registry, family)
{
    cr_expect_str_eq(rl_event_family("channel.connected"), "channel");
    cr_expect_str_eq(rl_event_family("message.read"), "message");
    cr_expect_str_eq(rl_event_family("whapi.presences.post"), "other");
    cr_expect_str_eq(rl_event_family("timely.channel.connected"), "other");
    cr_expect_str_eq(rl_event_family("channel"), "other");
    cr_expect_str_eq(rl_event_family("channels.post"), "other");
    cr_expect_str_eq(rl_event_family(""), "other");
    cr_expect_str_eq(rl_event_family(NULL), "other");
}

Test(list, push_clear_push)
{
    rl_event_list_t l;

    rl_event_list_init(&l);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 100; i++) {
            rl_event_t *ev = rl_event_list_push(&l);
            cr_assert_not_null(ev);
            cr_assert_null(ev->id);
            cr_assert_null(ev->fields);
            ev->id = strdup("x");
            ev->fields = calloc(1, sizeof(rl_field_t));
            ev->nfields = 1;
        }
        cr_expect_eq(l.n, 100);
        rl_event_list_clear(&l);
        cr_expect_eq(l.n, 0);
    }
    rl_event_list_clear(&l); /* clearing an empty list is fine */
}

/* ----------------------------------------------------------------------------
 * Times
 * ------------------------------------------------------------------------- */

/* cu_time_unix of the JSON text `v`; buf, or NULL when it fails. */
static const char *unix_time(const char *v, char *buf)
{
    rl_jdoc_t *d = rl_jdoc_new(NULL, 0);
    int rc;

    cr_assert(d && rl_jdoc_parse(d, v, strlen(v), 8, NULL, 0) == 0, "%s", v);
    rc = cu_time_unix(d, 0, buf, CU_TIME_SIZE);
    rl_jdoc_destroy(d);
    return rc == 0 ? buf : NULL;
}

Test(time, unix_seconds_milliseconds_strings)
{
    char b[CU_TIME_SIZE];

    cr_expect_str_eq(unix_time("1712995245", b), "2024-04-13T08:00:45Z");
    cr_expect_str_eq(unix_time("\"1712995378\"", b), "2024-04-13T08:02:58Z");
    cr_expect_str_eq(unix_time("1712995400123", b), "2024-04-13T08:03:20.123Z");
    cr_expect_str_eq(unix_time("1712995400000", b), "2024-04-13T08:03:20Z");
    cr_expect_str_eq(unix_time("0", b), "1970-01-01T00:00:00Z");
    cr_expect_null(unix_time("-1", b));
    cr_expect_null(unix_time("\"\"", b));
    cr_expect_null(unix_time("\"12a\"", b));
    cr_expect_null(unix_time("\"-5\"", b));
    cr_expect_null(unix_time("\"99999999999999999999\"", b));
    cr_expect_null(unix_time("1712995245.5", b));
    cr_expect_null(unix_time("true", b));
    cr_expect_null(unix_time("[1712995245]", b));
    cr_expect_null(unix_time("99999999999999999999", b), "too big for a long long");
}

Test(time, rfc3339)
{
    char b[CU_TIME_SIZE];

    cr_assert_eq(cu_time_rfc3339("2026-04-19T10:00:00Z", b, sizeof(b)), 0);
    cr_expect_str_eq(b, "2026-04-19T10:00:00Z");
    cr_assert_eq(cu_time_rfc3339("2026-04-19T11:32:10.250+01:00", b, sizeof(b)), 0);
    cr_expect_str_eq(b, "2026-04-19T10:32:10.250Z");
    cr_assert_eq(cu_time_rfc3339("2026-12-31T21:30:00-03:00", b, sizeof(b)), 0);
    cr_expect_str_eq(b, "2027-01-01T00:30:00Z");
    cr_assert_eq(cu_time_rfc3339("2024-02-29t00:00:00z", b, sizeof(b)), 0);
    cr_expect_str_eq(b, "2024-02-29T00:00:00Z");
    cr_expect_eq(cu_time_rfc3339("2026-02-30T00:00:00Z", b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339("2026-04-19T10:00:00", b, sizeof(b)), -1, "no zone");
    cr_expect_eq(cu_time_rfc3339("2026-04-19 10:00:00Z", b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339("2026-04-19T24:00:00Z", b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339("2026-04-19T10:00:00.Z", b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339("2026-04-19T10:00:00Zjunk", b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339("2026-04-19T10:00:00+0", b, sizeof(b)), -1, "short offset");
    cr_expect_eq(cu_time_rfc3339("2026-04-19T10:00:00+01", b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339("2026-04-19T10:00:00+01:0", b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339("2026-04-19T10:00:00+01:00x", b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339("1969-12-31T23:59:59Z", b, sizeof(b)), -1, "before the epoch");
    cr_expect_eq(cu_time_rfc3339("yesterday", b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339(NULL, b, sizeof(b)), -1);
    cr_expect_eq(cu_time_rfc3339("2026-04-19T10:00:00Z", b, 10), -1, "buffer too small");
}
