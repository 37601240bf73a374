/* clock.h -- relay's clocks, and every timed wait.
 *
 * Two clocks, never mixed:
 *   - the monotonic clock (CLOCK_MONOTONIC) for durations, deadlines and
 *     timeouts: it never steps, so an NTP correction or a resumed VM neither
 *     stretches nor cuts a wait;
 *   - the wall clock (CLOCK_REALTIME) only for instants written down: the time
 *     an event was received, a dedup id's expiry (which outlives the process),
 *     log lines.
 *
 * A condition variable that is waited on with a timeout is made by
 * rl_cond_init (its clock is the monotonic one) and waited on by
 * rl_cond_wait_until / rl_cond_wait_ms, never by pthread_cond_timedwait with a
 * deadline of one's own: a pthread_cond_t made with default attributes times
 * out on the wall clock. All functions are thread-safe. */
#ifndef RL_CLOCK_H
#define RL_CLOCK_H

#include <pthread.h>
#include <stdint.h>

/* Monotonic time in milliseconds and microseconds (an arbitrary origin). */
int64_t rl_clock_mono_ms(void);
uint64_t rl_clock_mono_us(void);

/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t rl_clock_wall_ms(void);

/* A unix time written down (a signed header, a command's argument): decimal
 * seconds (milliseconds when 12 digits or more), or, with `rfc3339`,
 * "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm)". *secs in seconds; 0 or -1. */
int rl_clock_parse_time(const char *s, int rfc3339, int64_t *secs);
/* The same in milliseconds: a fraction of a second is kept (to the ms). */
int rl_clock_parse_ms(const char *s, int rfc3339, int64_t *ms);
/* Writes unix ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (at least 25 bytes;
 * "" when smaller or out of range) and returns out. */
char *rl_clock_format_ms(int64_t ms, char *out, size_t size);

/* pthread_cond_init with the monotonic clock. Returns 0 or an errno value. */
int rl_cond_init(pthread_cond_t *cv);

/* Waits on cv (made by rl_cond_init; mu held, as pthread_cond_timedwait) until
 * signalled or until the monotonic time deadline_ms (rl_clock_mono_ms's clock)
 * has come. Returns 0 when woken (maybe spuriously: callers re-check their
 * condition), ETIMEDOUT when the deadline passed. */
int rl_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms);

/* The same with a deadline timeout_ms from now (timeout_ms <= 0: ETIMEDOUT
 * without waiting, the mutex still held). */
int rl_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t timeout_ms);

#endif
