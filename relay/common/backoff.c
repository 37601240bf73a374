/* backoff.c -- exponential back-off (backoff.h). */
#include "backoff.h"

#include <limits.h>

void rl_backoff_init(rl_backoff_t *b, int initial_ms, int max_ms)
{
    b->initial_ms = initial_ms;
    b->max_ms = max_ms;
    b->cur_ms = initial_ms;
}

int rl_backoff_next(rl_backoff_t *b)
{
    int d = b->cur_ms;

    if (d >= b->max_ms)
        b->cur_ms = b->max_ms;
    else
        b->cur_ms = d > INT_MAX / 2 ? INT_MAX : d * 2;
    return d;
}

void rl_backoff_reset(rl_backoff_t *b)
{
    b->cur_ms = b->initial_ms;
}
