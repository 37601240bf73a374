/* test_pipeline.c -- system tests of relay against the contract in docs/http-api.md,
 * docs/providers.md and docs/guarantees.md.
 *
 * Each test runs the real build/relay with its own config, port, WAL directory and
 * Kafka topic / Redis stream prefix, posts webhooks the way Timely and Whapi do, and
 * checks what a consumer of the real Kafka and Redis started by tools/run-tests.sh
 * sees: topic, key, headers, the CloudEvent, the stream fields, how many copies, in
 * which order. Nothing here looks inside relay.
 *
 * Fixtures: the files in tests/system/fixtures/timely/ are the eight payloads of the Timely
 * seed documents, verbatim. Whapi bodies are written below from docs/providers.md. Bodies
 * that must not collide with another test's (dedup may one day be shared through
 * Redis) carry the instance prefix in their ids. */
#include "harness.h"
#include "events.h"
#include "version.h"

#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sys/wait.h>

#define FIXTURES "tests/system/fixtures"
#define WAIT_MS 15000 /* the longest a test waits for something that should come */
#define SETTLE_MS 500 /* how long a reader keeps reading for extra copies */
#define WHAPI_CHANNEL "MANTIS-M72HC"

TestSuite(pipeline, .init = th_setup, .fini = th_teardown, .timeout = 120);

/* ------------------------------------------------------------------- test helpers */

static char *fixture(const char *rel)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", FIXTURES, rel);
    char *text = th_read_file(path, NULL);
    cr_assert(text, "cannot read fixture %s (tests run from the repository root)", path);
    return text;
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    cr_assert(j, "test bug: bad JSON at %d: %s", e.line, e.text);
    return j;
}

/* A short printable form of a JSON value, for failure messages. */
static const char *dump(const json_t *j, char *buf, size_t size)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    snprintf(buf, size, "%s", s ? s : "(none)");
    free(s);
    return buf;
}

static void expect_str(const json_t *obj, const char *key, const char *want, const char *where)
{
    const char *got = jstr(obj, key);
    cr_expect(got && strcmp(got, want) == 0, "%s: \"%s\" is %s%s%s, want \"%s\"", where, key,
              got ? "\"" : "", got ? got : "missing or not a string", got ? "\"" : "", want);
}

/* Checks the JSON error body every error answer must carry. */
static void expect_error(const th_resp_t *resp, long status, const char *what)
{
    cr_expect(resp->status == status, "%s: HTTP %ld, want %ld; body: %s %s", what, resp->status,
              status, resp->body ? resp->body : "", resp->error);
    cr_expect(json_is_object(resp->json) && jstr(resp->json, "error") &&
                  *jstr(resp->json, "error") && jstr(resp->json, "message") &&
                  *jstr(resp->json, "message"),
              "%s: error body is not {\"error\":\"...\",\"message\":\"...\"}: %s", what,
              resp->body ? resp->body : "");
    cr_expect(strncasecmp(resp->content_type, "application/json", 16) == 0,
              "%s: error Content-Type is \"%s\", want application/json", what, resp->content_type);
}

/* What one published event must look like. */
typedef struct want_ev {
    const char *id;
    const char *type;
    const char *source;    /* CloudEvent source, "/timely/ws_abc123" */
    const char *channel;   /* subject, channelid, Kafka key */
    const char *workspace; /* NULL: the provider has none, workspaceid must be unset */
    const char *provider;  /* the codec's name */
    time_t time;           /* 0: any RFC 3339 time */
    const json_t *raw;     /* data.raw must equal this; NULL: not checked */
} want_ev_t;

/* The CloudEvents 1.0 checks a consumer relies on (JSON format, docs/providers.md). */
static void check_cloudevent(const json_t *ce, const want_ev_t *w, const char *where)
{
    char b1[512], b2[512];
    cr_assert(json_is_object(ce), "%s: the event is not a JSON object", where);
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)ce, k, v) {
        int ok = *k != '\0';
        for (const char *p = k; *p; p++)
            ok &= (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9');
        cr_expect(ok, "%s: attribute name \"%s\" is not [a-z0-9]+", where, k);
    }
    expect_str(ce, "specversion", "1.0", where);
    expect_str(ce, "id", w->id, where);
    expect_str(ce, "type", w->type, where);
    expect_str(ce, "source", w->source, where);
    expect_str(ce, "subject", w->channel, where);
    expect_str(ce, "channelid", w->channel, where);
    expect_str(ce, "provider", w->provider, where);
    expect_str(ce, "datacontenttype", "application/json", where);
    if (w->workspace)
        expect_str(ce, "workspaceid", w->workspace, where);
    else
        cr_expect(!json_object_get(ce, "workspaceid") ||
                      json_is_null(json_object_get(ce, "workspaceid")),
                  "%s: workspaceid is set for a provider without workspaces", where);
    time_t t;
    const char *ts = jstr(ce, "time");
    cr_expect(ts && th_rfc3339(ts, &t) == 0, "%s: time %s is not RFC 3339", where,
              ts ? ts : "(missing)");
    if (ts && w->time && th_rfc3339(ts, &t) == 0)
        cr_expect(t == w->time, "%s: time %s is %lld s off the provider's timestamp", where, ts,
                  (long long)(t - w->time));
    const json_t *data = json_object_get(ce, "data");
    cr_expect(json_is_object(data), "%s: data is not a JSON object", where);
    cr_expect(!json_object_get(ce, "data_base64"), "%s: JSON data must not be data_base64", where);
    if (w->raw)
        cr_expect(json_equal(json_object_get(data, "raw"), (json_t *)w->raw),
                  "%s: data.raw is not the provider's item:\n got  %s\n want %s", where,
                  dump(json_object_get(data, "raw"), b1, sizeof b1), dump(w->raw, b2, sizeof b2));
}

/* The Kafka side of one event: key, headers, then the CloudEvent in the value. */
static void check_kafka(const th_kmsg_t *m, const want_ev_t *w)
{
    char where[160];
    snprintf(where, sizeof where, "kafka %s (partition %d offset %lld)", w->id, m->partition,
             (long long)m->offset);
    cr_expect(m->key && strcmp(m->key, w->channel) == 0, "%s: key %s, want %s", where,
              m->key ? m->key : "(none)", w->channel);
    const char *ct = th_kheader(m, "content-type");
    cr_expect(ct && strncmp(ct, "application/cloudevents+json", 28) == 0,
              "%s: content-type header %s, want application/cloudevents+json", where,
              ct ? ct : "(none)");
    const char *want_h[][2] = {{"ce_id", w->id}, {"ce_type", w->type}, {"ce_source", w->source}};
    for (size_t i = 0; i < 3; i++) {
        const char *h = th_kheader(m, want_h[i][0]);
        cr_expect(h && strcmp(h, want_h[i][1]) == 0, "%s: header %s is %s, want %s", where,
                  want_h[i][0], h ? h : "(none)", want_h[i][1]);
        cr_expect(th_kheader_count(m, want_h[i][0]) <= 1, "%s: header %s repeated", where,
                  want_h[i][0]);
    }
    cr_expect(m->json, "%s: value is not JSON: %.200s", where, m->value ? m->value : "(null)");
    if (m->json)
        check_cloudevent(m->json, w, where);
}

/* The Redis side of one event: fields id, type, event (the CloudEvent). */
static void check_redis(const th_xentry_t *e, const want_ev_t *w)
{
    char where[160];
    snprintf(where, sizeof where, "redis %s (entry %s)", w->id, e->sid);
    const char *names[] = {"id", "type", "event"};
    for (size_t i = 0; i < 3; i++)
        cr_expect(th_xfield_count(e, names[i]) == 1, "%s: field %s occurs %d times, want 1", where,
                  names[i], th_xfield_count(e, names[i]));
    const char *id = th_xfield(e, "id"), *type = th_xfield(e, "type");
    cr_expect(id && strcmp(id, w->id) == 0, "%s: field id %s", where, id ? id : "(none)");
    cr_expect(type && strcmp(type, w->type) == 0, "%s: field type %s, want %s", where,
              type ? type : "(none)", w->type);
    cr_expect(e->event, "%s: field event is not JSON", where);
    if (e->event)
        check_cloudevent(e->event, w, where);
}

/* Expects exactly one copy of the event on Kafka (in `msgs`) and on Redis (in `xs`),
 * and checks both. */
static void expect_once_on_both(const th_kmsgs_t *msgs, const th_xentries_t *xs, const want_ev_t *w)
{
    const th_kmsg_t *m = NULL;
    const th_xentry_t *x = NULL;
    int kn = kcount(msgs, w->id, &m), xn = xcount(xs, w->id, &x);
    cr_expect(kn == 1, "%s (%s): %d copies on Kafka, want 1", w->id, w->type, kn);
    cr_expect(xn == 1, "%s (%s): %d copies on the Redis stream, want 1", w->id, w->type, xn);
    if (m)
        check_kafka(m, w);
    if (x)
        check_redis(x, w);
}

/* A Whapi messages.post with one incoming text message whose id is `msg_id`. */
static char *whapi_text(const char *msg_id, const char *text)
{
    return th_strf("{\"messages\":[{\"id\":\"%s\",\"from_me\":false,\"type\":\"text\","
                   "\"chat_id\":\"919984351847@s.whatsapp.net\",\"timestamp\":1712995245,"
                   "\"source\":\"mobile\",\"text\":{\"body\":\"%s\"},\"from\":\"919984351847\","
                   "\"from_name\":\"Gerald\"}],\"event\":{\"type\":\"messages\",\"event\":"
                   "\"post\"},\"channel_id\":\"" WHAPI_CHANNEL "\"}",
                   msg_id, text);
}

static time_t rfc3339_or_zero(const char *s)
{
    time_t t;
    return th_rfc3339(s, &t) == 0 ? t : 0;
}

/* ======================================================================= Timely */

/* Each of the eight seed payloads, posted as Timely sends them, is published once on
 * events.channel or events.message (keyed by the channel) and once on the channel's
 * Redis stream, as a CloudEvent that keeps the whole payload in data.raw. */
Test(pipeline, timely_seed_events_reach_kafka_and_redis)
{
    static const struct {
        const char *file, *family;
    } seeds[] = {
        {"channel.connected", "channel"},    {"channel.error", "channel"},
        {"channel.disconnected", "channel"}, {"message.received", "message"},
        {"message.sent", "message"},         {"message.delivered", "message"},
        {"message.read", "message"},         {"message.failed", "message"},
    };
    enum { N = sizeof seeds / sizeof seeds[0] };
    json_t *bodies[N];
    th_relay_t *r = th_relay_new();
    TH_START(r);

    for (size_t i = 0; i < N; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "timely/%s.json", seeds[i].file);
        char *text = fixture(rel);
        bodies[i] = parse(text);
        post_one(r, "timely", text, jstr(bodies[i], "event_id"));
        free(text);
    }

    char tch[256], tmsg[256], stream[256];
    th_kmsgs_t chan = {0}, msg = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "channel", tch, sizeof tch), 3, WAIT_MS, SETTLE_MS, &chan);
    th_kafka_read(th_topic(r, "message", tmsg, sizeof tmsg), 5, WAIT_MS, SETTLE_MS, &msg);
    th_redis_read(th_stream(r, "chan_789", stream, sizeof stream), N, WAIT_MS, SETTLE_MS, &xs);
    cr_expect(chan.n == 3, "%s holds %zu messages, want 3", tch, chan.n);
    cr_expect(msg.n == 5, "%s holds %zu messages, want 5", tmsg, msg.n);
    cr_expect(xs.n == N, "%s holds %zu entries, want %d", stream, xs.n, (int)N);

    for (size_t i = 0; i < N; i++) {
        json_t *b = bodies[i];
        want_ev_t w = {
            .id = jstr(b, "event_id"),
            .type = jstr(b, "event"),
            .source = "/timely/ws_abc123",
            .channel = "chan_789",
            .workspace = "ws_abc123",
            .provider = "timely",
            .time = rfc3339_or_zero(jstr(b, "timestamp")),
            .raw = b, /* one event per request: the item is the whole body */
        };
        const th_kmsgs_t *topic = strcmp(seeds[i].family, "channel") == 0 ? &chan : &msg;
        expect_once_on_both(topic, &xs, &w);

        /* The normalized fields a consumer filters on (docs/providers.md vocabulary). */
        const th_kmsg_t *m = NULL;
        kcount(topic, w.id, &m);
        json_t *data = m && m->json ? json_object_get(m->json, "data") : NULL;
        if (!data)
            continue;
        json_t *src = json_object_get(b, "data");
        char where[128];
        snprintf(where, sizeof where, "kafka %s (%s) data", w.id, w.type);
        if (strcmp(seeds[i].family, "channel") == 0) {
            expect_str(data, "channel_id", "chan_789", where);
            expect_str(data, "channel_type", "whatsapp", where);
            expect_str(data, "status", jstr(src, "status"), where);
        } else {
            expect_str(data, "message_id", jstr(src, "message_id"), where);
            expect_str(data, "conversation_id", "conv_01HX3B2K", where);
            expect_str(data, "contact_id", "cont_456", where);
        }
        if (strcmp(w.type, "channel.disconnected") == 0)
            expect_str(data, "reason", "token_expired", where);
        if (strcmp(w.type, "channel.error") == 0) {
            expect_str(data, "error_code", "131056", where);
            expect_str(data, "error_category", "rate_limit", where);
        }
        if (strcmp(w.type, "message.received") == 0) {
            expect_str(data, "direction", "inbound", where);
            expect_str(data, "content", jstr(src, "content"), where);
        }
        if (strcmp(w.type, "message.sent") == 0) {
            expect_str(data, "direction", "outbound", where);
            expect_str(data, "sent_by_type", "agent", where);
        }
    }

    for (size_t i = 0; i < N; i++)
        json_decref(bodies[i]);
    th_kmsgs_free(&chan);
    th_kmsgs_free(&msg);
    th_xentries_free(&xs);
}

/* ======================================================================== Whapi */

/* One messages.post with three items is three events, answered with three ids in
 * item order, each published on its own with the item (not the envelope) as raw. */
Test(pipeline, whapi_message_batch_is_one_event_per_item)
{
    th_relay_t *r = th_relay_new();
    TH_START(r);
    char *body = th_strf(
        "{\"messages\":["
        "{\"id\":\"%s-in1\",\"from_me\":false,\"type\":\"text\",\"chat_id\":"
        "\"919984351847@s.whatsapp.net\",\"timestamp\":1712995245,\"source\":\"mobile\","
        "\"text\":{\"body\":\"Hello\"},\"from\":\"919984351847\",\"from_name\":\"Gerald\"},"
        "{\"id\":\"%s-in2\",\"from_me\":false,\"type\":\"image\",\"chat_id\":"
        "\"120363025246125486@g.us\",\"timestamp\":1712995250,\"source\":\"mobile\","
        "\"image\":{\"id\":\"jpeg-1\",\"mime_type\":\"image/jpeg\",\"caption\":\"look\"},"
        "\"from\":\"919984351848\",\"from_name\":\"Ann\"},"
        "{\"id\":\"%s-out\",\"from_me\":true,\"type\":\"text\",\"chat_id\":"
        "\"919984351847@s.whatsapp.net\",\"timestamp\":1712995260,\"source\":\"api\","
        "\"status\":\"sent\",\"text\":{\"body\":\"Hi Gerald\"},\"from\":\"15550001111\"}],"
        "\"event\":{\"type\":\"messages\",\"event\":\"post\"},\"channel_id\":\"" WHAPI_CHANNEL
        "\"}",
        r->prefix, r->prefix, r->prefix);
    json_t *parsed = parse(body);
    json_t *items = json_object_get(parsed, "messages");
    static const char *types[] = {"message.received", "message.received", "message.sent"};
    static const char *dirs[] = {"inbound", "inbound", "outbound"};

    th_resp_t resp;
    th_post(r, "whapi", body, NULL, &resp);
    json_t *ids = expect_ok(&resp, 3, 0, 3, "whapi messages.post x3");
    const char *id[3];
    for (size_t i = 0; i < 3; i++)
        id[i] = json_string_value(json_array_get(ids, i));
    cr_expect(strcmp(id[0], id[1]) && strcmp(id[0], id[2]) && strcmp(id[1], id[2]),
              "the three items got the same id: %s", resp.body);

    char topic[256], stream[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), 3, WAIT_MS, SETTLE_MS, &msgs);
    th_redis_read(th_stream(r, WHAPI_CHANNEL, stream, sizeof stream), 3, WAIT_MS, SETTLE_MS, &xs);
    cr_expect(msgs.n == 3, "%s holds %zu messages, want 3", topic, msgs.n);
    cr_expect(xs.n == 3, "%s holds %zu entries, want 3", stream, xs.n);

    for (size_t i = 0; i < 3; i++) {
        json_t *item = json_array_get(items, i);
        want_ev_t w = {
            .id = id[i],
            .type = types[i],
            .source = "/whapi",
            .channel = WHAPI_CHANNEL,
            .workspace = NULL,
            .provider = "whapi",
            .time = (time_t)json_integer_value(json_object_get(item, "timestamp")),
            .raw = item,
        };
        expect_once_on_both(&msgs, &xs, &w);
        const th_kmsg_t *m = NULL;
        kcount(&msgs, id[i], &m);
        json_t *data = m && m->json ? json_object_get(m->json, "data") : NULL;
        if (data) {
            char where[128];
            snprintf(where, sizeof where, "kafka %s data", id[i]);
            expect_str(data, "message_id", jstr(item, "id"), where);
            expect_str(data, "direction", dirs[i], where);
            if (i == 0)
                expect_str(data, "content", "Hello", where);
        }
        /* One channel, one partition: the items keep their order on both sinks. */
        if (msgs.n == 3)
            cr_expect(strcmp(kid(&msgs.v[i]), id[i]) == 0, "kafka position %zu holds %s, want %s",
                      i, kid(&msgs.v[i]), id[i]);
        if (xs.n == 3)
            cr_expect(strcmp(xid(&xs.v[i]), id[i]) == 0, "redis position %zu holds %s, want %s", i,
                      xid(&xs.v[i]), id[i]);
    }

    th_resp_free(&resp);
    json_decref(parsed);
    free(body);
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
}

/* channels.post health and users.post/delete become channel.* events, mapped on the
 * status text (STOP and SYNC_ERROR have no documented code, so they get odd ones). */
Test(pipeline, whapi_channel_status_maps_to_channel_types)
{
    static const struct {
        const char *text;
        int code;
        const char *type, *status; /* status NULL: not pinned by the contract */
    } health[] = {
        {"INIT", 1, "channel.connecting", "connecting"},
        {"LAUNCH", 2, "channel.connecting", "connecting"},
        {"QR", 3, "channel.pairing", "pairing"},
        {"AUTH", 4, "channel.connected", "connected"},
        {"ERROR", 5, "channel.error", NULL},
        {"SYNC_ERROR", 7, "channel.error", NULL},
        {"STOP", 6, "channel.disconnected", "disconnected"},
    };
    enum { NH = sizeof health / sizeof health[0], N = NH + 2 };
    th_relay_t *r = th_relay_new();
    TH_START(r);

    char *ids[N];
    const char *types[N];
    for (size_t i = 0; i < N; i++) {
        char *body;
        if (i < NH) {
            /* start_at differs per run so that ids never collide across runs. */
            body = th_strf(
                "{\"health\":{\"start_at\":%ld,\"uptime\":%zu,\"status\":{\"code\":%d,"
                "\"text\":\"%s\"},\"version\":\"1.8.3-74-gf7df472\"},\"event\":"
                "{\"type\":\"channel\",\"event\":\"post\"},\"channel_id\":\"" WHAPI_CHANNEL "\"}",
                (long)time(NULL) + getpid(), 10 + i, health[i].code, health[i].text);
            types[i] = health[i].type;
        } else {
            body = th_strf("{\"user\":{\"id\":\"61371989950\",\"name\":\"Jonathan %s\"},"
                           "\"event\":{\"type\":\"users\",\"event\":\"%s\"},\"channel_id\":"
                           "\"" WHAPI_CHANNEL "\"}",
                           r->prefix, i == NH ? "post" : "delete");
            types[i] = i == NH ? "channel.connected" : "channel.disconnected";
        }
        th_resp_t resp;
        th_post(r, "whapi", body, NULL, &resp);
        json_t *idl = expect_ok(&resp, 1, 0, 1, i < NH ? health[i].text : "users");
        ids[i] = strdup(json_string_value(json_array_get(idl, 0)));
        th_resp_free(&resp);
        free(body);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = i + 1; j < N; j++)
            cr_expect(strcmp(ids[i], ids[j]) != 0, "events %zu and %zu share the id %s", i, j,
                      ids[i]);

    char topic[256], stream[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "channel", topic, sizeof topic), N, WAIT_MS, SETTLE_MS, &msgs);
    th_redis_read(th_stream(r, WHAPI_CHANNEL, stream, sizeof stream), N, WAIT_MS, SETTLE_MS, &xs);
    cr_expect(msgs.n == N, "%s holds %zu messages, want %d", topic, msgs.n, (int)N);
    cr_expect(xs.n == N, "%s holds %zu entries, want %d", stream, xs.n, (int)N);
    for (size_t i = 0; i < N; i++) {
        want_ev_t w = {.id = ids[i],
                       .type = types[i],
                       .source = "/whapi",
                       .channel = WHAPI_CHANNEL,
                       .provider = "whapi"};
        expect_once_on_both(&msgs, &xs, &w);
        const th_kmsg_t *m = NULL;
        kcount(&msgs, ids[i], &m);
        json_t *data = m && m->json ? json_object_get(m->json, "data") : NULL;
        if (data && i < NH && health[i].status) {
            char where[128];
            snprintf(where, sizeof where, "kafka %s (%s) data", ids[i], health[i].text);
            expect_str(data, "status", health[i].status, where);
        }
        if (data && i < NH) {
            char where[128];
            snprintf(where, sizeof where, "kafka %s (%s) data", ids[i], health[i].text);
            expect_str(data, "channel_id", WHAPI_CHANNEL, where);
        }
    }
    for (size_t i = 0; i < N; i++)
        free(ids[i]);
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
}

/* statuses.post carries its timestamp as a string; each status of a message is an
 * event of its own (the status is part of the derived id, so sent, delivered and
 * read of one message are not taken for retries of each other). */
Test(pipeline, whapi_statuses_with_string_timestamps)
{
    static const struct {
        const char *msg, *status, *type;
    } st[] = {
        {"A", "sent", "message.sent"},     {"A", "delivered", "message.delivered"},
        {"A", "read", "message.read"},     {"B", "played", "message.read"},
        {"C", "failed", "message.failed"},
    };
    enum { N = sizeof st / sizeof st[0] };
    th_relay_t *r = th_relay_new();
    TH_START(r);

    char *items = th_strf("%s", "");
    for (size_t i = 0; i < N; i++) {
        char *next = th_strf("%s%s{\"id\":\"%s-%s\",\"code\":%zu,\"status\":\"%s\","
                             "\"recipient_id\":\"919984351847@s.whatsapp.net\","
                             "\"timestamp\":\"%ld\"}",
                             items, i ? "," : "", r->prefix, st[i].msg, i + 1, st[i].status,
                             1712995378L + (long)i);
        free(items);
        items = next;
    }
    char *body = th_strf("{\"statuses\":[%s],\"event\":{\"type\":\"statuses\",\"event\":"
                         "\"post\"},\"channel_id\":\"" WHAPI_CHANNEL "\"}",
                         items);
    json_t *parsed = parse(body);

    th_resp_t resp;
    th_post(r, "whapi", body, NULL, &resp);
    json_t *ids = expect_ok(&resp, N, 0, N, "whapi statuses.post");

    char topic[256], stream[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), N, WAIT_MS, SETTLE_MS, &msgs);
    th_redis_read(th_stream(r, WHAPI_CHANNEL, stream, sizeof stream), N, WAIT_MS, SETTLE_MS, &xs);
    cr_expect(msgs.n == N, "%s holds %zu messages, want %d", topic, msgs.n, (int)N);
    cr_expect(xs.n == N, "%s holds %zu entries, want %d", stream, xs.n, (int)N);
    for (size_t i = 0; i < N; i++) {
        json_t *item = json_array_get(json_object_get(parsed, "statuses"), i);
        want_ev_t w = {
            .id = json_string_value(json_array_get(ids, i)),
            .type = st[i].type,
            .source = "/whapi",
            .channel = WHAPI_CHANNEL,
            .provider = "whapi",
            .time = (time_t)(1712995378L + (long)i), /* from the string */
            .raw = item,
        };
        for (size_t j = 0; j < i; j++)
            cr_expect(strcmp(w.id, json_string_value(json_array_get(ids, j))) != 0,
                      "statuses %zu and %zu share the id %s", j, i, w.id);
        expect_once_on_both(&msgs, &xs, &w);
        const th_kmsg_t *m = NULL;
        kcount(&msgs, w.id, &m);
        json_t *data = m && m->json ? json_object_get(m->json, "data") : NULL;
        if (data) {
            char where[128];
            snprintf(where, sizeof where, "kafka %s (%s) data", w.id, st[i].status);
            expect_str(data, "message_id", jstr(item, "id"), where);
        }
    }
    th_resp_free(&resp);
    json_decref(parsed);
    free(body);
    free(items);
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
}

/* ========================================================================= Meta */

#define META_SECRET "meta-app-secret-7d1c"
#define META_TOKEN "meta-verify-token-42"
#define META_WABA "102290129340398"
#define META_PHONE "106540352242922"

/* Lowercase hex of n bytes. */
static void to_hex(const unsigned char *md, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

/* "meta_" + the first 32 hex digits of SHA-256(wamid 0x1f status), computed here
 * rather than asked of relay (docs/providers.md, event ids). */
static char *meta_status_id(const char *wamid, const char *status)
{
    char *text = th_strf("%s\x1f%s", wamid, status), hex[2 * SHA256_DIGEST_LENGTH + 1];
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, strlen(text), md);
    to_hex(md, SHA256_DIGEST_LENGTH, hex);
    free(text);
    return th_strf("meta_%.32s", hex);
}

/* The subscription check Meta makes when the webhook is set up: a GET answered with
 * exactly hub.challenge for the right verify_token, 403 otherwise, and no GET on a
 * source whose codec has no handshake. Then a body signed as Meta signs it
 * (X-Hub-Signature-256 over the app secret) with two messages and two statuses is four
 * events on Kafka and on the phone number's Redis stream. */
Test(pipeline, meta_handshake_and_signed_messages_and_statuses)
{
    th_relay_t *r = th_relay_new();
    size_t n = strlen(r->extra);
    snprintf(r->extra + n, sizeof r->extra - n,
             "\n[source meta]\ncodec = meta\nauth = hub-signature-256\nsecret = " META_SECRET
             "\nverify_token = " META_TOKEN "\n");
    TH_START(r);

    th_resp_t resp;
    th_get(r,
           "/v1/webhooks/"
           "meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=" META_TOKEN,
           &resp);
    cr_expect(resp.status == 200 && strcmp(resp.body, "1158201444") == 0,
              "handshake: HTTP %ld \"%s\", want 200 with the challenge", resp.status, resp.body);
    cr_expect(strncmp(resp.content_type, "text/plain", 10) == 0, "handshake Content-Type %s",
              resp.content_type);
    th_resp_free(&resp);
    th_get(r, "/v1/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=nope",
           &resp);
    cr_expect(resp.status == 403 && !strstr(resp.body, "1158201444"),
              "wrong token: HTTP %ld \"%s\", want 403 without the challenge", resp.status,
              resp.body);
    th_resp_free(&resp);
    th_get(r, "/v1/webhooks/timely?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x", &resp);
    cr_expect(resp.status == 405, "GET on a timely source: HTTP %ld, want 405", resp.status);
    th_resp_free(&resp);

    /* wamids of this instance, so that no other test's events can be taken for ours. */
    char *w[3];
    for (int i = 0; i < 3; i++)
        w[i] = th_strf("wamid.HBgL%s-%d", r->prefix, i);
    char *body = th_strf(
        "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"" META_WABA "\","
        "\"changes\":[{\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\","
        "\"metadata\":{\"display_phone_number\":\"15550783881\",\"phone_number_id\":\"" META_PHONE
        "\"},\"contacts\":[{\"profile\":{\"name\":\"Kerry Fisher\"},\"wa_id\":\"16315551181\"}],"
        "\"messages\":[{\"from\":\"16315551181\",\"id\":\"%s\",\"timestamp\":\"1669233778\","
        "\"text\":{\"body\":\"Hello\"},\"type\":\"text\"},"
        "{\"from\":\"16315551181\",\"id\":\"%s\",\"timestamp\":\"1669233779\",\"type\":\"image\","
        "\"image\":{\"caption\":\"the receipt\",\"mime_type\":\"image/jpeg\",\"id\":\"147953\"}}],"
        "\"statuses\":[{\"id\":\"%s\",\"status\":\"delivered\",\"timestamp\":\"1669233780\","
        "\"recipient_id\":\"16315551181\"},"
        "{\"id\":\"%s\",\"status\":\"failed\",\"timestamp\":\"1669233781\","
        "\"recipient_id\":\"16315551181\",\"errors\":[{\"code\":131047,"
        "\"title\":\"Re-engagement message\"}]}]}}]}]}",
        w[0], w[1], w[2], w[2]);
    unsigned char md[32];
    unsigned mdlen = 0;
    char sig[65], *hdr;
    HMAC(EVP_sha256(), META_SECRET, (int)strlen(META_SECRET), (const unsigned char *)body,
         strlen(body), md, &mdlen);
    to_hex(md, mdlen, sig);
    hdr = th_strf("X-Hub-Signature-256: sha256=%s", sig);
    const char *headers[] = {hdr, NULL};

    char *sid[2] = {meta_status_id(w[2], "delivered"), meta_status_id(w[2], "failed")};
    const struct {
        const char *id, *type, *content, *error_code;
        time_t time;
    } want[] = {
        {w[0], "message.received", "Hello", NULL, 1669233778},
        {w[1], "message.received", "the receipt", NULL, 1669233779},
        {sid[0], "message.delivered", NULL, NULL, 1669233780},
        {sid[1], "message.failed", NULL, "131047", 1669233781},
    };
    enum { N = sizeof want / sizeof want[0] };
    th_post(r, "meta", body, headers, &resp);
    json_t *ids = expect_ok(&resp, N, 0, N, "meta messages and statuses");
    for (size_t i = 0; i < N; i++)
        cr_expect(json_string_value(json_array_get(ids, i)) &&
                      strcmp(json_string_value(json_array_get(ids, i)), want[i].id) == 0,
                  "id %zu is %s, want %s", i, json_string_value(json_array_get(ids, i)),
                  want[i].id);
    th_resp_free(&resp);

    json_t *parsed = parse(body);
    json_t *value = json_object_get(
        json_array_get(
            json_object_get(json_array_get(json_object_get(parsed, "entry"), 0), "changes"), 0),
        "value");
    char topic[256], stream[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), N, WAIT_MS, SETTLE_MS, &msgs);
    th_redis_read(th_stream(r, META_PHONE, stream, sizeof stream), N, WAIT_MS, SETTLE_MS, &xs);
    cr_expect(msgs.n == N, "%s holds %zu messages, want %d", topic, msgs.n, (int)N);
    cr_expect(xs.n == N, "%s holds %zu entries, want %d", stream, xs.n, (int)N);
    for (size_t i = 0; i < N; i++) {
        want_ev_t we = {
            .id = want[i].id,
            .type = want[i].type,
            .source = "/meta/" META_WABA,
            .channel = META_PHONE,
            .workspace = META_WABA,
            .provider = "meta",
            .time = want[i].time,
            .raw = json_array_get(json_object_get(value, i < 2 ? "messages" : "statuses"), i % 2),
        };
        expect_once_on_both(&msgs, &xs, &we);
        const th_kmsg_t *m = NULL;
        kcount(&msgs, we.id, &m);
        json_t *data = m && m->json ? json_object_get(m->json, "data") : NULL;
        if (!data)
            continue;
        char where[160];
        snprintf(where, sizeof where, "kafka %s (%s) data", we.id, we.type);
        expect_str(data, "message_id", i < 2 ? w[i] : w[2], where);
        expect_str(data, "contact_id", "16315551181", where);
        expect_str(data, "direction", i < 2 ? "inbound" : "outbound", where);
        if (want[i].content)
            expect_str(data, "content", want[i].content, where);
        if (want[i].error_code) {
            expect_str(data, "error_code", want[i].error_code, where);
            expect_str(data, "error_message", "Re-engagement message", where);
        }
    }

    json_decref(parsed);
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
    for (int i = 0; i < 3; i++)
        free(w[i]);
    free(sid[0]);
    free(sid[1]);
    free(hdr);
    free(body);
}

/* ====================================================================== generic */

/* A provider relay has no codec for, configured by the environment alone (as a
 * container is): JSON Pointers pick the items and their fields, type_map the
 * normalized types; an unmapped type keeps a provider-scoped one in family other, an
 * item without an id gets a derived one that a retry repeats. */
Test(pipeline, generic_source_from_the_environment)
{
    static const char body[] =
        "{\"batch\":{\"events\":["
        "{\"uid\":\"g1\",\"kind\":\"online\",\"line\":\"L1\",\"at\":1780000000,\"acct\":\"acc-9\"},"
        "{\"uid\":\"g2\",\"kind\":\"msg\",\"line\":\"L1\",\"at\":\"2026-05-28T20:26:40Z\","
        "\"acct\":\"acc-9\"},"
        "{\"kind\":\"typing\",\"line\":\"L2\",\"acct\":\"acc-9\"}]}}";
    static const char *const env[][2] = {
        {"RELAY_SOURCE_ACME_CODEC", "generic"},
        {"RELAY_SOURCE_ACME_ITEMS", "/batch/events"},
        {"RELAY_SOURCE_ACME_ID", "/uid"},
        {"RELAY_SOURCE_ACME_TYPE", "/kind"},
        {"RELAY_SOURCE_ACME_CHANNEL", "/line"},
        {"RELAY_SOURCE_ACME_TIME", "/at"},
        {"RELAY_SOURCE_ACME_WORKSPACE", "/acct"},
        {"RELAY_SOURCE_ACME_TYPE_MAP", "online=channel.connected, msg=message.received"},
    };
    th_relay_t *r = th_relay_new();
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
        th_relay_setenv(r, env[i][0], env[i][1]);
    TH_START(r);

    th_resp_t resp;
    th_post(r, "acme", body, NULL, &resp);
    json_t *ids = expect_ok(&resp, 3, 0, 3, "generic batch of 3");
    char *derived = strdup(json_string_value(json_array_get(ids, 2)));
    cr_expect_str_eq(json_string_value(json_array_get(ids, 0)), "g1");
    cr_expect_str_eq(json_string_value(json_array_get(ids, 1)), "g2");
    cr_expect(strncmp(derived, "acme_", 5) == 0 && strlen(derived) == 37, "derived id %s", derived);
    th_resp_free(&resp);
    /* The provider's retry: the same three ids, nothing new. */
    th_post(r, "acme", body, NULL, &resp);
    ids = expect_ok(&resp, 0, 3, 3, "generic retry");
    cr_expect_str_eq(json_string_value(json_array_get(ids, 2)), derived);
    th_resp_free(&resp);

    json_t *doc = parse(body), *items = json_object_get(json_object_get(doc, "batch"), "events");
    const struct {
        const char *id, *type, *family, *channel;
        time_t time;
    } want[] = {
        {"g1", "channel.connected", "channel", "L1", 1780000000},
        {"g2", "message.received", "message", "L1", 1780000000},
        {derived, "acme.typing", "other", "L2", 0},
    };
    for (size_t i = 0; i < 3; i++) {
        char topic[256], stream[256];
        th_kmsgs_t km = {0};
        th_xentries_t xs = {0};
        th_kafka_read(th_topic(r, want[i].family, topic, sizeof topic), 1, WAIT_MS, SETTLE_MS, &km);
        th_redis_read(th_stream(r, want[i].channel, stream, sizeof stream),
                      strcmp(want[i].channel, "L1") ? 1 : 2, WAIT_MS, SETTLE_MS, &xs);
        want_ev_t w = {.id = want[i].id,
                       .type = want[i].type,
                       .source = "/acme/acc-9",
                       .channel = want[i].channel,
                       .workspace = "acc-9",
                       .provider = "generic",
                       .time = want[i].time,
                       .raw = json_array_get(items, i)};
        expect_once_on_both(&km, &xs, &w);
        const th_kmsg_t *m = NULL;
        kcount(&km, w.id, &m);
        json_t *data = m && m->json ? json_object_get(m->json, "data") : NULL;
        if (i == 0)
            expect_str(data, "status", "connected", "g1 data");
        if (i == 1)
            expect_str(data, "direction", "inbound", "g2 data");
        th_kmsgs_free(&km);
        th_xentries_free(&xs);
    }
    json_decref(doc);
    free(derived);
}

/* =================================================================== duplicates */

/* A provider's retry is answered 200 with duplicates counted, keeps the same ids, and
 * is never published a second time; a batch that mixes old and new items publishes
 * only the new ones. */
Test(pipeline, duplicates_are_answered_but_published_once)
{
    th_relay_t *r = th_relay_new();
    TH_START(r);
    char *eid = th_strf("evt_%s_dup", r->prefix);
    char *timely = th_timely_message(eid, "chan_dup", 1);
    th_resp_t resp;

    post_one(r, "timely", timely, eid);
    th_post(r, "timely", timely, NULL, &resp);
    json_t *ids = expect_ok(&resp, 0, 1, 1, "timely retry");
    cr_expect(strcmp(json_string_value(json_array_get(ids, 0)), eid) == 0,
              "the retry answered id %s, want %s", json_string_value(json_array_get(ids, 0)), eid);
    th_resp_free(&resp);

    /* Whapi has no event ids: a retry must derive the same ones. */
    char *items3 = th_strf(
        "{\"id\":\"%s-1\",\"from_me\":false,\"type\":\"text\",\"chat_id\":\"1@s.whatsapp.net\","
        "\"timestamp\":1712995245,\"text\":{\"body\":\"one\"},\"from\":\"1\"},"
        "{\"id\":\"%s-2\",\"from_me\":false,\"type\":\"text\",\"chat_id\":\"1@s.whatsapp.net\","
        "\"timestamp\":1712995246,\"text\":{\"body\":\"two\"},\"from\":\"1\"},"
        "{\"id\":\"%s-3\",\"from_me\":true,\"type\":\"text\",\"chat_id\":\"1@s.whatsapp.net\","
        "\"timestamp\":1712995247,\"text\":{\"body\":\"three\"},\"from\":\"2\"}",
        r->prefix, r->prefix, r->prefix);
    char *batch = th_strf("{\"messages\":[%s],\"event\":{\"type\":\"messages\",\"event\":"
                          "\"post\"},\"channel_id\":\"" WHAPI_CHANNEL "\"}",
                          items3);
    char *batch4 = th_strf(
        "{\"messages\":[%s,{\"id\":\"%s-4\",\"from_me\":false,\"type\":\"text\",\"chat_id\":"
        "\"1@s.whatsapp.net\",\"timestamp\":1712995248,\"text\":{\"body\":\"four\"},"
        "\"from\":\"1\"}],\"event\":{\"type\":\"messages\",\"event\":\"post\"},\"channel_id\":"
        "\"" WHAPI_CHANNEL "\"}",
        items3, r->prefix);

    th_resp_t first, again, mixed;
    th_post(r, "whapi", batch, NULL, &first);
    json_t *ids1 = expect_ok(&first, 3, 0, 3, "whapi batch");
    th_post(r, "whapi", batch, NULL, &again);
    json_t *ids2 = expect_ok(&again, 0, 3, 3, "whapi batch retried");
    cr_expect(json_equal(ids1, ids2), "a retried batch got other ids: %s vs %s", first.body,
              again.body);
    th_post(r, "whapi", batch4, NULL, &mixed);
    json_t *ids3 = expect_ok(&mixed, 1, 3, 4, "whapi batch with 3 old items and 1 new");
    for (size_t i = 0; i < 3; i++)
        cr_expect(strcmp(json_string_value(json_array_get(ids3, i)),
                         json_string_value(json_array_get(ids1, i))) == 0,
                  "old item %zu got another id in a later batch: %s vs %s", i, first.body,
                  mixed.body);

    /* Read longer than usual: a second copy would come right behind the first. */
    char topic[256], s1[256], s2[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xt = {0}, xw = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), 5, WAIT_MS, 1500, &msgs);
    th_redis_read(th_stream(r, "chan_dup", s1, sizeof s1), 1, WAIT_MS, 1000, &xt);
    th_redis_read(th_stream(r, WHAPI_CHANNEL, s2, sizeof s2), 4, WAIT_MS, 200, &xw);
    cr_expect(msgs.n == 5, "%s holds %zu messages, want 5 (1 Timely + 4 Whapi)", topic, msgs.n);
    cr_expect(xt.n == 1, "%s holds %zu entries, want 1", s1, xt.n);
    cr_expect(xw.n == 4, "%s holds %zu entries, want 4", s2, xw.n);
    cr_expect(kcount(&msgs, eid, NULL) == 1 && xcount(&xt, eid, NULL) == 1,
              "%s: %d copies on Kafka and %d on Redis, want 1 each", eid, kcount(&msgs, eid, NULL),
              xcount(&xt, eid, NULL));
    for (size_t i = 0; i < 4; i++) {
        const char *id = json_string_value(json_array_get(ids3, i));
        cr_expect(kcount(&msgs, id, NULL) == 1 && xcount(&xw, id, NULL) == 1,
                  "%s: %d copies on Kafka and %d on Redis, want 1 each", id,
                  kcount(&msgs, id, NULL), xcount(&xw, id, NULL));
    }

    th_resp_free(&first);
    th_resp_free(&again);
    th_resp_free(&mixed);
    free(items3);
    free(batch);
    free(batch4);
    free(timely);
    free(eid);
    th_kmsgs_free(&msgs);
    th_xentries_free(&xt);
    th_xentries_free(&xw);
}

/* ================================================================== CloudEvents */

/* POSTs `body` to the ce source with `headers` (its Content-Type among them, or none). */
static void ce_post(const th_relay_t *r, const char *body, const char *const *headers,
                    th_resp_t *out)
{
    char url[512];
    snprintf(url, sizeof url, "%s/v1/webhooks/ce", r->base);
    th_http("POST", url, body, strlen(body), headers, out);
}

/* The copy of (source, id) among msgs, or NULL; *n counts them. */
static const th_kmsg_t *ce_kfind(const th_kmsgs_t *msgs, const char *source, const char *id, int *n)
{
    const th_kmsg_t *first = NULL;
    *n = 0;
    for (size_t i = 0; i < msgs->n; i++) {
        const th_kmsg_t *m = &msgs->v[i];
        if (m->json && !strcmp(kid(m), id) && jstr(m->json, "source") &&
            !strcmp(jstr(m->json, "source"), source) && (*n)++ == 0)
            first = m;
    }
    return first;
}

/* Events that arrive as CloudEvents (binary, structured, batched) keep their own
 * id, source and type on both sinks, are routed by their channel, and are
 * deduplicated on source + id: a retry is answered as a duplicate, the same id
 * from another source is another event. */
Test(pipeline, cloudevents_keep_their_identity)
{
    th_relay_t *r = th_relay_new();
    snprintf(r->extra, sizeof r->extra, "\n[source ce]\ncodec = cloudevents\nauth = none\n");
    TH_START(r);
    char *id_bin = th_strf("%s-bin", r->prefix), *id_st = th_strf("%s-st", r->prefix);
    char *id_b1 = th_strf("%s-b1", r->prefix), *id_b2 = th_strf("%s-b2", r->prefix);
    char *h_id = th_strf("ce-id: %s", id_bin);
    const char *bin_h[] = {"Content-Type: application/json",
                           "ce-specversion: 1.0",
                           h_id,
                           "ce-source: /ce/sensors",
                           "ce-type: message.received",
                           "ce-channelid: ce-chan",
                           "ce-comexampleext: caf%C3%A9",
                           NULL};
    char *structured = th_strf("{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/ce/a\","
                               "\"type\":\"channel.connected\",\"subject\":\"ce-chan\","
                               "\"time\":\"2026-04-19T12:00:00+02:00\",\"data\":{\"up\":true}}",
                               id_st);
    char *other_source = th_strf("{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/ce/b\","
                                 "\"type\":\"channel.connected\",\"subject\":\"ce-chan\"}",
                                 id_st);
    char *batch = th_strf("[{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/ce/a\",\"type\":"
                          "\"com.example.one\",\"partitionkey\":\"ce-chan\",\"data\":[1]},"
                          "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/ce/a\",\"type\":"
                          "\"message.sent\",\"channelid\":\"ce-chan\",\"data_base64\":\"AA==\"}]",
                          id_b1, id_b2);
    const char *st_h[] = {"Content-Type: application/cloudevents+json; charset=UTF-8", NULL};
    const char *batch_h[] = {"Content-Type: application/cloudevents-batch+json", NULL};
    th_resp_t resp;

    ce_post(r, "{\"text\":\"hi\"}", bin_h, &resp);
    expect_ok(&resp, 1, 0, 1, "binary mode");
    th_resp_free(&resp);
    ce_post(r, structured, st_h, &resp);
    expect_ok(&resp, 1, 0, 1, "structured mode");
    th_resp_free(&resp);
    ce_post(r, batch, batch_h, &resp);
    json_t *ids = expect_ok(&resp, 2, 0, 2, "batch of 2");
    cr_expect(ids && !strcmp(json_string_value(json_array_get(ids, 0)), id_b1) &&
                  !strcmp(json_string_value(json_array_get(ids, 1)), id_b2),
              "the batch answered %s", resp.body);
    th_resp_free(&resp);
    ce_post(r, structured, st_h, &resp);
    expect_ok(&resp, 0, 1, 1, "structured mode again");
    th_resp_free(&resp);
    ce_post(r, other_source, st_h, &resp);
    expect_ok(&resp, 1, 0, 1, "the same id from another source");
    th_resp_free(&resp);

    static const char *const fams[] = {"message", "channel", "other"};
    const int counts[] = {2, 2, 1};
    th_kmsgs_t k[3] = {{0}};
    th_xentries_t xs = {0};
    char topic[256], stream[256];
    for (size_t i = 0; i < 3; i++) {
        th_kafka_read(th_topic(r, fams[i], topic, sizeof topic), counts[i], WAIT_MS, 1000, &k[i]);
        cr_expect(k[i].n == (size_t)counts[i], "%s holds %zu messages, want %d", topic, k[i].n,
                  counts[i]);
    }
    th_redis_read(th_stream(r, "ce-chan", stream, sizeof stream), 5, WAIT_MS, SETTLE_MS, &xs);
    cr_expect(xs.n == 5, "%s holds %zu entries, want 5", stream, xs.n);

    const struct {
        int fam;
        const char *id, *source, *type;
    } want[] = {
        {0, id_bin, "/ce/sensors", "message.received"},
        {1, id_st, "/ce/a", "channel.connected"},
        {1, id_st, "/ce/b", "channel.connected"},
        {2, id_b1, "/ce/a", "com.example.one"},
        {0, id_b2, "/ce/a", "message.sent"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char where[160];
        int n;
        snprintf(where, sizeof where, "kafka %s from %s", want[i].id, want[i].source);
        const th_kmsg_t *m = ce_kfind(&k[want[i].fam], want[i].source, want[i].id, &n);
        cr_expect(n == 1, "%s: %d copies, want 1", where, n);
        if (!m)
            continue;
        cr_expect(m->key && !strcmp(m->key, "ce-chan"), "%s: key %s", where, m->key);
        const char *hs = th_kheader(m, "ce_source"), *ht = th_kheader(m, "ce_type");
        cr_expect(hs && !strcmp(hs, want[i].source), "%s: ce_source %s", where, hs);
        cr_expect(ht && !strcmp(ht, want[i].type), "%s: ce_type %s", where, ht);
        expect_str(m->json, "specversion", "1.0", where);
        expect_str(m->json, "type", want[i].type, where);
        expect_str(m->json, "channelid", "ce-chan", where);
        expect_str(m->json, "provider", "cloudevents", where);
    }
    /* What each mode kept as it came. */
    int n;
    const th_kmsg_t *m = ce_kfind(&k[0], "/ce/sensors", id_bin, &n);
    if (m) {
        json_t *data = parse("{\"text\":\"hi\"}");
        cr_expect(json_equal(json_object_get(m->json, "data"), data), "binary data: %s", m->value);
        expect_str(m->json, "datacontenttype", "application/json", "binary");
        expect_str(m->json, "comexampleext", "caf\xc3\xa9", "binary");
        json_decref(data);
    }
    if ((m = ce_kfind(&k[1], "/ce/a", id_st, &n))) {
        expect_str(m->json, "time", "2026-04-19T12:00:00+02:00", "structured");
        expect_str(m->json, "subject", "ce-chan", "structured");
        cr_expect(json_is_true(json_object_get(json_object_get(m->json, "data"), "up")),
                  "structured data: %s", m->value);
    }
    if ((m = ce_kfind(&k[0], "/ce/a", id_b2, &n)))
        expect_str(m->json, "data_base64", "AA==", "batch");
    /* Redis: every event once, in posting order (one channel, one stream). */
    const char *order[] = {id_bin, id_st, id_b1, id_b2, id_st};
    for (size_t i = 0; i < xs.n && i < 5; i++) {
        cr_expect(!strcmp(xid(&xs.v[i]), order[i]), "redis position %zu holds %s, want %s", i,
                  xid(&xs.v[i]), order[i]);
        const char *src = xs.v[i].event ? jstr(xs.v[i].event, "source") : NULL;
        cr_expect(src && !strcmp(src, i == 0   ? "/ce/sensors"
                                      : i == 4 ? "/ce/b"
                                               : "/ce/a"),
                  "redis position %zu: source %s", i, src);
    }

    for (size_t i = 0; i < 3; i++)
        th_kmsgs_free(&k[i]);
    th_xentries_free(&xs);
    free(batch);
    free(other_source);
    free(structured);
    free(h_id);
    free(id_bin);
    free(id_st);
    free(id_b1);
    free(id_b2);
}

/* ======================================================================== order */

/* One channel's events stay in the order they were posted: on one Kafka partition
 * (the key is the channel) and on the channel's stream. */
Test(pipeline, one_channel_keeps_posting_order)
{
    enum { N = 50 };
    th_relay_t *r = th_relay_new();
    TH_START(r);
    char *ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = th_strf("evt_%s_%03d", r->prefix, i);
        char *body = th_timely_message(ids[i], "chan_order", i);
        post_one(r, "timely", body, ids[i]);
        free(body);
    }
    char topic[256], stream[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), N, WAIT_MS, SETTLE_MS, &msgs);
    th_redis_read(th_stream(r, "chan_order", stream, sizeof stream), N, WAIT_MS, SETTLE_MS, &xs);
    cr_expect(msgs.n == N, "%s holds %zu messages, want %d", topic, msgs.n, N);
    cr_expect(xs.n == N, "%s holds %zu entries, want %d", stream, xs.n, N);
    for (size_t i = 0; i < msgs.n && i < N; i++) {
        cr_expect(msgs.v[i].partition == msgs.v[0].partition,
                  "message %zu is on partition %d, message 0 on %d: one key, one partition", i,
                  msgs.v[i].partition, msgs.v[0].partition);
        cr_expect(strcmp(kid(&msgs.v[i]), ids[i]) == 0, "kafka position %zu holds %s, want %s", i,
                  kid(&msgs.v[i]), ids[i]);
    }
    for (size_t i = 0; i < xs.n && i < N; i++)
        cr_expect(strcmp(xid(&xs.v[i]), ids[i]) == 0, "redis position %zu holds %s, want %s", i,
                  xid(&xs.v[i]), ids[i]);
    for (int i = 0; i < N; i++)
        free(ids[i]);
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
}

/* ====================================================================== restart */

/* Posts n Timely events for `channel` while both sinks are unreachable: each is still
 * answered 200 (the WAL has it). ids[] gets the event ids (malloc'd). */
static void post_while_sinks_down(th_relay_t *r, const char *channel, char **ids, int n)
{
    for (int i = 0; i < n; i++) {
        ids[i] = th_strf("evt_%s_%s_%02d", r->prefix, channel, i);
        char *body = th_timely_message(ids[i], channel, i);
        post_one(r, "timely", body, ids[i]);
        free(body);
    }
}

/* After relay is back with working sinks, every one of ids[] must be on Kafka and on
 * Redis. Publication is at least once: a copy with the same id is tolerated (and
 * reported), anything else is not, and the channel's order holds. */
static void expect_replayed(th_relay_t *r, const char *channel, char **ids, int n)
{
    char topic[256], stream[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), (size_t)n, WAIT_MS, 1000, &msgs);
    th_redis_read(th_stream(r, channel, stream, sizeof stream), (size_t)n, WAIT_MS, 500, &xs);
    int kdup = 0, xdup = 0;
    for (int i = 0; i < n; i++) {
        int kn = kcount(&msgs, ids[i], NULL), xn = xcount(&xs, ids[i], NULL);
        cr_expect(kn >= 1, "%s never reached Kafka after the restart", ids[i]);
        cr_expect(xn >= 1, "%s never reached Redis after the restart", ids[i]);
        kdup += kn > 1 ? kn - 1 : 0;
        xdup += xn > 1 ? xn - 1 : 0;
    }
    for (size_t i = 0; i < msgs.n; i++) {
        int known = 0;
        for (int j = 0; j < n; j++)
            known |= strcmp(kid(&msgs.v[i]), ids[j]) == 0;
        cr_expect(known, "kafka holds an event that was never posted: %s", kid(&msgs.v[i]));
    }
    for (size_t i = 0; i < xs.n; i++) {
        int known = 0;
        for (int j = 0; j < n; j++)
            known |= strcmp(xid(&xs.v[i]), ids[j]) == 0;
        cr_expect(known, "redis holds an event that was never posted: %s", xid(&xs.v[i]));
    }
    if (kdup || xdup)
        cr_log_warn("replay re-sent %d copies to Kafka and %d to Redis (same ids)", kdup, xdup);
    /* First copies in posted order. */
    int next = 0;
    for (size_t i = 0; i < msgs.n && next < n; i++)
        if (strcmp(kid(&msgs.v[i]), ids[next]) == 0)
            next++;
    cr_expect(next == n || msgs.n < (size_t)n, "kafka has the replayed events out of order");
    next = 0;
    for (size_t i = 0; i < xs.n && next < n; i++)
        if (strcmp(xid(&xs.v[i]), ids[next]) == 0)
            next++;
    cr_expect(next == n || xs.n < (size_t)n, "redis has the replayed events out of order");
    for (size_t i = 0; i < msgs.n; i++)
        if (strcmp(kid(&msgs.v[i]), ids[0]) == 0) {
            want_ev_t w = {.id = ids[0],
                           .type = "message.received",
                           .source = "/timely/ws_abc123",
                           .channel = channel,
                           .workspace = "ws_abc123",
                           .provider = "timely"};
            check_kafka(&msgs.v[i], &w);
            break;
        }
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
}

/* Kafka and Redis are down: webhooks are still taken (200). relay is stopped the
 * normal way and started again with the sinks back: it replays what no sink has
 * acknowledged, on both sinks. */
Test(pipeline, restart_replays_what_no_sink_acknowledged)
{
    enum { N = 10 };
    char *ids[N];
    th_relay_t *r = th_relay_new();
    th_relay_sinks_unreachable(r);
    TH_START(r);
    post_while_sinks_down(r, "chan_replay", ids, N);

    /* A stop must not hang on sinks that never answer. */
    int st = th_relay_stop(r, 10000);
    cr_expect(st != -1, "relay did not exit within 10 s of SIGTERM with its sinks down");
    cr_expect(st == -1 || (WIFEXITED(st) && WEXITSTATUS(st) == 0),
              "relay's exit on SIGTERM was not a clean exit 0 (wait status 0x%x)", st);

    th_relay_sinks_reachable(r);
    TH_START(r);
    expect_replayed(r, "chan_replay", ids, N);
    for (int i = 0; i < N; i++)
        free(ids[i]);
}

/* The same with a crash (SIGKILL) instead of a stop: a 200 means the event is in the
 * WAL, so nothing answered 200 may be lost. */
Test(pipeline, crash_loses_no_acknowledged_event)
{
    enum { N = 10 };
    char *ids[N];
    th_relay_t *r = th_relay_new();
    th_relay_sinks_unreachable(r);
    TH_START(r);
    post_while_sinks_down(r, "chan_crash", ids, N);
    th_relay_kill(r);

    th_relay_sinks_reachable(r);
    TH_START(r);
    expect_replayed(r, "chan_crash", ids, N);
    for (int i = 0; i < N; i++)
        free(ids[i]);
}

/* Dedup outlives a restart: a provider retrying across relay's restart must not
 * produce a second copy. */
Test(pipeline, dedup_survives_restart)
{
    th_relay_t *r = th_relay_new();
    TH_START(r);
    char *eid = th_strf("evt_%s_restart", r->prefix);
    char *body = th_timely_message(eid, "chan_rdup", 7);
    post_one(r, "timely", body, eid);

    char topic[256];
    th_kmsgs_t msgs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), 1, WAIT_MS, 0, &msgs);
    cr_expect(msgs.n == 1, "%s never reached Kafka", eid);
    th_kmsgs_free(&msgs);

    int st = th_relay_stop(r, 10000);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "relay did not exit 0 on SIGTERM (wait status 0x%x)", st);
    TH_START(r);
    th_resp_t resp;
    th_post(r, "timely", body, NULL, &resp);
    expect_ok(&resp, 0, 1, 1, "timely retry after a restart");
    th_resp_free(&resp);

    char stream[256];
    th_xentries_t xs = {0};
    th_kafka_read(topic, 1, WAIT_MS, 1500, &msgs);
    th_redis_read(th_stream(r, "chan_rdup", stream, sizeof stream), 1, WAIT_MS, 0, &xs);
    cr_expect(kcount(&msgs, eid, NULL) == 1, "%s: %d copies on Kafka, want 1", eid,
              kcount(&msgs, eid, NULL));
    cr_expect(xcount(&xs, eid, NULL) == 1, "%s: %d copies on Redis, want 1", eid,
              xcount(&xs, eid, NULL));
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
    free(body);
    free(eid);
}

/* One sink down does not hold the other back (one WAL cursor per sink): while Redis
 * is stopped, Kafka keeps getting events; once Redis is back it gets all of them. */
Test(pipeline, redis_outage_does_not_hold_kafka_back)
{
    enum { N = 6 };
    if (!getenv("RELAY_TEST_TOOLS") || !getenv("RELAY_TEST_REDIS_DIR"))
        cr_skip_test("needs RELAY_TEST_TOOLS and RELAY_TEST_REDIS_DIR (tools/run-tests.sh)");
    th_relay_t *r = th_relay_new();
    TH_START(r);
    char *ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = th_strf("evt_%s_outage_%d", r->prefix, i);
    char topic[256], stream[256];
    th_topic(r, "message", topic, sizeof topic);
    th_stream(r, "chan_outage", stream, sizeof stream);

    /* Both sinks work. */
    char *body = th_timely_message(ids[0], "chan_outage", 0);
    post_one(r, "timely", body, ids[0]);
    free(body);
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(topic, 1, WAIT_MS, 0, &msgs);
    th_redis_read(stream, 1, WAIT_MS, 0, &xs);
    cr_assert(msgs.n == 1 && xs.n == 1, "before the outage: %zu on Kafka, %zu on Redis", msgs.n,
              xs.n);
    th_kmsgs_free(&msgs);

    cr_assert(th_redis_service("stop") == 0, "cannot stop the test Redis");
    for (int i = 1; i < N; i++) {
        body = th_timely_message(ids[i], "chan_outage", i);
        post_one(r, "timely", body, ids[i]);
        free(body);
    }
    th_kafka_read(topic, N, WAIT_MS, 0, &msgs);
    cr_expect(msgs.n == N, "with Redis down Kafka got %zu of %d events", msgs.n, N);
    for (int i = 0; i < N; i++)
        cr_expect(kcount(&msgs, ids[i], NULL) == 1, "%s: %d copies on Kafka during the outage",
                  ids[i], kcount(&msgs, ids[i], NULL));
    cr_assert(th_redis_service("start") == 0, "cannot start the test Redis again");

    th_redis_read(stream, N, WAIT_MS, SETTLE_MS, &xs);
    int next = 0;
    for (size_t i = 0; i < xs.n && next < N; i++)
        if (strcmp(xid(&xs.v[i]), ids[next]) == 0)
            next++;
    cr_expect(next == N,
              "after Redis came back its stream holds %zu entries and %d of the %d "
              "events in order",
              xs.n, next, N);
    for (int i = 0; i < N; i++) {
        cr_expect(xcount(&xs, ids[i], NULL) >= 1, "%s never reached Redis", ids[i]);
        free(ids[i]);
    }
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
}

/* When the WAL reaches its cap (sinks down, nothing drains it) relay answers 503 with
 * Retry-After rather than taking events it cannot keep; everything it did answer 200
 * is published once the sinks are back. */
Test(pipeline, full_wal_answers_503_and_keeps_what_it_took)
{
    enum { MAX = 300 };
    char *ids[MAX];
    int taken = 0, got503 = 0;
    th_relay_t *r = th_relay_new();
    th_relay_sinks_unreachable(r);
    snprintf(r->wal_extra, sizeof r->wal_extra, "segment_size = 64k\nmax_size = 1m\n");
    TH_START(r);
    char pad[16385];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < MAX && !got503; i++) {
        ids[taken] = th_strf("evt_%s_full_%03d", r->prefix, i);
        char *body = th_timely_message(ids[taken], "chan_full", i);
        /* 16 KiB more per event, inside the data so that it is part of raw. */
        char *fat = th_strf("%.*s,\"note\":\"%s\"}}", (int)strlen(body) - 2, body, pad);
        th_resp_t resp;
        th_post(r, "timely", fat, NULL, &resp);
        if (resp.status == 200) {
            taken++;
        } else {
            free(ids[taken]);
            expect_error(&resp, 503, "post to a full WAL");
            cr_expect(resp.retry_after[0], "503 without Retry-After");
            got503 = 1;
        }
        th_resp_free(&resp);
        free(fat);
        free(body);
    }
    cr_expect(got503, "%d events of ~17 KiB were all taken with max_size = 1m", taken);
    cr_expect(taken > 0, "the first event was refused already");

    th_relay_kill(r);
    th_relay_sinks_reachable(r);
    TH_START(r);
    if (taken)
        expect_replayed(r, "chan_full", ids, taken);
    for (int i = 0; i < taken; i++)
        free(ids[i]);
}

/* ========================================================================= HTTP */

/* A body for the Whapi-shaped token-protected sources: a fresh message id per call so
 * that each accepted post is a new event. */
static char *locked_body(const th_relay_t *r, int n)
{
    char *id = th_strf("%s-auth-%d", r->prefix, n);
    char *b = whapi_text(id, "auth");
    free(id);
    return b;
}

Test(pipeline, http_errors_are_json_with_the_contract_codes)
{
    th_relay_t *r = th_relay_new();
    snprintf(r->max_body, sizeof r->max_body, "4k");
    TH_START(r);
    char url[256];
    th_resp_t resp;
    int accepted = 0; /* events the message topic must end up with */
    char *good = locked_body(r, 0);

    /* 404 unknown source, unknown path. */
    th_post(r, "nosuch", good, NULL, &resp);
    expect_error(&resp, 404, "POST to an unknown source");
    th_resp_free(&resp);
    th_get(r, "/v2/nothing", &resp);
    cr_expect(resp.status == 404, "GET of an unknown path: %ld, want 404", resp.status);
    th_resp_free(&resp);

    /* 405 wrong method on the webhook route. */
    snprintf(url, sizeof url, "%s/v1/webhooks/timely", r->base);
    th_http("GET", url, NULL, 0, NULL, &resp);
    expect_error(&resp, 405, "GET on the webhook route");
    th_resp_free(&resp);
    const char *jh[] = {"Content-Type: application/json", NULL};
    th_http("PUT", url, good, strlen(good), jh, &resp);
    expect_error(&resp, 405, "PUT on the webhook route");
    th_resp_free(&resp);

    /* 400 not JSON, or JSON the codec cannot take. */
    static const struct {
        const char *source, *body, *what;
    } bad[] = {
        {"timely", "{\"event\": \"message.received\", ", "truncated JSON"},
        {"timely", "this is not json", "plain text"},
        {"timely", "", "empty body"},
        {"timely", "[1,2,3]", "a JSON array for Timely"},
        {"timely", "{\"hello\":\"world\"}", "an object with no Timely envelope"},
        {"whapi", "\"just a string\"", "a JSON string for Whapi"},
        {"whapi", "42", "a JSON number for Whapi"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        th_post(r, bad[i].source, bad[i].body, NULL, &resp);
        expect_error(&resp, 400, bad[i].what);
        th_resp_free(&resp);
    }

    /* 401 on auth = token with the default header: "Authorization: Bearer <secret>". */
    static const char *const no_auth[] = {NULL};
    static const char *const wrong_bearer[] = {"Authorization: Bearer wrong", NULL};
    static const char *const no_bearer[] = {"Authorization: s3cret", NULL};
    static const char *const prefix_only[] = {"Authorization: Bearer s3cre", NULL};
    static const char *const longer[] = {"Authorization: Bearer s3cret2", NULL};
    static const char *const right[] = {"Authorization: Bearer s3cret", NULL};
    const char *const *denied[] = {no_auth, wrong_bearer, no_bearer, prefix_only, longer};
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        char *b = locked_body(r, 100 + (int)i);
        th_post(r, "locked", b, denied[i], &resp);
        char what[128];
        snprintf(what, sizeof what, "source locked with %s",
                 denied[i][0] ? denied[i][0] : "no token");
        expect_error(&resp, 401, what);
        th_resp_free(&resp);
        free(b);
    }
    char *b = locked_body(r, 1);
    th_post(r, "locked", b, right, &resp);
    expect_ok(&resp, 1, 0, 1, "source locked with the right bearer token");
    accepted++;
    th_resp_free(&resp);
    free(b);

    /* A custom token header compares the exact secret, as Whapi's custom headers do. */
    static const char *const hdr_right[] = {"X-Relay-Token: hdr-s3cret", NULL};
    static const char *const hdr_wrong[] = {"X-Relay-Token: nope", NULL};
    static const char *const hdr_bearer[] = {"X-Relay-Token: Bearer hdr-s3cret", NULL};
    static const char *const hdr_in_authz[] = {"Authorization: Bearer hdr-s3cret", NULL};
    const char *const *hdenied[] = {no_auth, hdr_wrong, hdr_bearer, hdr_in_authz};
    for (size_t i = 0; i < sizeof hdenied / sizeof hdenied[0]; i++) {
        b = locked_body(r, 200 + (int)i);
        th_post(r, "lockedhdr", b, hdenied[i], &resp);
        char what[128];
        snprintf(what, sizeof what, "source lockedhdr with %s",
                 hdenied[i][0] ? hdenied[i][0] : "no token");
        expect_error(&resp, 401, what);
        th_resp_free(&resp);
        free(b);
    }
    b = locked_body(r, 2);
    th_post(r, "lockedhdr", b, hdr_right, &resp);
    expect_ok(&resp, 1, 0, 1, "source lockedhdr with the right X-Relay-Token");
    accepted++;
    th_resp_free(&resp);
    free(b);

    /* 413: max_body is 4k. A real 8 KiB body ... */
    char big[8192];
    int bn = snprintf(big, sizeof big, "{\"event\":\"message.received\",\"pad\":\"");
    memset(big + bn, 'p', sizeof big - (size_t)bn - 3);
    memcpy(big + sizeof big - 3, "\"}", 3);
    th_post(r, "timely", big, NULL, &resp);
    expect_error(&resp, 413, "an 8 KiB body with max_body = 4k");
    th_resp_free(&resp);
    /* ... and a Content-Length of 50 MB with no body sent: relay must answer from the
     * header, without waiting for (or buffering) a body over its limit. */
    char *req = th_strf("POST /v1/webhooks/timely HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                        "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n",
                        r->port);
    char *reply = NULL;
    long st = th_raw_http(r->port, req, 3000, &reply);
    cr_expect(st == 413,
              "Content-Length: 50000000 got %ld (0: no answer within 3 s), want 413: %.300s", st,
              reply);
    free(req);
    free(reply);

    /* 415: a Content-Type that is not JSON. */
    static const char *const ct_text[] = {"Content-Type: text/plain", NULL};
    static const char *const ct_form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    const char *const *cts[] = {ct_text, ct_form};
    for (size_t i = 0; i < 2; i++) {
        b = locked_body(r, 300 + (int)i);
        snprintf(url, sizeof url, "%s/v1/webhooks/whapi", r->base);
        th_http("POST", url, b, strlen(b), cts[i], &resp);
        expect_error(&resp, 415, cts[i][0]);
        th_resp_free(&resp);
        free(b);
    }
    /* JSON with parameters, and no Content-Type at all, are taken. */
    static const char *const ct_charset[] = {"Content-Type: application/json; charset=utf-8", NULL};
    b = locked_body(r, 3);
    th_http("POST", url, b, strlen(b), ct_charset, &resp);
    expect_ok(&resp, 1, 0, 1, "Content-Type: application/json; charset=utf-8");
    accepted++;
    th_resp_free(&resp);
    free(b);
    b = locked_body(r, 4);
    th_http("POST", url, b, strlen(b), NULL, &resp);
    expect_ok(&resp, 1, 0, 1, "no Content-Type");
    accepted++;
    th_resp_free(&resp);
    free(b);

    /* Nothing that was refused is published: the message topic holds exactly the
     * accepted events. */
    char topic[256];
    th_kmsgs_t msgs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), (size_t)accepted, WAIT_MS, 1000,
                  &msgs);
    cr_expect(msgs.n == (size_t)accepted, "%s holds %zu events, want the %d accepted", topic,
              msgs.n, accepted);
    th_kmsgs_free(&msgs);
    free(good);
}

/* /healthz, /readyz and /metrics, with counters that match what was posted. */
Test(pipeline, health_readiness_and_metrics)
{
    th_relay_t *r = th_relay_new();
    TH_START(r);
    th_resp_t resp;
    th_get(r, "/healthz", &resp);
    cr_expect(resp.status == 200, "/healthz: %ld", resp.status);
    th_resp_free(&resp);
    /* Ready once the sinks are connected; give them the time a connect takes. */
    int64_t deadline = th_now_ms() + 10000;
    long ready = 0;
    while (th_now_ms() < deadline && ready != 200) {
        th_get(r, "/readyz", &resp);
        ready = resp.status;
        th_resp_free(&resp);
        if (ready != 200)
            th_sleep_ms(100);
    }
    cr_expect(ready == 200, "/readyz answered %ld (not 200 within 10 s) with both sinks up", ready);

    enum { N = 3 };
    char *ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = th_strf("evt_%s_m%d", r->prefix, i);
        char *body = th_timely_message(ids[i], "chan_metrics", i);
        post_one(r, "timely", body, ids[i]);
        if (i == 0) { /* one retry */
            th_post(r, "timely", body, NULL, &resp);
            expect_ok(&resp, 0, 1, 1, "retry");
            th_resp_free(&resp);
        }
        free(body);
    }
    th_post(r, "timely", "not json", NULL, &resp);
    th_resp_free(&resp);
    char url[256];
    snprintf(url, sizeof url, "%s/v1/webhooks/timely", r->base);
    static const char *const ct_text[] = {"Content-Type: text/plain", NULL};
    th_http("POST", url, "{}", 2, ct_text, &resp);
    th_resp_free(&resp);

    /* Wait until both sinks have the events, then for the counters to say so. */
    char topic[256], stream[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), N, WAIT_MS, 0, &msgs);
    th_redis_read(th_stream(r, "chan_metrics", stream, sizeof stream), N, WAIT_MS, 0, &xs);
    cr_expect(msgs.n == N && xs.n == N, "sinks hold %zu and %zu events, want %d", msgs.n, xs.n, N);
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
    /* The sinks publish the N events and the dead letter of "not json". */
    double kpub = -1, rpub = -1;
    deadline = th_now_ms() + 5000;
    while (th_now_ms() < deadline) {
        kpub = th_relay_metric(r, "relay_sink_published_total", "sink=kafka");
        rpub = th_relay_metric(r, "relay_sink_published_total", "sink=redis");
        if (kpub >= N + 1 && rpub >= N + 1)
            break;
        th_sleep_ms(100);
    }
    cr_expect(kpub == N + 1, "relay_sink_published_total{sink=\"kafka\"} = %g, want %d", kpub,
              N + 1);
    cr_expect(rpub == N + 1, "relay_sink_published_total{sink=\"redis\"} = %g, want %d", rpub,
              N + 1);

    th_get(r, "/metrics", &resp);
    cr_assert(resp.status == 200, "/metrics: %ld", resp.status);
    cr_expect(strncmp(resp.content_type, "text/plain", 10) == 0,
              "/metrics Content-Type %s, want text/plain (Prometheus text format)",
              resp.content_type);
    static const struct {
        const char *name, *labels;
        double want; /* -2: any value > 0 */
    } m[] = {
        {"relay_http_requests_total", "source=timely,code=200", N + 1},
        {"relay_http_requests_total", "source=timely,code=400", 1},
        {"relay_http_requests_total", "source=timely,code=415", 1},
        {"relay_events_accepted_total", "source=timely", N},
        {"relay_events_duplicate_total", "source=timely", 1},
        {"relay_wal_bytes", NULL, -2},
        {"relay_build_info", "version=" RELAY_VERSION, 1},
        {"process_resident_memory_bytes", NULL, -2},
        {"process_open_fds", NULL, -2},
        {"process_start_time_seconds", NULL, -2},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        double v = th_metric(resp.body, m[i].name, m[i].labels);
        if (m[i].want == -2)
            cr_expect(v > 0, "%s = %g, want > 0", m[i].name, v);
        else
            cr_expect(v == m[i].want, "%s{%s} = %g (-1: absent), want %g", m[i].name, m[i].labels,
                      v, m[i].want);
    }
    /* Every sample line parses as "name[{labels}] value". */
    for (char *line = resp.body; line && *line;) {
        char *eol = strchr(line, '\n');
        if (*line != '#' && line != eol) {
            char *sp = eol ? memrchr(line, ' ', (size_t)(eol - line)) : strrchr(line, ' ');
            char *end = NULL;
            if (sp)
                strtod(sp + 1, &end);
            cr_expect(sp && end && (end == eol || *end == '\0' || *end == ' '),
                      "unparsable metrics line: %.*s", (int)(eol ? eol - line : 80), line);
        }
        line = eol ? eol + 1 : NULL;
    }
    /* What Prometheus's own linter says of the exposition: names, types,
     * HELP lines, counters ending in _total (promtool is Debian's
     * prometheus package, installed by tools/deps.sh). */
    char *path = th_strf("%s/metrics.txt", r->dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(resp.body, f);
    fclose(f);
    char *cmd = th_strf("promtool check metrics < %s > %s.lint 2>&1", path, path);
    int rc = system(cmd);
    rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    char *lintpath = th_strf("%s.lint", path), *lint = th_read_file(lintpath, NULL);
    cr_expect(rc == 0,
              "promtool check metrics (exit %d; 127: not installed, run tools/deps.sh):\n%s", rc,
              lint ? lint : "");
    free(lint);
    free(lintpath);
    free(cmd);
    free(path);
    th_resp_free(&resp);
    for (int i = 0; i < N; i++)
        free(ids[i]);
}

/* =========================================================== configuration, CLI */

/* Environment overrides win over the file (RELAY_<SECTION>_<KEY>, and
 * RELAY_SOURCE_<NAME>_<KEY> for a source). The file listens on a port nobody serves;
 * the harness only finds relay if RELAY_HTTP_LISTEN moved it. */
Test(pipeline, environment_overrides_the_config_file)
{
    th_relay_t *r = th_relay_new();
    r->conf_port = th_free_port();
    char listen[64], topic_t[128], stream_t[128];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", r->port);
    snprintf(topic_t, sizeof topic_t, "%s-env.events.{family}", r->prefix);
    snprintf(stream_t, sizeof stream_t, "%s-env:events:{channel_id}", r->prefix);
    th_relay_setenv(r, "RELAY_HTTP_LISTEN", listen);
    th_relay_setenv(r, "RELAY_KAFKA_TOPIC", topic_t);
    th_relay_setenv(r, "RELAY_REDIS_STREAM", stream_t);
    th_relay_setenv(r, "RELAY_SOURCE_LOCKED_SECRET", "from-env");
    TH_START(r);

    char *eid = th_strf("evt_%s_env", r->prefix);
    char *body = th_timely_message(eid, "chan_env", 1);
    post_one(r, "timely", body, eid);
    th_resp_t resp;
    static const char *const file_secret[] = {"Authorization: Bearer s3cret", NULL};
    static const char *const env_secret[] = {"Authorization: Bearer from-env", NULL};
    char *b1 = locked_body(r, 1), *b2 = locked_body(r, 2);
    th_post(r, "locked", b1, file_secret, &resp);
    expect_error(&resp, 401, "the file's secret after RELAY_SOURCE_LOCKED_SECRET replaced it");
    th_resp_free(&resp);
    th_post(r, "locked", b2, env_secret, &resp);
    expect_ok(&resp, 1, 0, 1, "the secret from RELAY_SOURCE_LOCKED_SECRET");
    th_resp_free(&resp);

    char topic[256], stream[256], file_topic[256];
    snprintf(topic, sizeof topic, "%s-env.events.message", r->prefix);
    snprintf(stream, sizeof stream, "%s-env:events:chan_env", r->prefix);
    th_kmsgs_t msgs = {0}, none = {0};
    th_xentries_t xs = {0};
    th_kafka_read(topic, 2, WAIT_MS, 0, &msgs);
    th_redis_read(stream, 1, WAIT_MS, 0, &xs);
    cr_expect(kcount(&msgs, eid, NULL) == 1, "%s is not on %s (RELAY_KAFKA_TOPIC)", eid, topic);
    cr_expect(xcount(&xs, eid, NULL) == 1, "%s is not on %s (RELAY_REDIS_STREAM)", eid, stream);
    th_kafka_read(th_topic(r, "message", file_topic, sizeof file_topic), 0, 500, 1000, &none);
    cr_expect(none.n == 0, "the file's topic %s got %zu events despite RELAY_KAFKA_TOPIC",
              file_topic, none.n);
    th_kmsgs_free(&msgs);
    th_kmsgs_free(&none);
    th_xentries_free(&xs);
    free(b1);
    free(b2);
    free(body);
    free(eid);
}

/* Runs relay --check-config -c path; returns the exit code, output in *out. */
static int check_config(const char *path, char **out)
{
    char *argv[] = {(char *)th_env("RELAY_TEST_BIN", "build/relay"), "--check-config", "-c",
                    (char *)path, NULL};
    return th_run(argv, 10000, out);
}

/* A copy of text with the line starting with `start` replaced by `line` (or, when
 * start is NULL, `line` inserted after line `after`). *lineno gets its 1-based line. */
static char *edit_config(const char *text, const char *start, int after, const char *line,
                         int *lineno)
{
    int no = 1;
    const char *p = text;
    while (*p) {
        if (start ? strncmp(p, start, strlen(start)) == 0 : no == after + 1)
            break;
        const char *nl = strchr(p, '\n');
        if (!nl) {
            p += strlen(p);
            break;
        }
        p = nl + 1;
        no++;
    }
    cr_assert(*p || !start, "test bug: no line starts with %s", start);
    const char *rest = p;
    if (start) {
        const char *nl = strchr(p, '\n');
        rest = nl ? nl + 1 : p + strlen(p);
    }
    *lineno = no;
    return th_strf("%.*s%s\n%s", (int)(p - text), text, line, rest);
}

Test(pipeline, check_config_accepts_a_good_file)
{
    th_relay_t *r = th_relay_new();
    /* Validation alone: it must not need the sinks to be reachable. */
    th_relay_sinks_unreachable(r);
    char *text = th_relay_config_text(r);
    cr_assert(th_write_file(r->conf, text) == 0);
    char *out = NULL;
    int rc = check_config(r->conf, &out);
    cr_expect(rc == 0, "--check-config of a good file exited %d: %s", rc, out);
    free(out);
    free(text);
}

Test(pipeline, check_config_points_at_the_bad_line)
{
    static const struct {
        const char *start; /* the line to replace, NULL to insert */
        int after;         /* with start NULL: insert after this line */
        const char *line, *why;
    } cases[] = {
        {NULL, 2, "listn = 127.0.0.1:8080", "an unknown key in [http]"},
        {"threads = ", 0, "threads = lots", "threads not a number"},
        {"max_body = ", 0, "max_body = 12q", "max_body with an unknown suffix"},
        {"listen = ", 0, "listen = 127.0.0.1:99999", "listen port out of range"},
        {"fsync = ", 0, "fsync = maybe", "fsync not a boolean"},
        {"window = ", 0, "window = forever", "dedup window not a duration"},
        {"enabled = true", 0, "enabled = yes please", "kafka enabled not a boolean"},
        {"linger.ms = ", 0, "no.such.librdkafka.property = 1",
         "a [kafka] key librdkafka does not know"},
        {"linger.ms = ", 0, "linger.ms = soon", "a librdkafka property with a bad value"},
        {"codec = timely", 0, "codec = nosuch", "an unknown codec"},
        {"auth = none", 0, "auth = magic", "an unknown auth"},
    };
    th_relay_t *r = th_relay_new();
    char *good = th_relay_config_text(r);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int line = 0;
        char *text = edit_config(good, cases[i].start, cases[i].after, cases[i].line, &line);
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/bad%zu.conf", r->dir, i);
        cr_assert(th_write_file(path, text) == 0);
        char *out = NULL;
        int rc = check_config(path, &out);
        char *where = th_strf("%s:%d:", path, line);
        cr_expect(rc > 0, "%s (line %d \"%s\"): --check-config exited %d, want non-zero",
                  cases[i].why, line, cases[i].line, rc);
        cr_expect(strstr(out, where) != NULL, "%s: output does not contain \"%s\": %s",
                  cases[i].why, where, out);
        free(where);
        free(out);
        free(text);
    }

    /* An unknown section: the error may point at the header or at its key. */
    char *text = th_strf("%s\n[nosuchsection]\nkey = 1\n", good);
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/badsection.conf", r->dir);
    cr_assert(th_write_file(path, text) == 0);
    char *out = NULL;
    int rc = check_config(path, &out);
    char *at_header = th_strf("%s:%d:", path, lines - 1);
    char *at_key = th_strf("%s:%d:", path, lines);
    cr_expect(rc > 0, "an unknown section: --check-config exited %d, want non-zero", rc);
    cr_expect(strstr(out, at_header) || strstr(out, at_key),
              "an unknown section: output names neither %s nor %s: %s", at_header, at_key, out);
    free(at_header);
    free(at_key);
    free(out);
    free(text);
    free(good);
}

Test(pipeline, check_config_of_a_missing_file_fails)
{
    char *path = th_strf("%s/does-not-exist.conf", th_test_dir());
    char *out = NULL;
    int rc = check_config(path, &out);
    cr_expect(rc > 0, "--check-config of a missing file exited %d: %s", rc, out);
    cr_expect(strstr(out, "does-not-exist.conf") != NULL,
              "the error does not name the missing file: %s", out);
    free(out);
    free(path);
}

Test(pipeline, version_and_help)
{
    const char *bin = th_env("RELAY_TEST_BIN", "build/relay");
    const char *flags[] = {"--version", "--help"};
    for (size_t i = 0; i < 2; i++) {
        char *argv[] = {(char *)bin, (char *)flags[i], NULL};
        char *out = NULL;
        int rc = th_run(argv, 5000, &out);
        cr_expect(rc == 0, "relay %s exited %d", flags[i], rc);
        cr_expect(strlen(out) > 0, "relay %s printed nothing", flags[i]);
        free(out);
    }
}
