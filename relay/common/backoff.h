/* backoff.h -- the one exponential back-off of relay: the pause between
 * attempts to reach a service that failed (the sinks' reconnects and producer
 * re-creation). No jitter: none of the loops it replaced had any.
 *
 * The delay starts at initial_ms and doubles after every failure while it is
 * below max_ms; once at or above max_ms the next one is max_ms. So with a
 * max_ms that is not initial_ms times a power of two, one delay overshoots:
 * 100, 200, ..., 3200, 6400, then 5000 for good (as the copies did).
 *
 * Not thread-safe: one rl_backoff_t per loop, owned by that loop's thread. */
#ifndef RL_BACKOFF_H
#define RL_BACKOFF_H

typedef struct rl_backoff {
    int initial_ms; /* the first delay, and the one after a reset */
    int max_ms;     /* where the doubling stops */
    int cur_ms;     /* the delay rl_backoff_next returns next */
} rl_backoff_t;

/* Sets up b: its next delay is initial_ms (> 0); max_ms >= initial_ms. */
void rl_backoff_init(rl_backoff_t *b, int initial_ms, int max_ms);

/* The delay to wait now, in milliseconds; the next call returns the following
 * one (doubled while below max_ms, else max_ms). */
int rl_backoff_next(rl_backoff_t *b);

/* After a success: the next delay is initial_ms again. */
void rl_backoff_reset(rl_backoff_t *b);

#endif
