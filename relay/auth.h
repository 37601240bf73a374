/* auth.h -- per-source request authentication.
 * Schemes: none, token (a static header). Signature schemes come later. */
#ifndef RL_AUTH_H
#define RL_AUTH_H

#include <stddef.h>

#include "config.h"

/* Looks a request header up by name (case-insensitive); NULL when absent. */
typedef const char *(*rl_header_fn)(void *ctx, const char *name);

/* 0 when the request may pass; -1 with a short reason in *reason (a static string
 * fit for a log line and a metric label; it never contains the secret). */
int rl_auth_check(const rl_source_conf_t *src, rl_header_fn header, void *ctx,
                  const char **reason);

#endif
