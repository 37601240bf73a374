/* test_ratelimit.c -- the per-source token bucket (relay/ingest/ratelimit.c), tested
 * against ratelimit.h with a clock the test moves by hand: burst, refill, the
 * Retry-After it computes, slow and fast rates, a clock that steps back. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "ratelimit.h"

static rl_ratelimit_t *bucket(long long per_hour, long long burst)
{
    char err[128] = "";
    rl_ratelimit_t *r = rl_ratelimit_new(per_hour, burst, err, sizeof(err));
    cr_assert_not_null(r, "rl_ratelimit_new(%lld, %lld): %s", per_hour, burst, err);
    return r;
}

/* How many takes at time t succeed, out of n. */
static int takes(rl_ratelimit_t *r, uint64_t t, int n)
{
    int ok = 0, ra;
    for (int i = 0; i < n; i++)
        ok += rl_ratelimit_take(r, t, &ra);
    return ok;
}

Test(ratelimit, burst_then_refill)
{
    rl_ratelimit_t *r = bucket(10 * 3600, 5); /* 10/s, burst 5 */
    uint64_t t = 1000000;
    cr_expect_eq(takes(r, t, 8), 5, "the bucket starts full with the burst");
    int ra = 0;
    cr_expect_eq(rl_ratelimit_take(r, t, &ra), 0);
    cr_expect_eq(ra, 1, "a token comes in 100 ms: Retry-After rounds up to 1 s");
    cr_expect_eq(takes(r, t + 99, 1), 0, "99 ms: not a whole token yet");
    cr_expect_eq(takes(r, t + 100, 2), 1, "100 ms: one token");
    cr_expect_eq(takes(r, t + 350, 5), 2, "250 ms more: two and a half tokens");
    cr_expect_eq(takes(r, t + 400, 5), 1, "the half token carried over");
    cr_expect_eq(takes(r, t + 100000, 100), 5, "a long pause refills only the burst");
    rl_ratelimit_destroy(r);
    rl_ratelimit_destroy(NULL);
}

Test(ratelimit, slow_rates_and_retry_after)
{
    rl_ratelimit_t *r = bucket(1, 2); /* 1 an hour, burst 2 */
    int ra = 0;
    cr_expect_eq(takes(r, 0, 2), 2);
    cr_expect_eq(rl_ratelimit_take(r, 0, &ra), 0);
    cr_expect_eq(ra, 3600, "a whole hour to wait");
    cr_expect_eq(rl_ratelimit_take(r, 1800 * 1000, &ra), 0);
    cr_expect_eq(ra, 1800, "half of it is left");
    cr_expect_eq(rl_ratelimit_take(r, 3600 * 1000 - 1, &ra), 0);
    cr_expect_eq(ra, 1, "a millisecond left still says 1 s");
    cr_expect_eq(takes(r, 3600 * 1000, 2), 1, "one an hour");
    rl_ratelimit_destroy(r);

    r = bucket(6 * 60, 1); /* 6 a minute: one every 10 s */
    cr_expect_eq(takes(r, 0, 2), 1);
    cr_expect_eq(rl_ratelimit_take(r, 2500, &ra), 0);
    cr_expect_eq(ra, 8, "7.5 s rounds up to 8");
    rl_ratelimit_destroy(r);
}

Test(ratelimit, fast_rates_stay_exact)
{
    rl_ratelimit_t *r = bucket(3600000000LL, 1000000); /* the most config allows: 1e6/s */
    cr_expect_eq(takes(r, 5, 1000), 1000);
    int got = 0;
    for (uint64_t ms = 6; ms < 1006; ms++) /* a second, a take every ms */
        got += takes(r, ms, 1);
    cr_expect_eq(got, 1000);
    rl_ratelimit_destroy(r);

    /* 3/s: 333.3 ms a token; the thirds must not drift. (Burst 2 so that the
     * bucket is never full, where a token bucket drops what overflows.) */
    r = bucket(3 * 3600, 2);
    cr_expect_eq(takes(r, 0, 2), 2);
    int ok = 0;
    for (uint64_t ms = 1; ms <= 30000; ms++)
        ok += takes(r, ms, 1);
    cr_expect_eq(ok, 90, "90 tokens in 30 s at 3/s, took %d", ok);
    rl_ratelimit_destroy(r);
}

Test(ratelimit, clock_stepping_back_is_no_refill)
{
    rl_ratelimit_t *r = bucket(3600, 1); /* 1/s */
    cr_expect_eq(takes(r, 50000, 1), 1);
    cr_expect_eq(takes(r, 10000, 1), 0, "the clock went back 40 s: no tokens from that");
    cr_expect_eq(takes(r, 10999, 1), 0);
    cr_expect_eq(takes(r, 11000, 1), 1, "a second after the new now");
    rl_ratelimit_destroy(r);
}

Test(ratelimit, bad_arguments)
{
    char err[128];
    cr_expect_null(rl_ratelimit_new(0, 1, err, sizeof(err)));
    cr_expect_null(rl_ratelimit_new(10, 0, err, sizeof(err)));
    cr_expect_null(rl_ratelimit_new(3600000001LL, 1, err, sizeof(err)));
    cr_expect_null(rl_ratelimit_new(-1, 1, err, sizeof(err)));
}
