/* ingest.h -- one webhook request from body to durable events:
 * source lookup -> auth -> JSON -> codec -> dedup -> WAL append -> answer.
 *
 * The answer to a request whose events are new is only produced once they are
 * durable: the WAL's flusher thread calls back, and the HTTP layer resumes the
 * suspended connection. */
#ifndef RL_INGEST_H
#define RL_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "codec.h"
#include "config.h"
#include "metrics.h"
#include "wal.h"

typedef struct rl_ingest rl_ingest_t;

/* The cap on dead letters of requests refused 401, per source: a token bucket of
 * RL_DEADLETTER_UNAUTH_BURST letters refilled at RL_DEADLETTER_UNAUTH_RATE a second.
 * Past it a 401 keeps no letter (relay_deadletters_unauthorized_dropped_total). */
#define RL_DEADLETTER_UNAUTH_RATE 10
#define RL_DEADLETTER_UNAUTH_BURST 20

typedef struct rl_ingest_req {
    const char *source; /* the {source} of the URL */
    const uint8_t *body;
    size_t len;
    rl_header_fn header;           /* request headers, for authentication and the codec */
    rl_header_each_fn each_header; /* every header (NULL: none), for the codec */
    void *header_ctx;
} rl_ingest_req_t;

typedef struct rl_reply {
    int status;      /* HTTP status */
    char *body;      /* malloc'd JSON; owned by whoever holds the reply */
    int retry_after; /* seconds for a Retry-After header, 0 for none */
} rl_reply_t;

/* Receives the reply (and its body) of a request that completed later. Runs on
 * the WAL's flusher thread: it must not block. */
typedef void (*rl_ingest_done_cb)(void *opaque, rl_reply_t *reply);

/* cfg and wal are borrowed and must outlive the ingest; metrics may be NULL. The
 * dedup window persists itself through the WAL reader named "dedup" when the WAL
 * has one (dedup_store.h). */
rl_ingest_t *rl_ingest_new(const rl_config_t *cfg, rl_wal_t *wal, rl_metrics_t *metrics,
                           char *errstr, size_t errstr_size);
void rl_ingest_destroy(rl_ingest_t *ig); /* NULL-safe */

/* Remembers the (source, id) of every event kept in the WAL that the dedup file
 * (loaded by rl_ingest_new) does not hold yet, at the time it was received, so that
 * provider retries are recognized across a restart or a crash. Call before serving
 * requests. Returns the number of ids remembered, or -1 on an I/O error (errstr set). */
long rl_ingest_rebuild(rl_ingest_t *ig, char *errstr, size_t errstr_size);

/* The dedup store's state for /readyz: "local", "redis", or "degraded" (store = redis
 * and Redis unreachable: deciding on the local window alone, still ready). */
const char *rl_ingest_dedup_state(const rl_ingest_t *ig);

/* Returns 1 when the request is answered now (*reply filled, the caller owns its
 * body), or 0 when cb(opaque, reply) will be called exactly once later. */
int rl_ingest_submit(rl_ingest_t *ig, const rl_ingest_req_t *req, rl_ingest_done_cb cb,
                     void *opaque, rl_reply_t *reply);

/* What became of one dead letter re-driven. */
typedef enum rl_redrive_outcome {
    RL_REDRIVE_REDRIVEN,   /* it decodes now: its events are durable (accepted new ones,
                            * duplicates of events already taken) */
    RL_REDRIVE_STILL_DEAD, /* authentication or decoding fails again (reason): no new letter
                            * is appended, the original stays retained and published */
    RL_REDRIVE_SKIPPED,    /* it cannot be re-driven (reason): not_a_dead_letter,
                            * unknown_source, body_truncated, headers_not_kept (a 401 under
                            * auth = token), bad_letter */
    RL_REDRIVE_ERROR,      /* not decided now, try it again later (reason): wal_full,
                            * wal_unavailable, unavailable, claimed_elsewhere, internal */
} rl_redrive_outcome_t;

typedef struct rl_redrive_result {
    rl_redrive_outcome_t outcome;
    size_t accepted, duplicates; /* RL_REDRIVE_REDRIVEN: new events, events already taken */
    char reason[64];   /* machine-readable, "" for redriven: the auth reason (rl_auth_reasons),
                        * the decode reason (invalid_json, json_too_deep, invalid_payload,
                        * too_many_items) or the ones listed above */
    char message[512]; /* for a person: what a request would have been answered */
} rl_redrive_result_t;

/* Sends one dead letter again through the pipeline of rl_ingest_submit, after a
 * source's secret or codec was fixed: `payload` is a WAL record payload (as
 * rl_wal_scan gives it; borrowed). The request is rebuilt from the letter: its
 * body, Content-Type and the headers it kept. A letter refused 401 is
 * authenticated again with those headers, a signed timestamp judged against when
 * the letter was received (it may be hours old; a replay refused then stays
 * refused); a letter refused 400 authenticated when it was
 * received and is not checked again (a secret rotated since does not strand it),
 * its webhook_id still naming its events. No rate limit, no request metrics; the
 * events count in relay_events_accepted_total / _duplicate_total. The events are
 * received now (their records' received_ms), their default CloudEvent time is the
 * letter's.
 *
 * Synchronous: blocks until the events are durable in the WAL (not until
 * published, whatever ack says). Call from an admin thread, never from the WAL's
 * flusher (a callback) nor from an rl_wal_scan callback. Fills *res and returns
 * res->outcome. Thread-safe as rl_ingest_submit. */
rl_redrive_outcome_t rl_ingest_redrive(rl_ingest_t *ig, const uint8_t *payload, size_t len,
                                       rl_redrive_result_t *res);

/* Appends events relay made itself (the channel state's channel.down and
 * channel.up) as events received on source `source`: encoded as a request's
 * events are, claimed in the dedup window (an id already taken is a duplicate,
 * not appended again), the new ones appended. `evs` is borrowed. Blocks until
 * they are durable; call it as rl_ingest_redrive. Returns 0 with the counts, or
 * -1 with errstr (an unknown source, the WAL full or closing, out of memory). */
int rl_ingest_emit(rl_ingest_t *ig, const char *source, const rl_event_list_t *evs,
                   size_t *accepted, size_t *duplicates, char *errstr, size_t errstr_size);

/* A GET on source `source`'s webhook URL: when the source's codec has a
 * handshake (a provider's subscription check), fills *out (its body malloc'd,
 * the caller frees it; text/plain) and returns 1; returns 0 (out->status 0) when
 * the source is unknown or answers no GET. `arg` looks the query arguments up. */
int rl_ingest_handshake(rl_ingest_t *ig, const char *source, rl_header_fn arg, void *arg_ctx,
                        rl_handshake_t *out);

/* Builds an error reply {"error":code,"message":message}. */
void rl_reply_error(rl_reply_t *reply, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
