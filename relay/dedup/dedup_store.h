/* dedup_store.h -- relay's deduplication: the in-memory window (dedup.c) in front, its
 * file on disk (dedup_file.c) behind it, and with store = redis the window shared by every
 * instance (dedup_redis.c).
 *
 * Restarts and crashes. What a client was answered 200 for is durable in the WAL. The
 * store reads the WAL through a reader of its own, "dedup" (a persister thread, like a
 * sink): it appends each event's digest and receive time to the file, makes them durable,
 * and only then moves its cursor. The WAL deletes a segment only once every reader has
 * passed it, so every id the WAL made durable is at any moment either still in the WAL or
 * durable in the file: start-up loads the file, then the WAL records past the cursor.
 *
 * Several instances (store = redis). An id that is not in the local window is claimed in
 * Redis before it is appended (SET NX, pending); the persister confirms it (done) once it
 * is durable here. Another instance that finds it pending re-checks for up to about a
 * quarter of a second, then answers 503 with Retry-After rather than 200: it cannot vouch
 * for an event that may still be lost, and it must not take a second copy either. If
 * Redis cannot answer, the local window decides alone (counted, /readyz "degraded").
 *
 * Thread-safe. */
#ifndef RL_DEDUP_STORE_H
#define RL_DEDUP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "wal.h"

typedef struct rl_dstore rl_dstore_t;

/* Verdicts on the ids of a request. */
enum {
    RL_DS_NEW = 0,    /* claimed for this request: it must append the event */
    RL_DS_DUP = 1,    /* taken before (here, or durable on another instance) */
    RL_DS_PENDING = 2 /* another instance claimed it and has not made it durable yet */
};

/* cfg, wal and metrics are borrowed and must outlive the store; metrics may be NULL.
 * With a WAL that has a reader named "dedup", the window is persisted in
 * <cfg->wal.dir>/dedup and loaded from there now, and the persister starts; without
 * one (or with wal NULL) the window lives in memory only. NULL with errstr on failure. */
rl_dstore_t *rl_dstore_new(const rl_config_t *cfg, rl_wal_t *wal, rl_metrics_t *metrics,
                           char *errstr, size_t errstr_size);
/* Stops the persister (what it did not write stays in the WAL for the next start); frees.
 * NULL-safe. Call before the WAL is closed. */
void rl_dstore_destroy(rl_dstore_t *ds);

/* Remembers the (source, id) of every event the WAL keeps that the file does not have,
 * at the time it was received. Call once before serving. Returns the number of ids, or
 * -1 on an I/O error (errstr set). */
long rl_dstore_rebuild(rl_dstore_t *ds, char *errstr, size_t errstr_size);

/* Called by rl_dstore_claim with the verdicts, under the lock that makes a claim and its
 * append one step: it must append (or set a WAL barrier) without blocking on anything
 * but the WAL. Returns 0, or non-zero when the events could not be appended (the new
 * claims are then released). */
typedef int (*rl_dstore_commit_fn)(void *arg, const int *verdict, size_t n);

/* Decides on the n ids of one request from `source` at unix time `now`, fills verdict[]
 * and calls commit. An id twice in one request is NEW once, then DUP. With store = redis
 * it may wait on Redis (bounded by dedup.redis_timeout_ms per round trip, and about 250
 * ms of re-checks of a pending id) and on other requests for the same ids. Returns what
 * commit returned. */
int rl_dstore_claim(rl_dstore_t *ds, const char *source, const char *const *ids, size_t n,
                    uint64_t now, int *verdict, rl_dstore_commit_fn commit, void *arg);

/* Forgets claims whose events could not be made durable, so that the provider's retry is
 * taken. Local only and never blocks (the WAL's flusher calls it): a claim in Redis
 * expires after dedup.pending_ttl. */
void rl_dstore_release(rl_dstore_t *ds, const char *source, const char *const *ids, size_t n);

/* "local", "redis", or "degraded" while store = redis and Redis cannot be reached. */
const char *rl_dstore_state(const rl_dstore_t *ds);

#endif
