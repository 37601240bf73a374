/* record.h -- what relay stores in one WAL record for one event, and how the
 * sinks name its destination.
 *
 * Payload: u8 kind | u64 received_ms | u16 len + source | u16 len + id | u16 len + type |
 *          u16 len + channel_id | u16 len + CloudEvent source | u32 len + CloudEvent JSON
 * The routing fields sit beside the JSON so that sinks never parse it. The first
 * byte says what the record is (it was a version byte, 1, when every record was
 * an event, so WALs written before dead letters existed read as events):
 *   1  an event: published to kafka.topic / redis.stream
 *   2  a dead letter: a body that authenticated but could not be decoded, kept
 *      raw (Base64) in a CloudEvent of type relay.deadletter, published to
 *      kafka.deadletter_topic / redis.deadletter_stream
 *   3  an event identified by its own CloudEvent source (rl_event_t.ce_source):
 *      read back as kind 1 with `scoped` set */
#ifndef RL_RECORD_H
#define RL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

enum { RL_RECORD_EVENT = 1, RL_RECORD_DEADLETTER = 2, RL_RECORD_SCOPED = 3 };

#define RL_DEADLETTER_TYPE "relay.deadletter"
/* The most body bytes a dead letter keeps (a WAL record holds at most 64 MiB,
 * and Base64 adds a third); the rest is cut and the cut is said in the letter. */
#define RL_DEADLETTER_MAX_BODY (16u * 1024 * 1024)

/* The longest routing field (id, type, channel_id, CloudEvent source) a
 * record holds: its length is a u16. */
#define RL_RECORD_FIELD_MAX 0xffffu
/* The longest destination names the sinks form with rl_record_render:
 * Kafka's limit on a topic name, and the sinks' bound on a Redis key. Ingest
 * refuses an event whose names would not fit (nothing answered 200 is then
 * dropped by a sink). */
#define RL_RECORD_TOPIC_MAX 249
#define RL_RECORD_KEY_MAX 4095

/* A view into a payload: no field is NUL-terminated and none is owned. */
typedef struct rl_record {
    const char *source, *id, *type, *channel_id, *ce_source, *event;
    size_t source_len, id_len, type_len, channel_id_len, ce_source_len, event_len;
    uint64_t received_ms; /* when relay received the event (unix ms) */
    int kind;             /* RL_RECORD_EVENT or RL_RECORD_DEADLETTER */
    int scoped;           /* an event identified by ce_source + id (rl_record_dedup_id) */
} rl_record_t;

/* What a dead letter records about a request; everything is borrowed. */
typedef struct rl_deadletter {
    const char *source;       /* source name */
    const char *provider;     /* the source's codec */
    const char *reason;       /* machine-readable: invalid_json, invalid_payload, json_too_deep,
                               * unauthorized */
    const char *message;      /* what the 400 answer said; for unauthorized the auth reason */
    const char *content_type; /* the request's, NULL when it had none */
    const char *msg_id;       /* the signed webhook-id (standard-webhooks), or NULL */
    const uint8_t *body;      /* the raw body */
    size_t len;
    /* The request headers kept ("headers":{name:value,...}): headers[2i] is a name,
     * headers[2i+1] its value, nheaders pairs. */
    const char *const *headers;
    size_t nheaders;
    /* Not NULL: the headers were withheld ("headers":null) and this says why
     * ("headers_note"; null otherwise). */
    const char *headers_note;
} rl_deadletter_t;

/* Builds the structured CloudEvent of `ev` received on source `source` by codec
 * `provider`. Returns a malloc'd compact JSON string (caller frees), NULL on
 * out-of-memory. */
char *rl_record_cloudevent(const rl_event_t *ev, const char *source, const char *provider);

/* The 200 answer to a request whose events are `evs`:
 * {"accepted":A,"duplicates":D,"ids":["…",…]}, compact, byte for byte what
 * jansson's json_dumps wrote for it. Returns a malloc'd NUL-terminated string
 * (caller frees), NULL on out-of-memory. */
char *rl_record_ack_body(const rl_event_list_t *evs, size_t accepted, size_t duplicates);

/* The name of the first field of `ev` received on `source` that is longer
 * than RL_RECORD_FIELD_MAX ("id", "type", "channel_id", "workspace_id", "source"), NULL
 * when every one fits. */
const char *rl_record_too_long(const char *source, const rl_event_t *ev);

/* Encodes one payload; *out is malloc'd (caller frees). -1 when a field is too long.
 * received_ms: when relay received the event (unix ms), for the dedup rebuild and
 * end-to-end latency. */
int rl_record_encode(const char *source, const rl_event_t *ev, const char *event_json,
                     uint64_t received_ms, uint8_t **out, size_t *out_len);
/* Encodes one payload with the CloudEvent of `ev` (as rl_record_cloudevent makes
 * it) written straight into it: one allocation, no intermediate JSON string.
 * *out as for rl_record_encode; -1 when a field is too long or out of memory. */
int rl_record_event(const char *source, const char *provider, const rl_event_t *ev,
                    uint64_t received_ms, uint8_t **out, size_t *out_len);
/* Encodes the dead letter of a request received at received_ms: *out as for
 * rl_record_encode, and its CloudEvent id in *id (malloc'd, caller frees). The id
 * is derived from the source and the body, so a provider's retries of one bad
 * body make one dead letter (deduplicated like events). 0, or -1 on
 * out-of-memory. */
int rl_record_deadletter(const rl_deadletter_t *dl, uint64_t received_ms, uint8_t **out,
                         size_t *out_len, char **id);

/* 1 when the payload (as rl_wal_scan gives it) is a dead letter of source
 * `source` received at or after since_ms (unix ms; 0: any time), else 0. */
int rl_record_is_deadletter(const uint8_t *p, size_t len, const char *source, uint64_t since_ms);

/* The id the dedup window knows `rec` by, within its source: the CloudEvent id,
 * or for a scoped event its CloudEvent source, 0x1f and the id (the CloudEvents
 * identity). Returns it with *len: rec's own bytes (not NUL-terminated), or
 * written NUL-terminated into buf when it fits `size`, else malloc'd into *owned
 * (the caller frees *owned, set to NULL when nothing was allocated); NULL on
 * out-of-memory. */
const char *rl_record_dedup_id(const rl_record_t *rec, char *buf, size_t size, size_t *len,
                               char **owned);

/* Decodes a payload into views; -1 when it is malformed. */
int rl_record_decode(const uint8_t *p, size_t len, rl_record_t *rec);

/* Expands {family} {type} {source} {channel_id} in `tpl` into out. When
 * `topic_safe`, characters Kafka does not allow in topic names become '_'.
 * Returns the length, or -1 when out is too small or a variable is unknown. */
int rl_record_render(const char *tpl, const rl_record_t *rec, int topic_safe, char *out,
                     size_t outsz);

/* Checks a template's variables; 0 or -1 with errstr. */
int rl_record_template_check(const char *tpl, char *errstr, size_t errstr_size);

#endif
