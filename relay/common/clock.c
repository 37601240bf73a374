/* clock.c -- relay's clocks and timed waits (clock.h). */
#include "clock.h"

#include <errno.h>
#include <time.h>

int64_t rl_clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t rl_clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t rl_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rl_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);

    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

int rl_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms)
{
    struct timespec ts = {.tv_sec = deadline_ms / 1000, .tv_nsec = (deadline_ms % 1000) * 1000000L};

    if (deadline_ms <= rl_clock_mono_ms())
        return ETIMEDOUT;
    return pthread_cond_timedwait(cv, mu, &ts);
}

int rl_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t timeout_ms)
{
    if (timeout_ms <= 0)
        return ETIMEDOUT;
    return rl_cond_wait_until(cv, mu, rl_clock_mono_ms() + timeout_ms);
}
