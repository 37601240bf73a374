/* sink_kafka.c -- publishes WAL records to Kafka with librdkafka.
 *
 * The producer is idempotent with acks=all, so retries inside librdkafka never
 * reorder or duplicate within a partition. Our cursor moves only over a prefix of
 * records that all have a successful delivery report; anything else is re-sent
 * from the cursor (same CloudEvent id: at-least-once). A fatal producer error
 * (librdkafka < 2.3 can raise a spurious one on broker flaps) destroys and
 * recreates the producer, then re-sends from the cursor. */
#include "sink_common.h"

#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "record.h"
#include "prio.h"
#include "err.h"

#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_INFLIGHT 20000
#define MAX_INFLIGHT_BYTES (32u * 1024 * 1024)

typedef struct kafka {
    rl_sink_t base;
    rd_kafka_t *rk;
    /* Records handed to librdkafka and not yet acknowledged, in WAL order. */
    uint64_t *seq;
    uint8_t *acked;
    size_t *bytes;
    size_t head, count, inflight_bytes;
    int failed;         /* a delivery failed: rewind once nothing is in flight */
    int fatal;          /* the producer is unusable: recreate */
    int64_t last_probe; /* rl_clock_mono_ms */
    rl_metric_t *m_restarts;
} kafka_t;

static size_t ring_at(size_t head, size_t i)
{
    return (head + i) % MAX_INFLIGHT;
}

/* Marks `seq` delivered. In-flight seqs are sorted, so binary search finds it. */
static void ring_ack(kafka_t *k, uint64_t seq)
{
    size_t lo = 0, hi = k->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (k->seq[ring_at(k->head, mid)] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < k->count && k->seq[ring_at(k->head, lo)] == seq)
        k->acked[ring_at(k->head, lo)] = 1;
}

/* Pops the delivered prefix and moves the WAL cursor over it. */
static void ring_advance(kafka_t *k)
{
    uint64_t last = 0;
    size_t n = 0;
    while (k->count && k->acked[k->head]) {
        last = k->seq[k->head];
        k->inflight_bytes -= k->bytes[k->head];
        k->head = (k->head + 1) % MAX_INFLIGHT;
        k->count--;
        n++;
    }
    if (n) {
        /* Counted before the cursor moves: an ack = publish answer (which the
         * cursor releases) never sees the counter behind it. */
        rl_metric_add(k->base.m_published, n);
        rl_wal_reader_commit(k->base.reader, last);
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_t *k = opaque;
    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ring_ack(k, (uint64_t)(uintptr_t)m->_private);
        if (!rl_sink_connected(&k->base)) /* not per message: three atomic writes */
            rl_sink_set_connected(&k->base, 1);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        return; /* we purged it ourselves and will re-send from the cursor */
    rl_metric_add(k->base.m_errors, 1);
    if (!k->failed)
        rl_warn("kafka: delivery of WAL record %llu failed: %s; re-sending from the cursor",
                (unsigned long long)(uintptr_t)m->_private, rd_kafka_err2str(m->err));
    k->failed = 1;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_t *k = opaque;
    char fatal[512];
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        rl_error("kafka: fatal producer error: %s; recreating the producer", fatal);
        k->fatal = 1;
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        rl_sink_set_connected(&k->base, 0);
    rl_debug("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* A broker that has just started answers "Coordinator load in progress"
     * to the idempotent producer's first request, and librdkafka retries: a
     * normal start, not a warning. */
    if (strstr(buf, "Coordinator load in progress") || strstr(buf, "Coordinator not available"))
        level = 6;
    rl_log(level <= 3   ? RL_LOG_ERROR
           : level <= 4 ? RL_LOG_WARN
                        : RL_LOG_DEBUG,
           "kafka: %s: %s", fac, buf);
}

/* librdkafka's own threads (one per broker, plus its main thread) do the
 * publishing work too: they run at the sink's priority (prio.h). */
static rd_kafka_resp_err_t on_thread_start(rd_kafka_t *rk, rd_kafka_thread_type_t type,
                                           const char *name, void *ic_opaque)
{
    (void)rk, (void)type, (void)name, (void)ic_opaque;
    rl_prio_background();
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static rd_kafka_resp_err_t on_new(rd_kafka_t *rk, const rd_kafka_conf_t *conf, void *ic_opaque,
                                  char *errstr, size_t errstr_size)
{
    (void)conf, (void)errstr, (void)errstr_size;
    return rd_kafka_interceptor_add_on_thread_start(rk, "relay-prio", on_thread_start, ic_opaque);
}

rd_kafka_conf_t *rl_sink_kafka_conf(const rl_config_t *cfg, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Our defaults first, the user's pass-through properties after, so they win. */
    static const char *const defaults[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
        {"message.timeout.ms", "0"}, /* never give up */
        {"compression.type", "lz4"},
        {"log.connection.close", "false"},
    };

    if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka.brokers, errstr, errstr_size))
        goto fail;
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, errstr_size))
            goto fail;
    for (size_t i = 0; i < cfg->kafka.nprops; i++)
        if (rd_kafka_conf_set(conf, cfg->kafka.props[i].name, cfg->kafka.props[i].value, errstr,
                              errstr_size))
            goto fail;
    rd_kafka_conf_set_log_cb(conf, on_log);
    if (rd_kafka_conf_interceptor_add_on_new(conf, "relay-prio", on_new, NULL)) {
        rl_seterr(errstr, errstr_size, "cannot add the thread-priority interceptor");
        goto fail;
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static rd_kafka_t *producer_new(kafka_t *k, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rl_sink_kafka_conf(k->base.cfg, errstr, errstr_size);
    rd_kafka_t *rk = NULL;

    if (!conf)
        return NULL;
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        goto fail;
    return rk; /* conf is owned by rk now */
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Drops everything in flight and starts again from the cursor. */
static void rewind_all(kafka_t *k)
{
    if (k->rk) {
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(k->rk, 0);
    }
    ring_advance(k); /* keep what was delivered before the failure */
    k->head = k->count = k->inflight_bytes = 0;
    k->failed = 0;
    rl_wal_reader_rewind(k->base.reader);
}

static int produce(kafka_t *k, const rl_wal_rec_t *wr)
{
    rl_record_t rec;
    char topic[RL_RECORD_TOPIC_MAX + 1];
    const rl_config_t *cfg = k->base.cfg;
    if (rl_record_decode(wr->data, wr->len, &rec) != 0 ||
        rl_record_render(rec.kind == RL_RECORD_DEADLETTER ? cfg->kafka.deadletter_topic
                                                          : cfg->kafka.topic,
                         &rec, 1, topic, sizeof(topic)) < 0) {
        /* Retrying cannot help; stalling would hold every later event back. */
        rl_error("kafka: WAL record %llu is malformed or its topic name is over 249 "
                 "characters; not published (relay_sink_dropped_total)",
                 (unsigned long long)wr->seq);
        rl_metric_add(k->base.m_dropped, 1);
        return 1; /* acknowledged as nothing can ever publish it */
    }
    /* Dead letters have no channel: keyed by source, one source's stay in order. */
    int dead = rec.kind == RL_RECORD_DEADLETTER;
    const char *key = dead ? rec.source : rec.channel_id;
    size_t key_len = dead ? rec.source_len : rec.channel_id_len;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            k->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)rec.event, rec.event_len),
            RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json; charset=UTF-8", -1),
            RD_KAFKA_V_HEADER("ce_specversion", "1.0", 3),
            RD_KAFKA_V_HEADER("ce_id", rec.id, (ssize_t)rec.id_len),
            RD_KAFKA_V_HEADER("ce_type", rec.type, (ssize_t)rec.type_len),
            RD_KAFKA_V_HEADER("ce_source", rec.ce_source, (ssize_t)rec.ce_source_len),
            RD_KAFKA_V_OPAQUE((void *)(uintptr_t)wr->seq), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !rl_sink_should_stop(&k->base)) {
            rd_kafka_poll(k->rk, 50);
            continue;
        }
        if (err) {
            rl_warn("kafka: produce to %s failed: %s", topic, rd_kafka_err2str(err));
            rl_metric_add(k->base.m_errors, 1);
            return -1;
        }
        return 0;
    }
}

/* With nothing in flight no delivery report tells whether the cluster is
 * reachable: ask for metadata every few seconds so /readyz and relay_sink_up
 * stay true while idle. */
static void probe(kafka_t *k)
{
    const struct rd_kafka_metadata *md = NULL;
    int64_t now = rl_clock_mono_ms();
    if (now - k->last_probe < 5000)
        return;
    k->last_probe = now;
    rd_kafka_resp_err_t err = rd_kafka_metadata(k->rk, 0, NULL, &md, 2000);
    if (md)
        rd_kafka_metadata_destroy(md);
    rl_sink_set_connected(&k->base, err == RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void *kafka_main(void *arg)
{
    kafka_t *k = arg;

    pthread_setname_np(pthread_self(), "rl-kafka"); /* top -H, perf */
    rl_prio_background();
    char errstr[512];
    rl_backoff_t backoff;

    rl_backoff_init(&backoff, 100, 5000);
    while (!rl_sink_should_stop(&k->base)) {
        if (!k->rk) {
            if (!(k->rk = producer_new(k, errstr, sizeof(errstr)))) {
                rl_error("kafka: cannot create producer: %s", errstr);
                rl_sink_sleep(&k->base, rl_backoff_next(&backoff));
                continue;
            }
            rl_backoff_reset(&backoff);
        }
        if (k->fatal) {
            rewind_all(k);
            rd_kafka_destroy(k->rk);
            k->rk = NULL;
            k->fatal = 0;
            rl_metric_add(k->m_restarts, 1);
            continue;
        }
        if (k->failed) {
            rewind_all(k);
            rl_sink_sleep(&k->base, 1000);
            continue;
        }
        /* Feed librdkafka while the in-flight window has room. */
        int fed = 0;
        while (k->count < MAX_INFLIGHT && k->inflight_bytes < MAX_INFLIGHT_BYTES && fed < 10000 &&
               !k->failed && !k->fatal) {
            rl_wal_rec_t wr;
            /* With messages in flight, wait for the next record only briefly: the
             * delivery reports are served between two waits. A new record wakes
             * the wait at once, so it is produced without delay (a 10 ms poll of
             * librdkafka here used to hold new events back by up to 10 ms). */
            int r = rl_wal_reader_next(k->base.reader, &wr,
                                       fed        ? 0
                                       : k->count ? 2
                                                  : 100,
                                       errstr, sizeof(errstr));
            if (r < 0) {
                rl_error("kafka: reading the WAL: %s", errstr);
                rl_sink_sleep(&k->base, 1000);
                break;
            }
            if (r == 0)
                break;
            size_t slot = ring_at(k->head, k->count);
            k->seq[slot] = wr.seq;
            k->acked[slot] = 0;
            k->bytes[slot] = wr.len;
            k->count++;
            k->inflight_bytes += wr.len;
            int p = produce(k, &wr);
            if (p > 0)
                k->acked[slot] = 1;
            else if (p < 0)
                k->failed = 1;
            fed++;
        }
        /* Only a full window blocks here, on the delivery reports that open it. */
        int window_full = k->count >= MAX_INFLIGHT || k->inflight_bytes >= MAX_INFLIGHT_BYTES;
        rd_kafka_poll(k->rk, window_full && !fed ? 10 : 0);
        ring_advance(k);
        rl_sink_progress(&k->base);
        if (!k->count && !fed && !atomic_load(&k->base.drain_until_ms))
            probe(k); /* not while draining: it may block for up to 2 s */
    }
    if (k->rk) {
        /* Draining stopped because everything is acknowledged, or the grace
         * period is over: either way there is nothing left to wait for. */
        rd_kafka_flush(k->rk, rl_sink_grace_left(&k->base));
        rd_kafka_poll(k->rk, 0);
        ring_advance(k);
        if (k->count)
            rl_warn("kafka: %zu events not acknowledged at shutdown; they are re-sent at the "
                    "next start",
                    k->count);
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(k->rk);
        k->rk = NULL;
    }
    return NULL;
}

static void kafka_free(rl_sink_t *s)
{
    kafka_t *k = (kafka_t *)s;
    free(k->seq);
    free(k->acked);
    free(k->bytes);
}

rl_sink_t *rl_sink_kafka_new(const rl_config_t *cfg, const char *name, rl_wal_reader_t *reader,
                             rl_metrics_t *metrics, char *errstr, size_t errstr_size)
{
    kafka_t *k = calloc(1, sizeof(*k));
    if (!k) {
        rl_seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    rl_sink_init(&k->base, name, cfg, reader, metrics, cfg->kafka.outage_budget);
    k->base.destroy_impl = kafka_free;
    k->seq = calloc(MAX_INFLIGHT, sizeof(*k->seq));
    k->acked = calloc(MAX_INFLIGHT, 1);
    k->bytes = calloc(MAX_INFLIGHT, sizeof(*k->bytes));
    if (metrics)
        k->m_restarts = rl_metrics_counter(metrics, "relay_kafka_producer_restarts_total", "",
                                           "Producers recreated after a fatal error.");
    if (!k->seq || !k->acked || !k->bytes)
        goto fail;
    /* Build one producer now so a bad pass-through property fails start-up. */
    if (!(k->rk = producer_new(k, errstr, errstr_size)))
        goto fail;
    if (pthread_create(&k->base.thread, NULL, kafka_main, k) != 0) {
        rl_seterr(errstr, errstr_size, "cannot start the kafka thread");
        goto fail;
    }
    return &k->base;
fail:
    rl_sink_fini(&k->base);
    if (k->rk)
        rd_kafka_destroy(k->rk);
    kafka_free(&k->base);
    free(k);
    return NULL;
}
