/* sink_redis.c -- publishes WAL records to Redis streams with hiredis.
 *
 * Each round reads up to redis.batch records, pipelines one XADD per record and
 * reads the replies; the cursor moves over the prefix that Redis confirmed. Any
 * failure drops the connection, rewinds to the cursor and reconnects with
 * exponential back-off, so a record is retried until Redis takes it (at least
 * once; a resend after a lost reply is a second entry with the same id). */
#include "sink_common.h"

#include "array.h"
#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "record.h"
#include "redis_conn.h"
#include "prio.h"
#include "err.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct batch {
    uint64_t *seqs;
    long long n;
} batch_t;

typedef struct redis_sink {
    rl_sink_t base;
    redisContext *c;
    rl_redis_target_t target;
    batch_t b[2]; /* b[cur] is in flight (sent, replies pending), the other fills */
    int cur;
    char maxlen[24];
    /* The middle of every XADD in RESP, from "$6\r\nMAXLEN" to "$2\r\nid\r\n". */
    char mid[96];
    size_t mid_len;
    /* The batch being filled, as RESP: one copy into hiredis's buffer per batch. */
    char *cmd;
    size_t cmd_len, cmd_cap;
} redis_sink_t;

static int command_ok(redisContext *c, const char *what, redisReply *rep)
{
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (!ok)
        rl_warn("redis: %s failed: %s", what, rep ? rep->str : c->errstr);
    freeReplyObject(rep);
    return ok;
}

/* Connects; on failure, what failed is in errstr. */
static int connect_redis(redis_sink_t *r, char *errstr, size_t errstr_size)
{
    r->c = rl_redis_connect(&r->target, (struct timeval){2, 0}, (struct timeval){5, 0}, errstr,
                            errstr_size);
    if (!r->c)
        return -1;
    /* A Redis still loading its data set answers -LOADING to the first
     * commands and may take later ones of the same pipeline: a re-send from the
     * cursor would then put the refused ones after those. Start only once it
     * answers PING. */
    if (!command_ok(r->c, "PING", redisCommand(r->c, "PING"))) {
        rl_seterr(errstr, errstr_size, "PING refused");
        redisFree(r->c);
        r->c = NULL;
        return -1;
    }
    return 0;
}

static void disconnect(redis_sink_t *r)
{
    if (r->c)
        redisFree(r->c);
    r->c = NULL;
}

#define SKIPPED (1ULL << 63) /* seq flag: no command sent, no reply to wait for */

/* Appends "$<n>\r\n<n bytes>\r\n" to p: a RESP bulk string. Returns the end. */
static char *resp_bulk(char *p, const char *s, size_t n)
{
    char digits[20];
    int nd = 0;
    size_t v = n;

    *p++ = '$';
    do
        digits[nd++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (nd)
        *p++ = digits[--nd];
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, s, n);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Appends to r->cmd the XADD of one record, formatted as hiredis's
 * redisAppendCommandArgv would: its argv formatting (sdscatfmt per argument)
 * cost about half of this thread's CPU during a replay (perf). 0, or -1 on
 * out-of-memory. */
static int append_xadd(redis_sink_t *r, const char *key, size_t key_len, const rl_record_t *rec)
{
    /* The constant parts (15, mid, 10, 11 bytes) and four bulk strings of
     * variable length, each with at most 25 bytes around it: '$', up to 20
     * digits, and two CRLFs. */
    size_t need = r->cmd_len + 15 + key_len + r->mid_len + rec->id_len + 10 + rec->type_len + 11 +
                  rec->event_len + 4 * 25;
    char *p;

    if (need > r->cmd_cap) {
        char *grown = rl_array_grow(r->cmd, &r->cmd_cap, need, 1, 64 * 1024);
        if (!grown)
            return -1;
        r->cmd = grown;
    }
    p = r->cmd + r->cmd_len;
    memcpy(p, "*12\r\n$4\r\nXADD\r\n", 15);
    p = resp_bulk(p + 15, key, key_len);
    memcpy(p, r->mid, r->mid_len);
    p = resp_bulk(p + r->mid_len, rec->id, rec->id_len);
    memcpy(p, "$4\r\ntype\r\n", 10);
    p = resp_bulk(p + 10, rec->type, rec->type_len);
    memcpy(p, "$5\r\nevent\r\n", 11);
    p = resp_bulk(p + 11, rec->event, rec->event_len);
    r->cmd_len = (size_t)(p - r->cmd);
    return 0;
}

/* Reads up to redis.batch records and appends their XADDs to the output
 * buffer (nothing is sent yet). Waits up to timeout_ms for the first one. */
static void fill(redis_sink_t *r, batch_t *b, int timeout_ms)
{
    const rl_config_t *cfg = r->base.cfg;
    char errstr[256], key[RL_RECORD_KEY_MAX + 1];

    b->n = 0;
    r->cmd_len = 0;
    while (b->n < cfg->redis.batch) {
        rl_wal_rec_t wr;
        rl_record_t rec;
        int got =
            rl_wal_reader_next(r->base.reader, &wr, b->n ? 0 : timeout_ms, errstr, sizeof(errstr));
        if (got < 0) {
            rl_error("redis: reading the WAL: %s", errstr);
            break;
        }
        if (got == 0)
            break;
        b->seqs[b->n++] = wr.seq;
        if (rl_record_decode(wr.data, wr.len, &rec) != 0 ||
            rl_record_render(rec.kind == RL_RECORD_DEADLETTER ? cfg->redis.deadletter_stream
                                                              : cfg->redis.stream,
                             &rec, 0, key, sizeof(key)) < 0) {
            rl_error("redis: WAL record %llu is malformed or its key is over %zu bytes; not "
                     "published (relay_sink_dropped_total)",
                     (unsigned long long)wr.seq, sizeof(key) - 1);
            rl_metric_add(r->base.m_dropped, 1);
            b->seqs[b->n - 1] |= SKIPPED;
            continue;
        }
        if (append_xadd(r, key, strlen(key), &rec) == 0)
            continue;
        /* Out of memory for the batch's buffer: what it holds goes first, then
         * this one through hiredis's own formatting (which may fail the same way,
         * and then the replies fall short and the batch is re-sent). */
        const char *argv[12] = {"XADD", key,    "MAXLEN", "~",      r->maxlen, "*",
                                "id",   rec.id, "type",   rec.type, "event",   rec.event};
        size_t argl[12] = {
            4, strlen(key),  6, 1, strlen(r->maxlen), 1, 2, rec.id_len, 4, rec.type_len,
            5, rec.event_len};
        if (r->cmd_len)
            redisAppendFormattedCommand(r->c, r->cmd, r->cmd_len);
        r->cmd_len = 0;
        redisAppendCommandArgv(r->c, 12, argv, argl);
    }
    if (r->cmd_len)
        redisAppendFormattedCommand(r->c, r->cmd, r->cmd_len);
    r->cmd_len = 0;
}

/* Reads the replies of batch b and moves the cursor over what Redis confirmed.
 * Returns 0, or -1 after a failure (the cursor covers what was confirmed). */
static int collect(redis_sink_t *r, batch_t *b)
{
    uint64_t last = 0, done = 0;
    int rc = 0;

    for (long long i = 0; i < b->n; i++) {
        if (!(b->seqs[i] & SKIPPED)) {
            void *rep = NULL;
            if (redisGetReply(r->c, &rep) != REDIS_OK || !rep) {
                rl_warn("redis: %s", r->c->errstr[0] ? r->c->errstr : "connection lost");
                rc = -1;
                break;
            }
            redisReply *reply = rep;
            int refused = reply->type == REDIS_REPLY_ERROR;
            if (refused)
                rl_warn("redis: XADD refused: %s", reply->str);
            freeReplyObject(reply);
            if (refused) {
                rc = -1;
                break;
            }
        }
        last = b->seqs[i] & ~SKIPPED;
        done++;
    }
    if (done) {
        rl_metric_add(r->base.m_published, (uint64_t)done); /* before: see sink_kafka.c */
        rl_wal_reader_commit(r->base.reader, last);
    }
    b->n = 0;
    return rc;
}

/* One step of a two-deep pipeline: the next batch's commands are appended
 * before the previous batch's replies are read (reading flushes them), so Redis
 * works on one batch while we parse the other. Returns records confirmed, or -1
 * after a failure. */
static long long pump(redis_sink_t *r, int timeout_ms)
{
    batch_t *fly = &r->b[r->cur], *next = &r->b[!r->cur];
    long long done = fly->n;

    fill(r, next, fly->n ? 0 : timeout_ms);
    if (fly->n) {
        if (collect(r, fly) < 0)
            return -1;
    } else if (next->n) {
        int flushed = 0;
        while (!flushed)
            if (redisBufferWrite(r->c, &flushed) != REDIS_OK) {
                rl_warn("redis: %s", r->c->errstr);
                return -1;
            }
    }
    r->cur = !r->cur;
    return done;
}

static void *redis_main(void *arg)
{
    redis_sink_t *r = arg;

    pthread_setname_np(pthread_self(), "rl-redis"); /* top -H, perf */
    rl_prio_background();
    rl_backoff_t backoff;
    int64_t last_ping = 0; /* rl_clock_mono_ms */

    rl_backoff_init(&backoff, 100, 5000);
    while (!rl_sink_should_stop(&r->base)) {
        if (!r->c) {
            char why[256];
            if (connect_redis(r, why, sizeof(why)) != 0) {
                rl_sink_connect_failed(&r->base, why);
                rl_metric_add(r->base.m_errors, 1);
                rl_sink_sleep(&r->base, rl_backoff_next(&backoff));
                continue;
            }
            /* The back-off is not reset here but once Redis has taken a batch
             * or answered an idle PING: a server that accepts connections and
             * refuses every XADD (-NOPERM, -OOM) is retried ever more slowly,
             * not ten times a second with three log lines each. */
            rl_sink_set_connected(&r->base, 1);
        }
        long long k = pump(r, 100);
        if (k > 0)
            rl_backoff_reset(&backoff);
        rl_sink_progress(&r->base);
        if (k < 0) {
            r->b[0].n = r->b[1].n = 0; /* both batches are re-sent from the cursor */
            rl_metric_add(r->base.m_errors, 1);
            disconnect(r);
            rl_sink_set_connected(&r->base, 0);
            rl_wal_reader_rewind(r->base.reader);
            rl_sink_sleep(&r->base, rl_backoff_next(&backoff));
            continue;
        }
        /* Idle (nothing in flight, or PING's reply would be an XADD's): a PING
         * every few seconds notices a dead server before an event does. */
        int64_t now = rl_clock_mono_ms();
        if (k == 0 && !r->b[r->cur].n && now - last_ping >= 5000) {
            last_ping = now;
            if (!command_ok(r->c, "PING", redisCommand(r->c, "PING"))) {
                disconnect(r);
                rl_sink_set_connected(&r->base, 0);
            } else {
                rl_backoff_reset(&backoff);
            }
        }
    }
    if (r->c && r->b[r->cur].n) /* what is in flight has been sent: hear back */
        collect(r, &r->b[r->cur]);
    disconnect(r);
    return NULL;
}

static void redis_free(rl_sink_t *s)
{
    redis_sink_t *r = (redis_sink_t *)s;
    disconnect(r);
    free(r->b[0].seqs);
    free(r->b[1].seqs);
    free(r->cmd);
}

rl_sink_t *rl_sink_redis_new(const rl_config_t *cfg, const char *name, rl_wal_reader_t *reader,
                             rl_metrics_t *metrics, char *errstr, size_t errstr_size)
{
    redis_sink_t *r = calloc(1, sizeof(*r));
    if (!r) {
        rl_seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    rl_sink_init(&r->base, name, cfg, reader, metrics, cfg->redis.outage_budget);
    r->base.destroy_impl = redis_free;
    snprintf(r->maxlen, sizeof(r->maxlen), "%lld", cfg->redis.maxlen);
    r->mid_len = (size_t)snprintf(
        r->mid, sizeof(r->mid), "$6\r\nMAXLEN\r\n$1\r\n~\r\n$%zu\r\n%s\r\n$1\r\n*\r\n$2\r\nid\r\n",
        strlen(r->maxlen), r->maxlen);
    for (int i = 0; i < 2; i++)
        r->b[i].seqs = calloc((size_t)cfg->redis.batch, sizeof(uint64_t));
    if (!r->b[0].seqs || !r->b[1].seqs ||
        rl_redis_target_parse(&r->target, cfg->redis.url, errstr, errstr_size) != 0)
        goto fail;
    if (pthread_create(&r->base.thread, NULL, redis_main, r) != 0) {
        rl_seterr(errstr, errstr_size, "cannot start the redis thread");
        goto fail;
    }
    return &r->base;
fail:
    rl_sink_fini(&r->base);
    redis_free(&r->base);
    free(r);
    return NULL;
}
