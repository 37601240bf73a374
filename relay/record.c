/* record.c -- event payload encoding, CloudEvent building, destination names. */
#include "record.h"

#include "codec_util.h"
#include "sig.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* source + id identify an event for consumers (CloudEvents), so a provider
 * workspace belongs in source: the same id in two workspaces is two events.
 * Never cut (two long workspaces must not end up as one source): malloc'd, NULL
 * on out-of-memory. */
static char *ce_source(const rl_event_t *ev, const char *source)
{
    char *out = NULL;
    int n = ev->workspace_id && *ev->workspace_id
                ? asprintf(&out, "/%s/%s", source, ev->workspace_id)
                : asprintf(&out, "/%s", source);
    return n < 0 ? NULL : out;
}

char *rl_record_cloudevent(const rl_event_t *ev, const char *source, const char *provider)
{
    char *src = ce_source(ev, source);
    char *out = NULL;
    json_t *ce = src ? json_object() : NULL;

    if (!ce)
        goto done;
    json_object_set_new(ce, "specversion", json_string("1.0"));
    json_object_set_new(ce, "id", json_string(ev->id));
    json_object_set_new(ce, "source", json_string(src));
    json_object_set_new(ce, "type", json_string(ev->type));
    if (ev->time && *ev->time)
        json_object_set_new(ce, "time", json_string(ev->time));
    if (ev->channel_id && *ev->channel_id) {
        json_object_set_new(ce, "subject", json_string(ev->channel_id));
        json_object_set_new(ce, "channelid", json_string(ev->channel_id));
    }
    if (ev->workspace_id && *ev->workspace_id)
        json_object_set_new(ce, "workspaceid", json_string(ev->workspace_id));
    json_object_set_new(ce, "provider", json_string(provider));
    json_object_set_new(ce, "datacontenttype", json_string("application/json"));
    json_object_set(ce, "data", ev->data ? ev->data : json_null());
    out = json_dumps(ce, JSON_COMPACT);
done:
    json_decref(ce);
    free(src);
    return out;
}

static uint8_t *put_str(uint8_t *p, const char *s, size_t len)
{
    p[0] = (uint8_t)len;
    p[1] = (uint8_t)(len >> 8);
    memcpy(p + 2, s, len);
    return p + 2 + len;
}

static int encode_kind(int kind, const char *source, const rl_event_t *ev, const char *event_json,
                       uint64_t received_ms, uint8_t **out, size_t *out_len)
{
    char *src = ce_source(ev, source);
    if (!src)
        return -1;
    const char *f[5] = {source, ev->id, ev->type, ev->channel_id ? ev->channel_id : "", src};
    size_t fl[5], ej = strlen(event_json), total = 1 + 8 + 4 + ej;

    for (int i = 0; i < 5; i++) {
        fl[i] = strlen(f[i]);
        if (fl[i] > 0xffff) {
            free(src);
            return -1;
        }
        total += 2 + fl[i];
    }
    uint8_t *buf = ej <= 0xffffffffu ? malloc(total) : NULL, *p = buf;
    if (!buf) {
        free(src);
        return -1;
    }
    *p++ = (uint8_t)kind;
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(received_ms >> (8 * i));
    for (int i = 0; i < 5; i++)
        p = put_str(p, f[i], fl[i]);
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(ej >> (8 * i));
    memcpy(p, event_json, ej);
    free(src);
    *out = buf;
    *out_len = total;
    return 0;
}

int rl_record_encode(const char *source, const rl_event_t *ev, const char *event_json,
                     uint64_t received_ms, uint8_t **out, size_t *out_len)
{
    return encode_kind(RL_RECORD_EVENT, source, ev, event_json, received_ms, out, out_len);
}

/* The `data` of a dead letter: what an operator needs to see what came and why
 * it was refused, with the body as the provider sent it (Base64: it may not even
 * be text). */
static json_t *deadletter_data(const rl_deadletter_t *dl, const char *received_at)
{
    size_t keep = dl->len > RL_DEADLETTER_MAX_BODY ? RL_DEADLETTER_MAX_BODY : dl->len;
    char *b64 = rl_b64_encode(dl->body, keep);
    json_t *d = b64 ? json_object() : NULL;

    if (d &&
        (json_object_set_new(d, "reason", json_string(dl->reason)) ||
         json_object_set_new(d, "message", json_string(dl->message)) ||
         json_object_set_new(d, "source", json_string(dl->source)) ||
         json_object_set_new(d, "received_at", json_string(received_at)) ||
         json_object_set_new(d, "content_type",
                             dl->content_type ? json_string(dl->content_type) : json_null()) ||
         json_object_set_new(d, "webhook_id", dl->msg_id ? json_string(dl->msg_id) : json_null()) ||
         json_object_set_new(d, "body_size", json_integer((json_int_t)dl->len)) ||
         json_object_set_new(d, "body_truncated", json_boolean(keep < dl->len)) ||
         json_object_set_new(d, "body_base64", json_string(b64)))) {
        json_decref(d);
        d = NULL;
    }
    free(b64);
    return d;
}

int rl_record_deadletter(const rl_deadletter_t *dl, uint64_t received_ms, uint8_t **out,
                         size_t *out_len, char **id)
{
    char at[CU_TIME_SIZE], digest[2 * RL_SHA256_LEN + 1], *ce = NULL;
    rl_event_t ev = {0};
    int rc = -1;

    *id = NULL;
    if (cu_time_epoch((long long)received_ms, at, sizeof(at)) != 0)
        goto out;
    /* cu_derive_id takes C strings and a body may hold NULs: it hashes the body's
     * digest instead (the whole body, even when the letter keeps only a part). */
    const char *parts[] = {dl->source, digest};
    if (rl_sha256_hex(dl->body, dl->len, digest) != 0)
        goto out;
    ev.id = cu_derive_id("dl_", parts, 2);
    ev.type = RL_DEADLETTER_TYPE;
    ev.channel_id = "";
    ev.time = at;
    ev.data = ev.id ? deadletter_data(dl, at) : NULL;
    if (!ev.data || !(ce = rl_record_cloudevent(&ev, dl->source, dl->provider)))
        goto out;
    if (encode_kind(RL_RECORD_DEADLETTER, dl->source, &ev, ce, received_ms, out, out_len) != 0)
        goto out;
    *id = ev.id;
    ev.id = NULL;
    rc = 0;
out:
    free(ev.id);
    json_decref(ev.data);
    free(ce);
    return rc;
}

int rl_record_decode(const uint8_t *p, size_t len, rl_record_t *rec)
{
    const uint8_t *end = p + len;
    const char **f[5] = {&rec->source, &rec->id, &rec->type, &rec->channel_id, &rec->ce_source};
    size_t *fl[5] = {&rec->source_len, &rec->id_len, &rec->type_len, &rec->channel_id_len,
                     &rec->ce_source_len};

    if (len < 9 || (*p != RL_RECORD_EVENT && *p != RL_RECORD_DEADLETTER))
        return -1;
    rec->kind = *p++;
    rec->received_ms = 0;
    for (int i = 0; i < 8; i++)
        rec->received_ms |= (uint64_t)*p++ << (8 * i);
    for (int i = 0; i < 5; i++) {
        if (end - p < 2)
            return -1;
        size_t l = (size_t)p[0] | (size_t)p[1] << 8;
        p += 2;
        if ((size_t)(end - p) < l)
            return -1;
        *f[i] = (const char *)p;
        *fl[i] = l;
        p += l;
    }
    if (end - p < 4)
        return -1;
    size_t ej = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    p += 4;
    if ((size_t)(end - p) != ej)
        return -1;
    rec->event = (const char *)p;
    rec->event_len = ej;
    return 0;
}

static int var_value(const char *name, size_t nlen, const rl_record_t *rec, const char **v,
                     size_t *vl)
{
    if (nlen == 6 && !memcmp(name, "family", 6)) {
        char type[64];
        snprintf(type, sizeof(type), "%.*s", (int)rec->type_len, rec->type);
        *v = rl_event_family(type);
        *vl = strlen(*v);
    } else if (nlen == 4 && !memcmp(name, "type", 4)) {
        *v = rec->type, *vl = rec->type_len;
    } else if (nlen == 6 && !memcmp(name, "source", 6)) {
        *v = rec->source, *vl = rec->source_len;
    } else if (nlen == 10 && !memcmp(name, "channel_id", 10)) {
        *v = rec->channel_id, *vl = rec->channel_id_len;
    } else {
        return -1;
    }
    return 0;
}

static int topic_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

int rl_record_render(const char *tpl, const rl_record_t *rec, int topic_safe, char *out,
                     size_t outsz)
{
    size_t o = 0;
    if (outsz == 0) /* not even room for the terminating NUL */
        return -1;
    for (const char *p = tpl; *p;) {
        const char *v = p;
        size_t vl = 1;
        int var = 0;
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close || var_value(p + 1, (size_t)(close - p - 1), rec, &v, &vl) != 0)
                return -1;
            p = close + 1;
            var = 1;
            if (vl == 0) /* an empty channel id still names a destination */
                v = "_", vl = 1;
        } else {
            p++;
        }
        if (o + vl >= outsz)
            return -1;
        for (size_t i = 0; i < vl; i++)
            out[o++] = (var && topic_safe && !topic_char(v[i])) ? '_' : v[i];
    }
    out[o] = '\0';
    return (int)o;
}

int rl_record_template_check(const char *tpl, char *errstr, size_t errstr_size)
{
    rl_record_t rec = {"s", "i", "channel.x", "c", "/s", "{}", 1,
                       1,   9,   1,           2,   2,    0,    RL_RECORD_EVENT};
    char out[1024];
    if (!*tpl || rl_record_render(tpl, &rec, 0, out, sizeof(out)) < 0) {
        snprintf(errstr, errstr_size,
                 "template '%s': unknown or unclosed variable (known: {family} {type} {source} "
                 "{channel_id})",
                 tpl);
        return -1;
    }
    return 0;
}
