/* admin.h -- the admin socket: how `relay replay` and `relay redrive` talk to
 * the running relay.
 *
 * A Unix stream socket, by default "<wal.dir>/admin.sock", mode 0600: only
 * the user relay runs as (and root) can connect, and the server checks the
 * peer's uid (SO_PEERCRED) as well. One request per connection: a JSON object
 * on one line, answered by one JSON object on one line. Requests are served
 * one at a time, on the socket's own thread. */
#ifndef RL_ADMIN_H
#define RL_ADMIN_H

#include <jansson.h>
#include <stddef.h>

typedef struct rl_admin rl_admin_t;

/* Serves one request (borrowed); returns the answer, a new reference the
 * socket decrefs, or NULL for {"ok":false,"error":"out of memory"}. */
typedef json_t *(*rl_admin_fn)(void *arg, json_t *req);

/* Binds `path` (a stale socket file there is replaced) and starts serving.
 * NULL with errstr when it cannot. */
rl_admin_t *rl_admin_new(const char *path, rl_admin_fn fn, void *arg, char *errstr,
                         size_t errstr_size);
/* Stops serving, removes the socket file, frees. NULL-safe. */
void rl_admin_destroy(rl_admin_t *a);

/* The client side: sends req (borrowed) to the socket at path and returns the
 * answer in *answer (a new reference the caller decrefs). 0, or -1 with errstr
 * (cannot connect, no answer within timeout_ms, not JSON). */
int rl_admin_call(const char *path, json_t *req, int timeout_ms, json_t **answer, char *errstr,
                  size_t errstr_size);

/* "<wal_dir>/admin.sock" into out. */
void rl_admin_default_path(const char *wal_dir, char *out, size_t outsz);

#endif
