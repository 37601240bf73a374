/* connguard.h -- the HTTP listener's defence against clients that hold
 * connections: a cap on connections in all and per client address, and a
 * deadline for receiving each request (slowloris: a client that sends its
 * request a byte at a time never trips an idle timeout).
 *
 * libmicrohttpd has connection limits of its own, but refuses silently and does
 * not say which limit refused; relay counts each limit separately, so it keeps
 * the counts here and libmicrohttpd asks through its accept policy callback.
 *
 * The deadline is enforced by a thread that shuts the socket down
 * (shutdown(2), never close: the descriptor stays libmicrohttpd's); the
 * connection's own thread then sees the end of the stream and cleans up.
 *
 * Threading: every function may be called from any thread. */
#ifndef RL_CONNGUARD_H
#define RL_CONNGUARD_H

#include <stddef.h>
#include <sys/socket.h>

#include "metrics.h"

typedef struct rl_connguard rl_connguard_t;
typedef struct rl_conn rl_conn_t; /* one tracked connection */

typedef struct rl_connguard_opts {
    size_t max_total;       /* connections in all (>= 1) */
    size_t max_per_ip;      /* connections from one address (>= 1) */
    int request_timeout_ms; /* to receive one whole request (> 0) */
    int tick_ms;            /* how often deadlines are checked; 0: 200 ms */
} rl_connguard_opts_t;

/* Starts the deadline thread. `metrics` may be NULL (borrowed, must outlive the
 * guard). NULL with errstr on out-of-memory. */
rl_connguard_t *rl_connguard_new(const rl_connguard_opts_t *o, rl_metrics_t *metrics, char *errstr,
                                 size_t errstr_size);
/* Stops the thread and frees. Every connection must have been closed first (the
 * HTTP server is stopped before its guard). NULL-safe. */
void rl_connguard_destroy(rl_connguard_t *g);

/* A new connection from `addr`: 1 when it may be served (a place is reserved
 * for it), 0 when a limit refuses it (counted). Called by the thread that will
 * call rl_connguard_open for it next, if it is served at all: a reservation that
 * was never opened (the server failed to set the connection up) is released by
 * that thread's next admit. */
int rl_connguard_admit(rl_connguard_t *g, const struct sockaddr *addr, socklen_t addrlen);
/* The admitted connection is set up on socket `fd`: tracks it and starts its
 * first request's clock. NULL on out-of-memory (then it is not tracked, and
 * rl_connguard_close accepts NULL). */
rl_conn_t *rl_connguard_open(rl_connguard_t *g, int fd, const struct sockaddr *addr,
                             socklen_t addrlen);
/* The connection is gone (its descriptor is about to be closed): releases its
 * place. NULL-safe for c. */
void rl_connguard_close(rl_connguard_t *g, rl_conn_t *c);

/* The whole request is in (it is being answered, maybe after waiting for the
 * WAL): no deadline until it is done. NULL-safe. */
void rl_connguard_received(rl_connguard_t *g, rl_conn_t *c);
/* The answer is out: the next request on this connection has the full time
 * again, counted from now. NULL-safe. */
void rl_connguard_done(rl_connguard_t *g, rl_conn_t *c);

size_t rl_connguard_count(rl_connguard_t *g); /* connections tracked or reserved */

#endif
