/* codec.h -- the interface every provider codec implements.
 *
 * A codec turns one webhook body (already parsed as JSON by the caller) into zero
 * or more normalized events. Adding a provider is adding one codec_NAME.c file and
 * one line in codecs.c's table. */
#ifndef RL_CODEC_H
#define RL_CODEC_H

#include <jansson.h>
#include <stddef.h>

/* One normalized event. Every pointer member is owned by the event and freed by
 * rl_event_list_clear(). */
typedef struct rl_event {
    char *id;           /* CloudEvent id: provider's event id or a deterministic derived id */
    char *type;         /* "channel.connected", ... or provider-scoped "whapi.presences.post" */
    char *channel_id;   /* CloudEvent subject / Kafka key; "" when the provider gave none */
    char *workspace_id; /* NULL when the provider has no workspace */
    char *time;         /* RFC 3339 UTC, e.g. "2026-04-19T10:00:00Z" */
    json_t *data;       /* normalized fields plus "raw" (one reference, owned) */
    int id_derived;     /* 1 when `id` was derived by relay, not given by the provider: a
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
    /* Decodes `root` (borrowed; the caller keeps its reference) and appends one event
     * per provider item to `out`. Returns 0, or -1 with a human-readable reason in
     * errstr when the body is not a shape this codec accepts (the caller answers
     * 400). On -1, events already appended by this call are left in `out`; the
     * caller clears the list. */
    int (*decode)(json_t *root, rl_event_list_t *out, char *errstr, size_t errstr_size);
} rl_codec_t;

/* The codec named `name`, or NULL. */
const rl_codec_t *rl_codec_find(const char *name);
/* NULL-terminated table of every codec (codecs.c). */
extern const rl_codec_t *const rl_codecs[];

#endif
