/* codec.h -- the interface every provider codec implements.
 *
 * A codec turns one webhook body (already tokenized by rl_jdoc_parse) into zero
 * or more normalized events. Adding a provider is adding one codec_NAME.c file and
 * one line in codecs.c's table. */
#ifndef RL_CODEC_H
#define RL_CODEC_H

#include <stddef.h>

#include "jdoc.h"

/* rl_codec_decode's answer when memory ran out (the body may be good). */
#define RL_CODEC_NOMEM (-2)

/* The kinds of a normalized data field. */
typedef enum rl_field_kind {
    RL_FIELD_NULL = 0,
    RL_FIELD_STRING, /* str, len: text (UTF-8) */
    RL_FIELD_INT,    /* num */
    RL_FIELD_BOOL,   /* num: 0 or 1 */
    RL_FIELD_JSON,   /* str, len: JSON text written verbatim ("raw") */
} rl_field_kind_t;

/* One member of a CloudEvent's `data`, in the order it is written. */
typedef struct rl_field {
    const char *name; /* a static string, written unescaped */
    rl_field_kind_t kind;
    const char *str;
    size_t len;
    long long num;
} rl_field_t;

/* One normalized event. Every pointer member is owned by the event and freed by
 * rl_event_list_clear(). */
typedef struct rl_event {
    char *id;           /* CloudEvent id: provider's event id or a deterministic derived id */
    char *type;         /* "channel.connected", ... or provider-scoped "whapi.presences.post" */
    char *channel_id;   /* CloudEvent subject / Kafka key; "" when the provider gave none */
    char *workspace_id; /* NULL when the provider has no workspace */
    char *time;         /* RFC 3339 UTC, e.g. "2026-04-19T10:00:00Z" */
    rl_field_t *fields; /* `data`: the normalized fields, then "raw" (the provider's
                         * bytes of the item verbatim); one malloc'd block with the
                         * strings the fields point to. NULL: data is null */
    size_t nfields;
    int id_derived; /* 1 when `id` was derived by relay, not given by the provider: a
                     * signed message id (standard-webhooks webhook-id) replaces it */
} rl_event_t;

/* A growable array of events. */
typedef struct rl_event_list {
    rl_event_t *v;
    size_t n, cap;
} rl_event_list_t;

void rl_event_list_init(rl_event_list_t *l);
/* Appends a zeroed event and returns it; NULL on out-of-memory. */
rl_event_t *rl_event_list_push(rl_event_list_t *l);
/* Frees every event's members and empties the list (the list stays usable). */
void rl_event_list_clear(rl_event_list_t *l);

/* The family of a type: "channel" or "message" for the normalized vocabulary,
 * "other" for anything provider-scoped. Returns a static string. */
const char *rl_event_family(const char *type);

typedef struct rl_codec {
    const char *name; /* the value of `codec =` in a [source] section; also the
                       * CloudEvent `provider` extension */
    const char *help; /* one line, for --help and the docs */
    /* Decodes `doc` (borrowed; its root is value 0) and appends one event per
     * provider item to `out`. Returns 0, -1 with a human-readable reason in errstr
     * when the body is not a shape this codec accepts (the caller answers 400), or
     * RL_CODEC_NOMEM. On failure, events already appended by this call are left in
     * `out`; the caller clears the list. Call it through rl_codec_decode. */
    int (*decode)(rl_jdoc_t *doc, rl_event_list_t *out, char *errstr, size_t errstr_size);
} rl_codec_t;

/* The codec named `name`, or NULL. */
const rl_codec_t *rl_codec_find(const char *name);
/* c->decode, except that it answers RL_CODEC_NOMEM with "<codec>: out of
 * memory" whenever the document ran out of memory during the decode (a lookup
 * then answered "absent", so a -1 or even a 0 would misjudge the body). */
int rl_codec_decode(const rl_codec_t *c, rl_jdoc_t *doc, rl_event_list_t *out, char *errstr,
                    size_t errstr_size);
/* NULL-terminated table of every codec (codecs.c). */
extern const rl_codec_t *const rl_codecs[];

#endif
