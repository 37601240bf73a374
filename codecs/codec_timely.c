/* codec_timely.c -- Timely.ai workspace webhooks.
 *
 * One event per request: {"event","event_id","timestamp","workspace_id","data"}.
 * Timely's own event names are already the normalized vocabulary, so a known name
 * keeps its type; any other name becomes the provider-scoped "timely.<event>". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf; the Makefile passes -D_GNU_SOURCE already */
#endif
#include "codec_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct timely_type {
    const char *event;     /* Timely's name, which is also the normalized type */
    const char *at_field;  /* the data field that says when it happened */
    const char *status;    /* channel status when data.status is absent or unknown */
    const char *direction; /* message direction when data.direction is absent */
} timely_type_t;

static const timely_type_t timely_types[] = {
    {"channel.connected", "connected_at", "connected", NULL},
    {"channel.disconnected", "disconnected_at", "disconnected", NULL},
    {"channel.error", "occurred_at", "degraded", NULL},
    {"message.received", "received_at", NULL, "inbound"},
    /* sent, delivered, read and failed all concern a message the workspace sent. */
    {"message.sent", "sent_at", NULL, "outbound"},
    {"message.delivered", "delivered_at", NULL, "outbound"},
    {"message.read", "read_at", NULL, "outbound"},
    {"message.failed", "failed_at", NULL, "outbound"},
    {NULL, NULL, NULL, NULL},
};

static const char *const channel_statuses[] = {"connected", "connecting",   "pairing",
                                               "degraded",  "disconnected", NULL};

static const timely_type_t *find_type(const char *event)
{
    for (const timely_type_t *t = timely_types; t->event; t++)
        if (strcmp(t->event, event) == 0)
            return t;
    return NULL;
}

/* `s` when it is one of the NULL-terminated `allowed`, else `fallback`: the
 * normalized fields are enums, and raw keeps whatever Timely sent. */
static const char *one_of(const char *s, const char *const *allowed, const char *fallback)
{
    for (size_t i = 0; s && allowed[i]; i++)
        if (strcmp(s, allowed[i]) == 0)
            return s;
    return fallback;
}

/* The event id: Timely's event_id, or, when the quick-start style body has none,
 * "timely_" + hash(event, message_id or channel_id, timestamp as sent) so that a
 * retry of the same body keeps its id (*derived = 1). Returns a malloc'd string
 * or NULL. */
static char *timely_id(rl_jdoc_t *d, int data, const char *event, int *derived)
{
    int given = rl_jdoc_get(d, 0, "event_id");
    const char *ref = cu_str(d, data, "message_id"), *text;
    const char *parts[3];
    char ts[32];
    size_t len;

    *derived = 0;
    if ((text = rl_jdoc_str(d, given, &len)) && len > 0)
        return strdup(text);
    /* An integer: not documented, but an id all the same. */
    if (rl_jdoc_type(d, given) == RL_JNUMBER && (text = cu_text(d, given, ts, sizeof(ts))))
        return strdup(text);
    if (!ref)
        ref = cu_str(d, data, "channel_id");
    parts[0] = event;
    parts[1] = ref;
    parts[2] = cu_text(d, rl_jdoc_get(d, 0, "timestamp"), ts, sizeof(ts));
    *derived = 1;
    return cu_derive_id("timely_", parts, 3);
}

/* Fills `f` with the fields of `data` for `event`; returns their count. `code`
 * (TIMELY_CODE_SIZE bytes) holds a numeric error code's text. */
#define TIMELY_CODE_SIZE 32
static size_t timely_fields(rl_jdoc_t *d, int data, const timely_type_t *tt, const char *occurred,
                            char *code, rl_field_t *f)
{
    if (!tt)
        return cu_other_fields(cu_str(d, data, "channel_id"), occurred, d, 0, f);
    if (tt->status) {
        cu_channel_t ch = {
            .channel_id = cu_str(d, data, "channel_id"),
            .channel_type = cu_str(d, data, "channel_type"),
            .provider = cu_str(d, data, "provider"),
            .status = one_of(cu_str(d, data, "status"), channel_statuses, tt->status),
            .reason = cu_str(d, data, "disconnection_reason"),
            /* Documented as a string; tolerate a number. */
            .error_code = cu_text(d, rl_jdoc_get(d, data, "error_code"), code, TIMELY_CODE_SIZE),
            .error_message = cu_str(d, data, "error_message"),
            .error_category = cu_str(d, data, "error_category"),
            .occurred_at = occurred,
        };
        return cu_channel_fields(&ch, d, 0, f);
    }
    static const char *const directions[] = {"inbound", "outbound", NULL};
    cu_message_t m = {
        .message_id = cu_str(d, data, "message_id"),
        .conversation_id = cu_str(d, data, "conversation_id"),
        .contact_id = cu_str(d, data, "contact_id"),
        .direction = one_of(cu_str(d, data, "direction"), directions, tt->direction),
        .content_type = cu_str(d, data, "type"),
        .content = cu_str(d, data, "content"),
        .media_url = cu_str(d, data, "media_url"),
        .occurred_at = occurred,
        .sent_by_type = cu_str(d, data, "sent_by_type"),
        /* Not in Timely's documented message bodies; kept when a failure carries them. */
        .error_code = cu_text(d, rl_jdoc_get(d, data, "error_code"), code, TIMELY_CODE_SIZE),
        .error_message = cu_str(d, data, "error_message"),
    };
    return cu_message_fields(&m, d, 0, f);
}

static int timely_decode(rl_jdoc_t *d, const rl_codec_in_t *in, rl_event_list_t *out, char *errstr,
                         size_t errsize)
{
    const timely_type_t *tt;
    const char *event, *channel_id;
    char occurred[CU_TIME_SIZE] = "", code[TIMELY_CODE_SIZE];
    char *id = NULL, *type = NULL;
    rl_field_t f[CU_MAX_FIELDS];
    size_t nf;
    int data, rc = -1, derived = 0;

    (void)in; /* nothing beside the body */
    if (!d || rl_jdoc_type(d, 0) != RL_JOBJECT) {
        cu_error(errstr, errsize, "timely: body is not a JSON object");
        goto done;
    }
    event = cu_str(d, 0, "event");
    if (!event || !event[0]) {
        cu_error(errstr, errsize, "timely: \"event\" is missing or not a non-empty string");
        goto done;
    }
    data = rl_jdoc_get(d, 0, "data");
    if (rl_jdoc_type(d, data) != RL_JOBJECT) {
        cu_error(errstr, errsize, "timely: \"data\" is missing or not an object");
        goto done;
    }

    /* When it happened: the type's own *_at field, else the envelope's timestamp.
     * Unknown events may still carry occurred_at. Left "" (unknown) otherwise. */
    tt = find_type(event);
    if (cu_time_any(d, rl_jdoc_get(d, data, tt ? tt->at_field : "occurred_at"), occurred,
                    sizeof(occurred)) != 0 &&
        cu_time_any(d, rl_jdoc_get(d, 0, "timestamp"), occurred, sizeof(occurred)) != 0)
        occurred[0] = '\0';

    channel_id = cu_str(d, data, "channel_id");
    id = timely_id(d, data, event, &derived);
    if (tt)
        type = strdup(event);
    else if (asprintf(&type, "timely.%s", event) < 0)
        type = NULL;
    nf = timely_fields(d, data, tt, occurred[0] ? occurred : NULL, code, f);
    if (!type || !id) {
        rc = RL_CODEC_NOMEM;
        cu_error(errstr, errsize, "timely: out of memory");
        goto done;
    }
    rc = cu_emit(out, id, type, channel_id, cu_str(d, 0, "workspace_id"), occurred, f, nf);
    id = NULL; /* stolen by cu_emit */
    if (rc)
        cu_error(errstr, errsize, "timely: out of memory");
    else
        out->v[out->n - 1].id_derived = derived;
done:
    free(id);
    free(type);
    return rc;
}

const rl_codec_t rl_codec_timely = {
    .name = "timely",
    .help = "Timely.ai workspace webhooks (channel.* and message.* events, one per request)",
    .decode = timely_decode,
};
