/* test_fault_kafka_fatal.c -- a fatal librdkafka error must cost nothing.
 *
 * An idempotent producer that gets OUT_OF_ORDER_SEQUENCE_NUMBER from a broker raises a
 * fatal error and is unusable from then on (Debian's librdkafka 2.0.2 can raise one on
 * a broker flap, so this path runs in production). relay's Kafka sink must destroy it,
 * create a new producer and re-send from its WAL cursor.
 *
 * The error is injected with librdkafka's mock cluster (rdkafka_mock.h), in process:
 * the test drives relay's real Kafka sink (build/librelay.a) with a real WAL, appends
 * events, makes the mock broker answer one Produce request with the error, appends
 * more, twice, and then reads the mock cluster back. The mock cluster is used for the
 * fault injection only; every other test publishes to the real broker. */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "sink.h"
#include "tmpdir.h"
#include "wal.h"

#define TOPIC "events.message"
#define CHANNELS 4
#define PER_ROUND 300
#define ROUNDS 3 /* before the first error, between the two, after the second */
#define TOTAL (PER_ROUND * ROUNDS)
#define PRODUCE_API_KEY 0 /* Kafka protocol ApiKey of Produce (RD_KAFKAP_Produce) */

static char tmpdir[64];

static void setup(void)
{
    tu_tmpdir_make(tmpdir, sizeof tmpdir, "kfatal");
    rl_log_set_level("warn");
}

static void teardown(void)
{
    tu_tmpdir_remove(tmpdir);
}

TestSuite(faults_kafka, .init = setup, .fini = teardown, .timeout = 300);

static int64_t now_ms(void)
{
    return rl_clock_mono_ms();
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Appends events first .. first+count-1 (event n on channel n % CHANNELS) in one
 * batch, the way ingest would: WAL records holding the routing fields and the
 * CloudEvent. One batch, so that the sink has many of them in flight at once when
 * the error comes. */
static void append_events(rl_wal_t *w, int first, int count)
{
    struct iovec iov[PER_ROUND];
    cr_assert_leq(count, PER_ROUND);
    for (int i = 0; i < count; i++) {
        char id[32], channel[16], ce[160];
        int n = first + i;
        snprintf(id, sizeof id, "evt_%d", n);
        snprintf(channel, sizeof channel, "chan_%d", n % CHANNELS);
        snprintf(ce, sizeof ce, "{\"specversion\":\"1.0\",\"id\":\"%s\",\"subject\":\"%s\"}", id,
                 channel);
        rl_event_t ev = {.id = id,
                         .type = "message.received",
                         .channel_id = channel,
                         .time = "2026-04-19T10:00:00Z"};
        uint8_t *buf = NULL;
        cr_assert_eq(rl_record_encode("timely", &ev, ce, 0, &buf, &iov[i].iov_len), 0);
        iov[i].iov_base = buf;
    }
    uint64_t seq;
    cr_assert_eq(rl_wal_append_sync(w, iov, (size_t)count, &seq), RL_WAL_OK);
    for (int i = 0; i < count; i++)
        free(iov[i].iov_base);
}

static int64_t metric(rl_metrics_t *m, const char *name)
{
    size_t len;
    char *text = rl_metrics_render(m, &len), pat[128];
    long long v = -1;
    snprintf(pat, sizeof pat, "\n%s ", name);
    char *p = text ? strstr(text, pat) : NULL;
    if (p)
        sscanf(p + strlen(pat), "%lld", &v);
    free(text);
    return v;
}

/* Waits until the sink's cursor reaches seq (everything delivered). */
static void wait_cursor(rl_wal_reader_t *r, uint64_t seq)
{
    int64_t deadline = now_ms() + 120000; /* a hang guard, not a speed requirement */
    while (rl_wal_reader_cursor(r) < seq && now_ms() < deadline)
        sleep_ms(20);
    cr_assert_geq(rl_wal_reader_cursor(r), seq, "the sink's cursor stopped at %llu of %llu",
                  (unsigned long long)rl_wal_reader_cursor(r), (unsigned long long)seq);
}

typedef struct seen {
    int copies[TOTAL];
    int next[CHANNELS]; /* per channel: the next event whose first copy is due */
    int found, dups, disorder, foreign;
} seen_t;

static void see(seen_t *s, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t vl = 0;
    char id[32];
    int n = -1;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, "ce_id", &v, &vl) ||
        vl >= sizeof id) {
        s->foreign++;
        return;
    }
    snprintf(id, sizeof id, "%.*s", (int)vl, (const char *)v);
    if (sscanf(id, "evt_%d", &n) != 1 || n < 0 || n >= TOTAL) {
        s->foreign++;
        return;
    }
    if (s->copies[n]++) {
        s->dups++;
        return;
    }
    s->found++;
    int ch = n % CHANNELS;
    if (n != s->next[ch])
        s->disorder++;
    while (s->next[ch] < TOTAL && s->copies[s->next[ch]])
        s->next[ch] += CHANNELS;
}

/* Reads every partition of TOPIC on the mock cluster from the beginning. */
static void read_back(const char *bootstraps, seen_t *s)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof errstr),
                 RD_KAFKA_CONF_OK);
    cr_assert_eq(rd_kafka_conf_set(conf, "group.id", "kfatal", errstr, sizeof errstr),
                 RD_KAFKA_CONF_OK);
    cr_assert_eq(rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr),
                 RD_KAFKA_CONF_OK);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    cr_assert_not_null(c, "consumer: %s", errstr);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(3);
    for (int p = 0; p < 3; p++)
        rd_kafka_topic_partition_list_add(parts, TOPIC, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    cr_assert_eq(rd_kafka_assign(c, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    int64_t deadline = now_ms() + 60000, settle = -1;
    for (;;) {
        if (settle < 0 && s->found == TOTAL)
            settle = now_ms() + 1000; /* then a little more, for extra copies */
        if ((settle >= 0 && now_ms() >= settle) || (settle < 0 && now_ms() >= deadline))
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (!m->err)
            see(s, m);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(c, NULL);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

Test(faults_kafka, fatal_producer_error_recreates_the_producer_and_resends)
{
    char errstr[512], path[128], waldir[128];
    /* The mock cluster lives in a client handle of its own. */
    rd_kafka_conf_t *mconf = rd_kafka_conf_new();
    rd_kafka_conf_set(mconf, "log_level", "0", errstr, sizeof errstr);
    rd_kafka_t *mh = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, errstr, sizeof errstr);
    cr_assert_not_null(mh, "%s", errstr);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(mh, 1);
    cr_assert_not_null(mc, "cannot create a mock cluster");
    cr_assert_eq(rd_kafka_mock_topic_create(mc, TOPIC, 3, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);

    snprintf(waldir, sizeof waldir, "%s/wal", tmpdir);
    snprintf(path, sizeof path, "%s/relay.conf", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "[wal]\ndir = %s\n[kafka]\nbrokers = %s\ntopic = events.{family}\nlinger.ms = 5\n"
            "[redis]\nenabled = false\n[source timely]\ncodec = timely\n",
            waldir, bootstraps);
    fclose(f);
    rl_config_t *cfg = rl_config_load(path, errstr, sizeof errstr);
    cr_assert_not_null(cfg, "%s", errstr);
    rl_metrics_t *m = rl_metrics_new(errstr, sizeof errstr);
    static const char *const readers[] = {"kafka"};
    rl_wal_opts_t wo = {.dir = waldir,
                        .segment_size = 64 * 1024 * 1024,
                        .max_size = 1024 * 1024 * 1024,
                        .fsync = 1,
                        .readers = readers,
                        .nreaders = 1};
    rl_wal_t *w = rl_wal_open(&wo, m, errstr, sizeof errstr);
    cr_assert_not_null(w, "%s", errstr);
    rl_wal_reader_t *r = rl_wal_reader(w, "kafka");
    rl_sink_t *s = rl_sink_kafka_new(cfg, "kafka", r, m, errstr, sizeof errstr);
    cr_assert_not_null(s, "%s", errstr);

    int n = 0;
    int64_t restarts[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        if (round > 0) /* the next Produce request fails with the fatal error */
            rd_kafka_mock_push_request_errors(mc, PRODUCE_API_KEY, 1,
                                              RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
        append_events(w, n, PER_ROUND);
        n += PER_ROUND;
        wait_cursor(r, (uint64_t)n);
        restarts[round] = metric(m, "relay_kafka_producer_restarts_total");
    }
    rl_sink_stop(s, 5000);
    rl_sink_destroy(s);

    seen_t seen = {0};
    for (int ch = 0; ch < CHANNELS; ch++)
        seen.next[ch] = ch;
    read_back(bootstraps, &seen);
    fprintf(stderr,
            "FAULT kafka_fatal: events: %d | producer restarts after the 1st error: %lld, after "
            "the 2nd: %lld | on kafka (mock cluster): %d, lost %d, duplicated %d | out of order: "
            "%d\n",
            TOTAL, (long long)restarts[1], (long long)restarts[2], seen.found, TOTAL - seen.found,
            seen.dups, seen.disorder);
    cr_expect_eq(restarts[0], 0, "the producer was recreated before any error");
    cr_expect_eq(restarts[1], 1, "the first fatal error did not recreate the producer");
    cr_expect_eq(restarts[2], 2, "the second fatal error did not recreate the producer");
    cr_expect_eq(seen.found, TOTAL, "%d events were lost", TOTAL - seen.found);
    cr_expect_eq(seen.disorder, 0, "%d events out of their channel's order", seen.disorder);
    cr_expect_eq(seen.foreign, 0);

    rl_wal_close(w);
    rl_metrics_destroy(m);
    rl_config_destroy(cfg);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mh);
}
