/* test_codec_cloudevents.c -- the cloudevents codec with what fixtures cannot
 * carry: a Content-Type and headers (the binary mode), batches, and the
 * CloudEvent relay writes back.
 *
 * Each case is a request (Content-Type, ce-* headers, body) and either the
 * reason it is refused with (a part of it: the attribute it names) or the
 * channel of each event and, for the binary mode, the CloudEvent relay must
 * write. For structured events the expected CloudEvent is the input itself
 * (without its null members) plus relay's channelid and provider where the
 * event has none: nothing else may be added, changed or lost. */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "jdoc.h"
#include "record.h"

#define MAXH 24

typedef struct ce_case {
    const char *name;
    const char *ct;          /* Content-Type, NULL: none */
    const char *hdr[MAXH];   /* name, value, ..., NULL */
    const char *body;        /* NULL: empty */
    size_t len;              /* 0: strlen(body) */
    const char *err;         /* refused: a part of the reason; NULL: accepted */
    const char *channels[4]; /* accepted: each event's channel, NULL after the last */
    const char *want;        /* binary: the CloudEvent; NULL: the structured input's */
} ce_case_t;

/* ---- a request's headers --------------------------------------------------- */

static const char *lookup(void *ctx, const char *name)
{
    const char *const *h = ctx;

    for (size_t i = 0; h[i]; i += 2)
        if (!strcasecmp(h[i], name))
            return h[i + 1];
    return NULL;
}

static void each(void *ctx, int (*fn)(void *arg, const char *name, const char *value), void *arg)
{
    const char *const *h = ctx;

    for (size_t i = 0; h[i]; i += 2)
        if (fn(arg, h[i], h[i + 1]))
            return;
}

/* Decodes the case as ingest does: a body that is not JSON reaches the codec
 * with no document. */
static int decode_case(const ce_case_t *t, rl_event_list_t *l, char *err, size_t errsize)
{
    const rl_codec_t *c = rl_codec_find("cloudevents");
    size_t len = t->len ? t->len : t->body ? strlen(t->body) : 0;
    rl_codec_in_t in = {.body = t->body,
                        .len = len,
                        .content_type = t->ct,
                        .header = lookup,
                        .each_header = each,
                        .header_ctx = (void *)t->hdr};
    rl_jdoc_t *d = rl_jdoc_new(NULL, 0);
    int rc;

    cr_assert(c && d);
    rl_event_list_init(l);
    err[0] = '\0';
    rc = rl_jdoc_parse(d, t->body ? t->body : "", len, 64, NULL, 0);
    rc = rl_codec_decode(c, rc == 0 ? d : NULL, &in, l, err, errsize);
    rl_jdoc_destroy(d);
    return rc;
}

static json_t *parse(const char *what, const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

    cr_assert_not_null(j, "%s: not JSON (%s): %s", what, e.text, text);
    return j;
}

/* The CloudEvent a structured input must come out as. */
static json_t *expected_of(json_t *in, const char *channel)
{
    json_t *want = json_object(), *v;
    const char *k;

    json_object_foreach (in, k, v)
        if (!json_is_null(v))
            json_object_set(want, k, v);
    if (!json_object_get(in, "channelid") && *channel)
        json_object_set_new(want, "channelid", json_string(channel));
    if (!json_object_get(in, "provider"))
        json_object_set_new(want, "provider", json_string("cloudevents"));
    return want;
}

static void run_case(const ce_case_t *t)
{
    char err[256];
    rl_event_list_t l;
    int rc = decode_case(t, &l, err, sizeof(err));
    size_t n = 0;

    if (t->err) {
        cr_expect_eq(rc, -1, "%s: accepted, must be refused", t->name);
        cr_expect(strncmp(err, "cloudevents: ", 13) == 0 && strstr(err, t->err),
                  "%s: reason \"%s\" does not say \"%s\"", t->name, err, t->err);
        goto done;
    }
    cr_assert_eq(rc, 0, "%s: refused: %s", t->name, err);
    while (n < 4 && t->channels[n])
        n++;
    cr_assert_eq(l.n, n, "%s: %zu events, want %zu", t->name, l.n, n);
    json_t *in = t->want ? NULL : parse(t->name, t->body);
    for (size_t i = 0; i < l.n; i++) {
        const rl_event_t *ev = &l.v[i];
        char *ce = rl_record_cloudevent(ev, "cesrc", "cloudevents");
        json_t *got, *want, *src = json_is_array(in) ? json_array_get(in, i) : in;

        cr_assert_not_null(ce);
        got = parse(t->name, ce);
        want = t->want ? parse(t->name, t->want) : expected_of(src, t->channels[i]);
        cr_expect_str_eq(ev->channel_id, t->channels[i], "%s: event %zu", t->name, i);
        cr_expect_null(ev->workspace_id, "%s", t->name);
        cr_expect_null(ev->fields, "%s: ce_rest carries the data", t->name);
        cr_expect_eq(ev->id_derived, 0, "%s: the producer's id", t->name);
        char *w = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);
        cr_expect(json_equal(got, want), "%s: event %zu:\n got  %s\n want %s", t->name, i, ce, w);
        /* The envelope comes first, in relay's order. */
        cr_expect(strncmp(ce, "{\"specversion\":\"1.0\",\"id\":", 26) == 0, "%s: %s", t->name, ce);
        free(w);
        json_decref(got);
        json_decref(want);
        free(ce);
    }
    json_decref(in);
done:
    rl_event_list_clear(&l);
}

static void run_table(const ce_case_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        run_case(&t[i]);
}

#define RUN(table) run_table(table, sizeof(table) / sizeof(table[0]))

/* The four attributes every binary-mode case needs, then its own. */
#define REQ(id) "ce-specversion", "1.0", "ce-id", id, "ce-source", "/sensors/9", "ce-type", "t.x"

/* ---- binary mode ----------------------------------------------------------- */

Test(cloudevents, binary_mode)
{
    static const ce_case_t t[] = {
        {.name = "JSON data, verbatim",
         .ct = "application/json; charset=utf-8",
         .hdr = {REQ("b1"), "ce-time", "2026-04-19T12:00:00+02:00", "ce-subject", "room-1"},
         .body = " {\"temp\": 21.5, \"unit\": \"C\"}\n",
         .channels = {"room-1"},
         .want = "{\"specversion\":\"1.0\",\"id\":\"b1\",\"source\":\"/sensors/9\",\"type\":"
                 "\"t.x\",\"time\":\"2026-04-19T12:00:00+02:00\",\"subject\":\"room-1\","
                 "\"datacontenttype\":\"application/json; charset=utf-8\",\"channelid\":"
                 "\"room-1\",\"provider\":\"cloudevents\",\"data\":{\"temp\":21.5,\"unit\":"
                 "\"C\"}}"},
        {.name = "+json data",
         .ct = "application/vnd.example+json",
         .hdr = {REQ("b2")},
         .body = "[1,2]",
         .channels = {""},
         .want = "{\"specversion\":\"1.0\",\"id\":\"b2\",\"source\":\"/sensors/9\",\"type\":"
                 "\"t.x\",\"datacontenttype\":\"application/vnd.example+json\",\"provider\":"
                 "\"cloudevents\",\"data\":[1,2]}"},
        {.name = "text data as a string",
         .ct = "text/plain",
         .hdr = {REQ("b3"), "ce-partitionkey", "pk-1"},
         .body = "hello \"world\"\n\tcaf\xc3\xa9",
         .channels = {"pk-1"},
         .want = "{\"specversion\":\"1.0\",\"id\":\"b3\",\"source\":\"/sensors/9\",\"type\":"
                 "\"t.x\",\"datacontenttype\":\"text/plain\",\"partitionkey\":\"pk-1\","
                 "\"channelid\":\"pk-1\",\"provider\":\"cloudevents\",\"data\":"
                 "\"hello \\\"world\\\"\\n\\tcaf\\u00e9\"}"},
        {.name = "text that is not UTF-8 goes as Base64",
         .ct = "text/plain; charset=latin1",
         .hdr = {REQ("b4")},
         .body = "caf\xe9",
         .channels = {""},
         .want = "{\"specversion\":\"1.0\",\"id\":\"b4\",\"source\":\"/sensors/9\",\"type\":"
                 "\"t.x\",\"datacontenttype\":\"text/plain; charset=latin1\",\"provider\":"
                 "\"cloudevents\",\"data_base64\":\"Y2Fm6Q==\"}"},
        {.name = "text holding a NUL goes as Base64",
         .ct = "text/plain",
         .hdr = {REQ("b5")},
         .body = "a\0b",
         .len = 3,
         .channels = {""},
         .want = "{\"specversion\":\"1.0\",\"id\":\"b5\",\"source\":\"/sensors/9\",\"type\":"
                 "\"t.x\",\"datacontenttype\":\"text/plain\",\"provider\":\"cloudevents\","
                 "\"data_base64\":\"YQBi\"}"},
        {.name = "binary data as Base64, no Content-Type",
         .hdr = {REQ("b6")},
         .body = "\x00\x01\x02\xff",
         .len = 4,
         .channels = {""},
         .want = "{\"specversion\":\"1.0\",\"id\":\"b6\",\"source\":\"/sensors/9\",\"type\":"
                 "\"t.x\",\"provider\":\"cloudevents\",\"data_base64\":\"AAEC/w==\"}"},
        {.name = "octet-stream, even when it parses as JSON",
         .ct = "application/octet-stream",
         .hdr = {REQ("b7")},
         .body = "123",
         .channels = {""},
         .want = "{\"specversion\":\"1.0\",\"id\":\"b7\",\"source\":\"/sensors/9\",\"type\":"
                 "\"t.x\",\"datacontenttype\":\"application/octet-stream\",\"provider\":"
                 "\"cloudevents\",\"data_base64\":\"MTIz\"}"},
        {.name = "empty body: no data",
         .ct = "application/json",
         .hdr = {REQ("b8")},
         .channels = {""},
         .want = "{\"specversion\":\"1.0\",\"id\":\"b8\",\"source\":\"/sensors/9\",\"type\":"
                 "\"t.x\",\"datacontenttype\":\"application/json\",\"provider\":"
                 "\"cloudevents\"}"},
        {.name = "percent-encoded values, any case of header names, extensions",
         .ct = "text/plain",
         .hdr = {"CE-SpecVersion", "1.0", "Ce-Id", "id%20with%2Fslash", "ce-SOURCE", "urn:x%3Ay",
                 "ce-type", "message.received", "ce-subject", "Caf%C3%A9%20%E2%82%AC",
                 "ce-comexampleext", "100%25", "ce-channelid", "chan%2D9", "ce-provider", "gw",
                 "X-Other", "ignored"},
         .body = "hi",
         .channels = {"chan-9"},
         .want = "{\"specversion\":\"1.0\",\"id\":\"id with/slash\",\"source\":\"urn:x:y\","
                 "\"type\":\"message.received\",\"subject\":\"Caf\\u00e9 \\u20ac\","
                 "\"datacontenttype\":\"text/plain\",\"comexampleext\":\"100%\","
                 "\"channelid\":\"chan-9\",\"provider\":\"gw\",\"data\":\"hi\"}"},
    };
    RUN(t);
}

Test(cloudevents, binary_mode_refusals)
{
    static const ce_case_t t[] = {
        {.name = "no specversion",
         .hdr = {"ce-id", "1", "ce-source", "/s", "ce-type", "t"},
         .err = "missing required attribute 'specversion'"},
        {.name = "no id",
         .hdr = {"ce-specversion", "1.0", "ce-source", "/s", "ce-type", "t"},
         .err = "missing required attribute 'id'"},
        {.name = "no source",
         .hdr = {"ce-specversion", "1.0", "ce-id", "1", "ce-type", "t"},
         .err = "missing required attribute 'source'"},
        {.name = "no type",
         .hdr = {"ce-specversion", "1.0", "ce-id", "1", "ce-source", "/s"},
         .err = "missing required attribute 'type'"},
        {.name = "empty id",
         .hdr = {"ce-specversion", "1.0", "ce-id", "", "ce-source", "/s", "ce-type", "t"},
         .err = "empty required attribute 'id'"},
        {.name = "specversion 0.3",
         .hdr = {"ce-specversion", "0.3", "ce-id", "1", "ce-source", "/s", "ce-type", "t"},
         .err = "specversion '0.3' is not supported"},
        {.name = "bad time", .hdr = {REQ("1"), "ce-time", "noon"}, .err = "'time'"},
        {.name = "a dash in the name",
         .hdr = {REQ("1"), "ce-com-example", "x"},
         .err = "ce-com-example"},
        {.name = "ce-data", .hdr = {REQ("1"), "ce-data", "x"}, .err = "ce-data"},
        {.name = "ce-datacontenttype",
         .hdr = {REQ("1"), "ce-datacontenttype", "text/plain"},
         .err = "ce-datacontenttype"},
        {.name = "twice", .hdr = {REQ("1"), "CE-ID", "2"}, .err = "given twice"},
        {.name = "bad percent", .hdr = {REQ("1"), "ce-subject", "50%"}, .err = "ce-subject"},
        {.name = "bad hex", .hdr = {REQ("1"), "ce-subject", "%G1"}, .err = "ce-subject"},
        {.name = "NUL", .hdr = {REQ("1"), "ce-subject", "a%00b"}, .err = "ce-subject"},
        {.name = "not UTF-8", .hdr = {REQ("1"), "ce-subject", "%FF"}, .err = "'subject'"},
        {.name = "JSON Content-Type, body not JSON",
         .ct = "application/json",
         .hdr = {REQ("1")},
         .body = "{nope",
         .err = "not JSON"},
        {.name = "no ce-* headers, not JSON",
         .ct = "text/plain",
         .body = "hello",
         .err = "without ce-* headers"},
    };
    RUN(t);
}

/* ---- structured and batched ------------------------------------------------ */

#define CE_JSON "application/cloudevents+json; charset=UTF-8"
#define CE_BATCH "application/cloudevents-batch+json"

Test(cloudevents, structured_mode)
{
    static const ce_case_t t[] = {
        {.name = "extensions and data, the subject is the channel",
         .ct = CE_JSON,
         .hdr = {REQ("ignored: structured mode")},
         .body = "{\"specversion\":\"1.0\",\"id\":\"s1\",\"source\":\"/a\",\"type\":\"x.y\","
                 "\"time\":\"2026-01-02T03:04:05.678-05:00\",\"subject\":\"sub\","
                 "\"datacontenttype\":\"application/json\",\"dataschema\":\"https://s/1\","
                 "\"comexampleint\":42,\"comexamplereal\":1.5e3,\"comexampleflag\":false,"
                 "\"comexamplestr\":\"\\u00e9\",\"data\":{\"k\":[1,{\"n\":null}]}}",
         .channels = {"sub"}},
        {.name = "data_base64",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"1.0\",\"id\":\"s2\",\"source\":\"/a\",\"type\":\"x.y\","
                 "\"datacontenttype\":\"image/png\",\"data_base64\":\"iVBORw0KGgo=\"}",
         .channels = {""}},
        {.name = "partitionkey before subject",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"1.0\",\"id\":\"s3\",\"source\":\"/a\",\"type\":\"x.y\","
                 "\"subject\":\"sub\",\"partitionkey\":\"pk\",\"data\":\"text\"}",
         .channels = {"pk"}},
        {.name = "channelid first, provider kept",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"1.0\",\"id\":\"s4\",\"source\":\"/a\",\"type\":"
                 "\"channel.connected\",\"subject\":\"sub\",\"partitionkey\":\"pk\","
                 "\"channelid\":\"ch\",\"provider\":\"gw\",\"data\":null}",
         .channels = {"ch"}},
        {.name = "a JSON event as application/json, no ce-* headers",
         .ct = "application/json",
         .body = "{\"specversion\":\"1.0\",\"id\":\"s5\",\"source\":\"/a\",\"type\":\"x.y\"}",
         .channels = {""}},
        {.name = "batch of 3, one channel each",
         .ct = CE_BATCH,
         .body = "[{\"specversion\":\"1.0\",\"id\":\"b1\",\"source\":\"/a\",\"type\":\"x\","
                 "\"channelid\":\"c1\"},"
                 "{\"specversion\":\"1.0\",\"id\":\"b2\",\"source\":\"/a\",\"type\":\"x\","
                 "\"partitionkey\":\"c2\",\"data\":[1]},"
                 "{\"specversion\":\"1.0\",\"id\":\"b3\",\"source\":\"/b\",\"type\":\"x\","
                 "\"subject\":\"c3\",\"data_base64\":\"AA==\"}]",
         .channels = {"c1", "c2", "c3"}},
    };
    RUN(t);
}

Test(cloudevents, structured_mode_refusals)
{
    static const ce_case_t t[] = {
        {.name = "no specversion",
         .ct = CE_JSON,
         .body = "{\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"}",
         .err = "missing required attribute 'specversion'"},
        {.name = "no id",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"1.0\",\"source\":\"/s\",\"type\":\"t\"}",
         .err = "missing required attribute 'id'"},
        {.name = "null source",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":null,\"type\":\"t\"}",
         .err = "missing required attribute 'source'"},
        {.name = "no type",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\"}",
         .err = "missing required attribute 'type'"},
        {.name = "type not a string",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":[]}",
         .err = "'type'"},
        {.name = "specversion 0.3",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"0.3\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"}",
         .err = "specversion '0.3'"},
        {.name = "uppercase extension",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\","
                 "\"comExample\":1}",
         .err = "'comExample'"},
        {.name = "data and data_base64",
         .ct = CE_JSON,
         .body = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\","
                 "\"data\":1,\"data_base64\":\"AA==\"}",
         .err = "data_base64"},
        {.name = "structured, not JSON", .ct = CE_JSON, .body = "<xml/>", .err = "not JSON"},
        {.name = "batch, not JSON", .ct = CE_BATCH, .body = "<xml/>", .err = "not JSON"},
        {.name = "batch, not an array",
         .ct = CE_BATCH,
         .body = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"}",
         .err = "not a JSON array"},
        {.name = "batch, empty", .ct = CE_BATCH, .body = "[]", .err = "no events"},
        {.name = "batch, an element not an object",
         .ct = CE_BATCH,
         .body = "[{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"},7]",
         .err = "event 1: not a JSON object"},
    };
    static const char *const need[] = {"specversion", "id", "source", "type"};
    RUN(t);

    /* In a batch, each missing attribute of the third event refuses the whole
     * body, naming the event and the attribute. */
    for (size_t k = 0; k < 4; k++) {
        char body[512], want[128];
        char *o = body;
        o += sprintf(o, "[");
        for (int e = 0; e < 3; e++) {
            o += sprintf(o, "%s{", e ? "," : "");
            int first = 1;
            for (size_t a = 0; a < 4; a++) {
                if (e == 2 && a == k)
                    continue;
                o += sprintf(o, "%s\"%s\":\"%s\"", first ? "" : ",", need[a], a == 0 ? "1.0" : "v");
                first = 0;
            }
            o += sprintf(o, "}");
        }
        sprintf(o, "]");
        snprintf(want, sizeof(want), "event 2: missing required attribute '%s'", need[k]);
        ce_case_t c = {.name = need[k], .ct = CE_BATCH, .body = body, .err = want};
        run_case(&c);
    }
}

/* ---- identity -------------------------------------------------------------- */

/* The WAL record of a passed-through event is scoped: dedup knows it by its
 * own source and id, and it routes by its channel. */
Test(cloudevents, dedup_key_is_source_and_id)
{
    ce_case_t t = {.name = "dedup",
                   .ct = CE_JSON,
                   .body = "{\"specversion\":\"1.0\",\"id\":\"evt-9\",\"source\":\"urn:gw:7\","
                           "\"type\":\"message.read\",\"subject\":\"ch-1\"}"};
    char err[256], buf[64];
    rl_event_list_t l;
    uint8_t *rec_buf = NULL;
    size_t len = 0, klen = 0;
    char *owned = NULL;
    rl_record_t rec;

    cr_assert_eq(decode_case(&t, &l, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(rl_record_event("cesrc", "cloudevents", &l.v[0], 1, &rec_buf, &len), 0);
    cr_assert_eq(rl_record_decode(rec_buf, len, &rec), 0);
    cr_expect(rec.scoped && rec.kind == RL_RECORD_EVENT);
    cr_expect(rec.channel_id_len == 4 && !memcmp(rec.channel_id, "ch-1", 4));
    cr_expect(rec.type_len == 12 && !memcmp(rec.type, "message.read", 12));
    const char *key = rl_record_dedup_id(&rec, buf, sizeof(buf), &klen, &owned);
    cr_assert_not_null(key);
    cr_expect(klen == 14 && !memcmp(key,
                                    "urn:gw:7\x1f"
                                    "evt-9",
                                    14),
              "key %.*s", (int)klen, key);
    cr_expect_null(owned);
    free(rec_buf);
    rl_event_list_clear(&l);
}
