/* auth.h -- per-source request authentication.
 *
 * Schemes (config `auth`):
 *   none                nothing is checked
 *   token               a static header carries the secret ("Authorization: Bearer <secret>"
 *                       by default, any header by `token_header`)
 *   timely              X-Timely-Signature: hex HMAC-SHA256(secret, raw body), or of
 *                       "{X-Timely-Timestamp}.{raw body}"; "sha256=" prefix optional
 *   standard-webhooks   webhook-id, webhook-timestamp, webhook-signature ("v1,<base64>"
 *                       entries) over "{id}.{timestamp}.{raw body}"; whsec_ secrets
 *   hub-signature-256   X-Hub-Signature-256: "sha256=<hex HMAC-SHA256(secret, raw body)>"
 *                       (GitHub, Meta)
 * `secret` may hold several secrets separated by commas (white space around each
 * is dropped): a request signed with any one of them passes (key rotation). Signatures are computed
 * over the raw body bytes and compared in constant time. */
#ifndef RL_AUTH_H
#define RL_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "headers.h"

typedef struct rl_auth rl_auth_t;

/* What one request offers to be checked. Everything is borrowed. */
typedef struct rl_auth_req {
    rl_header_fn header;
    void *header_ctx;
    const uint8_t *body; /* the raw body, exactly as received */
    size_t len;
    int64_t now; /* unix seconds, for timestamp tolerance: when the request was received
                  * (for a dead letter re-driven, when the letter was) */
} rl_auth_req_t;

/* Builds the checker of one source: parses the scheme and splits and decodes the
 * secrets once. `src` is borrowed and must outlive the checker. NULL with a
 * reason (never the secret) in errstr for a secret the scheme cannot use (a
 * whsec_ secret that is not Base64) or out-of-memory. */
rl_auth_t *rl_auth_new(const rl_source_conf_t *src, char *errstr, size_t errstr_size);
void rl_auth_destroy(rl_auth_t *a); /* NULL-safe */

/* 0 when the request may pass; -1 with a short reason in *reason (a static
 * string from rl_auth_reasons, fit for a log line and a metric label; it never
 * contains a secret). On success with standard-webhooks, *msg_id (when msg_id is
 * not NULL) points at the webhook-id header value (borrowed from the request),
 * else it is set to NULL. Thread-safe: a checker is read-only after rl_auth_new. */
int rl_auth_check(const rl_auth_t *a, const rl_auth_req_t *req, const char **reason,
                  const char **msg_id);

/* The request headers the source's scheme reads, NULL-terminated (none: an empty
 * list), static: what a dead letter keeps so that it can be authenticated again.
 * NULL for token: its header is the secret itself, or a guess at it, and is never
 * kept. */
const char *const *rl_auth_headers(const rl_auth_t *a);

/* Every reason rl_auth_check may give, NULL-terminated (for metric labels). */
extern const char *const rl_auth_reasons[];

#endif
