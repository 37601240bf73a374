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
static char *timely_id(json_t *root, json_t *data, const char *event, int *derived)
{
    json_t *given = json_object_get(root, "event_id");
    const char *ref = cu_str(data, "message_id");
    const char *parts[3];
    char ts[32];

    *derived = 0;
    if (json_is_string(given) && json_string_length(given) > 0)
        return strdup(json_string_value(given));
    if (json_is_integer(given)) /* not documented, but an id all the same */
        return strdup(cu_text(given, ts, sizeof(ts)));
    if (!ref)
        ref = cu_str(data, "channel_id");
    parts[0] = event;
    parts[1] = ref;
    parts[2] = cu_text(json_object_get(root, "timestamp"), ts, sizeof(ts));
    *derived = 1;
    return cu_derive_id("timely_", parts, 3);
}

/* Builds `data` for `event` (one new reference) or NULL on out-of-memory. */
static json_t *timely_data(json_t *root, json_t *data, const timely_type_t *tt,
                           const char *occurred)
{
    char code[32];

    if (!tt)
        return cu_other_data(cu_str(data, "channel_id"), occurred, root);
    if (tt->status) {
        cu_channel_t f = {
            .channel_id = cu_str(data, "channel_id"),
            .channel_type = cu_str(data, "channel_type"),
            .provider = cu_str(data, "provider"),
            .status = one_of(cu_str(data, "status"), channel_statuses, tt->status),
            .reason = cu_str(data, "disconnection_reason"),
            /* Documented as a string; tolerate a number. */
            .error_code = cu_text(json_object_get(data, "error_code"), code, sizeof(code)),
            .error_message = cu_str(data, "error_message"),
            .error_category = cu_str(data, "error_category"),
            .occurred_at = occurred,
        };
        return cu_channel_data(&f, root);
    }
    static const char *const directions[] = {"inbound", "outbound", NULL};
    cu_message_t m = {
        .message_id = cu_str(data, "message_id"),
        .conversation_id = cu_str(data, "conversation_id"),
        .contact_id = cu_str(data, "contact_id"),
        .direction = one_of(cu_str(data, "direction"), directions, tt->direction),
        .content_type = cu_str(data, "type"),
        .content = cu_str(data, "content"),
        .media_url = cu_str(data, "media_url"),
        .occurred_at = occurred,
        .sent_by_type = cu_str(data, "sent_by_type"),
    };
    return cu_message_data(&m, root);
}

static int timely_decode(json_t *root, rl_event_list_t *out, char *errstr, size_t errsize)
{
    const timely_type_t *tt;
    const char *event, *channel_id;
    char occurred[CU_TIME_SIZE] = "";
    char *id = NULL, *type = NULL;
    json_t *data, *payload = NULL; /* payload: owned until cu_emit steals it */
    int rc = -1, derived = 0;

    if (!json_is_object(root)) {
        cu_error(errstr, errsize, "timely: body is not a JSON object");
        goto done;
    }
    event = cu_str(root, "event");
    if (!event || !event[0]) {
        cu_error(errstr, errsize, "timely: \"event\" is missing or not a non-empty string");
        goto done;
    }
    data = json_object_get(root, "data");
    if (!json_is_object(data)) {
        cu_error(errstr, errsize, "timely: \"data\" is missing or not an object");
        goto done;
    }

    /* When it happened: the type's own *_at field, else the envelope's timestamp.
     * Unknown events may still carry occurred_at. Left "" (unknown) otherwise. */
    tt = find_type(event);
    if (cu_time_any(json_object_get(data, tt ? tt->at_field : "occurred_at"), occurred,
                    sizeof(occurred)) != 0 &&
        cu_time_any(json_object_get(root, "timestamp"), occurred, sizeof(occurred)) != 0)
        occurred[0] = '\0';

    channel_id = cu_str(data, "channel_id");
    id = timely_id(root, data, event, &derived);
    if (tt)
        type = strdup(event);
    else if (asprintf(&type, "timely.%s", event) < 0)
        type = NULL;
    payload = timely_data(root, data, tt, occurred[0] ? occurred : NULL);
    if (!type || !payload || !id) {
        cu_error(errstr, errsize, "timely: out of memory");
        goto done;
    }
    rc = cu_emit(out, id, type, channel_id, cu_str(root, "workspace_id"), occurred, payload);
    id = NULL; /* stolen by cu_emit */
    payload = NULL;
    if (rc)
        cu_error(errstr, errsize, "timely: out of memory");
    else
        out->v[out->n - 1].id_derived = derived;
done:
    free(id);
    free(type);
    json_decref(payload);
    return rc;
}

const rl_codec_t rl_codec_timely = {
    .name = "timely",
    .help = "Timely.ai workspace webhooks (channel.* and message.* events, one per request)",
    .decode = timely_decode,
};
