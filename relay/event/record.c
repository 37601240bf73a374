/* record.c -- event payload encoding, CloudEvent building, destination names. */
#include "record.h"

#include "array.h"
#include "bytes.h"
#include "codec_util.h"
#include "sig.h"
#include "err.h"

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
    if (ev->ce_source)
        return strdup(ev->ce_source);
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
    if (ev->ce_source && strlen(ev->ce_source) > RL_RECORD_FIELD_MAX)
        return "source";
    if (!ev->ce_source && 1 + strlen(source) + ws > RL_RECORD_FIELD_MAX)
        return "workspace_id";
    return NULL;
}

/* ---- the CloudEvent writer ------------------------------------------------- */

/* The CloudEvent is written straight into the WAL payload: the envelope field by
 * field and `data` from the event's fields, "raw" as the provider's bytes.
 * Building a json_t and json_dumps'ing it cost an object, a string and a key
 * copy per field, a strbuffer and a strdup of the result. */
#define OB_LIT(b, lit) cu_ob_put((b), (lit), sizeof(lit) - 1)

static void ob_str(cu_obuf_t *b, const char *s)
{
    cu_ob_strn(b, s, strlen(s));
}

/* `data`: {"name":value,...} in the fields' order. */
static void ob_fields(cu_obuf_t *b, const rl_field_t *f, size_t n)
{
    char num[32];

    cu_ob_put(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            cu_ob_put(b, ",", 1);
        ob_str(b, f[i].name);
        cu_ob_put(b, ":", 1);
        switch (f[i].kind) {
        case RL_FIELD_STRING: cu_ob_strn(b, f[i].str, f[i].len); break;
        case RL_FIELD_INT:
            cu_ob_put(b, num, (size_t)snprintf(num, sizeof(num), "%lld", f[i].num));
            break;
        case RL_FIELD_BOOL:
            if (f[i].num)
                OB_LIT(b, "true");
            else
                OB_LIT(b, "false");
            break;
        case RL_FIELD_JSON: cu_ob_put(b, f[i].str, f[i].len); break;
        default: OB_LIT(b, "null");
        }
    }
    cu_ob_put(b, "}", 1);
}

/* ,"key":"value" */
static void ob_field(cu_obuf_t *b, const char *key, const char *value)
{
    cu_ob_put(b, ",\"", 2);
    cu_ob_put(b, key, strlen(key));
    cu_ob_put(b, "\":", 2);
    ob_str(b, value);
}

/* Appends the CloudEvent of `ev` (the same fields, in the same order, as
 * docs/providers.md, "The CloudEvent"); `src` is its CloudEvent source. */
static void ob_cloudevent(cu_obuf_t *b, const rl_event_t *ev, const char *src, const char *provider)
{
    OB_LIT(b, "{\"specversion\":\"1.0\"");
    ob_field(b, "id", ev->id);
    ob_field(b, "source", src);
    ob_field(b, "type", ev->type);
    if (ev->time && *ev->time)
        ob_field(b, "time", ev->time);
    if (ev->ce_rest) { /* a CloudEvent passed through: the rest as it came */
        if (*ev->ce_rest) {
            cu_ob_put(b, ",", 1);
            cu_ob_put(b, ev->ce_rest, strlen(ev->ce_rest));
        }
        OB_LIT(b, "}");
        return;
    }
    if (ev->channel_id && *ev->channel_id) {
        ob_field(b, "subject", ev->channel_id);
        ob_field(b, "channelid", ev->channel_id);
    }
    if (ev->workspace_id && *ev->workspace_id)
        ob_field(b, "workspaceid", ev->workspace_id);
    ob_field(b, "provider", provider);
    OB_LIT(b, ",\"datacontenttype\":\"application/json\",\"data\":");
    if (!ev->fields)
        OB_LIT(b, "null");
    else
        ob_fields(b, ev->fields, ev->nfields);
    OB_LIT(b, "}");
}

char *rl_record_cloudevent(const rl_event_t *ev, const char *source, const char *provider)
{
    char *src = ce_source(ev, source);
    cu_obuf_t b = {0};

    if (!src || !ev->id || !ev->type || !provider)
        goto fail;
    ob_cloudevent(&b, ev, src, provider);
    cu_ob_put(&b, "", 1);
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
    cu_obuf_t b = {0};

    int n = snprintf(num, sizeof(num), "{\"accepted\":%zu,\"duplicates\":%zu,\"ids\":[", accepted,
                     duplicates);
    cu_ob_put(&b, num, (size_t)n);
    for (size_t i = 0; i < evs->n; i++) {
        if (i)
            OB_LIT(&b, ",");
        ob_str(&b, evs->v[i].id ? evs->v[i].id : "");
    }
    cu_ob_put(&b, "]}", 3); /* with the NUL */
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
    cu_obuf_t b = {0};
    uint8_t hdr[9];
    int rc = -1;

    if (!src || !ev->id || !ev->type)
        goto out;
    /* An event identified by its own CloudEvent source says so in its kind. */
    hdr[0] = (uint8_t)(kind == RL_RECORD_EVENT && ev->ce_source ? RL_RECORD_SCOPED : kind);
    put64(hdr + 1, received_ms);
    cu_ob_put(&b, hdr, sizeof(hdr));
    for (int i = 0; i < 5; i++) {
        size_t l = strlen(f[i]);
        if (l > 0xffff)
            goto out;
        uint8_t l2[2] = {(uint8_t)l, (uint8_t)(l >> 8)};
        cu_ob_put(&b, l2, 2);
        cu_ob_put(&b, f[i], l);
    }
    size_t at = b.len;
    cu_ob_put(&b, "\0\0\0\0", 4); /* the JSON's length, known once it is written */
    if (event_json)
        cu_ob_put(&b, event_json, strlen(event_json));
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

/* The `data` of a dead letter (room for DL_FIELDS in f): what an operator needs
 * to see what came and why it was refused, with the body as the provider sent it
 * (Base64: it may not even be text). `b64` and `hdrs` (the headers object, NULL
 * for null) are borrowed. */
#define DL_FIELDS 11
static void deadletter_fields(const rl_deadletter_t *dl, const char *received_at, const char *b64,
                              const char *hdrs, size_t keep, rl_field_t *f)
{
    const char *strs[6][2] = {{"reason", dl->reason},
                              {"message", dl->message},
                              {"source", dl->source},
                              {"received_at", received_at},
                              {"content_type", dl->content_type},
                              {"webhook_id", dl->msg_id}};

    for (size_t i = 0; i < 6; i++) {
        f[i] = (rl_field_t){.name = strs[i][0], .kind = RL_FIELD_NULL};
        if (strs[i][1]) {
            f[i].kind = RL_FIELD_STRING;
            f[i].str = strs[i][1];
            f[i].len = strlen(strs[i][1]);
        }
    }
    f[6] = (rl_field_t){.name = "headers", .kind = RL_FIELD_NULL};
    if (hdrs)
        f[6] = (rl_field_t){
            .name = "headers", .kind = RL_FIELD_JSON, .str = hdrs, .len = strlen(hdrs)};
    f[7] = (rl_field_t){.name = "headers_note", .kind = RL_FIELD_NULL};
    if (dl->headers_note)
        f[7] = (rl_field_t){.name = "headers_note",
                            .kind = RL_FIELD_STRING,
                            .str = dl->headers_note,
                            .len = strlen(dl->headers_note)};
    f[8] = (rl_field_t){.name = "body_size", .kind = RL_FIELD_INT, .num = (long long)dl->len};
    f[9] = (rl_field_t){.name = "body_truncated", .kind = RL_FIELD_BOOL, .num = keep < dl->len};
    f[10] = (rl_field_t){
        .name = "body_base64", .kind = RL_FIELD_STRING, .str = b64, .len = strlen(b64)};
}

/* {"name":"value",...} of the kept headers, malloc'd; NULL when they were
 * withheld (*oom 0) or on out-of-memory (*oom 1). */
static char *deadletter_headers(const rl_deadletter_t *dl, int *oom)
{
    cu_obuf_t b = {0};

    *oom = 0;
    if (dl->headers_note)
        return NULL;
    cu_ob_put(&b, "{", 1);
    for (size_t i = 0; i < dl->nheaders; i++) {
        if (i)
            cu_ob_put(&b, ",", 1);
        ob_str(&b, dl->headers[2 * i]);
        cu_ob_put(&b, ":", 1);
        ob_str(&b, dl->headers[2 * i + 1]);
    }
    cu_ob_put(&b, "}", 2); /* with the NUL */
    if (b.oom) {
        free(b.p);
        *oom = 1;
        return NULL;
    }
    return (char *)b.p;
}

int rl_record_deadletter(const rl_deadletter_t *dl, uint64_t received_ms, uint8_t **out,
                         size_t *out_len, char **id)
{
    char at[CU_TIME_SIZE], digest[2 * RL_SHA256_LEN + 1];
    size_t keep = dl->len > RL_DEADLETTER_MAX_BODY ? RL_DEADLETTER_MAX_BODY : dl->len;
    char *b64 = NULL, *hdrs = NULL;
    rl_field_t f[DL_FIELDS];
    rl_event_t ev = {0};
    int rc = -1, oom;

    *id = NULL;
    if (cu_time_epoch((long long)received_ms, at, sizeof(at)) != 0)
        goto out;
    /* cu_derive_id takes C strings and a body may hold NULs: it hashes the body's
     * digest instead (the whole body, even when the letter keeps only a part). A
     * letter refused 401 has an id of its own: the same body sent again signed
     * right, and refused 400, is another letter. */
    const char *parts[] = {dl->source, digest, "unauthorized"};
    int unauth = dl->reason && !strcmp(dl->reason, "unauthorized");
    if (rl_sha256_hex(dl->body, dl->len, digest) != 0)
        goto out;
    ev.id = cu_derive_id("dl_", parts, unauth ? 3 : 2);
    ev.type = RL_DEADLETTER_TYPE;
    ev.channel_id = "";
    ev.time = at;
    if (!ev.id || !(b64 = rl_b64_encode(dl->body, keep)))
        goto out;
    hdrs = deadletter_headers(dl, &oom);
    if (oom)
        goto out;
    deadletter_fields(dl, at, b64, hdrs, keep, f);
    ev.fields = f;
    ev.nfields = DL_FIELDS;
    if (encode_kind(RL_RECORD_DEADLETTER, dl->source, dl->provider, &ev, NULL, received_ms, out,
                    out_len) != 0)
        goto out;
    *id = ev.id;
    ev.id = NULL;
    rc = 0;
out:
    free(ev.id);
    free(b64);
    free(hdrs);
    return rc;
}

int rl_record_is_deadletter(const uint8_t *p, size_t len, const char *source, uint64_t since_ms)
{
    rl_record_t rec;

    if (rl_record_decode(p, len, &rec) != 0 || rec.kind != RL_RECORD_DEADLETTER)
        return 0;
    return rec.received_ms >= since_ms && rec.source_len == strlen(source) &&
           !memcmp(rec.source, source, rec.source_len);
}

int rl_record_decode(const uint8_t *p, size_t len, rl_record_t *rec)
{
    const uint8_t *end = p + len;
    const char **f[5] = {&rec->source, &rec->id, &rec->type, &rec->channel_id, &rec->ce_source};
    size_t *fl[5] = {&rec->source_len, &rec->id_len, &rec->type_len, &rec->channel_id_len,
                     &rec->ce_source_len};

    if (len < 9 || (*p != RL_RECORD_EVENT && *p != RL_RECORD_DEADLETTER && *p != RL_RECORD_SCOPED))
        return -1;
    rec->scoped = *p == RL_RECORD_SCOPED;
    rec->kind = rec->scoped ? RL_RECORD_EVENT : *p;
    p++;
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

const char *rl_record_dedup_id(const rl_record_t *rec, char *buf, size_t size, size_t *len,
                               char **owned)
{
    size_t n = rec->ce_source_len + 1 + rec->id_len;
    char *p = buf;

    *owned = NULL;
    if (!rec->scoped) {
        *len = rec->id_len;
        return rec->id;
    }
    if (n + 1 > size && !(p = *owned = malloc(n + 1)))
        return NULL;
    memcpy(p, rec->ce_source, rec->ce_source_len);
    p[rec->ce_source_len] = '\x1f';
    memcpy(p + rec->ce_source_len + 1, rec->id, rec->id_len);
    p[n] = '\0';
    *len = n;
    return p;
}
