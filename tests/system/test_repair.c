/* test_repair.c -- repair after a downstream lost data: relay replay and relay
 * redrive against a real Redis and Kafka, through the admin socket of a
 * running relay. */
#include "events.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <hiredis.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(repair, .init = th_setup, .fini = th_teardown, .timeout = 180);

#define CHANNELS 3
#define PER_CHANNEL 12

/* A Redis of this test alone, so that FLUSHALL loses nothing of another test. */
static int redis_private(const char *action, int port)
{
    char dir[PATH_MAX], p[16], script[PATH_MAX], *out = NULL;
    snprintf(dir, sizeof dir, "%s/redis", th_test_dir());
    snprintf(p, sizeof p, "%d", port);
    snprintf(script, sizeof script, "%s/redis.sh", th_env("RELAY_TEST_TOOLS", "tools"));
    char *argv[] = {script, (char *)action, dir, !strcmp(action, "start") ? p : NULL, NULL};
    int rc = th_run(argv, 30000, &out);
    if (rc != 0)
        fprintf(stderr, "redis.sh %s: %d: %s\n", action, rc, out ? out : "");
    free(out);
    return rc;
}

static void redis_cmd(int port, const char *cmd)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    cr_assert(c && !c->err, "cannot reach the test's Redis on %d", port);
    redisReply *rep = redisCommand(c, cmd);
    cr_assert(rep && rep->type != REDIS_REPLY_ERROR, "%s failed", cmd);
    freeReplyObject(rep);
    redisFree(c);
}

static char *ev_id(const th_relay_t *r, int ch, int i)
{
    return th_strf("evt_%s_c%d_%02d", r->prefix, ch, i);
}

static char *channel_of(const th_relay_t *r, int ch)
{
    return th_strf("ch_%s_%d", r->prefix, ch);
}

static void post_all(const th_relay_t *r)
{
    for (int i = 0; i < PER_CHANNEL; i++)
        for (int ch = 0; ch < CHANNELS; ch++) {
            char *id = ev_id(r, ch, i), *chan = channel_of(r, ch);
            char *body = th_timely_message(id, chan, i);
            post_one(r, "timely", body, id);
            free(body);
            free(chan);
            free(id);
        }
}

/* Each channel's stream (or only channel `only`, when >= 0) holds exactly its
 * events, once each, in posting order, and (when `before` is given) the same
 * bytes as before. */
static void expect_streams(const th_relay_t *r, const th_xentries_t *before, int only,
                           const char *when)
{
    for (int ch = 0; ch < CHANNELS; ch++) {
        if (only >= 0 && ch != only)
            continue;
        char stream[256], *chan = channel_of(r, ch);
        th_xentries_t got = {0};
        th_stream(r, chan, stream, sizeof stream);
        th_redis_read(stream, PER_CHANNEL, 30000, 500, &got);
        cr_expect_eq(got.n, PER_CHANNEL, "%s: %s holds %zu entries, want %d", when, stream, got.n,
                     PER_CHANNEL);
        for (size_t i = 0; i < got.n && i < PER_CHANNEL; i++) {
            char *id = ev_id(r, ch, (int)i);
            cr_expect_str_eq(xid(&got.v[i]), id, "%s: %s entry %zu", when, stream, i);
            if (before)
                cr_expect_str_eq(th_xfield(&got.v[i], "event"),
                                 th_xfield(&before[ch].v[i], "event"),
                                 "%s: %s entry %zu is not the same bytes", when, stream, i);
            free(id);
        }
        th_xentries_free(&got);
        free(chan);
    }
}

/* Deletes a topic with the admin API and waits until the cluster no longer
 * lists it (a producer's metadata request may create it again, empty). */
static void kafka_delete_topic(const char *topic)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", th_kafka_brokers(), err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    cr_assert(ev && !rd_kafka_event_error(ev), "DeleteTopics: %s",
              ev ? rd_kafka_event_error_string(ev) : "no answer");
    size_t n = 0;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
    cr_assert(n == 1 && !rd_kafka_topic_result_error(tr[0]), "DeleteTopics %s: %s", topic,
              n ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
    rd_kafka_event_destroy(ev);
    rd_kafka_DeleteTopic_destroy(dt);
    int gone = 0;
    for (int i = 0; i < 60 && !gone; i++) {
        const struct rd_kafka_metadata *md = NULL;
        gone = 1;
        if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (int t = 0; t < md->topic_cnt; t++)
                if (!strcmp(md->topics[t].topic, topic) && !md->topics[t].err)
                    gone = 0;
            rd_kafka_metadata_destroy(md);
        }
        if (!gone)
            th_sleep_ms(500);
    }
    cr_assert(gone, "%s is still listed 30 s after its deletion", topic);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

static void hmac_hex(const char *key, const char *msg, char out[65])
{
    unsigned char md[32];
    unsigned n = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), md, &n);
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int run_relay_cmd(const th_relay_t *r, char **argv_tail, char **out)
{
    char *argv[16] = {(char *)th_env("RELAY_TEST_BIN", "build/relay")};
    size_t n = 1;
    for (size_t i = 0; argv_tail[i] && n < 13; i++)
        argv[n++] = argv_tail[i];
    argv[n++] = "-c";
    argv[n++] = (char *)r->conf;
    argv[n] = NULL;
    return th_run(argv, 120000, out);
}

/* Runs `relay redrive --source source` against r: exit 0 and a JSON answer,
 * returned (the caller decrefs). */
static json_t *redrive(const th_relay_t *r, const char *source)
{
    char *out = NULL;
    char *args[] = {"redrive", "--source", (char *)source, "--since", "1h", NULL};
    int rc = run_relay_cmd(r, args, &out);
    cr_expect_eq(rc, 0, "relay redrive: exit %d: %s", rc, out ? out : "");
    json_t *ans = json_loads(out ? out : "", 0, NULL);
    cr_assert_not_null(ans, "not JSON: %s", out ? out : "");
    free(out);
    return ans;
}

/* The count `key` of a redrive's answer. */
static json_int_t count_of(const json_t *ans, const char *key)
{
    return json_integer_value(json_object_get(ans, key));
}

/* Redis loses everything (FLUSHALL); relay replay --sink redis --since 1h gives
 * every event back, in per-channel order, the same bytes, nothing else
 * repeated; a second replay is refused only while the first runs. */
Test(repair, redis_flushall_then_replay_brings_every_event_back)
{
    int port = th_free_port();
    char p[16];
    cr_assert(redis_private("start", port) == 0);
    snprintf(p, sizeof p, "%d", port);
    setenv("RELAY_TEST_REDIS_PORT", p, 1); /* this test's process only: relay and reads */
    th_relay_t *r = th_relay_new();
    TH_START(r);
    post_all(r);

    th_xentries_t before[CHANNELS] = {0};
    for (int ch = 0; ch < CHANNELS; ch++) {
        char stream[256], *chan = channel_of(r, ch);
        th_stream(r, chan, stream, sizeof stream);
        th_redis_read(stream, PER_CHANNEL, 30000, 0, &before[ch]);
        cr_assert_eq(before[ch].n, PER_CHANNEL, "%s before the loss", stream);
        free(chan);
    }
    redis_cmd(port, "FLUSHALL");
    char stream0[256], *chan0 = channel_of(r, 0);
    th_xentries_t none = {0};
    th_stream(r, chan0, stream0, sizeof stream0);
    cr_assert_eq(th_redis_read(stream0, 1, 300, 0, &none), 0, "FLUSHALL left entries");
    free(chan0);

    char *out = NULL;
    char *args[] = {"replay", "--sink", "redis", "--since", "1h", NULL};
    int rc = run_relay_cmd(r, args, &out);
    cr_expect_eq(rc, 0, "relay replay: exit %d: %s", rc, out ? out : "");
    cr_expect(out && strstr(out, "redis: done"), "no 'done' line: %s", out ? out : "");
    free(out);
    expect_streams(r, before, -1, "after the replay");
    cr_expect_eq(th_relay_metric(r, "relay_replay_events", "sink=redis"), CHANNELS * PER_CHANNEL);
    cr_expect_eq(th_relay_metric(r, "relay_replay_running", "sink=redis"), 0);

    /* Filtered: one channel, only what is newer than the range. */
    char *chan1 = channel_of(r, 1);
    char *args2[] = {"replay", "--sink", "redis", "--from-seq", "1", "--channel", chan1, NULL};
    /* A replay of nothing retained is refused with a reason. */
    char *args0[] = {"replay", "--sink", "redis", "--from-seq", "999999", NULL};
    rc = run_relay_cmd(r, args0, &out);
    cr_expect_eq(rc, 1, "a replay past the WAL: exit %d: %s", rc, out ? out : "");
    cr_expect(out && strstr(out, "nothing retained"), "%s", out ? out : "");
    free(out);
    rc = run_relay_cmd(r, args2, &out);
    cr_expect_eq(rc, 0, "relay replay --channel: exit %d: %s", rc, out ? out : "");
    free(out);
    char stream1[256];
    th_xentries_t got = {0};
    th_stream(r, chan1, stream1, sizeof stream1);
    th_redis_read(stream1, 2 * PER_CHANNEL, 30000, 500, &got);
    cr_expect_eq(got.n, 2 * PER_CHANNEL, "the channel replayed again: %zu entries", got.n);
    for (size_t i = 0; i < got.n; i++) {
        char *id = ev_id(r, 1, (int)(i % PER_CHANNEL));
        cr_expect_str_eq(xid(&got.v[i]), id, "entry %zu out of order", i);
        free(id);
    }
    th_xentries_free(&got);
    free(chan1);
    /* The other channels were not touched by it. */
    expect_streams(r, NULL, 0, "after the channel's replay");
    expect_streams(r, NULL, 2, "after the channel's replay");

    for (int ch = 0; ch < CHANNELS; ch++)
        th_xentries_free(&before[ch]);
    cr_expect_eq(th_relay_stop(r, 30000), 0);
    redis_private("stop", port);
}

/* A Kafka topic deleted by mistake: relay replay --sink kafka publishes the
 * range again, the same bytes under the same keys, each channel's events in
 * order, once each. */
Test(repair, deleted_kafka_topic_then_replay_brings_every_event_back)
{
    th_relay_t *r = th_relay_new();
    TH_START(r);
    post_all(r);
    char topic[256];
    th_topic(r, "message", topic, sizeof topic);
    th_kmsgs_t first = {0};
    th_kafka_read(topic, CHANNELS * PER_CHANNEL, 60000, 0, &first);
    cr_assert_eq(first.n, CHANNELS * PER_CHANNEL);
    kafka_delete_topic(topic);

    char *out = NULL;
    char *args[] = {"replay", "--sink",           "kafka", "--since", "10m",
                    "--type", "message.received", NULL};
    int rc = run_relay_cmd(r, args, &out);
    cr_expect_eq(rc, 0, "relay replay: exit %d: %s", rc, out ? out : "");
    free(out);
    th_kmsgs_t all = {0};
    th_kafka_read(topic, CHANNELS * PER_CHANNEL, 60000, 1000, &all);
    cr_expect_eq(all.n, CHANNELS * PER_CHANNEL, "%zu messages after the replay", all.n);
    for (int ch = 0; ch < CHANNELS; ch++) {
        char *chan = channel_of(r, ch);
        size_t k = 0;
        for (size_t i = 0; i < all.n; i++) {
            if (!all.v[i].key || strcmp(all.v[i].key, chan))
                continue;
            char *id = ev_id(r, ch, (int)k);
            cr_expect_str_eq(kid(&all.v[i]), id, "%s: message %zu out of order", chan, k);
            free(id);
            k++;
        }
        cr_expect_eq(k, PER_CHANNEL, "%s: %zu messages", chan, k);
        free(chan);
    }
    for (size_t i = 0; i < first.n; i++) { /* each the original's bytes */
        int same = 0;
        for (size_t j = 0; j < all.n; j++)
            same += all.v[j].value_len == first.v[i].value_len &&
                    !memcmp(all.v[j].value, first.v[i].value, first.v[i].value_len);
        cr_expect_eq(same, 1, "message %zu: %d identical copies", i, same);
    }
    th_kmsgs_free(&first);
    th_kmsgs_free(&all);
    /* The running relay's WAL, looked at from outside: whole, and every event in it. */
    char *verify[] = {"wal", "verify", NULL}, *dump[] = {"wal", "dump", "--limit", "1000", NULL};
    rc = run_relay_cmd(r, verify, &out);
    cr_expect_eq(rc, 0, "relay wal verify on a live WAL: exit %d: %s", rc, out ? out : "");
    free(out);
    rc = run_relay_cmd(r, dump, &out);
    cr_expect_eq(rc, 0, "relay wal dump: exit %d", rc);
    size_t lines = 0;
    for (const char *q = out ? out : ""; (q = strchr(q, '\n')); q++)
        lines++;
    cr_expect_eq(lines, CHANNELS * PER_CHANNEL, "wal dump: %zu lines: %s", lines, out ? out : "");
    free(out);
    cr_expect_eq(th_relay_stop(r, 30000), 0);
}

/* A body the source's codec could not read is a dead letter; once the source
 * is configured with a codec that reads it, relay redrive turns it into an
 * event (once: a second redrive finds a duplicate), and what still does not
 * decode stays a dead letter. */
Test(repair, redrive_after_the_codec_is_fixed)
{
    th_relay_t *r = th_relay_new();
    TH_START(r);
    char *good = th_strf("{\"kind\":\"order.paid\",\"ref\":\"ord_%s\",\"line\":\"ch_%s_r\"}",
                         r->prefix, r->prefix);
    char *bad = th_strf("{\"nothing\":\"%s\"}", r->prefix);
    th_resp_t resp;
    th_post(r, "whapi", good, NULL, &resp);
    cr_assert_eq(resp.status, 400, "the body was taken: %ld %s", resp.status, resp.body);
    th_resp_free(&resp);
    th_post(r, "whapi", bad, NULL, &resp);
    cr_assert_eq(resp.status, 400);
    th_resp_free(&resp);
    cr_expect_eq(th_relay_stop(r, 30000), 0);

    /* The fix: the source now reads these bodies. */
    th_relay_setenv(r, "RELAY_SOURCE_WHAPI_CODEC", "generic");
    th_relay_setenv(r, "RELAY_SOURCE_WHAPI_ID", "/ref");
    th_relay_setenv(r, "RELAY_SOURCE_WHAPI_TYPE", "/kind");
    th_relay_setenv(r, "RELAY_SOURCE_WHAPI_CHANNEL", "/line");
    TH_START(r);
    json_t *ans = redrive(r, "whapi");
    cr_expect_eq(count_of(ans, "letters"), 2);
    cr_expect_eq(count_of(ans, "redriven"), 1);
    cr_expect_eq(count_of(ans, "accepted"), 1);
    cr_expect_eq(count_of(ans, "still_dead"), 1);
    json_decref(ans);

    char stream[256], chan[128];
    snprintf(chan, sizeof chan, "ch_%s_r", r->prefix);
    th_stream(r, chan, stream, sizeof stream);
    th_xentries_t got = {0};
    th_redis_read(stream, 1, 30000, 500, &got);
    cr_expect_eq(got.n, 1, "%s: %zu entries", stream, got.n);
    if (got.n)
        cr_expect(strstr(xid(&got.v[0]), r->prefix), "id %s", xid(&got.v[0]));
    th_xentries_free(&got);

    /* Again: the event is a duplicate now, nothing new is published. */
    ans = redrive(r, "whapi");
    cr_expect_eq(count_of(ans, "accepted"), 0);
    cr_expect_eq(count_of(ans, "duplicates"), 1);
    json_decref(ans);
    th_redis_read(stream, 2, 2000, 0, &got);
    cr_expect_eq(got.n, 1, "a second redrive published again");
    th_xentries_free(&got);
    free(good);
    free(bad);
    cr_expect_eq(th_relay_stop(r, 30000), 0);
}

/* Signed with a secret relay did not have yet: 401 and a dead letter with the
 * signature header; once the secret is corrected, relay redrive makes the
 * event. */
Test(repair, redrive_after_the_secret_is_corrected)
{
    th_relay_t *r = th_relay_new();
    size_t n = strlen(r->extra);
    snprintf(r->extra + n, sizeof r->extra - n,
             "\n[source hub]\ncodec = timely\nauth = hub-signature-256\nsecret = an-old-one\n");
    TH_START(r);
    char id[128], chan[128], sig[65], hdr[128];
    snprintf(id, sizeof id, "evt_%s_signed", r->prefix);
    snprintf(chan, sizeof chan, "ch_%s_signed", r->prefix);
    char *body = th_timely_message(id, chan, 1);
    hmac_hex("the-right-one", body, sig);
    snprintf(hdr, sizeof hdr, "X-Hub-Signature-256: sha256=%s", sig);
    const char *hh[] = {hdr, NULL};
    th_resp_t resp;
    th_post(r, "hub", body, hh, &resp);
    cr_assert_eq(resp.status, 401, "%ld %s", resp.status, resp.body);
    th_resp_free(&resp);
    cr_expect_eq(th_relay_stop(r, 30000), 0);

    th_relay_setenv(r, "RELAY_SOURCE_HUB_SECRET", "the-right-one");
    TH_START(r);
    json_t *ans = redrive(r, "hub");
    cr_expect_eq(count_of(ans, "redriven"), 1);
    cr_expect_eq(count_of(ans, "accepted"), 1);
    json_decref(ans);
    char stream[256];
    th_stream(r, chan, stream, sizeof stream);
    th_xentries_t got = {0};
    th_redis_read(stream, 1, 30000, 500, &got);
    cr_expect_eq(got.n, 1, "%s: %zu entries", stream, got.n);
    if (got.n)
        cr_expect_str_eq(xid(&got.v[0]), id);
    th_xentries_free(&got);
    free(body);
    cr_expect_eq(th_relay_stop(r, 30000), 0);
}
