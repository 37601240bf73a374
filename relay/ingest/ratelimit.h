/* ratelimit.h -- a token bucket: `burst` requests at once, refilled at `rate`
 * per second. One per source; requests over it are answered 429 with the
 * Retry-After that the bucket computes.
 *
 * Thread-safe (a mutex per bucket: a take is a few arithmetic operations). */
#ifndef RL_RATELIMIT_H
#define RL_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct rl_ratelimit rl_ratelimit_t;

/* per_hour: tokens added per hour (> 0); burst: bucket size (>= 1). The bucket
 * starts full. NULL with errstr on bad arguments or out-of-memory. */
rl_ratelimit_t *rl_ratelimit_new(long long per_hour, long long burst, char *errstr,
                                 size_t errstr_size);
void rl_ratelimit_destroy(rl_ratelimit_t *r); /* NULL-safe */

/* Takes one token at time now_ms (a monotonic clock in milliseconds, passed in
 * for testability). Returns 1 when the request may pass; 0 when the bucket is
 * empty, with *retry_after_s set to the whole seconds until a token is there
 * (at least 1). A clock that goes back is taken as standing still. */
int rl_ratelimit_take(rl_ratelimit_t *r, uint64_t now_ms, int *retry_after_s);

#endif
