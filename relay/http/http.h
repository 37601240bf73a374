/* http.h -- the HTTP front: libmicrohttpd with an epoll thread pool.
 *
 *   POST /v1/webhooks/{source}   -> ingest (answered once durable)
 *   GET  /healthz /readyz /metrics
 *
 * A webhook request whose events must be made durable suspends its connection;
 * the WAL's completion resumes it, so HTTP threads never block on disk, Kafka or
 * Redis. */
#ifndef RL_HTTP_H
#define RL_HTTP_H

#include <stddef.h>

#include "config.h"
#include "ingest.h"
#include "metrics.h"
#include "state.h"

typedef struct rl_http rl_http_t;

/* Readiness probe: sets *ready (1 ready, 0 not) and returns the JSON body of
 * /readyz, malloc'd (the HTTP layer frees it); NULL on out-of-memory. */
typedef char *(*rl_ready_fn)(void *arg, int *ready);

/* Starts listening on cfg->http.listen. cfg, ingest, state (NULL: channel state
 * is off, /v1/channels answers 404) and metrics are borrowed and must outlive
 * the server. */
rl_http_t *rl_http_new(const rl_config_t *cfg, rl_ingest_t *ingest, rl_state_t *state,
                       rl_metrics_t *metrics, rl_ready_fn ready, void *ready_arg, char *errstr,
                       size_t errstr_size);
/* Stops accepting new connections (the listener closes); requests in flight go on,
 * and every answer from now on carries "Connection: close" so that keep-alive
 * clients go away too. */
void rl_http_quiesce(rl_http_t *h);
/* Requests still waiting for their answer. */
int rl_http_inflight(rl_http_t *h);
/* Stops the server (after in-flight requests were answered, or giving up on them). */
void rl_http_destroy(rl_http_t *h); /* NULL-safe */

#endif
