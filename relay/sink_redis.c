/* sink_redis.c -- publishes WAL records to Redis streams with hiredis.
 *
 * Each round reads up to redis.batch records, pipelines one XADD per record and
 * reads the replies; the cursor moves over the prefix that Redis confirmed. Any
 * failure drops the connection, rewinds to the cursor and reconnects with
 * exponential back-off, so a record is retried until Redis takes it (at least
 * once; a resend after a lost reply is a second entry with the same id). */
#include "sink_common.h"

#include "log.h"
#include "record.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct redis_sink {
    rl_sink_t base;
    redisContext *c;
    char host[512], password[512], unix_path[512];
    int port, db;
    uint64_t *batch_seq; /* seqs of the round; bit 63: skipped, no reply */
} redis_sink_t;

/* redis://[[user]:password@]host[:port][/db] or unix:///path/to.sock[?db=N] */
static int parse_url(redis_sink_t *r, const char *url, char *errstr, size_t errstr_size)
{
    char buf[512];
    r->port = 6379;
    if (!strncmp(url, "unix://", 7)) {
        snprintf(r->unix_path, sizeof(r->unix_path), "%s", url + 7);
        char *q = strchr(r->unix_path, '?');
        if (q) {
            if (!strncmp(q, "?db=", 4))
                r->db = atoi(q + 4);
            *q = '\0';
        }
        return 0;
    }
    snprintf(buf, sizeof(buf), "%s", url + 8);
    char *hostpart = buf, *at = strrchr(buf, '@');
    if (at) {
        *at = '\0';
        char *colon = strchr(buf, ':');
        snprintf(r->password, sizeof(r->password), "%s", colon ? colon + 1 : buf);
        hostpart = at + 1;
    }
    char *slash = strchr(hostpart, '/');
    if (slash) {
        r->db = atoi(slash + 1);
        *slash = '\0';
    }
    char *colon = strrchr(hostpart, ':');
    if (colon && !strchr(colon, ']')) {
        r->port = atoi(colon + 1);
        *colon = '\0';
    }
    if (hostpart[0] == '[') {
        hostpart++;
        hostpart[strcspn(hostpart, "]")] = '\0';
    }
    snprintf(r->host, sizeof(r->host), "%s", *hostpart ? hostpart : "127.0.0.1");
    if (r->port <= 0 || r->port > 65535) {
        snprintf(errstr, errstr_size, "redis.url: bad port");
        return -1;
    }
    return 0;
}

static int command_ok(redisContext *c, const char *what, redisReply *rep)
{
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (!ok)
        rl_warn("redis: %s failed: %s", what, rep ? rep->str : c->errstr);
    freeReplyObject(rep);
    return ok;
}

static int connect_redis(redis_sink_t *r)
{
    struct timeval tv = {2, 0};
    redisContext *c = r->unix_path[0] ? redisConnectUnixWithTimeout(r->unix_path, tv)
                                      : redisConnectWithTimeout(r->host, r->port, tv);
    if (!c || c->err) {
        rl_debug("redis: connect: %s", c ? c->errstr : "out of memory");
        goto fail;
    }
    redisSetTimeout(c, (struct timeval){5, 0});
    if (r->password[0] && !command_ok(c, "AUTH", redisCommand(c, "AUTH %s", r->password)))
        goto fail;
    if (r->db && !command_ok(c, "SELECT", redisCommand(c, "SELECT %d", r->db)))
        goto fail;
    r->c = c;
    return 0;
fail:
    if (c)
        redisFree(c);
    return -1;
}

static void disconnect(redis_sink_t *r)
{
    if (r->c)
        redisFree(r->c);
    r->c = NULL;
}

/* One pipelined round. Returns records confirmed, or -1 after a failure (the
 * cursor covers whatever was confirmed before it). */
static int round_trip(redis_sink_t *r, int first_timeout_ms)
{
    const rl_config_t *cfg = r->base.cfg;
    long long n = 0, sent = 0, done = 0;
    uint64_t *seqs = r->batch_seq;
    char errstr[256], key[4096];

    while (n < cfg->redis.batch) {
        rl_wal_rec_t wr;
        rl_record_t rec;
        int got = rl_wal_reader_next(r->base.reader, &wr, n ? 0 : first_timeout_ms, errstr,
                                     sizeof(errstr));
        if (got < 0) {
            rl_error("redis: reading the WAL: %s", errstr);
            break;
        }
        if (got == 0)
            break;
        seqs[n++] = wr.seq;
        if (rl_record_decode(wr.data, wr.len, &rec) != 0 ||
            rl_record_render(rec.kind == RL_RECORD_DEADLETTER ? cfg->redis.deadletter_stream
                                                              : cfg->redis.stream,
                             &rec, 0, key, sizeof(key)) < 0) {
            rl_error("redis: WAL record %llu is malformed or its key is over %zu bytes; not "
                     "published (relay_sink_dropped_total)",
                     (unsigned long long)wr.seq, sizeof(key) - 1);
            rl_metric_add(r->base.m_dropped, 1);
            seqs[n - 1] |= 1ULL << 63; /* no reply to wait for */
            continue;
        }
        redisAppendCommand(r->c, "XADD %b MAXLEN ~ %lld * id %b type %b event %b", key,
                           strlen(key), cfg->redis.maxlen, rec.id, rec.id_len, rec.type,
                           rec.type_len, rec.event, rec.event_len);
        sent++;
    }
    (void)sent;
    uint64_t last = 0;
    int failed = 0;
    for (long long i = 0; i < n; i++) {
        if (!(seqs[i] >> 63)) {
            void *rep = NULL;
            if (redisGetReply(r->c, &rep) != REDIS_OK || !rep) {
                rl_warn("redis: %s", r->c->errstr[0] ? r->c->errstr : "connection lost");
                failed = 1;
                break;
            }
            redisReply *reply = rep;
            if (reply->type == REDIS_REPLY_ERROR) {
                rl_warn("redis: XADD refused: %s", reply->str);
                freeReplyObject(reply);
                failed = 1;
                break;
            }
            freeReplyObject(reply);
        }
        last = seqs[i] & ~(1ULL << 63);
        done++;
    }
    if (done) {
        rl_wal_reader_commit(r->base.reader, last);
        rl_metric_add(r->base.m_published, (uint64_t)done);
    }
    return failed ? -1 : (int)done;
}

static void *redis_main(void *arg)
{
    redis_sink_t *r = arg;
    int backoff = 100;
    struct timespec last_ping = {0};

    while (!atomic_load(&r->base.stop)) {
        if (!r->c) {
            if (connect_redis(r) != 0) {
                rl_sink_set_connected(&r->base, 0);
                rl_metric_add(r->base.m_errors, 1);
                rl_sink_sleep(&r->base, backoff);
                backoff = backoff < 5000 ? backoff * 2 : 5000;
                continue;
            }
            backoff = 100;
            rl_sink_set_connected(&r->base, 1);
        }
        int k = round_trip(r, 100);
        if (k < 0) {
            rl_metric_add(r->base.m_errors, 1);
            disconnect(r);
            rl_sink_set_connected(&r->base, 0);
            rl_wal_reader_rewind(r->base.reader);
            rl_sink_sleep(&r->base, backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            continue;
        }
        /* Idle: a PING every few seconds notices a dead server before an event does. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (k == 0 && now.tv_sec - last_ping.tv_sec >= 5) {
            last_ping = now;
            if (!command_ok(r->c, "PING", redisCommand(r->c, "PING"))) {
                disconnect(r);
                rl_sink_set_connected(&r->base, 0);
            }
        }
    }
    disconnect(r);
    return NULL;
}

static void redis_free(rl_sink_t *s)
{
    redis_sink_t *r = (redis_sink_t *)s;
    disconnect(r);
    free(r->batch_seq);
}

rl_sink_t *rl_sink_redis_new(const rl_config_t *cfg, rl_wal_reader_t *reader,
                             rl_metrics_t *metrics, char *errstr, size_t errstr_size)
{
    redis_sink_t *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    rl_sink_init(&r->base, "redis", cfg, reader, metrics);
    r->base.destroy_impl = redis_free;
    r->batch_seq = calloc((size_t)cfg->redis.batch, sizeof(uint64_t));
    if (!r->batch_seq || parse_url(r, cfg->redis.url, errstr, errstr_size) != 0)
        goto fail;
    if (pthread_create(&r->base.thread, NULL, redis_main, r) != 0) {
        snprintf(errstr, errstr_size, "cannot start the redis thread");
        goto fail;
    }
    return &r->base;
fail:
    redis_free(&r->base);
    free(r);
    return NULL;
}
