/* codec_whapi.c -- Whapi.Cloud WhatsApp API webhooks.
 *
 * A body is one object: "event":{"type","event"}, "channel_id", and one or more
 * collections, each an array of items or a single object ("health", "user").
 * Every array item and every single object is its own event.
 *
 * Whapi sends no event id, so ids are derived ("whapi_" + hash) from what
 * identifies the item, so that a retried webhook gets the same ids:
 *   - messages.post/put:  channel_id, type, event, message id
 *   - statuses.post:      channel_id, type, event, message id, status
 *   - channels.post:      channel_id, health.start_at, health.uptime, status text
 *   - any other single object (users, ...): the canonical body and the object's
 *     key (two objects of one body must not share an id)
 *   - any other array item: channel_id, type, event, the item's canonical JSON.
 *     Entity ids (a chat's, a group's) are not event ids: two updates of one chat
 *     must not collide, so the whole item is hashed, not its "id".
 * A message or status item without an "id" falls back to the last two rules.
 *
 * "raw" is the array item, or the whole body for a single object (so the
 * collection's key and the envelope are kept, as for health and users). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, strndup; the Makefile passes -D_GNU_SOURCE already */
#endif
#include "codec_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WHAPI_SANE_SECONDS 100000000000LL /* 1e11: beyond any Whapi start_at or uptime */

typedef struct whapi_ctx {
    rl_jdoc_t *d;           /* the body (borrowed from the caller); its root is 0 */
    const char *channel_id; /* the envelope's channel_id */
    const char *type;       /* the collection; "channel" is spelled "channels" */
    const char *event;      /* post, put, patch, delete, ... */
    const char *key;        /* the body's member being decoded ("messages", "health") */
    rl_event_list_t *out;
    char *errstr;
    size_t errsize;
} whapi_ctx_t;

/* channels.post health status text -> normalized. Whapi's codes are not fully
 * documented (STOP and SYNC_ERROR have none), so the text is authoritative. */
typedef struct health_map {
    const char *text, *type, *status, *reason, *error_category;
} health_map_t;

static const health_map_t health_map[] = {
    {"INIT", "channel.connecting", "connecting", NULL, NULL},
    {"LAUNCH", "channel.connecting", "connecting", NULL, NULL},
    {"QR", "channel.pairing", "pairing", NULL, NULL},
    {"AUTH", "channel.connected", "connected", NULL, NULL},
    /* SYNC_ERROR: sending still works, fetching does not: the API side is broken. */
    {"SYNC_ERROR", "channel.error", "degraded", NULL, "provider_error"},
    {"ERROR", "channel.error", "degraded", NULL, "unknown"},
    {"STOP", "channel.disconnected", "disconnected", "stopped", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* statuses.post status -> normalized type; pending, deleted and anything else
 * stay provider-scoped ("whapi.statuses.post"). */
static const char *const status_map[][2] = {
    {"sent", "message.sent"},     {"delivered", "message.delivered"},
    {"read", "message.read"},     {"played", "message.read"}, /* a voice message listened to */
    {"failed", "message.failed"}, {NULL, NULL},
};

static int is(const whapi_ctx_t *c, const char *type, const char *event)
{
    return strcmp(c->type, type) == 0 && strcmp(c->event, event) == 0;
}

static int oom(whapi_ctx_t *c)
{
    cu_error(c->errstr, c->errsize, "whapi: out of memory");
    return RL_CODEC_NOMEM;
}

/* The derived id of an item (rules at the top of the file). `msg_id` is the
 * item's own message id, NULL when it has none or must not be used; `status` is
 * appended when not NULL. Returns a malloc'd string or NULL. */
static char *item_id(whapi_ctx_t *c, int item, int single, const char *msg_id, const char *status)
{
    const char *parts[5] = {c->channel_id, c->type, c->event, msg_id, status};
    char *canon = NULL, *id = NULL;

    if (msg_id)
        return cu_derive_id("whapi_", parts, status ? 5 : 4);
    if (!(canon = cu_canonical(c->d, single ? 0 : item)))
        return NULL;
    if (single) {
        parts[0] = canon;
        parts[1] = c->key;
        id = cu_derive_id("whapi_", parts, 2);
    } else {
        parts[3] = canon;
        id = cu_derive_id("whapi_", parts, 4);
    }
    free(canon);
    return id;
}

/* Appends an event; steals `id` (see cu_emit). */
static int emit(whapi_ctx_t *c, char *id, const char *type, const char *occurred,
                const rl_field_t *f, size_t n)
{
    if (cu_emit(c->out, id, type, c->channel_id, NULL, occurred, f, n))
        return oom(c);
    c->out->v[c->out->n - 1].id_derived = 1; /* Whapi sends no event ids */
    return 0;
}

/* A provider-scoped event "whapi.<type>.<event>". Steals `id` (NULL: derive it
 * from the item; callers that derive their own check for out-of-memory first).
 * `occurred` NULL means: take the item's "timestamp" if it has one. */
static int whapi_other(whapi_ctx_t *c, int item, int single, char *id, const char *occurred)
{
    char when[CU_TIME_SIZE] = "";
    char *type = NULL;
    rl_field_t f[CU_MAX_FIELDS];
    int rc;

    if (!occurred &&
        cu_time_unix(c->d, rl_jdoc_get(c->d, item, "timestamp"), when, sizeof(when)) == 0)
        occurred = when;
    if (!id)
        id = item_id(c, item, single, NULL, NULL);
    if (asprintf(&type, "whapi.%s.%s", c->type, c->event) < 0)
        type = NULL;
    if (!id || !type) {
        free(id);
        free(type);
        return oom(c);
    }
    rc = emit(c, id, type, occurred, f,
              cu_other_fields(c->channel_id, occurred, c->d, single ? 0 : item, f));
    free(type);
    return rc;
}

/* The number part of a WhatsApp id ("919984351847@s.whatsapp.net"): malloc'd,
 * NULL when `jid` is NULL. *failed is set on out-of-memory. */
static char *jid_number(const char *jid, int *failed)
{
    char *n;

    if (!jid)
        return NULL;
    if (!(n = strndup(jid, strcspn(jid, "@"))))
        *failed = 1;
    return n;
}

/* messages.post / messages.put: from_me decides received or sent. */
static int whapi_message(whapi_ctx_t *c, int item, int single)
{
    rl_jdoc_t *d = c->d;
    rl_jtype_t from_me = rl_jdoc_type(d, rl_jdoc_get(d, item, "from_me"));
    const char *chat = cu_str(d, item, "chat_id"), *mtype = cu_str(d, item, "type");
    int media = mtype ? rl_jdoc_get(d, item, mtype) : -1; /* e.g. item.image */
    char occurred[CU_TIME_SIZE] = "";
    char *number = NULL, *id;
    rl_field_t f[CU_MAX_FIELDS];
    int outbound, failed = 0, rc;

    /* Without from_me the direction is unknown: keep the item, unmapped. */
    if (from_me != RL_JTRUE && from_me != RL_JFALSE) {
        if (!(id = item_id(c, item, single, cu_str(d, item, "id"), NULL)))
            return oom(c);
        return whapi_other(c, item, single, id, NULL);
    }
    outbound = from_me == RL_JTRUE;
    cu_time_unix(d, rl_jdoc_get(d, item, "timestamp"), occurred, sizeof(occurred));
    if (outbound)
        number = jid_number(chat, &failed);
    const char *content = cu_str(d, rl_jdoc_get(d, item, "text"), "body");
    cu_message_t m = {
        .message_id = cu_str(d, item, "id"),
        .conversation_id = chat,
        /* Inbound: the sender (in a group, the participant); outbound: the chat. */
        .contact_id = outbound ? number : cu_str(d, item, "from"),
        .direction = outbound ? "outbound" : "inbound",
        .content_type = mtype,
        .content = content ? content : cu_str(d, media, "caption"),
        .media_url = cu_str(d, media, "link"),
        .occurred_at = occurred[0] ? occurred : NULL,
    };
    id = item_id(c, item, single, m.message_id, NULL);
    if (failed) {
        free(id);
        rc = oom(c);
    } else {
        rc = emit(c, id, outbound ? "message.sent" : "message.received", m.occurred_at, f,
                  cu_message_fields(&m, d, single ? 0 : item, f));
    }
    free(number);
    return rc;
}

/* statuses.post: delivery receipts for messages the channel sent. */
static int whapi_status(whapi_ctx_t *c, int item, int single)
{
    rl_jdoc_t *d = c->d;
    const char *status = cu_str(d, item, "status"), *type = NULL;
    const char *recipient = cu_str(d, item, "recipient_id"), *chat = cu_str(d, item, "chat_id");
    char occurred[CU_TIME_SIZE] = "";
    rl_field_t f[CU_MAX_FIELDS];
    char *number = NULL, *id;
    int failed = 0, rc;

    for (size_t i = 0; status && status_map[i][0]; i++)
        if (strcmp(status, status_map[i][0]) == 0)
            type = status_map[i][1];
    if (!(id = item_id(c, item, single, cu_str(d, item, "id"), status ? status : "")))
        return oom(c);
    if (!type)
        return whapi_other(c, item, single, id, NULL);

    /* The timestamp is a string of seconds here, unlike messages'. */
    cu_time_unix(d, rl_jdoc_get(d, item, "timestamp"), occurred, sizeof(occurred));
    number = jid_number(recipient, &failed);
    cu_message_t m = {
        .message_id = cu_str(d, item, "id"),
        .conversation_id = chat ? chat : recipient,
        .contact_id = number,
        .direction = "outbound",
        .occurred_at = occurred[0] ? occurred : NULL,
    };
    if (failed) {
        free(id);
        rc = oom(c);
    } else {
        rc = emit(c, id, type, m.occurred_at, f, cu_message_fields(&m, d, single ? 0 : item, f));
    }
    free(number);
    return rc;
}

/* channels.post: the channel's health object. */
static int whapi_health(whapi_ctx_t *c, int item, int single)
{
    rl_jdoc_t *d = c->d;
    int st = rl_jdoc_get(d, item, "status");
    int start = rl_jdoc_get(d, item, "start_at"), up = rl_jdoc_get(d, item, "uptime");
    const char *text = cu_str(d, st, "text");
    const health_map_t *map = NULL;
    char occurred[CU_TIME_SIZE] = "", s1[32], s2[32], code[32];
    const char *error_code;
    const char *parts[4] = {c->channel_id, cu_text(d, start, s1, sizeof(s1)),
                            cu_text(d, up, s2, sizeof(s2)), text};
    char *id = cu_derive_id("whapi_", parts, 4);
    rl_field_t f[CU_MAX_FIELDS];
    long long t, u;

    /* The status changed at start_at + uptime (both seconds). The bounds keep the
     * sum from overflowing; cu_time_epoch rejects what is out of range anyway. */
    if (rl_jdoc_int(d, start, &t) == 0 && t >= 0 && t < WHAPI_SANE_SECONDS) {
        if (rl_jdoc_int(d, up, &u) == 0 && u >= 0 && u < WHAPI_SANE_SECONDS)
            t += u;
        cu_time_epoch(t, occurred, sizeof(occurred));
    }
    for (size_t i = 0; text && health_map[i].text; i++)
        if (strcasecmp(text, health_map[i].text) == 0)
            map = &health_map[i];
    if (!id)
        return oom(c);
    if (!map)
        return whapi_other(c, item, single, id, occurred[0] ? occurred : NULL);

    int error = strcmp(map->type, "channel.error") == 0;
    error_code = cu_text(d, rl_jdoc_get(d, st, "code"), code, sizeof(code));
    cu_channel_t ch = {
        .channel_id = c->channel_id,
        .channel_type = "whatsapp",
        .provider = "whapi",
        .status = map->status,
        .reason = map->reason,
        .error_code = error ? error_code : NULL,
        .error_message = error ? text : NULL,
        .error_category = map->error_category,
        .occurred_at = occurred[0] ? occurred : NULL,
    };
    return emit(c, id, map->type, ch.occurred_at, f,
                cu_channel_fields(&ch, d, single ? 0 : item, f));
}

/* users.post (logged in) and users.delete (logged out). */
static int whapi_user(whapi_ctx_t *c, int item, int single)
{
    int post = strcmp(c->event, "post") == 0;
    char occurred[CU_TIME_SIZE] = "";
    char *id = item_id(c, item, single, NULL, NULL);
    rl_field_t f[CU_MAX_FIELDS];

    cu_time_unix(c->d, rl_jdoc_get(c->d, item, "timestamp"), occurred, sizeof(occurred));
    cu_channel_t ch = {
        .channel_id = c->channel_id,
        .channel_type = "whatsapp",
        .provider = "whapi",
        .status = post ? "connected" : "disconnected",
        .reason = post ? NULL : "logged_out",
        .occurred_at = occurred[0] ? occurred : NULL,
    };
    if (!id)
        return oom(c);
    return emit(c, id, post ? "channel.connected" : "channel.disconnected", ch.occurred_at, f,
                cu_channel_fields(&ch, c->d, single ? 0 : item, f));
}

/* One item of collection `key`: an array element (single = 0) or a lone object
 * (single = 1). Health and user mappings need their own key, so that anything
 * else in such a body stays unmapped with an id of its own. */
static int whapi_item(whapi_ctx_t *c, int item, int single)
{
    const char *key = c->key;

    if (rl_jdoc_type(c->d, item) == RL_JOBJECT) {
        if (is(c, "messages", "post") || is(c, "messages", "put"))
            return whapi_message(c, item, single);
        if (is(c, "statuses", "post"))
            return whapi_status(c, item, single);
        if (is(c, "channels", "post") && strcmp(key, "health") == 0)
            return whapi_health(c, item, single);
        if ((is(c, "users", "post") || is(c, "users", "delete")) &&
            (strcmp(key, "user") == 0 || strcmp(key, "users") == 0))
            return whapi_user(c, item, single);
    }
    return whapi_other(c, item, single, NULL, NULL);
}

/* Every collection beside "event" and "channel_id": arrays item by item, objects
 * as one item; *items counts them. 0 or the failure of an item. */
static int whapi_collections(whapi_ctx_t *c, size_t *items)
{
    rl_jdoc_t *d = c->d;
    cu_member_t *ms = NULL;
    size_t n = 0;
    int rc = RL_CODEC_NOMEM;

    if (cu_members(d, 0, &ms, &n) != 0) {
        oom(c);
        goto done;
    }
    rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int value = ms[i].value;
        c->key = rl_jdoc_str(d, ms[i].key, NULL); /* decoded by cu_members already */
        if (!strcmp(c->key, "event") || !strcmp(c->key, "channel_id"))
            continue;
        if (rl_jdoc_type(d, value) == RL_JARRAY) {
            for (int e = rl_jdoc_first(d, value); rc == 0 && e >= 0;
                 e = rl_jdoc_next(d, value, e)) {
                rc = whapi_item(c, e, 0);
                (*items)++;
            }
        } else if (rl_jdoc_type(d, value) == RL_JOBJECT) {
            rc = whapi_item(c, value, 1);
            (*items)++;
        }
        /* Scalars beside the collections are envelope metadata, not items. */
    }
done:
    free(ms);
    return rc;
}

static int whapi_decode(rl_jdoc_t *d, const rl_codec_in_t *in, rl_event_list_t *out, char *errstr,
                        size_t errsize)
{
    whapi_ctx_t c = {.d = d, .out = out, .errstr = errstr, .errsize = errsize};
    size_t items = 0;
    int ev, rc = -1;

    (void)in; /* nothing beside the body */
    if (!d || rl_jdoc_type(d, 0) != RL_JOBJECT) {
        cu_error(errstr, errsize, "whapi: body is not a JSON object");
        goto done;
    }
    ev = rl_jdoc_get(d, 0, "event");
    c.type = cu_str(d, ev, "type");
    c.event = cu_str(d, ev, "event");
    if (!c.type || !c.type[0] || !c.event || !c.event[0]) {
        cu_error(errstr, errsize,
                 "whapi: \"event\" is missing or not an object with string \"type\" "
                 "and \"event\"");
        goto done;
    }
    c.channel_id = cu_str(d, 0, "channel_id");
    if (!c.channel_id || !c.channel_id[0]) {
        cu_error(errstr, errsize, "whapi: \"channel_id\" is missing or not a string");
        goto done;
    }
    /* The health webhook says "channel" where the settings say "channels". */
    if (strcmp(c.type, "channel") == 0)
        c.type = "channels";
    if ((rc = whapi_collections(&c, &items)) != 0)
        goto done;
    if (items == 0)
        rc = cu_error(errstr, errsize,
                      "whapi: no items (no array or object beside \"event\" and "
                      "\"channel_id\")");
done:
    return rc;
}

const rl_codec_t rl_codec_whapi = {
    .name = "whapi",
    .help = "Whapi.Cloud WhatsApp API webhooks (arrays of items, one event per item)",
    .decode = whapi_decode,
};
