/* test_state.c -- the channel state (docs/channels.md) against a real Redis and
 * Kafka: the normal Whapi cycle, a debounced channel.down and channel.up, a
 * restart and a crash in the middle of a debounce, two relays sharing the
 * state, events out of order, and the HTTP routes with the admin token. */
#include "events.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

TestSuite(state, .init = th_setup, .fini = th_teardown, .timeout = 180);

#define DEBOUNCE_S 2

/* A relay whose state debounces for `debounce` seconds, under `prefix` (NULL: its own). */
static th_relay_t *state_relay(int debounce, const char *prefix)
{
    th_relay_t *r = th_relay_new();
    snprintf(r->state_extra, sizeof r->state_extra,
             "redis_prefix = %s:channels\nkafka_topic = %s.channels.state\ndebounce = %d\n"
             "lease = 2\n",
             prefix ? prefix : r->prefix, r->prefix, debounce);
    return r;
}

/* Posts a Whapi channels.post health of `text` that occurred at unix second `at`. */
static void health(const th_relay_t *r, const char *ch, long at, const char *text)
{
    char *body = th_strf("{\"health\":{\"start_at\":%ld,\"uptime\":%ld,\"status\":{\"code\":1,"
                         "\"text\":\"%s\"},\"version\":\"1.8.3\"},\"event\":{\"type\":\"channel\","
                         "\"event\":\"post\"},\"channel_id\":\"%s\"}",
                         at - 100, 100L, text, ch);
    th_resp_t resp = {0};
    cr_assert_eq(th_post(r, "whapi", body, NULL, &resp), 0);
    expect_ok(&resp, 1, 0, 1, text);
    th_resp_free(&resp);
    free(body);
}

static char *chan(const th_relay_t *r, const char *name)
{
    return th_strf("%s-%s", name, r->prefix);
}

/* The entries of type `type` in the stream of `ch` on relay r, after waiting
 * up to timeout_ms for the stream to hold `want` entries. *ev: the last one's
 * CloudEvent (parsed, the caller decrefs), when ev is given. */
static int count_type(const th_relay_t *r, const char *ch, const char *type, size_t want,
                      int timeout_ms, json_t **ev)
{
    char stream[256];
    th_xentries_t got = {0};
    int n = 0;
    th_redis_read(th_stream(r, ch, stream, sizeof stream), want, timeout_ms, 300, &got);
    for (size_t i = 0; i < got.n; i++) {
        const char *t = th_xfield(&got.v[i], "type");
        if (t && !strcmp(t, type)) {
            n++;
            if (ev) {
                json_decref(*ev);
                *ev = json_loads(th_xfield(&got.v[i], "event"), 0, NULL);
            }
        }
    }
    th_xentries_free(&got);
    return n;
}

/* GET /v1/channels/{ch}: the state object (the caller decrefs), NULL when not 200. */
static json_t *state_of(const th_relay_t *r, const char *ch)
{
    char *path = th_strf("/v1/channels/%s", ch);
    th_resp_t resp = {0};
    json_t *j = NULL;
    cr_assert_eq(th_get(r, path, &resp), 0);
    if (resp.status == 200 && resp.json)
        j = json_incref(resp.json);
    th_resp_free(&resp);
    free(path);
    return j;
}

/* Waits up to timeout_ms for the state of ch to say `status`. */
static json_t *state_wait(const th_relay_t *r, const char *ch, const char *status, int timeout_ms)
{
    int64_t until = th_now_ms() + timeout_ms;
    json_t *j = NULL;
    do {
        json_decref(j);
        if ((j = state_of(r, ch)) && !strcmp(jstr(j, "status"), status))
            return j;
        th_sleep_ms(100);
    } while (th_now_ms() < until);
    cr_assert_fail("the state of %s never said %s (last: %s)", ch, status,
                   j ? jstr(j, "status") : "none");
    return NULL;
}

static const char *data_str(const json_t *ev, const char *name)
{
    return jstr(json_object_get(ev, "data"), name);
}

static long data_int(const json_t *ev, const char *name)
{
    return (long)json_integer_value(json_object_get(json_object_get(ev, "data"), name));
}

static char *rfc3339(long secs)
{
    char buf[40];
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    return strdup(buf);
}

/* The topic's cleanup.policy as the broker describes it (malloc'd). */
static char *cleanup_policy(const char *topic)
{
    char err[256], *policy = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", th_kafka_brokers(), err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    cr_assert(ev && !rd_kafka_event_error(ev), "DescribeConfigs: %s",
              ev ? rd_kafka_event_error_string(ev) : "no answer");
    size_t n = 0, nc = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
    cr_assert_eq(n, 1);
    const rd_kafka_ConfigEntry_t **ce = rd_kafka_ConfigResource_configs(rs[0], &nc);
    for (size_t i = 0; i < nc; i++)
        if (!strcmp(rd_kafka_ConfigEntry_name(ce[i]), "cleanup.policy"))
            policy = strdup(rd_kafka_ConfigEntry_value(ce[i]));
    rd_kafka_event_destroy(ev);
    rd_kafka_ConfigResource_destroy(res);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return policy;
}

Test(state, whapi_normal_cycle_emits_no_down)
{
    th_relay_t *r = state_relay(DEBOUNCE_S, NULL);
    TH_START(r);
    char *ch = chan(r, "cycle");
    long now = (long)time(NULL);

    health(r, ch, now - 3, "INIT");
    health(r, ch, now - 2, "LAUNCH");
    health(r, ch, now - 1, "AUTH");
    th_sleep_ms((2 * DEBOUNCE_S + 1) * 1000);
    cr_expect_eq(count_type(r, ch, "channel.down", 3, 5000, NULL), 0,
                 "a normal cycle emitted a channel.down");
    cr_expect_eq(count_type(r, ch, "channel.connecting", 3, 5000, NULL), 2);
    json_t *st = state_wait(r, ch, "connected", 5000);
    cr_expect_str_eq(jstr(st, "last_event_type"), "channel.connected");
    cr_expect_eq(json_integer_value(json_object_get(st, "transitions")), 2,
                 "connecting (INIT, LAUNCH) then connected is two states");
    cr_expect(json_is_false(json_object_get(st, "down")));
    cr_expect(json_is_null(json_object_get(st, "down_since")));
    cr_expect_str_eq(jstr(st, "provider"), "whapi");
    json_decref(st);
    cr_expect_eq(th_relay_metric(r, "relay_state_emitted_total", "type=down"), 0);
    cr_expect_eq(th_relay_metric(r, "relay_state_events_total", "result=applied"), 3);

    /* The compacted topic: the channel's last state says connected. */
    char topic[256];
    snprintf(topic, sizeof topic, "%s.channels.state", r->prefix);
    th_kmsgs_t got = {0};
    th_kafka_read(topic, 1, 30000, 2000, &got);
    const th_kmsg_t *last = NULL;
    size_t mine = 0;
    for (size_t i = 0; i < got.n; i++)
        if (got.v[i].key && !strcmp(got.v[i].key, ch)) {
            last = &got.v[i];
            mine++;
        }
    cr_assert_not_null(last, "no state of %s on %s", ch, topic);
    cr_expect_geq(mine, 1);
    cr_expect_str_eq(jstr(last->json, "status"), "connected");
    cr_expect_str_eq(jstr(last->json, "channel_id"), ch);
    th_kmsgs_free(&got);
    char *policy = cleanup_policy(topic);
    cr_expect_str_eq(policy ? policy : "(none)", "compact", "relay created %s", topic);
    free(policy);
    free(ch);
}

Test(state, stop_past_debounce_emits_one_down_then_one_up)
{
    th_relay_t *r = state_relay(DEBOUNCE_S, NULL);
    TH_START(r);
    char *ch = chan(r, "stop");
    long now = (long)time(NULL);
    json_t *ev = NULL;

    health(r, ch, now - 2, "AUTH");
    health(r, ch, now - 1, "STOP");
    th_sleep_ms(DEBOUNCE_S * 1000 - 500);
    cr_expect_eq(count_type(r, ch, "channel.down", 2, 0, NULL), 0, "down before the debounce");
    cr_assert_eq(count_type(r, ch, "channel.down", 3, 8000, &ev), 1, "one channel.down");
    char *stop_at = rfc3339(now - 1);
    cr_expect_str_eq(data_str(ev, "down_since"), stop_at);
    cr_expect_str_eq(data_str(ev, "status"), "disconnected");
    cr_expect_str_eq(data_str(ev, "reason"), "stopped");
    cr_expect_eq(data_int(ev, "debounce_seconds"), DEBOUNCE_S);
    cr_expect_eq(strncmp(jstr(ev, "id"), "down_", 5), 0, "id %s", jstr(ev, "id"));
    cr_expect_str_eq(jstr(ev, "subject"), ch);

    json_t *st = state_wait(r, ch, "disconnected", 2000);
    cr_expect(json_is_true(json_object_get(st, "down")));
    cr_expect_str_eq(jstr(st, "down_since"), stop_at);
    json_decref(st);
    th_resp_t resp = {0};
    cr_assert_eq(th_get(r, "/v1/channels?status=disconnected&limit=1000", &resp), 0);
    cr_assert_eq(resp.status, 200, "%s", resp.body);
    cr_expect(strstr(resp.body, ch) != NULL, "%s not listed disconnected", ch);
    th_resp_free(&resp);

    /* Back 5 s after the STOP: one channel.up with the duration. */
    health(r, ch, now + 4, "AUTH");
    cr_assert_eq(count_type(r, ch, "channel.up", 5, 8000, &ev), 1, "one channel.up");
    cr_expect_eq(data_int(ev, "down_seconds"), 5);
    cr_expect_eq(data_int(ev, "down_ms"), 5000);
    cr_expect_str_eq(data_str(ev, "down_since"), stop_at);
    st = state_wait(r, ch, "connected", 2000);
    cr_expect(json_is_false(json_object_get(st, "down")));
    json_decref(st);
    cr_assert_eq(th_get(r, "/v1/channels?status=connected&limit=1000", &resp), 0);
    cr_expect(strstr(resp.body, ch) != NULL, "%s not listed connected", ch);
    th_resp_free(&resp);
    cr_assert_eq(th_get(r, "/v1/channels?status=disconnected&limit=1000", &resp), 0);
    cr_expect(strstr(resp.body, ch) == NULL, "%s still listed disconnected", ch);
    th_resp_free(&resp);

    /* The same two on Kafka, once each. */
    char topic[256];
    th_kmsgs_t got = {0};
    th_kafka_read(th_topic(r, "channel", topic, sizeof topic), 5, 30000, 1000, &got);
    int down = 0, up = 0;
    for (size_t i = 0; i < got.n; i++) {
        const char *t = jstr(got.v[i].json, "type");
        if (got.v[i].key && !strcmp(got.v[i].key, ch) && t) {
            down += !strcmp(t, "channel.down");
            up += !strcmp(t, "channel.up");
        }
    }
    cr_expect_eq(down, 1, "channel.down on Kafka %d times", down);
    cr_expect_eq(up, 1, "channel.up on Kafka %d times", up);
    th_kmsgs_free(&got);
    cr_expect_eq(count_type(r, ch, "channel.down", 5, 0, NULL), 1, "a second channel.down");
    json_decref(ev);
    free(stop_at);
    free(ch);
}

Test(state, debounce_survives_a_restart_and_a_crash)
{
    th_relay_t *r = state_relay(3, NULL);
    TH_START(r);
    char *a = chan(r, "restart"), *b = chan(r, "crash");
    long now = (long)time(NULL);

    health(r, a, now - 1, "AUTH");
    health(r, a, now, "STOP");
    cr_assert_eq(th_relay_stop(r, 10000), 0);
    th_sleep_ms(1000);
    TH_START(r);
    cr_expect_eq(count_type(r, a, "channel.down", 3, 10000, NULL), 1,
                 "one channel.down after a restart in the debounce");

    now = (long)time(NULL);
    health(r, b, now - 1, "AUTH");
    health(r, b, now, "STOP");
    th_sleep_ms(500);
    th_relay_kill(r);
    th_sleep_ms(1000);
    TH_START(r);
    cr_expect_eq(count_type(r, b, "channel.down", 3, 10000, NULL), 1,
                 "one channel.down after a crash in the debounce");
    th_sleep_ms(1000);
    cr_expect_eq(count_type(r, a, "channel.down", 3, 0, NULL), 1, "a second down of %s", a);
    free(a);
    free(b);
}

Test(state, two_relays_emit_each_transition_once)
{
    th_relay_t *a = state_relay(DEBOUNCE_S, NULL);
    th_relay_t *b = state_relay(DEBOUNCE_S, a->prefix); /* the same state */
    TH_START(a);
    TH_START(b);
    char *ch = chan(a, "shared");
    long now = (long)time(NULL);

    health(a, ch, now - 2, "AUTH");
    health(a, ch, now - 1, "STOP");
    th_sleep_ms((DEBOUNCE_S + 2) * 1000);
    int downs = count_type(a, ch, "channel.down", 3, 3000, NULL) +
                count_type(b, ch, "channel.down", 1, 1000, NULL);
    cr_expect_eq(downs, 1, "%d channel.down from two relays", downs);
    json_t *st = state_wait(b, ch, "disconnected", 2000); /* b sees what a applied */
    cr_expect(json_is_true(json_object_get(st, "down")));
    json_decref(st);

    health(b, ch, now + 3, "AUTH"); /* back through the other relay */
    th_sleep_ms(2000);
    int ups = count_type(a, ch, "channel.up", 3, 1000, NULL) +
              count_type(b, ch, "channel.up", 2, 3000, NULL);
    cr_expect_eq(ups, 1, "%d channel.up from two relays", ups);
    st = state_wait(a, ch, "connected", 2000);
    cr_expect_eq(json_integer_value(json_object_get(st, "transitions")), 3);
    json_decref(st);
    free(ch);
}

Test(state, an_older_event_does_not_move_the_state_back)
{
    th_relay_t *r = state_relay(DEBOUNCE_S, NULL);
    TH_START(r);
    char *ch = chan(r, "order");
    long now = (long)time(NULL);

    health(r, ch, now, "AUTH");
    health(r, ch, now - 5, "STOP"); /* a late retry of an older STOP */
    th_sleep_ms((2 * DEBOUNCE_S + 1) * 1000);
    json_t *st = state_wait(r, ch, "connected", 2000);
    cr_expect_eq(json_integer_value(json_object_get(st, "transitions")), 1);
    cr_expect_str_eq(jstr(st, "last_event_type"), "channel.connected");
    json_decref(st);
    cr_expect_eq(count_type(r, ch, "channel.down", 2, 3000, NULL), 0, "an old STOP went down");
    cr_expect_eq(th_relay_metric(r, "relay_state_events_total", "result=stale"), 1);
    free(ch);
}

Test(state, http_routes_and_the_admin_token)
{
    th_relay_t *r = state_relay(DEBOUNCE_S, NULL);
    th_relay_setenv(r, "RELAY_HTTP_ADMIN_TOKEN", "adm1n-t0ken");
    TH_START(r);
    char *ch = chan(r, "http"), *path = th_strf("/v1/channels/%s", ch), *url;
    const char *auth[] = {"Authorization: Bearer adm1n-t0ken", NULL};
    const char *wrong[] = {"Authorization: Bearer adm1n-t0kem", NULL};
    th_resp_t resp = {0};

    health(r, ch, (long)time(NULL), "QR");
    cr_assert_eq(th_get(r, path, &resp), 0);
    cr_expect_eq(resp.status, 401, "no token: %ld", resp.status);
    th_resp_free(&resp);
    cr_assert_eq(th_get(r, "/metrics", &resp), 0);
    cr_expect_eq(resp.status, 401, "/metrics without the token: %ld", resp.status);
    th_resp_free(&resp);
    cr_assert_eq(th_get(r, "/readyz", &resp), 0);
    cr_expect_eq(resp.status, 200, "/readyz stays open: %ld", resp.status);
    th_resp_free(&resp);

    url = th_strf("%s%s", r->base, path);
    cr_assert_eq(th_http("GET", url, NULL, 0, wrong, &resp), 0);
    cr_expect_eq(resp.status, 401, "a wrong token: %ld", resp.status);
    th_resp_free(&resp);
    int64_t until = th_now_ms() + 5000;
    do {
        th_resp_free(&resp);
        cr_assert_eq(th_http("GET", url, NULL, 0, auth, &resp), 0);
    } while (resp.status != 200 && th_now_ms() < until && (th_sleep_ms(100), 1));
    cr_expect_eq(resp.status, 200, "%s", resp.body);
    cr_expect_str_eq(jstr(resp.json, "status"), "pairing");
    th_resp_free(&resp);
    free(url);

    url = th_strf("%s/v1/channels/no-such-channel-%s", r->base, r->prefix);
    cr_assert_eq(th_http("GET", url, NULL, 0, auth, &resp), 0);
    cr_expect_eq(resp.status, 404);
    cr_expect_str_eq(jstr(resp.json, "error"), "unknown_channel");
    th_resp_free(&resp);
    free(url);
    static const struct {
        const char *q;
        long status;
        const char *error;
    } lists[] = {
        {"/v1/channels", 400, "missing_status"},
        {"/v1/channels?status=pairing&limit=0", 400, "bad_request"},
        {"/v1/channels?status=pairing&offset=x", 400, "bad_request"},
        {"/v1/channels?status=pairing", 200, NULL},
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        url = th_strf("%s%s", r->base, lists[i].q);
        cr_assert_eq(th_http("GET", url, NULL, 0, auth, &resp), 0);
        cr_expect_eq(resp.status, lists[i].status, "%s: %ld %s", lists[i].q, resp.status,
                     resp.body);
        if (lists[i].error)
            cr_expect_str_eq(jstr(resp.json, "error"), lists[i].error, "%s", lists[i].q);
        else
            cr_expect(strstr(resp.body, ch) != NULL, "%s does not list %s", lists[i].q, ch);
        th_resp_free(&resp);
        free(url);
    }
    url = th_strf("%s%s", r->base, path);
    cr_assert_eq(th_http("POST", url, "{}", 2, auth, &resp), 0);
    cr_expect_eq(resp.status, 405);
    th_resp_free(&resp);
    free(url);
    free(path);
    free(ch);
}
