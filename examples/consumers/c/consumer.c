/* consumer.c -- reads relay's Kafka topics in a consumer group with librdkafka and
 * prints "KEY CE_ID VALUE_BYTES" per event; offsets are committed after each event
 * is handled (at least once).
 *
 *     cc -o consumer consumer.c $(pkg-config --cflags --libs rdkafka)
 *     ./consumer BROKERS GROUP TOPIC [MAX_EVENTS] [IDLE_MS]
 *
 * librdkafka decodes every compression relay may use (lz4, the default). */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char err[256];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", name, err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    char err[256];
    int max = argc > 4 ? atoi(argv[4]) : 0, idle_ms = argc > 5 ? atoi(argv[5]) : 10000, n = 0;

    if (argc < 4) {
        fprintf(stderr, "usage: %s BROKERS GROUP TOPIC [MAX_EVENTS] [IDLE_MS]\n", argv[0]);
        return 2;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (set(conf, "bootstrap.servers", argv[1]) || set(conf, "group.id", argv[2]) ||
        set(conf, "auto.offset.reset", "earliest") || set(conf, "enable.auto.commit", "false"))
        return 1;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, argv[3], RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    while (max == 0 || n < max) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, idle_ms);
        if (!m)
            break; /* nothing for IDLE_MS */
        if (m->err) {
            fprintf(stderr, "%s\n", rd_kafka_message_errstr(m));
        } else {
            rd_kafka_headers_t *h = NULL;
            const void *id = NULL;
            size_t idlen = 0;
            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
                rd_kafka_header_get_last(h, "ce_id", &id, &idlen);
            printf("%.*s %.*s %zu\n", (int)m->key_len, (const char *)m->key, (int)idlen,
                   id ? (const char *)id : "", m->len);
            fflush(stdout);
            rd_kafka_commit_message(rk, m, 0); /* after handling it */
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}
