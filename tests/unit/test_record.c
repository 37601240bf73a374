/* test_record.c -- WAL record payloads, CloudEvents and destination names
 * (relay/event/record.c), tested against record.h and docs/providers.md ("The
 * CloudEvent", "Where it is published").
 *
 * Payloads under test are copied into buffers of their exact size, so that under
 * ASan (make SANITIZE=1) any read past the end is reported. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

/* An event whose data fields are the members of object `data` (borrowed; NULL:
 * no data): strings, integers, booleans and nulls as such, anything else as
 * JSON text (jansson's compact dump, as a codec's "raw"). unevent frees what
 * this allocates. */
static rl_event_t event(const char *id, const char *type, const char *channel,
                        const char *workspace, const char *time, json_t *data)
{
    rl_event_t ev = {.id = (char *)id,
                     .type = (char *)type,
                     .channel_id = (char *)channel,
                     .workspace_id = (char *)workspace,
                     .time = (char *)time};
    const char *key;
    json_t *v;
    size_t n = 0;

    if (!data)
        return ev;
    ev.fields = calloc(json_object_size(data) + 1, sizeof(rl_field_t));
    cr_assert_not_null(ev.fields);
    json_object_foreach (data, key, v) {
        rl_field_t *f = &ev.fields[n++];
        f->name = key;
        if (json_is_string(v)) {
            f->kind = RL_FIELD_STRING;
            f->str = json_string_value(v);
            f->len = json_string_length(v);
        } else if (json_is_integer(v)) {
            f->kind = RL_FIELD_INT;
            f->num = json_integer_value(v);
        } else if (json_is_boolean(v)) {
            f->kind = RL_FIELD_BOOL;
            f->num = json_is_true(v);
        } else if (!json_is_null(v)) {
            f->kind = RL_FIELD_JSON;
            f->str = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            f->len = strlen(f->str);
        }
    }
    ev.nfields = n;
    return ev;
}

static void unevent(rl_event_t *ev)
{
    for (size_t i = 0; i < ev->nfields; i++)
        if (ev->fields[i].kind == RL_FIELD_JSON)
            free((char *)ev->fields[i].str);
    free(ev->fields);
}

/* Parses a CloudEvent; fails the test if it is not one JSON object. */
static json_t *parse(const char *text)
{
    json_error_t e;
    cr_assert_not_null(text);
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    cr_assert_not_null(j, "not JSON (%s): %s", e.text, text);
    cr_assert(json_is_object(j), "not an object: %s", text);
    return j;
}

static void expect_str(json_t *o, const char *key, const char *want)
{
    json_t *v = json_object_get(o, key);
    cr_expect(json_is_string(v), "'%s' missing or not a string", key);
    if (json_is_string(v))
        cr_expect_str_eq(json_string_value(v), want, "'%s'", key);
}

/* ---- CloudEvents ---------------------------------------------------------------------- */

Test(record, cloudevent_with_workspace)
{
    json_t *data = json_pack("{s:s, s:{s:s, s:i}}", "message_id", "m-1", "raw", "event",
                             "message.received", "n", 7);
    rl_event_t ev =
        event("evt-1", "message.received", "ch-1", "ws-9", "2026-04-19T10:00:00Z", data);
    char *out = rl_record_cloudevent(&ev, "timely", "timely");
    cr_assert_not_null(out);
    cr_expect_null(strchr(out, '\n'), "compact JSON: %s", out);
    json_t *ce = parse(out);

    expect_str(ce, "specversion", "1.0");
    expect_str(ce, "id", "evt-1");
    expect_str(ce, "source", "/timely/ws-9");
    expect_str(ce, "type", "message.received");
    expect_str(ce, "time", "2026-04-19T10:00:00Z");
    expect_str(ce, "subject", "ch-1");
    expect_str(ce, "channelid", "ch-1");
    expect_str(ce, "workspaceid", "ws-9");
    expect_str(ce, "provider", "timely");
    cr_expect(json_equal(json_object_get(ce, "data"), data), "data is the event's data: %s", out);

    json_decref(ce);
    free(out);
    unevent(&ev);
    json_decref(data);
}

Test(record, cloudevent_without_workspace_time_or_channel)
{
    json_t *data = json_pack("{s:s}", "status", "connected");
    /* Whapi: no workspace, and some events have no time. */
    rl_event_t ev = event("whapi_ab12", "channel.connected", "", NULL, NULL, data);
    char *out = rl_record_cloudevent(&ev, "my-whapi", "whapi");
    json_t *ce = parse(out);

    expect_str(ce, "source", "/my-whapi");
    expect_str(ce, "provider", "whapi");
    expect_str(ce, "id", "whapi_ab12");
    /* CloudEvents: an optional attribute, when present, is a non-empty string. */
    cr_expect_null(json_object_get(ce, "time"), "time omitted when unknown: %s", out);
    cr_expect_null(json_object_get(ce, "workspaceid"), "%s", out);
    cr_expect_null(json_object_get(ce, "subject"), "empty subject: %s", out);
    cr_expect_null(json_object_get(ce, "channelid"), "empty channelid: %s", out);
    json_decref(ce);
    free(out);

    /* An empty workspace is no workspace. */
    ev.workspace_id = "";
    ev.channel_id = "5511@s.whatsapp.net";
    out = rl_record_cloudevent(&ev, "w", "whapi");
    ce = parse(out);
    expect_str(ce, "source", "/w");
    expect_str(ce, "subject", "5511@s.whatsapp.net");
    cr_expect_null(json_object_get(ce, "workspaceid"), "%s", out);
    json_decref(ce);
    free(out);
    unevent(&ev);
    json_decref(data);
}

Test(record, cloudevent_escapes_and_long_values)
{
    /* Quotes, backslashes and non-ASCII go through JSON escaping intact. */
    char ws[1201];
    memset(ws, 'w', sizeof(ws) - 1);
    ws[sizeof(ws) - 1] = '\0';
    rl_event_t ev = event("id \"quoted\" \\ é", "whapi.presences.post", "c\"1", ws,
                          "2026-04-19T10:00:00Z", NULL);
    char *out = rl_record_cloudevent(&ev, "src", "whapi");
    json_t *ce = parse(out);
    expect_str(ce, "id", "id \"quoted\" \\ é");
    expect_str(ce, "subject", "c\"1");
    expect_str(ce, "type", "whapi.presences.post");
    /* source + id identify the event: a long workspace must not be cut. */
    char want[1300];
    snprintf(want, sizeof(want), "/src/%s", ws);
    expect_str(ce, "source", want);
    json_t *d = json_object_get(ce, "data");
    cr_expect(d == NULL || json_is_null(d), "no data: %s", out);
    json_decref(ce);
    free(out);
}

/* ---- payload encode / decode -------------------------------------------------------- */

static void expect_view(const char *p, size_t len, const char *want, const char *what)
{
    cr_expect_eq(len, strlen(want), "%s: length %zu, expected %zu", what, len, strlen(want));
    cr_expect(len == strlen(want) && memcmp(p, want, len) == 0, "%s: '%.*s', expected '%s'", what,
              (int)len, p, want);
}

/* Encodes and hands back an exact-size copy. */
static uint8_t *encode(const char *source, const rl_event_t *ev, const char *json, size_t *len)
{
    uint8_t *p = NULL;
    cr_assert_eq(rl_record_encode(source, ev, json, 1712995245123ULL, &p, len), 0);
    cr_assert_not_null(p);
    return p;
}

Test(record, encode_decode_round_trip)
{
    rl_event_t ev = event("evt-1", "message.read", "ch-7", "ws-2", "2026-04-19T10:00:00Z", NULL);
    const char *json = "{\"specversion\":\"1.0\",\"id\":\"evt-1\"}";
    size_t len;
    uint8_t *p = encode("timely", &ev, json, &len);
    rl_record_t rec;
    memset(&rec, 0xa5, sizeof(rec));
    cr_assert_eq(rl_record_decode(p, len, &rec), 0);
    expect_view(rec.source, rec.source_len, "timely", "source");
    expect_view(rec.id, rec.id_len, "evt-1", "id");
    expect_view(rec.type, rec.type_len, "message.read", "type");
    expect_view(rec.channel_id, rec.channel_id_len, "ch-7", "channel_id");
    expect_view(rec.ce_source, rec.ce_source_len, "/timely/ws-2", "ce_source");
    expect_view(rec.event, rec.event_len, json, "event");
    cr_expect_eq(rec.received_ms, 1712995245123ULL, "received_ms round-trips");
    /* The layout of record.h: u8 version | u64 received_ms | 5 x (u16 len + bytes) |
     * u32 len + JSON. */
    cr_expect_eq(len, 1 + 8 + (2 + 6) + (2 + 5) + (2 + 12) + (2 + 4) + (2 + 12) + 4 + strlen(json));
    cr_expect_eq(p[0], 1, "version 1");
    cr_expect_eq(p[9] | p[10] << 8, 6, "u16 little endian");
    free(p);

    /* No channel (NULL) and no workspace; an empty JSON string. */
    ev = event("i", "t", NULL, NULL, NULL, NULL);
    p = encode("s", &ev, "", &len);
    cr_assert_eq(rl_record_decode(p, len, &rec), 0);
    expect_view(rec.channel_id, rec.channel_id_len, "", "channel_id");
    expect_view(rec.ce_source, rec.ce_source_len, "/s", "ce_source");
    cr_expect_eq(rec.event_len, 0);
    free(p);
}

Test(record, encode_field_limits)
{
    char *big = malloc(70000);
    cr_assert_not_null(big);
    memset(big, 'x', 69999);
    big[69999] = '\0';
    uint8_t *p = NULL;
    size_t len = 0;

    /* u16 lengths: 65535 fits, 65536 does not. */
    big[65535] = '\0';
    rl_event_t ev = event(big, "t", "c", NULL, NULL, NULL);
    cr_assert_eq(rl_record_encode("s", &ev, "{}", 1, &p, &len), 0);
    rl_record_t rec;
    cr_assert_eq(rl_record_decode(p, len, &rec), 0);
    cr_expect_eq(rec.id_len, 65535);
    free(p);
    p = NULL;

    big[65535] = 'x';
    big[65536] = '\0';
    static const int which[] = {0, 1, 2, 3};
    for (size_t i = 0; i < sizeof(which) / sizeof(which[0]); i++) {
        rl_event_t e = event("i", "t", "c", NULL, NULL, NULL);
        const char *source = "s";
        if (which[i] == 0)
            e.id = big;
        else if (which[i] == 1)
            e.type = big;
        else if (which[i] == 2)
            e.channel_id = big;
        else
            source = big;
        cr_expect_eq(rl_record_encode(source, &e, "{}", 1, &p, &len), -1, "field %d too long",
                     which[i]);
    }
    /* The CloudEvent source is "/source/workspace": too long together is too long. */
    big[65000] = '\0';
    rl_event_t e = event("i", "t", "c", big, NULL, NULL);
    cr_expect_eq(rl_record_encode(big, &e, "{}", 1, &p, &len), -1, "ce_source over 65535");
    free(big);
}

Test(record, decode_rejects_every_truncation)
{
    rl_event_t ev = event("evt-42", "channel.error", "ch", "ws", NULL, NULL);
    const char *json = "{\"a\":1}";
    size_t len;
    uint8_t *p = encode("whapi", &ev, json, &len);
    rl_record_t rec;

    for (size_t n = 0; n < len; n++) {
        uint8_t *q = malloc(n ? n : 1);
        cr_assert_not_null(q);
        memcpy(q, p, n);
        cr_expect_eq(rl_record_decode(q, n, &rec), -1, "prefix of %zu of %zu bytes accepted", n,
                     len);
        free(q);
    }
    /* A trailing byte is damage too. */
    uint8_t *q = malloc(len + 1);
    memcpy(q, p, len);
    q[len] = '}';
    cr_expect_eq(rl_record_decode(q, len + 1, &rec), -1, "trailing byte accepted");
    free(q);

    /* An unknown kind (1 an event, 2 a dead letter, 3 a scoped event). */
    static const uint8_t kinds[] = {0, 4, 0x81, 0xff};
    for (size_t i = 0; i < sizeof(kinds); i++) {
        p[0] = kinds[i];
        cr_expect_eq(rl_record_decode(p, len, &rec), -1, "kind %d accepted", kinds[i]);
    }
    free(p);
}

/* Flipping bits anywhere either is rejected or decodes into views that lie inside
 * the payload and cover it exactly. ASan reports any read outside it. */
Test(record, decode_corruption_stays_in_bounds)
{
    rl_event_t ev = event("evt-42", "message.sent", "ch-1", "ws", NULL, NULL);
    const char *json = "{\"specversion\":\"1.0\"}";
    size_t len;
    uint8_t *p = encode("timely", &ev, json, &len);
    static const uint8_t masks[] = {0x01, 0x02, 0x10, 0x80, 0xff};
    int accepted = 0;

    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            uint8_t *q = malloc(len);
            cr_assert_not_null(q);
            memcpy(q, p, len);
            q[i] ^= masks[m];
            rl_record_t rec;
            if (rl_record_decode(q, len, &rec) == 0) {
                accepted++;
                const char *lo = (const char *)q, *hi = (const char *)q + len;
                const char *f[6] = {rec.source,     rec.id,        rec.type,
                                    rec.channel_id, rec.ce_source, rec.event};
                size_t fl[6] = {rec.source_len,     rec.id_len,        rec.type_len,
                                rec.channel_id_len, rec.ce_source_len, rec.event_len};
                size_t sum = 1 + 8 + 4;
                for (int k = 0; k < 6; k++) {
                    cr_assert(f[k] >= lo && f[k] + fl[k] <= hi,
                              "byte %zu ^ %02x: field %d outside the payload", i, masks[m], k);
                    sum += fl[k] + (k < 5 ? 2 : 0);
                }
                cr_assert_eq(sum, len, "byte %zu ^ %02x: views do not cover the payload", i,
                             masks[m]);
            }
            free(q);
        }
    }
    /* Damage to the bytes of a field decodes (the WAL's crc is the integrity
     * check); damage to lengths and the version must not. */
    cr_expect_gt(accepted, 0);
    free(p);
}

/* ---- destination templates ----------------------------------------------------------- */

/* A decoded record for rendering. */
typedef struct owned_rec {
    uint8_t *buf;
    rl_record_t rec;
} owned_rec_t;

static owned_rec_t mkrec(const char *source, const char *type, const char *channel)
{
    owned_rec_t o;
    size_t len;
    rl_event_t ev = event("id-1", type, channel, NULL, NULL, NULL);
    o.buf = encode(source, &ev, "{}", &len);
    cr_assert_eq(rl_record_decode(o.buf, len, &o.rec), 0);
    return o;
}

typedef struct render_case {
    const char *tpl, *type, *channel;
    int topic_safe;
    const char *want; /* NULL: -1 */
} render_case_t;

Test(record, render_templates)
{
    static const render_case_t cases[] = {
        {"events.{family}", "message.received", "c1", 1, "events.message"},
        {"events.{family}", "channel.connected", "c1", 1, "events.channel"},
        {"events.{family}", "whapi.presences.post", "c1", 1, "events.other"},
        {"{type}", "message.read", "c1", 0, "message.read"},
        {"{source}", "message.read", "c1", 0, "timely"},
        {"{channel_id}", "message.read", "c1", 0, "c1"},
        {"events:{channel_id}", "message.read", "chan-9", 0, "events:chan-9"},
        {"{source}.{family}.{type}", "channel.error", "c", 1, "timely.channel.channel.error"},
        {"{channel_id}{channel_id}", "t", "ab", 0, "abab"},
        {"plain-topic", "t", "c", 1, "plain-topic"},
        {"", "t", "c", 0, ""},
        {"a}b", "t", "c", 0, "a}b"},
        /* '@' and the like are not allowed in Kafka topic names */
        {"wa.{channel_id}", "t", "5511999@s.whatsapp.net", 1, "wa.5511999_s.whatsapp.net"},
        {"wa:{channel_id}", "t", "5511999@s.whatsapp.net", 0, "wa:5511999@s.whatsapp.net"},
        {"t.{channel_id}", "t", "a b/c:d\\e#é", 1, "t.a_b_c_d_e___"},
        {"t.{channel_id}", "t", "Az09._-", 1, "t.Az09._-"},
        /* an empty channel id still names a destination */
        {"events:{channel_id}", "t", "", 0, "events:_"},
        {"t.{channel_id}", "t", "", 1, "t._"},
        /* a long type still has a family */
        {"{family}",
         "message.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
         "c", 1, "message"},
        /* unknown or unclosed variables */
        {"events.{famly}", "t", "c", 0, NULL},
        {"events.{}", "t", "c", 0, NULL},
        {"events.{family", "t", "c", 0, NULL},
        {"{", "t", "c", 0, NULL},
        {"{Family}", "t", "c", 0, NULL},
        {"{channel_id }", "t", "c", 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const render_case_t *c = &cases[i];
        owned_rec_t o = mkrec("timely", c->type, c->channel);
        char out[256];
        int n = rl_record_render(c->tpl, &o.rec, c->topic_safe, out, sizeof(out));
        if (!c->want) {
            cr_expect_eq(n, -1, "'%s' rendered (%d)", c->tpl, n);
        } else {
            cr_expect_eq(n, (int)strlen(c->want), "'%s': %d", c->tpl, n);
            if (n >= 0)
                cr_expect_str_eq(out, c->want, "'%s' with '%s'", c->tpl, c->channel);
        }
        free(o.buf);
    }
}

/* -1 when out is too small, and never a byte written past outsz. */
Test(record, render_out_too_small)
{
    static const char *const tpls[] = {"events.{family}", "{channel_id}", "x", ""};
    owned_rec_t o = mkrec("timely", "message.sent", "channel-1");
    for (size_t t = 0; t < sizeof(tpls) / sizeof(tpls[0]); t++) {
        char full[256];
        int need = rl_record_render(tpls[t], &o.rec, 0, full, sizeof(full));
        cr_assert_geq(need, 0);
        for (size_t outsz = 0; outsz <= (size_t)need + 1; outsz++) {
            char buf[300];
            memset(buf, '#', sizeof(buf));
            int n = rl_record_render(tpls[t], &o.rec, 0, buf, outsz);
            if (outsz <= (size_t)need) {
                cr_expect_eq(n, -1, "'%s' in %zu bytes: %d", tpls[t], outsz, n);
            } else {
                cr_expect_eq(n, need);
                cr_expect_str_eq(buf, full);
            }
            for (size_t k = outsz; k < sizeof(buf); k++)
                cr_assert_eq(buf[k], '#', "'%s' in %zu bytes: byte %zu written", tpls[t], outsz, k);
        }
    }
    free(o.buf);
}

Test(record, template_check)
{
    static const char *const good[] = {"events.{family}", "events:{channel_id}", "{source}",
                                       "{type}", "x"};
    static const char *const bad[] = {"events.{famly}", "events.{family", "", "{}"};
    char err[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err[0] = '\0';
        cr_expect_eq(rl_record_template_check(good[i], err, sizeof(err)), 0, "'%s': %s", good[i],
                     err);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_expect_eq(rl_record_template_check(bad[i], err, sizeof(err)), -1, "'%s'", bad[i]);
        cr_expect_neq(err[0], '\0', "'%s': no message", bad[i]);
    }
}

/* ---- dead letters --------------------------------------------------------------------- */

static json_t *deadletter_event(const rl_deadletter_t *dl, uint64_t ms, rl_record_t *rec,
                                uint8_t **buf, char **id)
{
    size_t len;
    cr_assert_eq(rl_record_deadletter(dl, ms, buf, &len, id), 0);
    uint8_t *exact = malloc(len); /* exact size: ASan sees any read past it */
    cr_assert_not_null(exact);
    memcpy(exact, *buf, len);
    free(*buf);
    *buf = exact;
    cr_assert_eq(rl_record_decode(exact, len, rec), 0);
    return json_loadb(rec->event, rec->event_len, JSON_REJECT_DUPLICATES, NULL);
}

/* The raw body comes back byte for byte, NULs and invalid UTF-8 included. */
Test(record, deadletter_keeps_the_raw_body_and_the_reason)
{
    static const uint8_t body[] = {'{', '"', 0x00, 0xff, 0xfe, '\n', '[', 0x80};
    rl_deadletter_t dl = {"whapi",
                          "whapi",
                          "invalid_json",
                          "body is not JSON",
                          "application/json",
                          "msg_1",
                          body,
                          sizeof(body),
                          NULL,
                          0,
                          NULL};
    rl_record_t rec;
    uint8_t *buf;
    char *id;
    json_t *ce = deadletter_event(&dl, 1776592800123ULL, &rec, &buf, &id);
    cr_assert_not_null(ce, "the dead letter is not JSON");
    cr_expect_eq(rec.kind, RL_RECORD_DEADLETTER);
    expect_view(rec.source, rec.source_len, "whapi", "source");
    expect_view(rec.id, rec.id_len, id, "id");
    expect_view(rec.type, rec.type_len, RL_DEADLETTER_TYPE, "type");
    expect_view(rec.channel_id, rec.channel_id_len, "", "channel_id");
    cr_expect_eq(rec.received_ms, 1776592800123ULL);
    cr_expect(!strncmp(id, "dl_", 3) && strlen(id) == 35, "id %s", id);
    expect_str(ce, "specversion", "1.0");
    expect_str(ce, "id", id);
    expect_str(ce, "type", "relay.deadletter");
    expect_str(ce, "source", "/whapi");
    expect_str(ce, "time", "2026-04-19T10:00:00.123Z");
    json_t *data = json_object_get(ce, "data");
    expect_str(data, "reason", "invalid_json");
    expect_str(data, "message", "body is not JSON");
    expect_str(data, "source", "whapi");
    expect_str(data, "content_type", "application/json");
    expect_str(data, "webhook_id", "msg_1");
    expect_str(data, "received_at", "2026-04-19T10:00:00.123Z");
    cr_expect_eq(json_integer_value(json_object_get(data, "body_size")), (json_int_t)sizeof(body));
    cr_expect(json_is_false(json_object_get(data, "body_truncated")));
    cr_expect(json_is_object(json_object_get(data, "headers")) &&
                  json_object_size(json_object_get(data, "headers")) == 0,
              "no header kept: an empty object");
    cr_expect(json_is_null(json_object_get(data, "headers_note")));
    /* Decoded with OpenSSL's EVP_DecodeBlock, independently of relay. */
    const char *b64 = json_string_value(json_object_get(data, "body_base64"));
    cr_assert_not_null(b64);
    unsigned char raw[64];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)strlen(b64));
    cr_assert_geq(n, (int)sizeof(body));
    cr_expect_eq(memcmp(raw, body, sizeof(body)), 0, "the body does not come back");
    json_decref(ce);
    free(buf);

    /* The same body again (a retry) has the same id; another body or source another. */
    char *id2;
    ce = deadletter_event(&dl, 1776592900000ULL, &rec, &buf, &id2);
    cr_expect_str_eq(id, id2, "a retry of the same body must have the same id");
    json_decref(ce);
    free(buf);
    free(id2);
    dl.len--;
    ce = deadletter_event(&dl, 1776592900000ULL, &rec, &buf, &id2);
    cr_expect_str_neq(id, id2, "another body, the same id");
    json_decref(ce);
    free(buf);
    free(id2);
    dl.len++;
    dl.source = "timely";
    ce = deadletter_event(&dl, 1776592900000ULL, &rec, &buf, &id2);
    cr_expect_str_neq(id, id2, "another source, the same id");
    json_decref(ce);
    free(buf);
    free(id2);
    free(id);

    /* No content type, no webhook id, an empty body. */
    rl_deadletter_t empty = {"s",  "timely", "invalid_json", "empty", NULL, NULL,
                             NULL, 0,        NULL,           0,       NULL};
    ce = deadletter_event(&empty, 1776592800000ULL, &rec, &buf, &id);
    data = json_object_get(ce, "data");
    cr_expect(json_is_null(json_object_get(data, "content_type")));
    cr_expect(json_is_null(json_object_get(data, "webhook_id")));
    expect_str(data, "body_base64", "");
    json_decref(ce);
    free(buf);
    free(id);
}

Test(record, deadletter_of_a_huge_body_is_cut_and_says_so)
{
    size_t big = RL_DEADLETTER_MAX_BODY + 10;
    uint8_t *body = malloc(big);
    cr_assert_not_null(body);
    memset(body, 'x', big);
    rl_deadletter_t dl = {"s", "timely", "invalid_json", "m", NULL, NULL, body, big, NULL, 0, NULL};
    rl_record_t rec;
    uint8_t *buf;
    char *id;
    json_t *ce = deadletter_event(&dl, 1776592800000ULL, &rec, &buf, &id);
    cr_assert_not_null(ce);
    json_t *data = json_object_get(ce, "data");
    cr_expect(json_is_true(json_object_get(data, "body_truncated")));
    cr_expect_eq(json_integer_value(json_object_get(data, "body_size")), (json_int_t)big);
    cr_expect_eq(json_string_length(json_object_get(data, "body_base64")),
                 (RL_DEADLETTER_MAX_BODY + 2) / 3 * 4);
    json_decref(ce);
    free(buf);
    free(id);
    free(body);
}

/* Events keep kind 1, which is what every record had before dead letters. */
Test(record, events_are_kind_one)
{
    rl_event_t ev = event("e", "message.read", "c", NULL, NULL, NULL);
    size_t len;
    uint8_t *p = encode("s", &ev, "{}", &len);
    rl_record_t rec;
    cr_assert_eq(rl_record_decode(p, len, &rec), 0);
    cr_expect_eq(p[0], 1);
    cr_expect_eq(rec.kind, RL_RECORD_EVENT);
    free(p);
}

/* The envelope is written by record.c itself, not by jansson: every byte JSON
 * must escape is escaped exactly as jansson's json_dumps would have, and what
 * rl_record_event writes straight into a payload is what rl_record_cloudevent
 * and rl_record_encode make in two steps. */
Test(record, envelope_escapes_like_jansson)
{
    const char *nasty = "a\"b\\c/d\n\r\t\b\f\x01\x1f\x7f caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80";
    json_t *data = json_pack("{s:s, s:{s:[i,b,n]}}", "text", nasty, "raw", "k", 1, 1);
    rl_event_t ev = event(nasty, "message.received", nasty, nasty, "2026-04-19T10:00:00Z", data);
    char *out = rl_record_cloudevent(&ev, "src", "whapi");
    cr_assert_not_null(out);

    /* The same CloudEvent built the old way: a json_t dumped by jansson. */
    json_t *ce = json_object();
    json_object_set_new(ce, "specversion", json_string("1.0"));
    json_object_set_new(ce, "id", json_string(nasty));
    char *src = NULL;
    cr_assert(asprintf(&src, "/src/%s", nasty) > 0);
    json_object_set_new(ce, "source", json_string(src));
    json_object_set_new(ce, "type", json_string("message.received"));
    json_object_set_new(ce, "time", json_string("2026-04-19T10:00:00Z"));
    json_object_set_new(ce, "subject", json_string(nasty));
    json_object_set_new(ce, "channelid", json_string(nasty));
    json_object_set_new(ce, "workspaceid", json_string(nasty));
    json_object_set_new(ce, "provider", json_string("whapi"));
    json_object_set_new(ce, "datacontenttype", json_string("application/json"));
    json_object_set(ce, "data", data);
    char *want = json_dumps(ce, JSON_COMPACT);
    cr_expect_str_eq(out, want);

    uint8_t *one = NULL, *two = NULL;
    size_t n1 = 0, n2 = 0;
    cr_assert_eq(rl_record_event("src", "whapi", &ev, 42, &one, &n1), 0);
    cr_assert_eq(rl_record_encode("src", &ev, out, 42, &two, &n2), 0);
    cr_expect(n1 == n2 && !memcmp(one, two, n1), "one-step and two-step payloads differ");
    rl_record_t rec;
    cr_assert_eq(rl_record_decode(one, n1, &rec), 0);
    cr_expect_eq(rec.event_len, strlen(want));

    free(one);
    free(two);
    free(want);
    free(src);
    free(out);
    json_decref(ce);
    unevent(&ev);
    json_decref(data);
}

/* data may be NULL (no payload to keep): "data":null, as before. */
Test(record, envelope_without_data)
{
    rl_event_t ev = event("e", "channel.connected", "", NULL, NULL, NULL);
    char *out = rl_record_cloudevent(&ev, "s", "timely");
    cr_assert_not_null(out);
    cr_expect_str_eq(out, "{\"specversion\":\"1.0\",\"id\":\"e\",\"source\":\"/s\",\"type\":"
                          "\"channel.connected\",\"provider\":\"timely\",\"datacontenttype\":"
                          "\"application/json\",\"data\":null}");
    free(out);
}

/* `data` is written from the event's fields: strings escaped as jansson's
 * json_dumps escapes them, numbers at their limits, booleans, nulls, and JSON
 * fields ("raw") verbatim, the provider's spacing and key order kept. */
Test(record, data_fields_are_written_as_jansson_dumps_them)
{
    const char *nasty = "a\"b\\c/d\n\r\t\b\f\x01\x1f\x7f caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80";
    const char *raw = "{ \"z\" : 1,\n \"a\":[ 2 ,3] }";
    rl_field_t f[] = {
        {.name = "s", .kind = RL_FIELD_STRING, .str = nasty, .len = strlen(nasty)},
        {.name = "max", .kind = RL_FIELD_INT, .num = LLONG_MAX},
        {.name = "min", .kind = RL_FIELD_INT, .num = LLONG_MIN},
        {.name = "t", .kind = RL_FIELD_BOOL, .num = 1},
        {.name = "f", .kind = RL_FIELD_BOOL, .num = 0},
        {.name = "n", .kind = RL_FIELD_NULL},
        {.name = "raw", .kind = RL_FIELD_JSON, .str = raw, .len = strlen(raw)},
    };
    rl_event_t ev = event("e", "message.received", "c", NULL, NULL, NULL);
    ev.fields = f;
    ev.nfields = sizeof(f) / sizeof(f[0]);
    char *out = rl_record_cloudevent(&ev, "s", "whapi");
    json_t *d = json_pack("{s:s,s:I,s:I,s:b,s:b,s:n}", "s", nasty, "max", (json_int_t)LLONG_MAX,
                          "min", (json_int_t)LLONG_MIN, "t", 1, "f", 0, "n");
    char *want = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER), *full = NULL;
    cr_assert(out && want);
    want[strlen(want) - 1] = '\0'; /* the closing brace: raw follows */
    cr_assert(asprintf(&full, "%s,\"raw\":%s}}", want, raw) > 0);
    const char *got = strstr(out, ",\"data\":");
    cr_assert_not_null(got);
    cr_expect_str_eq(got + strlen(",\"data\":"), full);
    json_decref(parse(out));
    free(full);
    free(want);
    free(out);
    json_decref(d);
}

/* Which field does not fit a record's u16 length, and the edge: 65535 fits. */
Test(record, too_long_names_the_field)
{
    char *max = malloc(RL_RECORD_FIELD_MAX + 2);
    cr_assert_not_null(max);
    memset(max, 'x', RL_RECORD_FIELD_MAX + 1);
    max[RL_RECORD_FIELD_MAX + 1] = '\0';
    rl_event_t ev = {.id = "e1", .type = "message.received", .channel_id = "c1"};
    cr_expect_null(rl_record_too_long("timely", &ev));
    ev.id = max + 1; /* 65535 bytes */
    cr_expect_null(rl_record_too_long("timely", &ev));
    uint8_t *out = NULL;
    size_t len = 0;
    cr_expect_eq(rl_record_encode("timely", &ev, "{}", 1, &out, &len), 0, "65535 is encoded");
    free(out);
    ev.id = max; /* 65536 */
    cr_expect_str_eq(rl_record_too_long("timely", &ev), "id");
    cr_expect_eq(rl_record_encode("timely", &ev, "{}", 1, &out, &len), -1);
    ev.id = "e1";
    ev.channel_id = max;
    cr_expect_str_eq(rl_record_too_long("timely", &ev), "channel_id");
    ev.channel_id = "c1";
    ev.workspace_id = max + 8; /* "/timely/" + 65528 = 65536 */
    cr_expect_str_eq(rl_record_too_long("timely", &ev), "workspace_id");
    ev.workspace_id = max + 9;
    cr_expect_null(rl_record_too_long("timely", &ev));
    free(max);
}

/* The 200 answer is what jansson's json_dumps wrote for it before, byte for byte,
 * with ids that need escaping, UTF-8, none, and many. */
Test(record, ack_body_matches_jansson)
{
    const char *ids[] = {"evt_1", "quo\"te\\back", "ctl\x01\n\ttab", "caf\xc3\xa9 \xe2\x82\xac",
                         "/"};
    for (size_t n = 0; n <= 5; n++) {
        rl_event_list_t l;
        rl_event_list_init(&l);
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            rl_event_t *e = rl_event_list_push(&l);
            cr_assert_not_null(e);
            e->id = strdup(ids[i]);
            json_array_append_new(arr, json_string(ids[i]));
        }
        json_t *o = json_pack("{s:I,s:I,s:o}", "accepted", (json_int_t)n, "duplicates",
                              (json_int_t)(5 - n), "ids", arr);
        char *want = json_dumps(o, JSON_COMPACT), *got = rl_record_ack_body(&l, n, 5 - n);
        cr_assert_not_null(got);
        cr_assert_str_eq(got, want, "n=%zu", n);
        free(want);
        free(got);
        json_decref(o);
        rl_event_list_clear(&l);
    }
}

/* An event that arrived as a CloudEvent keeps its own source and envelope, is
 * written as kind 3, read back as an event, and known to dedup by source + id. */
Test(record, scoped_event_keeps_its_source_and_envelope)
{
    rl_event_t ev = event("e-1", "com.example.thing", "ch1", NULL, "2026-01-01T00:00:00Z", NULL);
    uint8_t *buf = NULL;
    size_t len = 0, id_len = 0;
    char small[4], big[64], *owned = (char *)"x";
    rl_record_t rec;

    ev.ce_source = "https://example.com/a";
    ev.ce_rest = "\"subject\":\"s\",\"datacontenttype\":\"text/plain\",\"data\":\"hi\"";
    cr_assert_eq(rl_record_event("cesrc", "cloudevents", &ev, 1, &buf, &len), 0);
    cr_expect_eq(buf[0], RL_RECORD_SCOPED);
    cr_assert_eq(rl_record_decode(buf, len, &rec), 0);
    cr_expect_eq(rec.kind, RL_RECORD_EVENT);
    cr_expect(rec.scoped);
    cr_expect(rec.ce_source_len == 21 && !memcmp(rec.ce_source, "https://example.com/a", 21));
    cr_expect(rec.event_len ==
                  strlen("{\"specversion\":\"1.0\",\"id\":\"e-1\",\"source\":\"https://"
                         "example.com/a\",\"type\":\"com.example.thing\",\"time\":"
                         "\"2026-01-01T00:00:00Z\",\"subject\":\"s\",\"datacontent"
                         "type\":\"text/plain\",\"data\":\"hi\"}"),
              "%.*s", (int)rec.event_len, rec.event);
    const char *id = rl_record_dedup_id(&rec, big, sizeof(big), &id_len, &owned);
    cr_expect_null(owned);
    cr_expect(id == big && id_len == 25 &&
              !memcmp(id,
                      "https://example.com/a\x1f"
                      "e-1",
                      25));
    id = rl_record_dedup_id(&rec, small, sizeof(small), &id_len, &owned);
    cr_expect(id && id == owned && id_len == 25 &&
              !strcmp(id, "https://example.com/a\x1f"
                          "e-1"));
    free(owned);
    free(buf);

    /* An event of relay's own: its id as it is, no copy. */
    ev.ce_source = NULL;
    ev.ce_rest = NULL;
    cr_assert_eq(rl_record_event("cesrc", "cloudevents", &ev, 1, &buf, &len), 0);
    cr_expect_eq(buf[0], RL_RECORD_EVENT);
    cr_assert_eq(rl_record_decode(buf, len, &rec), 0);
    cr_expect(!rec.scoped);
    id = rl_record_dedup_id(&rec, big, sizeof(big), &id_len, &owned);
    cr_expect(id == rec.id && id_len == 3 && owned == NULL);
    free(buf);
    unevent(&ev);
}

/* The headers kept, escaped as JSON; withheld ones are null with the note; a
 * letter refused 401 has an id of its own for the same body. */
Test(record, deadletter_headers_and_unauthorized_id)
{
    static const uint8_t body[] = "{\"a\":1}";
    const char *hv[] = {"X-Hub-Signature-256", "sha256=\"q\"", "webhook-id", "msg_1"};
    rl_deadletter_t dl = {.source = "hub",
                          .provider = "whapi",
                          .reason = "unauthorized",
                          .message = "bad_signature",
                          .body = body,
                          .len = sizeof(body) - 1,
                          .headers = hv,
                          .nheaders = 2};
    rl_record_t rec;
    uint8_t *buf;
    char *id, *id400;
    json_t *ce = deadletter_event(&dl, 1776592800123ULL, &rec, &buf, &id);
    cr_assert_not_null(ce);
    json_t *h = json_object_get(json_object_get(ce, "data"), "headers");
    cr_expect_eq(json_object_size(h), 2);
    expect_str(h, "X-Hub-Signature-256", "sha256=\"q\"");
    expect_str(h, "webhook-id", "msg_1");
    json_decref(ce);
    free(buf);

    dl.reason = "invalid_json";
    dl.headers_note = "withheld";
    ce = deadletter_event(&dl, 1776592800123ULL, &rec, &buf, &id400);
    cr_assert_not_null(ce);
    json_t *d = json_object_get(ce, "data");
    cr_expect(json_is_null(json_object_get(d, "headers")));
    expect_str(d, "headers_note", "withheld");
    cr_expect(strcmp(id, id400) != 0, "a 401 letter and a 400 letter of one body share id %s", id);
    json_decref(ce);
    free(buf);
    free(id);
    free(id400);
}
