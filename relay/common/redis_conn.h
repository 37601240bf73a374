/* redis_conn.h -- where a Redis is (a redis:// or unix:// URL) and how to open a
 * connection to it: shared by the Redis sink and the Redis dedup store. */
#ifndef RL_REDIS_CONN_H
#define RL_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <sys/time.h>

typedef struct rl_redis_target {
    char host[512], user[256], password[512], unix_path[512]; /* user "": AUTH password */
    int port, db;
} rl_redis_target_t;

/* Parses redis://[[user]:password@]host[:port][/db] or unix:///path/to.sock[?db=N] into *t
 * (a user, Redis 6's ACL form, is sent as AUTH user password; without one, AUTH password).
 * 0, or -1 with errstr. */
int rl_redis_target_parse(rl_redis_target_t *t, const char *url, char *errstr, size_t errstr_size);

/* Connects within `connect_timeout`, sets `timeout` on every later command, and sends
 * AUTH and SELECT as the target needs. Returns the context (the caller frees it with
 * redisFree), or NULL with the reason in errstr. Secrets never go into errstr. */
redisContext *rl_redis_connect(const rl_redis_target_t *t, struct timeval connect_timeout,
                               struct timeval timeout, char *errstr, size_t errstr_size);

#endif
