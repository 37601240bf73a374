/* record.h -- what relay stores in one WAL record for one event, and how the
 * sinks name its destination.
 *
 * Payload: u8 version | u64 received_ms | u16 len + source | u16 len + id | u16 len + type |
 *          u16 len + channel_id | u16 len + CloudEvent source | u32 len + CloudEvent JSON
 * The routing fields sit beside the JSON so that sinks never parse it. */
#ifndef RL_RECORD_H
#define RL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/* A view into a payload: no field is NUL-terminated and none is owned. */
typedef struct rl_record {
    const char *source, *id, *type, *channel_id, *ce_source, *event;
    size_t source_len, id_len, type_len, channel_id_len, ce_source_len, event_len;
    uint64_t received_ms; /* when relay received the event (unix ms) */
} rl_record_t;

/* Builds the structured CloudEvent of `ev` received on source `source` by codec
 * `provider`. Returns a malloc'd compact JSON string (caller frees), NULL on
 * out-of-memory. */
char *rl_record_cloudevent(const rl_event_t *ev, const char *source, const char *provider);

/* Encodes one payload; *out is malloc'd (caller frees). -1 when a field is too long.
 * received_ms: when relay received the event (unix ms), for the dedup rebuild and
 * end-to-end latency. */
int rl_record_encode(const char *source, const rl_event_t *ev, const char *event_json,
                     uint64_t received_ms, uint8_t **out, size_t *out_len);
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
