/* test_backoff.c -- exponential back-off (relay/common/backoff.c), against backoff.h:
 * doubling while below the maximum, then the maximum, a reset to the start. */
#include <criterion/criterion.h>
#include <limits.h>

#include "backoff.h"

Test(backoff, sinks_sequence)
{
    /* The sinks' 100 ms .. 5000 ms, as the loops it replaced computed it. */
    static const int want[] = {100, 200, 400, 800, 1600, 3200, 6400, 5000, 5000, 5000};
    rl_backoff_t b;

    rl_backoff_init(&b, 100, 5000);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_eq(rl_backoff_next(&b), want[i], "delay %zu", i);
}

Test(backoff, power_of_two_max_is_reached_exactly)
{
    rl_backoff_t b;

    rl_backoff_init(&b, 10, 80);
    cr_expect_eq(rl_backoff_next(&b), 10);
    cr_expect_eq(rl_backoff_next(&b), 20);
    cr_expect_eq(rl_backoff_next(&b), 40);
    cr_expect_eq(rl_backoff_next(&b), 80);
    cr_expect_eq(rl_backoff_next(&b), 80);
}

Test(backoff, reset_starts_again)
{
    rl_backoff_t b;

    rl_backoff_init(&b, 100, 5000);
    for (int i = 0; i < 20; i++)
        rl_backoff_next(&b);
    rl_backoff_reset(&b);
    cr_expect_eq(rl_backoff_next(&b), 100);
    cr_expect_eq(rl_backoff_next(&b), 200);
    rl_backoff_reset(&b);
    rl_backoff_reset(&b);
    cr_expect_eq(rl_backoff_next(&b), 100);
}

Test(backoff, initial_equal_to_max)
{
    rl_backoff_t b;

    rl_backoff_init(&b, 1000, 1000);
    cr_expect_eq(rl_backoff_next(&b), 1000);
    cr_expect_eq(rl_backoff_next(&b), 1000);
}

Test(backoff, no_overflow_near_int_max)
{
    rl_backoff_t b;

    rl_backoff_init(&b, INT_MAX / 2 + 1, INT_MAX);
    cr_expect_eq(rl_backoff_next(&b), INT_MAX / 2 + 1);
    cr_expect_eq(rl_backoff_next(&b), INT_MAX);
    cr_expect_eq(rl_backoff_next(&b), INT_MAX);
}
