/* log.c -- one line per message, text or JSON (see log.h). */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static int min_level = RL_LOG_INFO;
static int json_format;
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

int rl_log_set_format(const char *name)
{
    if (strcmp(name, "text") == 0)
        json_format = 0;
    else if (strcmp(name, "json") == 0)
        json_format = 1;
    else
        return -1;
    return 0;
}

/* Length of the module prefix of msg ("wal" in "wal: ..."), 0 when none. */
static size_t module_len(const char *msg)
{
    size_t n = 0;

    while ((msg[n] >= 'a' && msg[n] <= 'z') || (msg[n] >= '0' && msg[n] <= '9') || msg[n] == '_')
        n++;
    return n > 0 && msg[n] == ':' && msg[n + 1] == ' ' ? n : 0;
}

static int utf8_ok(const char *msg)
{
    json_t *s = json_string(msg);
    int ok = s != NULL;

    json_decref(s);
    return ok;
}

/* The fields of kv ("a=1 b=x") as a JSON object (NULL when kv has none). */
static json_t *fields_json(const char *kv)
{
    json_t *o = NULL;
    char buf[512], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", kv ? kv : "");
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '='), *end = NULL;
        if (!eq || eq == tok)
            continue;
        *eq = '\0';
        long long n = strtoll(eq + 1, &end, 10);
        json_t *v = eq[1] && *end == '\0' ? json_integer(n) : json_string(eq + 1);
        if (!o)
            o = json_object();
        if (!o || json_object_set_new(o, tok, v) != 0)
            break;
    }
    return o;
}

/* Writes msg (modified) as one JSON object; -1 when out of memory. */
static int write_json(const char *ts, int level, char *msg, const char *kv)
{
    size_t mlen = module_len(msg);
    json_t *o = json_object();
    char *line = NULL;
    int rc = -1;

    if (o == NULL)
        goto out;
    /* A message that is not UTF-8 (a provider's bytes quoted in it) would
     * be refused by jansson: its bytes above ASCII become '?'. */
    if (!utf8_ok(msg)) {
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
    }
    if (json_object_set_new(o, "time", json_string(ts)) != 0 ||
        json_object_set_new(o, "level", json_string(names[level])) != 0)
        goto out;
    if (mlen > 0 && json_object_set_new(o, "module", json_stringn(msg, mlen)) != 0)
        goto out;
    if (json_object_set_new(o, "message", json_string(mlen > 0 ? msg + mlen + 2 : msg)) != 0)
        goto out;
    json_t *f = fields_json(kv);
    if (f && json_object_set_new(o, "fields", f) != 0)
        goto out;
    line = json_dumps(o, JSON_COMPACT);
    if (line == NULL)
        goto out;
    fprintf(stderr, "%s\n", line);
    rc = 0;
out:
    free(line);
    json_decref(o);
    return rc;
}

static void log_va(int level, const char *kv, const char *fmt, va_list ap)
{
    char msg[1024], ts[40], day[24];
    int64_t now = rl_clock_wall_ms();
    time_t sec = (time_t)(now / 1000);
    struct tm tm;

    gmtime_r(&sec, &tm);
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts, sizeof(ts), "%s.%03dZ", day, (int)(now % 1000));
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (json_format && write_json(ts, level, msg, kv) == 0)
        return;
    fprintf(stderr, "%s %-5s %s%s%s\n", ts, names[level], msg, kv && *kv ? " " : "", kv ? kv : "");
}

void rl_log(int level, const char *fmt, ...)
{
    va_list ap;

    if (level < min_level)
        return;
    va_start(ap, fmt);
    log_va(level, NULL, fmt, ap);
    va_end(ap);
}

void rl_log_kv(int level, const char *kv, const char *fmt, ...)
{
    va_list ap;

    if (level < min_level)
        return;
    va_start(ap, fmt);
    log_va(level, kv, fmt, ap);
    va_end(ap);
}
