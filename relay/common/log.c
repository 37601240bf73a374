/* log.c -- one line per message, with a UTC timestamp and level. A single
 * fprintf keeps lines from different threads whole. */
#include "log.h"

#include "clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int min_level = RL_LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

int rl_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            min_level = i;
            return 0;
        }
    }
    return -1;
}

void rl_log(int level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[1024], ts[32];
    int64_t now_ms = rl_clock_wall_ms();
    time_t now_s = (time_t)(now_ms / 1000);
    struct tm tm;
    va_list ap;

    gmtime_r(&now_s, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", ts, (long)(now_ms % 1000), names[level], msg);
}
