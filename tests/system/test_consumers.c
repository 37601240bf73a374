/* test_consumers.c -- the consumer examples of docs/consuming.md (examples/consumers/)
 * read what relay published: kcat, librdkafka in C, confluent-kafka in Python, kafkajs
 * with its lz4 codec in Node.js (relay's producer compresses with lz4), and a Redis
 * consumer group in Python. Each must print every event id posted. */
#include "harness.h"

TestSuite(consumers, .init = th_setup, .fini = th_teardown, .timeout = 300);

#define NEVENTS 3

static char ids[NEVENTS][64];

static th_relay_t *relay_with_events(void)
{
    th_relay_t *r = th_relay_new();
    TH_START(r);
    for (int i = 0; i < NEVENTS; i++) {
        snprintf(ids[i], sizeof(ids[i]), "cons-%d-%lld", i, (long long)th_now_ms());
        char *body = th_timely_message(ids[i], "chan_consumers", i);
        th_resp_t resp = {0};
        cr_assert(th_post(r, "timely", body, NULL, &resp) == 0 && resp.status == 200,
                  "POST answered %ld", resp.status);
        th_resp_free(&resp);
        free(body);
    }
    return r;
}

/* Runs a shell command line (from the repository root); asserts that it exits 0 and
 * prints every posted id, in posting order. */
static void run_and_check(const char *what, const char *cmd)
{
    char *out = NULL;
    char *const argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    int rc = th_run(argv, 120000, &out);
    cr_assert_eq(rc, 0, "%s exited %d: %s\n%s", what, rc, cmd, out);
    const char *at = out;
    for (int i = 0; i < NEVENTS; i++) {
        const char *p = strstr(at, ids[i]);
        cr_assert(p, "%s did not print %s (or not after the one before): %s", what, ids[i], out);
        at = p;
    }
    cr_log_info("%s: read the %d events", what, NEVENTS);
    free(out);
}

Test(consumers, kafka_clients_read_relays_topics)
{
    th_relay_t *r = relay_with_events();
    char topic[256];
    th_topic(r, "message", topic, sizeof(topic));
    const char *dir = th_test_dir(), *brokers = th_kafka_brokers();
    char *cmd;
    th_kmsgs_t got = {0};

    /* Published before kcat -e reads to the end. */
    cr_assert_eq(th_kafka_read(topic, NEVENTS, 30000, 0, &got), NEVENTS, "not on %s", topic);
    th_kmsgs_free(&got);

    cmd = th_strf("examples/consumers/kcat.sh %s %s", brokers, topic);
    run_and_check("kcat", cmd);
    free(cmd);

    cmd = th_strf("cc -std=c11 -o %s/consumer examples/consumers/c/consumer.c "
                  "$(pkg-config --cflags --libs rdkafka) && %s/consumer %s g-c %s %d 20000",
                  dir, dir, brokers, topic, NEVENTS);
    run_and_check("librdkafka (C)", cmd);
    free(cmd);

    /* Debian's python3 (the one its python3-confluent-kafka is for), not another
     * python3 that may come first on PATH. */
    cmd = th_strf("/usr/bin/python3 examples/consumers/python/consumer.py %s g-py %s %d 20",
                  brokers, topic, NEVENTS);
    run_and_check("confluent-kafka (Python)", cmd);
    free(cmd);

    char *out = NULL;
    char *const probe[] = {"/bin/sh", "-c", "command -v node && command -v npm", NULL};
    if (th_run(probe, 10000, &out) != 0) {
        cr_log_warn("kafkajs: node or npm is not installed; the Node.js example was not run");
    } else {
        cmd = th_strf("cp examples/consumers/node/*.js examples/consumers/node/package.json %s/ "
                      "&& cd %s && npm install --no-audit --no-fund --loglevel=error >npm.log "
                      "2>&1 && node consumer.js %s g-js %s %d",
                      dir, dir, brokers, topic, NEVENTS);
        run_and_check("kafkajs + lz4 codec (Node.js)", cmd);
        free(cmd);
    }
    free(out);
}

Test(consumers, redis_consumer_group_reads_a_stream)
{
    th_relay_t *r = relay_with_events();
    char stream[256];
    th_stream(r, "chan_consumers", stream, sizeof(stream));
    th_xentries_t got = {0};
    cr_assert_eq(th_redis_read(stream, NEVENTS, 30000, 0, &got), NEVENTS, "not on %s", stream);
    th_xentries_free(&got);
    char *cmd = th_strf("/usr/bin/python3 examples/consumers/python/redis_group.py "
                        "redis://127.0.0.1:%d/0 %s g-redis c1 %d 10",
                        th_redis_port(), stream, NEVENTS);
    run_and_check("redis-py consumer group", cmd);
    free(cmd);
    /* Everything read was acknowledged: nothing is pending in the group. */
    redisContext *c = redisConnect("127.0.0.1", th_redis_port());
    cr_assert(c && !c->err);
    redisReply *rep = redisCommand(c, "XPENDING %s g-redis", stream);
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1);
    cr_assert_eq(rep->element[0]->integer, 0, "entries left pending");
    freeReplyObject(rep);
    redisFree(c);
}
