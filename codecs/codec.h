/* codec.h -- the interface every provider codec implements.
 *
 * A codec turns one webhook body (already tokenized by rl_jdoc_parse) into zero
 * or more normalized events. Adding a provider is adding one codec_NAME.c file and
 * one line in codecs.c's table. A codec that needs settings of its own (keys of
 * the [source] section) reads them once in `setup`; one that must answer the
 * provider's subscription check (a GET on the webhook URL) has a `handshake`. */
#ifndef RL_CODEC_H
#define RL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "headers.h"
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
    /* Events that arrive as CloudEvents keep their own identity and envelope: */
    char *ce_source; /* the producer's CloudEvent `source`; NULL: relay's own
                      * ("/" source ["/" workspace_id]). When set, relay's dedup
                      * identifies the event by this source and its id */
    char *ce_rest;   /* the members written after `type` and `time`, verbatim JSON
                      * without braces or a leading comma ("subject":…,"data":…);
                      * NULL: relay writes subject, its extensions and data */
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

/* What a codec is given beside the parsed body; everything is borrowed for the
 * call. Members may be NULL (a test, a fuzz target): a codec then sees no
 * headers and no Content-Type. */
typedef struct rl_codec_in {
    const char *body; /* the body exactly as received */
    size_t len;
    const char *content_type; /* the request's Content-Type, NULL when none */
    rl_header_fn header;      /* request headers */
    rl_header_each_fn each_header;
    void *header_ctx;
    const void *conf; /* what the codec's setup made for this source; NULL without one */
} rl_codec_in_t;

/* A handshake's answer: status and a text/plain body (malloc'd, the caller
 * frees it; NULL for none). */
typedef struct rl_handshake {
    int status;
    char *body;
} rl_handshake_t;

/* rl_codec_t.flags */
#define RL_CODEC_ANY_BODY                                                                          \
    1u /* any Content-Type; a body that is not JSON reaches                                        \
        * decode with doc NULL instead of being refused */

typedef struct rl_codec {
    const char *name; /* the value of `codec =` in a [source] section; also the
                       * CloudEvent `provider` extension */
    const char *help; /* one line, for --help and the docs */
    unsigned flags;   /* RL_CODEC_* */
    /* The [source] keys only this codec reads (NULL-terminated, or NULL): set on
     * a source with another codec they are refused at start-up, never ignored. */
    const char *const *keys;
    /* Optional. Reads and checks the source's codec keys once, at start-up.
     * Returns the codec's settings for decode and handshake (in->conf), or NULL
     * with a reason in errstr and, when a key is at fault, its name in *key (for
     * "FILE:LINE: why"). `sc` is borrowed and outlives the result. */
    void *(*setup)(const rl_source_conf_t *sc, const char **key, char *errstr, size_t errstr_size);
    void (*teardown)(void *conf); /* frees what setup made; NULL-safe */
    /* Decodes `doc` (borrowed; its root is value 0; NULL when the body is not JSON
     * and the codec has RL_CODEC_ANY_BODY) and appends one event per provider item
     * to `out`. Returns 0, -1 with a human-readable reason in errstr when the body
     * is not a shape this codec accepts (the caller answers 400), or
     * RL_CODEC_NOMEM. On failure, events already appended by this call are left in
     * `out`; the caller clears the list. Call it through rl_codec_decode. */
    int (*decode)(rl_jdoc_t *doc, const rl_codec_in_t *in, rl_event_list_t *out, char *errstr,
                  size_t errstr_size);
    /* Optional: answers a GET on the source's webhook URL (a provider's
     * subscription check). `arg` looks the query's arguments up. 0, or -1 on
     * out-of-memory. Without it, GET is 405. */
    int (*handshake)(const void *conf, rl_header_fn arg, void *arg_ctx, rl_handshake_t *out);
} rl_codec_t;

/* The codec named `name`, or NULL. */
const rl_codec_t *rl_codec_find(const char *name);
/* c->decode (in may be NULL: no request context), except that it answers
 * RL_CODEC_NOMEM with "<codec>: out of memory" whenever the document ran out of
 * memory during the decode (a lookup then answered "absent", so a -1 or even a 0
 * would misjudge the body). */
int rl_codec_decode(const rl_codec_t *c, rl_jdoc_t *doc, const rl_codec_in_t *in,
                    rl_event_list_t *out, char *errstr, size_t errstr_size);
/* Checks the codec keys of source `sc` as start-up does (setup, then teardown):
 * 0, or -1 with errstr and *key as for setup. */
int rl_codec_check(const rl_codec_t *c, const rl_source_conf_t *sc, const char **key, char *errstr,
                   size_t errstr_size);
/* 1 when `key` is a [source] key some codec owns (rl_codec_t.keys). */
int rl_codec_owns_key(const char *key);
/* NULL-terminated table of every codec (codecs.c). */
extern const rl_codec_t *const rl_codecs[];

#endif
