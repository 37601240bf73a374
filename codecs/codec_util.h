/* codec_util.h -- small helpers shared by the provider codecs: times, derived ids,
 * JSON getters, and the builders of the normalized `data` objects, so that every
 * codec emits exactly the same schema for a family. */
#ifndef RL_CODEC_UTIL_H
#define RL_CODEC_UTIL_H

#include "codec.h"

/* Room for "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" and its NUL. */
#define CU_TIME_SIZE 32

/* Unix time `v` (seconds; values of 1e11 and more are milliseconds, as Whapi's
 * `calls` send, since such seconds would lie after the year 5000) as RFC 3339 UTC.
 * Returns 0, or -1 when out of range. */
int cu_time_epoch(long long v, char *out, size_t size);
/* The same for a JSON integer or a string of decimal digits (Whapi `statuses`). */
int cu_time_unix(const json_t *v, char *out, size_t size);
/* An RFC 3339 string with any offset, rewritten in UTC ("Z"), fraction kept.
 * Returns -1 for anything else, including dates that do not exist. */
int cu_time_rfc3339(const char *s, char *out, size_t size);
/* Either of the two above. Returns -1 when `v` is none of them (or NULL). */
int cu_time_any(const json_t *v, char *out, size_t size);

/* prefix + the first 32 hex digits of SHA-256 over parts joined by '\x1f' (a
 * NULL part counts as ""). Returns a malloc'd string, NULL on failure. */
char *cu_derive_id(const char *prefix, const char *const *parts, size_t n);
/* The canonical text of `v` (sorted keys, compact, any type): malloc'd (free()),
 * NULL on failure. */
char *cu_canonical(const json_t *v);

/* obj[key] when it is a string (obj may be NULL or not an object), else NULL. */
const char *cu_str(const json_t *obj, const char *key);
/* The text of a string (the string itself, never truncated) or of an integer
 * (formatted into buf); NULL for anything else. */
const char *cu_text(const json_t *v, char *buf, size_t size);
/* Formats a reason into errstr (may be NULL or size 0) and returns -1. */
int cu_error(char *errstr, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The normalized fields of each family; NULL members become JSON null. */
typedef struct cu_channel {
    const char *channel_id, *channel_type, *provider, *status, *reason;
    const char *error_code, *error_message, *error_category, *occurred_at;
} cu_channel_t;

typedef struct cu_message {
    const char *message_id, *conversation_id, *contact_id, *direction;
    const char *content_type, *content, *media_url, *occurred_at, *sent_by_type;
} cu_message_t;

/* Each builder returns a new object (one reference, owned by the caller) holding
 * every field of its family plus "raw", or NULL on out-of-memory. `raw` is
 * borrowed: the object takes a reference of its own (so it shares the caller's
 * nodes, which nothing mutates). */
json_t *cu_channel_data(const cu_channel_t *f, json_t *raw);
json_t *cu_message_data(const cu_message_t *f, json_t *raw);
/* Provider-scoped events: {"channel_id","occurred_at","raw"}. */
json_t *cu_other_data(const char *channel_id, const char *occurred_at, json_t *raw);

/* Appends one event to `out`. Steals `id` (malloc'd) and `data` (one reference)
 * whether it succeeds or not; copies the strings. `time` NULL or "" means unknown
 * and leaves the event's time NULL. Returns 0, or -1 on out-of-memory. */
int cu_emit(rl_event_list_t *out, char *id, const char *type, const char *channel_id,
            const char *workspace_id, const char *time, json_t *data);

#endif
