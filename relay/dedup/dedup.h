/* dedup.h -- in-memory window of recently seen (source, id) pairs.
 *
 * Providers retry webhooks they think we did not take; this window recognizes the retry
 * so the event is written to the WAL once. It sits on the hot path of every request, so
 * it is small (36 to 39 bytes per remembered id) and every operation is O(1) amortized.
 *
 * Each pair is known by a 128-bit keyed digest of source + '\0' + id, never as text, of
 * which the window keeps 96 bits (a new id matches one of a million remembered ones with
 * a probability of about 10^-23): a 64-bit digest would be too short (a collision drops
 * a real event as a duplicate), and
 * the secret key keeps senders from aiming ids at one hash bucket. The key is random per
 * handle unless the caller supplies one (dedup_file.c persists it, so that digests it
 * wrote before a restart still match).
 *
 * Not thread-safe: the caller serializes every call on one handle under its own lock.
 * A hasher (rl_dedup_hasher_t) is the same: one per thread that computes digests. */
#ifndef RL_DEDUP_H
#define RL_DEDUP_H

#include <stddef.h>
#include <stdint.h>

/* The largest max_entries accepted (positions are 32-bit, the index is 3/2 as big). */
#define RL_DEDUP_MAX_ENTRIES ((size_t)1 << 30)

#define RL_DEDUP_KEY_LEN 16 /* bytes of the secret digest key */

typedef struct rl_dedup rl_dedup_t;
typedef struct rl_dedup_hasher rl_dedup_hasher_t;

/* What the window remembers of one (source, id). */
typedef struct rl_dedup_digest {
    uint64_t k[2]; /* first 128 bits of SHA-256(key, source, '\0', id) */
} rl_dedup_digest_t;

/* A digest calculator for `key` (RL_DEDUP_KEY_LEN bytes, copied). NULL with errstr on
 * failure. */
rl_dedup_hasher_t *rl_dedup_hasher_new(const unsigned char *key, char *errstr, size_t errstr_size);
void rl_dedup_hasher_destroy(rl_dedup_hasher_t *h); /* NULL-safe */
/* The digest of (source, id), given with their lengths (neither needs a NUL). 0, or -1
 * when hashing failed. */
int rl_dedup_hash(rl_dedup_hasher_t *h, const char *source, size_t source_len, const char *id,
                  size_t id_len, rl_dedup_digest_t *out);

/* window_s: how long an id is remembered, 1 to 2^31 - 1. An id claimed at time t is a duplicate
 * while now < t + window_s. max_entries: hard bound on remembered ids, 1 to
 * RL_DEDUP_MAX_ENTRIES. Memory grows with use, up to about 39 bytes * max_entries.
 * Returns NULL with a reason in errstr (when errstr_size > 0) on failure. */
rl_dedup_t *rl_dedup_new(uint32_t window_s, size_t max_entries, char *errstr, size_t errstr_size);
/* The same with a given digest key (RL_DEDUP_KEY_LEN bytes, copied) instead of a random one. */
rl_dedup_t *rl_dedup_new_keyed(uint32_t window_s, size_t max_entries, const unsigned char *key,
                               char *errstr, size_t errstr_size);
void rl_dedup_destroy(rl_dedup_t *d); /* NULL-safe */

/* Claims (source, id) at time `now` (unix seconds, passed in for testability).
 * Returns 1 when new (now remembered), 0 when already remembered within the window,
 * -1 when d, source or id is NULL or hashing failed (treat as new: it is safer to
 * deliver twice than to drop). Ids whose window passed are dropped lazily, oldest first,
 * by this call. When max_entries ids are remembered, the oldest is forgotten
 * (rl_dedup_evicted); also earlier if memory to grow towards max_entries runs out. A `now` earlier
 * than one seen before (clock stepped back) is taken as the latest `now` seen, so nothing expires
 * early. */
int rl_dedup_claim(rl_dedup_t *d, const char *source, const char *id, uint64_t now);

/* Forgets a claim made by rl_dedup_claim (used when the event could not be made
 * durable, so the provider's retry must be taken). No-op when unknown or NULL. */
void rl_dedup_release(rl_dedup_t *d, const char *source, const char *id);

/* The digest of (source, id), given with their lengths, under this window's key; 0, or -1
 * when an argument is NULL or hashing failed. */
int rl_dedup_digest(rl_dedup_t *d, const char *source, size_t source_len, const char *id,
                    size_t id_len, rl_dedup_digest_t *out);
/* rl_dedup_claim and rl_dedup_release for a digest already computed (start-up reload
 * from a file of digests; callers that look an id up more than once). */
int rl_dedup_claim_digest(rl_dedup_t *d, const rl_dedup_digest_t *dg, uint64_t now);
void rl_dedup_release_digest(rl_dedup_t *d, const rl_dedup_digest_t *dg);
/* 1 when the digest is remembered and its window has not passed at `now`, else 0. Changes
 * nothing (no claim, no expiry, the clock does not move). */
int rl_dedup_contains(const rl_dedup_t *d, const rl_dedup_digest_t *dg, uint64_t now);

size_t rl_dedup_count(const rl_dedup_t *d);     /* ids remembered now (expired ones count
                                                 * until the next claim drops them) */
uint64_t rl_dedup_evicted(const rl_dedup_t *d); /* forgotten early because of max_entries */
uint64_t rl_dedup_expired(const rl_dedup_t *d); /* forgotten because the window passed */
size_t rl_dedup_memory(const rl_dedup_t *d);    /* bytes allocated by the structure */

#endif
