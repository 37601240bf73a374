/* redis_conn.c -- Redis URLs and connections (see redis_conn.h). */
#include "redis_conn.h"

#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rl_redis_target_parse(rl_redis_target_t *t, const char *url, char *errstr, size_t errstr_size)
{
    char buf[512];

    memset(t, 0, sizeof(*t));
    t->port = 6379;
    if (!strncmp(url, "unix://", 7)) {
        snprintf(t->unix_path, sizeof(t->unix_path), "%s", url + 7);
        char *q = strchr(t->unix_path, '?');
        if (q) {
            if (!strncmp(q, "?db=", 4))
                t->db = atoi(q + 4);
            *q = '\0';
        }
        return 0;
    }
    snprintf(buf, sizeof(buf), "%s", !strncmp(url, "redis://", 8) ? url + 8 : url);
    char *hostpart = buf, *at = strrchr(buf, '@');
    if (at) {
        *at = '\0';
        char *colon = strchr(buf, ':');
        snprintf(t->password, sizeof(t->password), "%s", colon ? colon + 1 : buf);
        if (colon) {
            *colon = '\0';
            snprintf(t->user, sizeof(t->user), "%s", buf);
        }
        hostpart = at + 1;
    }
    char *slash = strchr(hostpart, '/');
    if (slash) {
        t->db = atoi(slash + 1);
        *slash = '\0';
    }
    char *colon = strrchr(hostpart, ':');
    if (colon && !strchr(colon, ']')) {
        t->port = atoi(colon + 1);
        *colon = '\0';
    }
    if (hostpart[0] == '[') {
        hostpart++;
        hostpart[strcspn(hostpart, "]")] = '\0';
    }
    snprintf(t->host, sizeof(t->host), "%s", *hostpart ? hostpart : "127.0.0.1");
    if (t->port <= 0 || t->port > 65535) {
        rl_seterr(errstr, errstr_size, "bad port in the Redis URL");
        return -1;
    }
    return 0;
}

/* Runs one setup command; 0 when Redis accepted it. */
static int setup_command(redisContext *c, redisReply *rep, const char *what, char *errstr,
                         size_t errstr_size)
{
    int ok = rep && rep->type != REDIS_REPLY_ERROR;

    if (!ok)
        rl_seterr(errstr, errstr_size, "%s failed: %s", what, rep ? rep->str : c->errstr);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

redisContext *rl_redis_connect(const rl_redis_target_t *t, struct timeval connect_timeout,
                               struct timeval timeout, char *errstr, size_t errstr_size)
{
    redisContext *c = t->unix_path[0] ? redisConnectUnixWithTimeout(t->unix_path, connect_timeout)
                                      : redisConnectWithTimeout(t->host, t->port, connect_timeout);

    if (!c || c->err) {
        rl_seterr(errstr, errstr_size, "connect: %s", c ? c->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(c, timeout) != REDIS_OK) {
        rl_seterr(errstr, errstr_size, "cannot set the command timeout");
        goto fail;
    }
    if (t->password[0] && t->user[0] &&
        setup_command(c, redisCommand(c, "AUTH %s %s", t->user, t->password), "AUTH", errstr,
                      errstr_size))
        goto fail;
    if (t->password[0] && !t->user[0] &&
        setup_command(c, redisCommand(c, "AUTH %s", t->password), "AUTH", errstr, errstr_size))
        goto fail;
    if (t->db &&
        setup_command(c, redisCommand(c, "SELECT %d", t->db), "SELECT", errstr, errstr_size))
        goto fail;
    return c;
fail:
    if (c)
        redisFree(c);
    return NULL;
}
