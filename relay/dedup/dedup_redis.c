/* dedup_redis.c -- see dedup_redis.h for the protocol. */
#include "dedup_redis.h"

#include "clock.h"
#include "log.h"
#include "redis_conn.h"
#include "err.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DR_RETRY_MS 1000 /* how long Redis stays marked down after a failure */
#define DR_DONE "done"
#define DR_PENDING "pending:"

/* Deletes KEYS[1] only while it holds our claim (ARGV[1]): a claim that expired and was
 * taken, or confirmed, by another instance must stay. */
static const char release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

struct rl_dredis {
    rl_redis_target_t target;
    char *prefix;
    size_t prefix_len;
    struct timeval timeout;
    uint64_t pending_ttl_ms;
    char pending[sizeof(DR_PENDING) + 16]; /* "pending:<16 hex digits>" */
    pthread_mutex_t lock;                  /* the pool */
    pthread_cond_t free_cv;
    redisContext **conns; /* NULL: not connected */
    char *busy;
    size_t nconns;
    _Atomic int64_t down_until; /* monotonic ms; 0 while up */
    _Atomic int up;
    _Atomic int checked; /* a call has reached Redis (or failed) since start */
};

/* --------------------------------------------------------------- health -- */

/* Whether to try Redis now. While it is marked down, only the caller that moves the retry
 * time on gets to try, so one request per second pays the timeout, not all of them. */
static int may_try(rl_dredis_t *r)
{
    int64_t until = atomic_load(&r->down_until), now = rl_clock_mono_ms();

    if (until == 0)
        return 1;
    return now >= until &&
           atomic_compare_exchange_strong(&r->down_until, &until, now + DR_RETRY_MS);
}

static void mark(rl_dredis_t *r, int ok, const char *why)
{
    atomic_store(&r->checked, 1);
    if (ok) {
        atomic_store(&r->down_until, 0);
        if (!atomic_exchange(&r->up, 1))
            rl_info("dedup: Redis is reachable again: the window is shared again");
        return;
    }
    atomic_store(&r->down_until, rl_clock_mono_ms() + DR_RETRY_MS);
    if (atomic_exchange(&r->up, 0))
        rl_warn("dedup: Redis unreachable (%s): deciding on the local window alone (degraded)",
                why);
}

/* ----------------------------------------------------------------- pool -- */

/* A connection of the pool (slot in *slot), connected; NULL when Redis is down or
 * cannot be reached (marked down). */
static redisContext *acquire(rl_dredis_t *r, size_t *slot)
{
    char errstr[256];
    size_t i;

    if (!may_try(r))
        return NULL;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        for (i = 0; i < r->nconns && r->busy[i]; i++) {
        }
        if (i < r->nconns)
            break;
        pthread_cond_wait(&r->free_cv, &r->lock);
    }
    r->busy[i] = 1;
    pthread_mutex_unlock(&r->lock);
    *slot = i;
    if (!r->conns[i]) {
        r->conns[i] = rl_redis_connect(&r->target, r->timeout, r->timeout, errstr, sizeof(errstr));
        if (!r->conns[i]) {
            mark(r, 0, errstr);
            pthread_mutex_lock(&r->lock);
            r->busy[i] = 0;
            pthread_cond_signal(&r->free_cv);
            pthread_mutex_unlock(&r->lock);
            return NULL;
        }
    }
    return r->conns[i];
}

/* Gives the connection back; one that failed is closed (its replies may be out of step). */
static void release_conn(rl_dredis_t *r, size_t slot, const char *why)
{
    if (why) {
        mark(r, 0, why);
        redisFree(r->conns[slot]);
        r->conns[slot] = NULL;
    } else {
        mark(r, 1, NULL);
    }
    pthread_mutex_lock(&r->lock);
    r->busy[slot] = 0;
    pthread_cond_signal(&r->free_cv);
    pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------- commands -- */

/* PREFIX{source}:{id} into a malloc'd buffer; NULL on out-of-memory. */
static char *key_of(const rl_dredis_t *r, const rl_dredis_key_t *k, size_t *len)
{
    *len = r->prefix_len + k->source_len + 1 + k->id_len;
    char *s = malloc(*len);

    if (s) {
        memcpy(s, r->prefix, r->prefix_len);
        memcpy(s + r->prefix_len, k->source, k->source_len);
        s[r->prefix_len + k->source_len] = ':';
        memcpy(s + r->prefix_len + k->source_len + 1, k->id, k->id_len);
    }
    return s;
}

typedef enum { CMD_CLAIM, CMD_CONFIRM, CMD_RELEASE } cmd_t;

/* Called with reply `part` (0, 1) of the commands for key i. */
typedef void (*reply_fn)(rl_dredis_t *r, size_t i, size_t part, const redisReply *rep, void *arg);

/* Pipelines the commands of `cmd` for n keys (one round trip) and reads every reply,
 * passing each to on_reply (may be NULL). Returns 0, or -1 when a command could not be
 * sent or answered, or Redis refused one: the connection is closed (its replies could be
 * out of step) and Redis marked down. */
static int pipeline(rl_dredis_t *r, cmd_t cmd, const rl_dredis_key_t *keys, const uint64_t *ttl_ms,
                    size_t n, reply_fn on_reply, void *arg)
{
    size_t slot, per = cmd == CMD_CLAIM ? 2 : 1;
    redisContext *c = acquire(r, &slot);
    char why[128] = "out of memory";
    int ok = c != NULL;

    if (!c)
        return -1;
    for (size_t i = 0; i < n && ok; i++) {
        size_t klen;
        char *key = key_of(r, &keys[i], &klen);
        if (!key) {
            ok = 0;
            break;
        }
        switch (cmd) {
        case CMD_CLAIM:
            ok = redisAppendCommand(c, "SET %b %s NX PX %llu", key, klen, r->pending,
                                    (unsigned long long)r->pending_ttl_ms) == REDIS_OK &&
                 redisAppendCommand(c, "GET %b", key, klen) == REDIS_OK;
            break;
        case CMD_CONFIRM:
            ok = redisAppendCommand(c, "SET %b " DR_DONE " PX %llu", key, klen,
                                    (unsigned long long)ttl_ms[i]) == REDIS_OK;
            break;
        case CMD_RELEASE:
            ok = redisAppendCommand(c, "EVAL %s 1 %b %s", release_lua, key, klen, r->pending) ==
                 REDIS_OK;
            break;
        }
        free(key);
    }
    for (size_t i = 0; i < n * per && ok; i++) {
        void *rep = NULL;
        if (redisGetReply(c, &rep) != REDIS_OK || !rep) {
            snprintf(why, sizeof(why), "%s", c->errstr[0] ? c->errstr : "connection lost");
            ok = 0;
            break;
        }
        const redisReply *reply = rep;
        if (reply->type == REDIS_REPLY_ERROR) {
            snprintf(why, sizeof(why), "%s", reply->str);
            ok = 0;
        } else if (on_reply) {
            on_reply(r, i / per, i % per, reply, arg);
        }
        freeReplyObject(rep);
    }
    release_conn(r, slot, ok ? NULL : why);
    return ok ? 0 : -1;
}

/* The verdict of one claim from its SET (part 0) and GET (part 1) replies. */
static void claim_reply(rl_dredis_t *r, size_t i, size_t part, const redisReply *rep, void *arg)
{
    int *verdict = arg;

    if (part == 0) {
        verdict[i] = rep->type == REDIS_REPLY_STATUS ? RL_DR_OWN : -1;
        return;
    }
    if (verdict[i] == RL_DR_OWN)
        return;
    if (rep->type == REDIS_REPLY_STRING && !strcmp(rep->str, DR_DONE))
        verdict[i] = RL_DR_DONE;
    else if (rep->type == REDIS_REPLY_STRING && !strcmp(rep->str, r->pending))
        /* Our own claim, left by a request of ours whose release failed: still ours. */
        verdict[i] = RL_DR_OWN;
    else
        /* Another instance's claim, or a key that expired between the SET and the GET
         * (the next look claims it), or a value we do not know: never a duplicate, which
         * could lose the event, but a retry later. */
        verdict[i] = RL_DR_PENDING;
}

/* ------------------------------------------------------------------- API -- */

rl_dredis_t *rl_dredis_new(const rl_dredis_opts_t *o, char *errstr, size_t errstr_size)
{
    rl_dredis_t *r = calloc(1, sizeof(*r));
    unsigned char tok[8];
    int ok = 0;

    if (!r) {
        rl_seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    rl_cond_init(&r->free_cv);
    atomic_init(&r->up, 1);
    if (rl_redis_target_parse(&r->target, o->url, errstr, errstr_size) != 0)
        goto out;
    r->prefix = strdup(o->prefix);
    r->conns = calloc(o->pool, sizeof(*r->conns));
    r->busy = calloc(o->pool, 1);
    if (!r->prefix || !r->conns || !r->busy) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    r->prefix_len = strlen(r->prefix);
    r->nconns = o->pool;
    r->timeout.tv_sec = o->timeout_ms / 1000;
    r->timeout.tv_usec = (o->timeout_ms % 1000) * 1000;
    r->pending_ttl_ms = o->pending_ttl_ms;
    if (RAND_bytes(tok, sizeof(tok)) != 1) {
        rl_seterr(errstr, errstr_size, "cannot get random bytes for the instance token");
        goto out;
    }
    snprintf(r->pending, sizeof(r->pending), DR_PENDING "%02x%02x%02x%02x%02x%02x%02x%02x", tok[0],
             tok[1], tok[2], tok[3], tok[4], tok[5], tok[6], tok[7]);
    ok = 1;
out:
    if (!ok) {
        rl_dredis_destroy(r);
        r = NULL;
    }
    return r;
}

void rl_dredis_destroy(rl_dredis_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nconns; i++)
        if (r->conns[i])
            redisFree(r->conns[i]);
    free(r->conns);
    free(r->busy);
    free(r->prefix);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->free_cv);
    free(r);
}

int rl_dredis_claim(rl_dredis_t *r, const rl_dredis_key_t *keys, size_t n, int *verdict)
{
    if (n == 0)
        return 0;
    return pipeline(r, CMD_CLAIM, keys, NULL, n, claim_reply, verdict);
}

int rl_dredis_confirm(rl_dredis_t *r, const rl_dredis_key_t *keys, const uint64_t *ttl_ms, size_t n)
{
    if (n == 0)
        return 0;
    return pipeline(r, CMD_CONFIRM, keys, ttl_ms, n, NULL, NULL);
}

int rl_dredis_release(rl_dredis_t *r, const rl_dredis_key_t *keys, size_t n)
{
    if (n == 0)
        return 0;
    return pipeline(r, CMD_RELEASE, keys, NULL, n, NULL, NULL);
}

int rl_dredis_probe(rl_dredis_t *r)
{
    size_t slot;
    redisContext *c;

    /* Up and known to be: nothing to do. Until a first call, up is only presumed, so
     * that /readyz does not say "redis" for a Redis that was down from the start. */
    if ((atomic_load(&r->up) && atomic_load(&r->checked)) || !(c = acquire(r, &slot)))
        return rl_dredis_up(r);
    redisReply *rep = redisCommand(c, "PING");
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    freeReplyObject(rep);
    release_conn(r, slot, ok ? NULL : "PING failed");
    return rl_dredis_up(r);
}

int rl_dredis_up(const rl_dredis_t *r)
{
    return r ? atomic_load(&r->up) : 0;
}
