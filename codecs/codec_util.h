/* codec_util.h -- small helpers shared by the provider codecs: times, derived ids,
 * JSON getters over a parsed rl_jdoc_t, the builders of the normalized `data`
 * fields, so that every codec emits exactly the same schema for a family, and
 * the JSON output buffer that record.c writes CloudEvents with. */
#ifndef RL_CODEC_UTIL_H
#define RL_CODEC_UTIL_H

#include "codec.h"

#include <stdint.h>

/* Room for "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" and its NUL. */
#define CU_TIME_SIZE 32

/* Unix time `v` (seconds; values of 1e11 and more are milliseconds, as Whapi's
 * `calls` send, since such seconds would lie after the year 5000) as RFC 3339 UTC.
 * Returns 0, or -1 when out of range. */
int cu_time_epoch(long long v, char *out, size_t size);
/* The same for value v of d when it is a JSON integer or a string of decimal
 * digits (Whapi `statuses`). */
int cu_time_unix(rl_jdoc_t *d, int v, char *out, size_t size);
/* An RFC 3339 string with any offset, rewritten in UTC ("Z"), fraction kept.
 * Returns -1 for anything else, including dates that do not exist. */
int cu_time_rfc3339(const char *s, char *out, size_t size);
/* Either of the two above. Returns -1 when `v` is none of them (or -1). */
int cu_time_any(rl_jdoc_t *d, int v, char *out, size_t size);

/* prefix + the first 32 hex digits of SHA-256 over parts joined by '\x1f' (a
 * NULL part counts as ""). Returns a malloc'd string, NULL on failure. */
char *cu_derive_id(const char *prefix, const char *const *parts, size_t n);
/* The canonical text of value v (sorted keys, a repeated key once with its last
 * value, compact, any type), byte for byte what jansson's JSON_SORT_KEYS |
 * JSON_COMPACT dump of the same document writes: malloc'd (free()), NULL on
 * failure. */
char *cu_canonical(rl_jdoc_t *d, int v);

/* One member of an object as jansson keeps it: a repeated key once, where it
 * first came, with the value it had last. */
typedef struct cu_member {
    int key, value;
} cu_member_t;
/* The members of object `obj` in that order: *out malloc'd (caller frees), *n
 * set. 0, or -1 on out-of-memory. */
int cu_members(rl_jdoc_t *d, int obj, cu_member_t **out, size_t *n);

/* obj[key] when it is a string (obj may be -1 or not an object), else NULL. */
const char *cu_str(rl_jdoc_t *d, int obj, const char *key);
/* The text of a string (the string itself, never truncated) or of an integer
 * that fits a long long (formatted into buf); NULL for anything else. */
const char *cu_text(rl_jdoc_t *d, int v, char *buf, size_t size);
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
    const char *error_code, *error_message; /* why a message failed, when the provider says */
} cu_message_t;

/* The most fields a builder writes (the family's and "raw"). */
#define CU_MAX_FIELDS 12

/* Each builder fills `out` (room for CU_MAX_FIELDS) with every field of its
 * family, then "raw": value `raw` of d (the provider's bytes verbatim), and
 * returns the count. The fields borrow the strings; cu_emit copies them. */
size_t cu_channel_fields(const cu_channel_t *f, rl_jdoc_t *d, int raw, rl_field_t *out);
size_t cu_message_fields(const cu_message_t *f, rl_jdoc_t *d, int raw, rl_field_t *out);
/* Provider-scoped events: {"channel_id","occurred_at","raw"}. */
size_t cu_other_fields(const char *channel_id, const char *occurred_at, rl_jdoc_t *d, int raw,
                       rl_field_t *out);

/* Appends one event to `out`. Steals `id` (malloc'd) whether it succeeds or not;
 * copies the strings and the n fields (with their strings, into one block).
 * `time` NULL or "" means unknown and leaves the event's time NULL. Returns 0,
 * or RL_CODEC_NOMEM on out-of-memory. */
int cu_emit(rl_event_list_t *out, char *id, const char *type, const char *channel_id,
            const char *workspace_id, const char *time, const rl_field_t *fields, size_t n);

/* A growing output buffer: every append after a failed allocation is dropped,
 * and `oom` stays set. */
typedef struct cu_obuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} cu_obuf_t;

/* Room for `more` bytes; 0 or -1 (oom set). */
int cu_ob_reserve(cu_obuf_t *b, size_t more);
void cu_ob_put(cu_obuf_t *b, const void *s, size_t n);
/* A JSON string of the n bytes of UTF-8 at s, escaped as jansson escapes it:
 * '"', '\\' and control characters only. */
void cu_ob_strn(cu_obuf_t *b, const char *s, size_t n);

#endif
