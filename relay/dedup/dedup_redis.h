/* dedup_redis.h -- the dedup window shared by several relay instances, in Redis.
 *
 * One key per (source, id), PREFIX{source}:{id}, whose value is
 *   "pending:<token>"  claimed by the instance with that random token, not yet durable
 *                      there; expires after pending_ttl unless confirmed, so an instance
 *                      that dies before making the event durable blocks it only that long
 *   "done"             durable in some instance's WAL; expires when the window ends
 *
 *   claim    SET key pending:<token> NX PX <pending_ttl> and GET key, pipelined: the SET
 *            says whether we won, the GET what the winner wrote.
 *   confirm  SET key done PX <rest of the window>, once the event is durable here.
 *   release  delete the key if it still holds our pending value (a Lua compare-and-delete),
 *            when the event could not be made durable, so that its retry is not held up.
 *
 * Every call is bounded by the timeout (connect and each reply). A call that fails marks
 * Redis down for a second: calls in that second return -1 at once instead of each request
 * waiting out the timeout, and then one caller tries again.
 *
 * Thread-safe: a pool of synchronous connections, one per concurrent caller (hiredis 0.14
 * has no timeouts on its asynchronous API). A caller blocks only while every connection of
 * the pool is in use by others, each for at most about the timeout. */
#ifndef RL_DEDUP_REDIS_H
#define RL_DEDUP_REDIS_H

#include <stddef.h>
#include <stdint.h>

typedef struct rl_dredis rl_dredis_t;

/* What Redis says about a claimed key. */
enum { RL_DR_OWN = 0, RL_DR_DONE = 1, RL_DR_PENDING = 2 };

/* One (source, id); neither string needs a NUL. */
typedef struct rl_dredis_key {
    const char *source, *id;
    size_t source_len, id_len;
} rl_dredis_key_t;

typedef struct rl_dredis_opts {
    const char *url;         /* redis:// or unix:// */
    const char *prefix;      /* copied */
    int timeout_ms;          /* connect and reply timeout, > 0 */
    uint64_t pending_ttl_ms; /* life of an unconfirmed claim, > 0 */
    size_t pool;             /* connections, > 0: the most concurrent callers */
} rl_dredis_opts_t;

/* Parses the URL; connects lazily (a Redis that is down at start-up is not an error).
 * NULL with errstr for a bad URL or out-of-memory. */
rl_dredis_t *rl_dredis_new(const rl_dredis_opts_t *o, char *errstr, size_t errstr_size);
void rl_dredis_destroy(rl_dredis_t *r); /* NULL-safe */

/* Claims n keys: verdict[i] is RL_DR_OWN (ours now: make it durable, then confirm it),
 * RL_DR_DONE (durable elsewhere: a duplicate) or RL_DR_PENDING (another instance holds an
 * unconfirmed claim). Returns 0, or -1 when Redis could not answer (verdict unset). */
int rl_dredis_claim(rl_dredis_t *r, const rl_dredis_key_t *keys, size_t n, int *verdict);
/* Marks n keys done for ttl_ms[i] milliseconds each (> 0). 0, or -1. */
int rl_dredis_confirm(rl_dredis_t *r, const rl_dredis_key_t *keys, const uint64_t *ttl_ms,
                      size_t n);
/* Deletes the keys that still hold this instance's pending claim. 0, or -1. */
int rl_dredis_release(rl_dredis_t *r, const rl_dredis_key_t *keys, size_t n);
/* PINGs when Redis is marked down and a retry is due, or when no call has reached it
 * since start, so that a quiet instance notices Redis going or coming back. Returns
 * rl_dredis_up(). */
int rl_dredis_probe(rl_dredis_t *r);
/* 1 while the last call succeeded (or none was made yet), 0 while Redis is marked down. */
int rl_dredis_up(const rl_dredis_t *r);

#endif
