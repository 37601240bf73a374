/* record.c -- event payload encoding, CloudEvent building, destination names. */
#include "record.h"

#include "array.h"
#include "bytes.h"
#include "codec_util.h"
#include "sig.h"
#include "err.h"

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

const char *rl_record_too_long(const char *source, const rl_event_t *ev)
{
    /* The CloudEvent source is "/" source ["/" workspace_id]. */
    size_t ws = ev->workspace_id && *ev->workspace_id ? 1 + strlen(ev->workspace_id) : 0;

    if (ev->id && strlen(ev->id) > RL_RECORD_FIELD_MAX)
        return "id";
    if (ev->type && strlen(ev->type) > RL_RECORD_FIELD_MAX)
        return "type";
    if (ev->channel_id && strlen(ev->channel_id) > RL_RECORD_FIELD_MAX)
        return "channel_id";
    if (1 + strlen(source) + ws > RL_RECORD_FIELD_MAX)
        return "workspace_id";
    return NULL;
}

/* ---- a growing output buffer ------------------------------------------------ */

/* The CloudEvent is written straight into the WAL payload: the envelope field by
 * field and `data` by ob_json. Building the envelope as a
 * json_t and json_dumps'ing it cost an object, a string and a key copy per field,
 * a strbuffer and a strdup of the result: a third of ingest's instructions. */
typedef struct obuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} obuf_t;

static int ob_reserve(obuf_t *b, size_t more)
{
    if (b->oom)
        return -1;
    uint8_t *np = rl_array_grow(b->p, &b->cap, b->len + more, 1, 1024);
    if (!np) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    return 0;
}

static void ob_put(obuf_t *b, const void *s, size_t n)
{
    if (ob_reserve(b, n) == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

#define OB_LIT(b, lit) ob_put((b), (lit), sizeof(lit) - 1)

/* A JSON string of n bytes. Only '"', '\' and control characters must be
 * escaped (RFC 8259 section 7); the text is UTF-8 already (it came out of
 * jansson's parser, the config or relay itself). Escapes as jansson does, so
 * output is unchanged. Runs of plain bytes are copied whole. */
static void ob_strn(obuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (ob_reserve(b, 2 + 6 * n) != 0) /* the worst case: every byte \u00XX */
        return;
    uint8_t *o = b->p + b->len;
    const unsigned char *c = (const unsigned char *)s, *end = c + n;
    *o++ = '"';
    while (c < end) {
        const unsigned char *run = c;
        while (c < end && *c >= 0x20 && *c != '"' && *c != '\\')
            c++;
        memcpy(o, run, (size_t)(c - run));
        o += c - run;
        if (c == end)
            break;
        *o++ = '\\';
        switch (*c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u', *o++ = '0', *o++ = '0';
            *o++ = (uint8_t)hex[*c >> 4], *o++ = (uint8_t)hex[*c & 15];
        }
        c++;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
}

static void ob_str(obuf_t *b, const char *s)
{
    ob_strn(b, s, strlen(s));
}

static int ob_dump_cb(const char *buf, size_t size, void *data)
{
    obuf_t *b = data;
    ob_put(b, buf, size);
    return b->oom ? -1 : 0;
}

/* A json_t, compact, byte for byte what json_dump_callback(v, JSON_COMPACT |
 * JSON_ENCODE_ANY) writes (object keys in insertion order, as jansson keeps
 * them). jansson's dump decodes every code point of every string and calls
 * back per run of bytes: it was a third of ingest's instructions. Reals, rare
 * in webhooks and subtle to format, are still written by jansson. The depth is
 * bounded by http.max_json_depth plus the few levels a codec adds. */
static void ob_json(obuf_t *b, json_t *v)
{
    char num[32];
    const char *key;
    json_t *item;
    size_t i;
    int first = 1;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        ob_put(b, "{", 1);
        json_object_foreach (v, key, item) {
            if (!first)
                ob_put(b, ",", 1);
            first = 0;
            ob_str(b, key);
            ob_put(b, ":", 1);
            ob_json(b, item);
        }
        ob_put(b, "}", 1);
        break;
    case JSON_ARRAY:
        ob_put(b, "[", 1);
        json_array_foreach (v, i, item) {
            if (i)
                ob_put(b, ",", 1);
            ob_json(b, item);
        }
        ob_put(b, "]", 1);
        break;
    case JSON_STRING: ob_strn(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER:
        ob_put(b, num,
               (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v)));
        break;
    case JSON_TRUE: OB_LIT(b, "true"); break;
    case JSON_FALSE: OB_LIT(b, "false"); break;
    case JSON_NULL: OB_LIT(b, "null"); break;
    default:
        if (json_dump_callback(v, ob_dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
            b->oom = 1;
    }
}

/* ,"key":"value" */
static void ob_field(obuf_t *b, const char *key, const char *value)
{
    ob_put(b, ",\"", 2);
    ob_put(b, key, strlen(key));
    ob_put(b, "\":", 2);
    ob_str(b, value);
}

/* Appends the CloudEvent of `ev` (the same fields, in the same order, as
 * docs/providers.md, "The CloudEvent"); `src` is its CloudEvent source. */
static void ob_cloudevent(obuf_t *b, const rl_event_t *ev, const char *src, const char *provider)
{
    OB_LIT(b, "{\"specversion\":\"1.0\"");
    ob_field(b, "id", ev->id);
    ob_field(b, "source", src);
    ob_field(b, "type", ev->type);
    if (ev->time && *ev->time)
        ob_field(b, "time", ev->time);
    if (ev->channel_id && *ev->channel_id) {
        ob_field(b, "subject", ev->channel_id);
        ob_field(b, "channelid", ev->channel_id);
    }
    if (ev->workspace_id && *ev->workspace_id)
        ob_field(b, "workspaceid", ev->workspace_id);
    ob_field(b, "provider", provider);
    OB_LIT(b, ",\"datacontenttype\":\"application/json\",\"data\":");
    if (!ev->data)
        OB_LIT(b, "null");
    else
        ob_json(b, ev->data);
    OB_LIT(b, "}");
}

char *rl_record_cloudevent(const rl_event_t *ev, const char *source, const char *provider)
{
    char *src = ce_source(ev, source);
    obuf_t b = {0};

    if (!src || !ev->id || !ev->type || !provider)
        goto fail;
    ob_cloudevent(&b, ev, src, provider);
    ob_put(&b, "", 1);
    if (b.oom)
        goto fail;
    free(src);
    return (char *)b.p;
fail:
    free(src);
    free(b.p);
    return NULL;
}

char *rl_record_ack_body(const rl_event_list_t *evs, size_t accepted, size_t duplicates)
{
    char num[64];
    obuf_t b = {0};

    int n = snprintf(num, sizeof(num), "{\"accepted\":%zu,\"duplicates\":%zu,\"ids\":[", accepted,
                     duplicates);
    ob_put(&b, num, (size_t)n);
    for (size_t i = 0; i < evs->n; i++) {
        if (i)
            OB_LIT(&b, ",");
        ob_str(&b, evs->v[i].id ? evs->v[i].id : "");
    }
    ob_put(&b, "]}", 3); /* with the NUL */
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return (char *)b.p;
}

/* Writes a payload: the routing fields, then the CloudEvent, either given as
 * event_json or (NULL) written from ev straight into the payload. */
static int encode_kind(int kind, const char *source, const char *provider, const rl_event_t *ev,
                       const char *event_json, uint64_t received_ms, uint8_t **out, size_t *out_len)
{
    char *src = ce_source(ev, source);
    const char *f[5] = {source, ev->id, ev->type, ev->channel_id ? ev->channel_id : "", src};
    obuf_t b = {0};
    uint8_t hdr[9];
    int rc = -1;

    if (!src || !ev->id || !ev->type)
        goto out;
    hdr[0] = (uint8_t)kind;
    put64(hdr + 1, received_ms);
    ob_put(&b, hdr, sizeof(hdr));
    for (int i = 0; i < 5; i++) {
        size_t l = strlen(f[i]);
        if (l > 0xffff)
            goto out;
        uint8_t l2[2] = {(uint8_t)l, (uint8_t)(l >> 8)};
        ob_put(&b, l2, 2);
        ob_put(&b, f[i], l);
    }
    size_t at = b.len;
    ob_put(&b, "\0\0\0\0", 4); /* the JSON's length, known once it is written */
    if (event_json)
        ob_put(&b, event_json, strlen(event_json));
    else
        ob_cloudevent(&b, ev, src, provider);
    size_t ej = b.len - at - 4;
    if (b.oom || ej > 0xffffffffu)
        goto out;
    put32(b.p + at, (uint32_t)ej);
    *out = b.p;
    *out_len = b.len;
    b.p = NULL;
    rc = 0;
out:
    free(src);
    free(b.p);
    return rc;
}

int rl_record_encode(const char *source, const rl_event_t *ev, const char *event_json,
                     uint64_t received_ms, uint8_t **out, size_t *out_len)
{
    return encode_kind(RL_RECORD_EVENT, source, NULL, ev, event_json, received_ms, out, out_len);
}

int rl_record_event(const char *source, const char *provider, const rl_event_t *ev,
                    uint64_t received_ms, uint8_t **out, size_t *out_len)
{
    if (!provider)
        return -1;
    return encode_kind(RL_RECORD_EVENT, source, provider, ev, NULL, received_ms, out, out_len);
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
    char at[CU_TIME_SIZE], digest[2 * RL_SHA256_LEN + 1];
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
    if (!ev.data || encode_kind(RL_RECORD_DEADLETTER, dl->source, dl->provider, &ev, NULL,
                                received_ms, out, out_len) != 0)
        goto out;
    *id = ev.id;
    ev.id = NULL;
    rc = 0;
out:
    free(ev.id);
    json_decref(ev.data);
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
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
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
    rl_record_t rec = {.source = "s",
                       .id = "i",
                       .type = "channel.x",
                       .channel_id = "c",
                       .ce_source = "/s",
                       .event = "{}",
                       .source_len = 1,
                       .id_len = 1,
                       .type_len = 9,
                       .channel_id_len = 1,
                       .ce_source_len = 2,
                       .event_len = 2,
                       .received_ms = 0,
                       .kind = RL_RECORD_EVENT};
    char out[1024];
    if (!*tpl || rl_record_render(tpl, &rec, 0, out, sizeof(out)) < 0) {
        rl_seterr(errstr, errstr_size,
                  "template '%s': unknown or unclosed variable (known: {family} {type} {source} "
                  "{channel_id})",
                  tpl);
        return -1;
    }
    return 0;
}
