/* e2e.c -- the benchmark's consumer: measures accepted -> visible latency on
 * Kafka and on Redis while load runs.
 *
 * Every new event the load sends carries its send time (ms) as the provider
 * time, which becomes the CloudEvent's `time`; latency = when this consumer
 * sees the event - that time. It includes the HTTP round trip (about the ack
 * latency), so it slightly overstates relay's part.
 *
 *   e2e BROKERS TOPIC1,TOPIC2 REDIS_PORT STREAM_PREFIXES SECONDS
 * e.g. e2e 127.0.0.1:9092 events.message,events.channel 6379 events:chan_,events:WHAPI- 30
 * Prints "READY" once subscribed, then after SECONDS one line per sink:
 *   E2E sink=kafka n=... p50_ms=... p99_ms=... max_ms=... */

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REDIS_SAMPLE 20 /* streams read per prefix (of the load's 200 channels) */

typedef struct lat {
    double *v;
    size_t n, cap;
} lat_t;

static volatile int stop;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "2026-11-21T11:27:20.123Z" -> unix ms; -1 when there is no ms fraction. */
static long long parse_ms(const char *s)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p || *p != '.')
        return -1;
    long long ms = (long long)timegm(&tm) * 1000;
    return ms + atoi(p + 1);
}

/* The CloudEvent's `time`. Not a JSON parse: this consumer shares the two cores
 * with relay while it measures, and parsing every event twice (Kafka and Redis)
 * with jansson cost as much as relay's own decoding, which inflated the ack
 * latency measured beside it. relay writes the envelope itself, `time` before
 * `data`, and a '"' inside a JSON string is always escaped, so the first
 * `"time":"` is the envelope's key. */
static void record(lat_t *l, const char *json, size_t len)
{
    static const char key[] = "\"time\":\"";
    char t[40];
    const char *p = memmem(json, len, key, sizeof(key) - 1);
    long long sent = -1;
    if (p) {
        p += sizeof(key) - 1;
        const char *q = memchr(p, '"', len - (size_t)(p - json));
        if (q && (size_t)(q - p) < sizeof(t)) {
            memcpy(t, p, (size_t)(q - p));
            t[q - p] = '\0';
            sent = parse_ms(t);
        }
    }
    if (sent > 0) {
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 65536;
            l->v = realloc(l->v, l->cap * sizeof(double));
        }
        l->v[l->n++] = (double)(now_ms() - sent);
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *sink, lat_t *l)
{
    if (!l->n) {
        printf("E2E sink=%s n=0\n", sink);
        return;
    }
    qsort(l->v, l->n, sizeof(double), cmp);
    printf("E2E sink=%s n=%zu p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n", sink, l->n, l->v[l->n / 2],
           l->v[(size_t)((double)l->n * 0.99)], l->v[l->n - 1]);
}

typedef struct redis_arg {
    int port;
    char prefixes[512];
    lat_t lat;
} redis_arg_t;

static void *redis_main(void *arg)
{
    redis_arg_t *a = arg;
    redisContext *c = redisConnect("127.0.0.1", a->port);
    if (!c || c->err) {
        fprintf(stderr, "e2e: redis connect failed\n");
        return NULL;
    }
    /* XREAD over the streams of the first REDIS_SAMPLE channels of each prefix,
     * from "now" on. Channels are picked at random by the load, so a sample of
     * them has the same latency; XREAD over all 400 streams cost Redis and this
     * consumer a real share of the two cores relay is measured on. */
    char *prefixes[8];
    int np = 0;
    for (char *s = strtok(a->prefixes, ","); s && np < 8; s = strtok(NULL, ","))
        prefixes[np++] = s;
    int nkeys = np * REDIS_SAMPLE;
    const char **argv = calloc((size_t)(4 + 2 * nkeys), sizeof(char *));
    char **keys = calloc((size_t)nkeys, sizeof(char *)),
         **ids = calloc((size_t)nkeys, sizeof(char *));
    for (int p = 0, k = 0; p < np; p++)
        for (int i = 0; i < REDIS_SAMPLE; i++, k++) {
            if (asprintf(&keys[k], "%s%d", prefixes[p], i) < 0)
                return NULL;
            ids[k] = strdup("$");
        }
    while (!stop) {
        int ac = 0;
        argv[ac++] = "XREAD";
        argv[ac++] = "BLOCK";
        argv[ac++] = "200";
        argv[ac++] = "STREAMS";
        for (int k = 0; k < nkeys; k++)
            argv[ac++] = keys[k];
        for (int k = 0; k < nkeys; k++)
            argv[ac++] = ids[k];
        redisReply *r = redisCommandArgv(c, ac, argv, NULL);
        if (!r)
            break;
        for (size_t s = 0; r->type == REDIS_REPLY_ARRAY && s < r->elements; s++) {
            redisReply *stream = r->element[s];
            const char *key = stream->element[0]->str;
            redisReply *entries = stream->element[1];
            for (size_t e = 0; e < entries->elements; e++) {
                redisReply *ent = entries->element[e], *f = ent->element[1];
                for (size_t j = 0; j + 1 < f->elements; j += 2)
                    if (!strcmp(f->element[j]->str, "event"))
                        record(&a->lat, f->element[j + 1]->str, f->element[j + 1]->len);
                for (int k = 0; k < nkeys; k++)
                    if (!strcmp(keys[k], key)) {
                        free(ids[k]);
                        ids[k] = strdup(ent->element[0]->str);
                    }
            }
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: e2e BROKERS TOPICS REDIS_PORT STREAM_PREFIXES SECONDS\n");
        return 2;
    }
    char errstr[512], group[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(group, sizeof(group), "relay-bench-%d", (int)getpid());
    rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "auto.offset.reset", "latest", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "topic.metadata.refresh.interval.ms", "1000", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "e2e: %s\n", errstr);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(2);
    for (char *t = strtok(argv[2], ","); t; t = strtok(NULL, ","))
        rd_kafka_topic_partition_list_add(tl, t, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    /* Wait for the group to assign partitions, so that "latest" means now. */
    for (int i = 0; i < 300; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m)
            rd_kafka_message_destroy(m);
        rd_kafka_topic_partition_list_t *as = NULL;
        if (rd_kafka_assignment(rk, &as) == 0 && as && as->cnt > 0) {
            rd_kafka_topic_partition_list_destroy(as);
            break;
        }
        if (as)
            rd_kafka_topic_partition_list_destroy(as);
    }
    redis_arg_t ra = {.port = atoi(argv[3])};
    snprintf(ra.prefixes, sizeof(ra.prefixes), "%s", argv[4]);
    pthread_t th;
    pthread_create(&th, NULL, redis_main, &ra);
    printf("READY\n");
    fflush(stdout);

    lat_t kl = {0};
    long long end = now_ms() + atoll(argv[5]) * 1000;
    while (now_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err)
            record(&kl, m->payload, m->len);
        rd_kafka_message_destroy(m);
    }
    stop = 1;
    pthread_join(th, NULL);
    report("kafka", &kl);
    report("redis", &ra.lat);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}
