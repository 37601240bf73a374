/* clock.c -- relay's clocks and timed waits (clock.h). */
#include "clock.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* A unix time in a header: decimal seconds (milliseconds when that large), or,
 * where `rfc3339` allows it, "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm)". 0 or -1. */
int rl_clock_parse_ms(const char *s, int rfc3339, int64_t *out)
{
    size_t n = strlen(s);
    if (n > 0 && n <= 16 && strspn(s, "0123456789") == n) {
        long long v = strtoll(s, NULL, 10);
        *out = v >= 100000000000LL /* milliseconds */ ? v : v * 1000;
        return 0;
    }
    if (!rfc3339)
        return -1;
    int Y, M, D, h, m, sec, used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &used) != 6 ||
        used != 19 || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    s += used;
    int64_t frac = 0, scale = 100;
    if (*s == '.')
        for (s++; isdigit((unsigned char)*s); s++, scale /= 10)
            frac += (*s - '0') * scale;
    long off = 0;
    if (*s == '+' || *s == '-') {
        int oh, om;
        if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &used) != 2 || used != 5 || oh > 23 || om > 59)
            return -1;
        off = (oh * 60L + om) * 60L * (*s == '-' ? -1 : 1);
        s += 6;
    } else if (*s == 'Z' || *s == 'z') {
        s++;
    } else {
        return -1;
    }
    if (*s)
        return -1;
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    *out = ((int64_t)timegm(&tm) - off) * 1000 + frac;
    return 0;
}

int rl_clock_parse_time(const char *s, int rfc3339, int64_t *out)
{
    int64_t ms;
    if (rl_clock_parse_ms(s, rfc3339, &ms) != 0)
        return -1;
    *out = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    return 0;
}

char *rl_clock_format_ms(int64_t ms, char *out, size_t size)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
    struct tm tm;
    if (!gmtime_r(&t, &tm) || size < 25) {
        if (size)
            *out = 0;
        return out;
    }
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms - (int64_t)t * 1000));
    return out;
}
