/* codec_meta.c -- Meta's WhatsApp Cloud API webhooks.
 *
 * A body is {"object":"whatsapp_business_account","entry":[{"id","changes":[
 * {"field","value"}]}]}: any number of entries (one per business account), each
 * with any number of changes. A change of field "messages" carries the number
 * it concerns (value.metadata.phone_number_id) and arrays of `messages` (what
 * users sent) and `statuses` (receipts of what the business sent); every item
 * of both is its own event. Any other field (account_update,
 * message_template_status_update, ...) is one event, "meta.<field>".
 *
 * Ids: an inbound message keeps its wamid, which Meta repeats on a retry. A
 * status has no id of its own (one wamid gets sent, delivered, read), so it is
 * "meta_" + hash(wamid, status); another change, hash(entry id, field, the
 * canonical value). The channel is the phone_number_id, the workspace the
 * business account (entry.id).
 *
 * The subscription check is a GET with hub.mode=subscribe, hub.verify_token
 * and hub.challenge: answered with the challenge when the token is the
 * source's verify_token. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf; the Makefile passes -D_GNU_SOURCE already */
#endif
#include "codec_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define META_OBJECT "whatsapp_business_account"

typedef struct meta_conf {
    const char *verify_token; /* borrowed from the source's settings; "" when unset */
} meta_conf_t;

typedef struct meta_ctx {
    rl_jdoc_t *d;
    const char *waba;  /* entry.id: the WhatsApp Business Account */
    const char *phone; /* value.metadata.phone_number_id of the change */
    char waba_buf[32];
    rl_event_list_t *out;
    char *errstr;
    size_t errsize;
} meta_ctx_t;

/* The status values with a normalized type; any other stays meta.statuses.*. */
static const char *const status_map[][2] = {
    {"sent", "message.sent"},
    {"delivered", "message.delivered"},
    {"read", "message.read"},
    {"failed", "message.failed"},
    {NULL, NULL},
};

/* Where a message type keeps its text, in the member named after the type
 * (item.text.body, item.button.text, ...). Types not listed are media (image,
 * video, document, sticker, ...), whose text is their "caption"; interactive
 * replies are looked up apart. */
static const char *const content_member[][2] = {
    {"text", "body"},  {"button", "text"}, {"reaction", "emoji"},
    {"order", "text"}, {"system", "body"}, {NULL, NULL},
};

static int oom(meta_ctx_t *c)
{
    cu_error(c->errstr, c->errsize, "meta: out of memory");
    return RL_CODEC_NOMEM;
}

/* Appends an event of the current change; steals `id` (see cu_emit). */
static int emit(meta_ctx_t *c, char *id, int derived, const char *type, const char *occurred,
                const rl_field_t *f, size_t n)
{
    if (cu_emit(c->out, id, type, c->phone, c->waba, occurred, f, n))
        return oom(c);
    c->out->v[c->out->n - 1].id_derived = derived;
    return 0;
}

/* "meta_" + hash(ref, what); an item without a wamid (`ref` NULL) is named by
 * its canonical JSON instead, so that a retry still repeats the id. Returns a
 * malloc'd string or NULL. */
static char *derived_id(meta_ctx_t *c, int item, const char *ref, const char *what)
{
    char *canon = NULL, *id = NULL;
    const char *parts[2] = {ref, what};

    if (!ref && !(parts[0] = canon = cu_canonical(c->d, item)))
        return NULL;
    id = cu_derive_id("meta_", parts, 2);
    free(canon);
    return id;
}

/* The text of a message: text.body, a media's caption, an interactive reply's
 * title, a button's text, a reaction's emoji, ...; NULL when the type has none
 * (location, contacts, unsupported). */
static const char *message_content(rl_jdoc_t *d, int item, const char *type)
{
    int member = type ? rl_jdoc_get(d, item, type) : -1;
    const char *key = "caption", *s;

    if (type && strcmp(type, "interactive") == 0) {
        /* {"type":"button_reply","button_reply":{"id","title"}}, list_reply alike;
         * a flow's nfm_reply has a "body" instead. */
        const char *kind = cu_str(d, member, "type");
        int reply = kind ? rl_jdoc_get(d, member, kind) : -1;
        return (s = cu_str(d, reply, "title")) ? s : cu_str(d, reply, "body");
    }
    for (size_t i = 0; type && content_member[i][0]; i++)
        if (strcmp(type, content_member[i][0]) == 0)
            key = content_member[i][1];
    return cu_str(d, member, key);
}

/* errors[0] of a message or status: its code as text (into code) and
 * "title: details" in *message (malloc'd; NULL when there is no title or
 * details). 0, or -1 on out-of-memory. */
static int first_error(rl_jdoc_t *d, int item, char *code, size_t size, const char **code_out,
                       char **message)
{
    int err = rl_jdoc_first(d, rl_jdoc_get(d, item, "errors"));
    const char *title = cu_str(d, err, "title");
    const char *details = cu_str(d, rl_jdoc_get(d, err, "error_data"), "details");

    *message = NULL;
    *code_out = cu_text(d, rl_jdoc_get(d, err, "code"), code, size);
    if (!title)
        title = cu_str(d, err, "message");
    /* Meta often repeats the title as the details: say it once. */
    if (title && details && strcmp(title, details) != 0) {
        if (asprintf(message, "%s: %s", title, details) < 0) {
            *message = NULL;
            return -1;
        }
        return 0;
    }
    if ((title || details) && !(*message = strdup(title ? title : details)))
        return -1;
    return 0;
}

/* A provider-scoped event of the change: raw is `raw`, the id is given. */
static int meta_other(meta_ctx_t *c, char *id, const char *type, int raw, const char *occurred)
{
    rl_field_t f[CU_MAX_FIELDS];

    if (!id)
        return oom(c);
    return emit(c, id, 1, type, occurred, f, cu_other_fields(c->phone, occurred, c->d, raw, f));
}

/* One messages[] item: what a user sent the business number. */
static int meta_message(meta_ctx_t *c, int item)
{
    rl_jdoc_t *d = c->d;
    const char *wamid = cu_str(d, item, "id"), *type = cu_str(d, item, "type");
    const char *from = cu_str(d, item, "from");
    char occurred[CU_TIME_SIZE] = "", code[32];
    char *id = NULL, *message = NULL;
    rl_field_t f[CU_MAX_FIELDS];
    int rc;

    cu_time_unix(d, rl_jdoc_get(d, item, "timestamp"), occurred, sizeof(occurred));
    cu_message_t m = {
        .message_id = wamid,
        /* In Meta's model the chat is the contact: there is no other chat id. */
        .conversation_id = from,
        .contact_id = from,
        .direction = "inbound",
        .content_type = type,
        .content = message_content(d, item, type),
        /* Meta gives a media id to fetch with the Graph API, not a URL. */
        .media_url = NULL,
        .occurred_at = occurred[0] ? occurred : NULL,
    };
    if (first_error(d, item, code, sizeof(code), &m.error_code, &message) != 0)
        goto nomem;
    m.error_message = message;
    if (!(id = wamid && wamid[0] ? strdup(wamid) : derived_id(c, item, NULL, "message")))
        goto nomem;
    rc = emit(c, id, !(wamid && wamid[0]), "message.received", m.occurred_at, f,
              cu_message_fields(&m, d, item, f));
    goto done;
nomem:
    rc = oom(c);
done:
    free(message);
    return rc;
}

/* One statuses[] item: a receipt for a message the business sent. */
static int meta_status(meta_ctx_t *c, int item)
{
    rl_jdoc_t *d = c->d;
    const char *wamid = cu_str(d, item, "id"), *status = cu_str(d, item, "status");
    const char *recipient = cu_str(d, item, "recipient_id"), *type = NULL;
    char occurred[CU_TIME_SIZE] = "", code[32];
    char *id = NULL, *message = NULL, *scoped = NULL;
    rl_field_t f[CU_MAX_FIELDS];
    int rc;

    for (size_t i = 0; status && status_map[i][0]; i++)
        if (strcmp(status, status_map[i][0]) == 0)
            type = status_map[i][1];
    cu_time_unix(d, rl_jdoc_get(d, item, "timestamp"), occurred, sizeof(occurred));
    /* The status is part of the id: one wamid is sent, then delivered, then read. */
    if (!(id = derived_id(c, item, wamid, status ? status : "")))
        goto nomem;
    if (!type) {
        if (asprintf(&scoped, status && status[0] ? "meta.statuses.%s" : "meta.statuses", status) <
            0) {
            scoped = NULL;
            goto nomem;
        }
        rc = meta_other(c, id, scoped, item, occurred[0] ? occurred : NULL);
        id = NULL;
        goto done;
    }
    cu_message_t m = {
        .message_id = wamid,
        .conversation_id = recipient,
        .contact_id = recipient,
        .direction = "outbound",
        .occurred_at = occurred[0] ? occurred : NULL,
    };
    if (first_error(d, item, code, sizeof(code), &m.error_code, &message) != 0)
        goto nomem;
    m.error_message = message;
    rc = emit(c, id, 1, type, m.occurred_at, f, cu_message_fields(&m, d, item, f));
    id = NULL; /* stolen by emit */
    goto done;
nomem:
    rc = oom(c);
done:
    free(id);
    free(message);
    free(scoped);
    return rc;
}

/* The items of array `key` of value `v`, each through fn; *items counts them.
 * An item that is not an object is refused: it cannot be any message. */
static int each_item(meta_ctx_t *c, int v, const char *key, int (*fn)(meta_ctx_t *, int),
                     size_t *items)
{
    int arr = rl_jdoc_get(c->d, v, key), rc = 0;

    if (arr >= 0 && rl_jdoc_type(c->d, arr) != RL_JARRAY)
        return cu_error(c->errstr, c->errsize, "meta: \"%s\" is not an array", key);
    for (int e = rl_jdoc_first(c->d, arr); rc == 0 && e >= 0; e = rl_jdoc_next(c->d, arr, e)) {
        if (rl_jdoc_type(c->d, e) != RL_JOBJECT)
            return cu_error(c->errstr, c->errsize, "meta: an item of \"%s\" is not an object", key);
        rc = fn(c, e);
        (*items)++;
    }
    return rc;
}

/* A change that is not "messages", or one without any message or status (only
 * value.errors, say): one event of its own, raw = the value. */
static int meta_change_other(meta_ctx_t *c, const char *field, int value, int entry)
{
    char occurred[CU_TIME_SIZE] = "";
    char *canon = cu_canonical(c->d, value), *type = NULL, *id = NULL;
    const char *parts[3] = {c->waba, field, canon};
    int rc;

    /* Some fields say when in the value, others in the entry's "time". */
    if (cu_time_unix(c->d, rl_jdoc_get(c->d, value, "timestamp"), occurred, sizeof(occurred)) &&
        cu_time_unix(c->d, rl_jdoc_get(c->d, entry, "time"), occurred, sizeof(occurred)))
        occurred[0] = '\0';
    if (asprintf(&type, "meta.%s", field) < 0)
        type = NULL;
    if (!canon || !type) {
        rc = oom(c);
        goto done;
    }
    id = cu_derive_id("meta_", parts, 3);
    rc = meta_other(c, id, type, value, occurred[0] ? occurred : NULL);
done:
    free(canon);
    free(type);
    return rc;
}

static int meta_change(meta_ctx_t *c, int change, int entry)
{
    rl_jdoc_t *d = c->d;
    const char *field = cu_str(d, change, "field");
    int value = rl_jdoc_get(d, change, "value"), rc;
    size_t items = 0;

    if (!field || !field[0])
        return cu_error(c->errstr, c->errsize, "meta: a change has no string \"field\"");
    if (rl_jdoc_type(d, value) == RL_JNONE)
        return cu_error(c->errstr, c->errsize, "meta: change \"%s\" has no \"value\"", field);
    c->phone = cu_str(d, rl_jdoc_get(d, value, "metadata"), "phone_number_id");
    if (strcmp(field, "messages") != 0)
        return meta_change_other(c, field, value, entry);
    if (!c->phone || !c->phone[0])
        return cu_error(c->errstr, c->errsize,
                        "meta: a \"messages\" change has no value.metadata.phone_number_id");
    if ((rc = each_item(c, value, "messages", meta_message, &items)) != 0 ||
        (rc = each_item(c, value, "statuses", meta_status, &items)) != 0)
        return rc;
    return items ? 0 : meta_change_other(c, field, value, entry);
}

static int meta_entry(meta_ctx_t *c, int entry)
{
    rl_jdoc_t *d = c->d;
    int changes = rl_jdoc_get(d, entry, "changes"), rc = 0;

    if (rl_jdoc_type(d, entry) != RL_JOBJECT)
        return cu_error(c->errstr, c->errsize, "meta: an item of \"entry\" is not an object");
    /* Documented as a string; tolerate a number. */
    c->waba = cu_text(d, rl_jdoc_get(d, entry, "id"), c->waba_buf, sizeof(c->waba_buf));
    if (rl_jdoc_type(d, changes) != RL_JARRAY)
        return cu_error(c->errstr, c->errsize, "meta: an entry has no \"changes\" array");
    for (int ch = rl_jdoc_first(d, changes); rc == 0 && ch >= 0;
         ch = rl_jdoc_next(d, changes, ch)) {
        if (rl_jdoc_type(d, ch) != RL_JOBJECT)
            return cu_error(c->errstr, c->errsize, "meta: a change is not an object");
        rc = meta_change(c, ch, entry);
    }
    return rc;
}

static int meta_decode(rl_jdoc_t *d, const rl_codec_in_t *in, rl_event_list_t *out, char *errstr,
                       size_t errsize)
{
    meta_ctx_t c = {.d = d, .out = out, .errstr = errstr, .errsize = errsize};
    const char *object;
    size_t before = out->n;
    int entries, rc = -1;

    (void)in; /* the verify_token is the handshake's; decode needs nothing beside the body */
    if (!d || rl_jdoc_type(d, 0) != RL_JOBJECT) {
        cu_error(errstr, errsize, "meta: body is not a JSON object");
        goto done;
    }
    object = cu_str(d, 0, "object");
    if (!object || strcmp(object, META_OBJECT) != 0) {
        cu_error(errstr, errsize, "meta: \"object\" is not \"" META_OBJECT "\"");
        goto done;
    }
    entries = rl_jdoc_get(d, 0, "entry");
    if (rl_jdoc_type(d, entries) != RL_JARRAY) {
        cu_error(errstr, errsize, "meta: \"entry\" is missing or not an array");
        goto done;
    }
    rc = 0;
    for (int e = rl_jdoc_first(d, entries); rc == 0 && e >= 0; e = rl_jdoc_next(d, entries, e))
        rc = meta_entry(&c, e);
    if (rc == 0 && out->n == before)
        rc = cu_error(errstr, errsize, "meta: no events (no entry has a change)");
done:
    return rc;
}

static void *meta_setup(const rl_source_conf_t *sc, const char **key, char *errstr, size_t errsize)
{
    meta_conf_t *mc = calloc(1, sizeof(*mc));

    (void)key; /* an empty verify_token is allowed: every GET is then refused */
    if (!mc) {
        cu_error(errstr, errsize, "out of memory");
        return NULL;
    }
    mc->verify_token = sc && sc->verify_token ? sc->verify_token : "";
    return mc;
}

static void meta_teardown(void *conf)
{
    free(conf);
}

/* Constant time over the token's bytes, so that a timing does not tell how
 * much of a guess was right (the length is not secret enough to hide). */
static int token_equal(const char *got, const char *want)
{
    size_t n = strlen(want);

    return strlen(got) == n && CRYPTO_memcmp(got, want, n) == 0;
}

static int meta_handshake(const void *conf, rl_header_fn arg, void *arg_ctx, rl_handshake_t *out)
{
    const meta_conf_t *mc = conf;
    const char *mode = arg ? arg(arg_ctx, "hub.mode") : NULL;
    const char *token = arg ? arg(arg_ctx, "hub.verify_token") : NULL;
    const char *challenge = arg ? arg(arg_ctx, "hub.challenge") : NULL;
    const char *answer;

    out->status = 403;
    if (!mc || !mc->verify_token[0])
        answer = "no verify_token is configured for this source";
    else if (!mode || strcmp(mode, "subscribe") != 0)
        answer = "hub.mode is not subscribe";
    else if (!token || !token_equal(token, mc->verify_token))
        answer = "hub.verify_token does not match"; /* never the token itself */
    else if (!challenge || !challenge[0]) {
        out->status = 400;
        answer = "hub.challenge is missing";
    } else {
        out->status = 200;
        answer = challenge; /* exactly the challenge: Meta compares it */
    }
    out->body = strdup(answer);
    return out->body ? 0 : -1;
}

static const char *const meta_keys[] = {"verify_token", NULL};

const rl_codec_t rl_codec_meta = {
    .name = "meta",
    .help = "Meta WhatsApp Cloud API webhooks (entry[].changes[]: one event per message and "
            "status; GET subscription handshake with verify_token)",
    .keys = meta_keys,
    .setup = meta_setup,
    .teardown = meta_teardown,
    .decode = meta_decode,
    .handshake = meta_handshake,
};
