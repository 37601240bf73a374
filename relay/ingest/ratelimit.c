/* ratelimit.c -- token bucket with tokens counted in thousandths, so that rates
 * as slow as one an hour and as fast as a million a second are exact integers:
 * no floating point drift between two takes. */
#include "ratelimit.h"

#include "err.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MILLI 1000 /* one token */

struct rl_ratelimit {
    pthread_mutex_t lock;
    uint64_t per_hour; /* tokens per hour */
    uint64_t cap;      /* burst, in thousandths of a token */
    uint64_t level;    /* thousandths of a token in the bucket */
    uint64_t last_ms;  /* time of the last refill */
    uint64_t carry;    /* refill remainder (thousandths * ms) not yet a whole thousandth */
};

rl_ratelimit_t *rl_ratelimit_new(long long per_hour, long long burst, char *errstr,
                                 size_t errstr_size)
{
    rl_ratelimit_t *r = NULL;
    /* The bounds keep the refill arithmetic below 2^64 (see rl_ratelimit_take). */
    if (per_hour <= 0 || per_hour > 3600000000LL || burst < 1 || burst > 1000000000LL) {
        rl_seterr(errstr, errstr_size, "rate limit out of range");
        return NULL;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        rl_seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    r->per_hour = (uint64_t)per_hour;
    r->cap = (uint64_t)burst * MILLI;
    r->level = r->cap;
    r->last_ms = UINT64_MAX; /* the first take sets the clock */
    return r;
}

void rl_ratelimit_destroy(rl_ratelimit_t *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int rl_ratelimit_take(rl_ratelimit_t *r, uint64_t now_ms, int *retry_after_s)
{
    int ok;
    pthread_mutex_lock(&r->lock);
    if (r->last_ms == UINT64_MAX || now_ms < r->last_ms)
        r->last_ms = now_ms;
    /* Refill: per_hour * MILLI thousandths every 3,600,000 ms. Past the time
     * that fills the bucket it is simply full, which also keeps every product
     * below 2^64 (room <= 1e12 thousandths, times 3.6e6 ms). */
    uint64_t rate = r->per_hour * MILLI, dt = now_ms - r->last_ms;
    uint64_t full_ms = ((r->cap - r->level) * 3600000ULL - r->carry + rate - 1) / rate;
    if (dt >= full_ms) {
        r->level = r->cap;
        r->carry = 0;
    } else {
        uint64_t add = rate * dt + r->carry;
        r->level += add / 3600000ULL;
        r->carry = add % 3600000ULL;
    }
    r->last_ms = now_ms;
    ok = r->level >= MILLI;
    if (ok) {
        r->level -= MILLI;
    } else if (retry_after_s) {
        /* ms until the missing thousandths are refilled, rounded up to seconds. */
        uint64_t missing = (MILLI - r->level) * 3600000ULL - r->carry;
        uint64_t ms = (missing + rate - 1) / rate;
        uint64_t s = (ms + 999) / 1000;
        *retry_after_s = s < 1 ? 1 : s > 86400 ? 86400 : (int)s;
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}
