/* codec_cloudevents.c -- CloudEvents 1.0 over HTTP, passed through.
 *
 * A producer that already speaks CloudEvents keeps its events as they are: the
 * codec checks them, routes them and hands relay the envelope verbatim. The
 * request's Content-Type says which of the HTTP binding's modes it is:
 *   - application/cloudevents+json: structured, the body is one JSON event;
 *   - application/cloudevents-batch+json: batched, a JSON array of events;
 *   - anything else (or none) with ce-* headers: binary, the attributes are the
 *     headers (percent-decoded), the body is `data` and its Content-Type the
 *     event's datacontenttype;
 *   - no ce-* headers, no Content-Type or a JSON one: a structured event all the
 *     same (senders that post CloudEvents as application/json, and the tests and
 *     fuzz targets, which have no request).
 *
 * The event's identity is the producer's own: id, source (rl_event_t.ce_source,
 * which makes relay's dedup key source + id) and type, unchanged (channel.* and
 * message.* land in their families, anything else in "other"). Everything else
 * of the event is written as it came (rl_event_t.ce_rest), with two extensions
 * relay adds when the event has none of its own: channelid (the channel relay
 * routed it by: channelid, else partitionkey, else subject) and provider. */
#include "codec_util.h"

#include "array.h"
#include "sig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CE "cloudevents"

/* What one decode shares: where events go, where a refusal is said, and the
 * document that checks the JSON strings the binary mode writes (NULL until one
 * is needed). */
typedef struct ce_ctx {
    rl_event_list_t *out;
    char *errstr;
    size_t errsize;
    char where[32]; /* "event 2: " in a batch, "" otherwise */
    rl_jdoc_t *check;
} ce_ctx_t;

/* One ce-* header: the attribute's name and its percent-decoded value. */
typedef struct ce_attr {
    char *name, *value;
} ce_attr_t;

/* The ce-* headers of a request, collected by each_header. */
typedef struct ce_attrs {
    ce_attr_t *v;
    size_t n, cap;
    int rc; /* 0, -1 (errstr set) or RL_CODEC_NOMEM: the walk stopped */
    ce_ctx_t *c;
} ce_attrs_t;

static int refuse(ce_ctx_t *c, const char *what, const char *name)
{
    return cu_error(c->errstr, c->errsize, CE ": %s%s '%s'", c->where, what, name);
}

static int oom(ce_ctx_t *c)
{
    cu_error(c->errstr, c->errsize, CE ": out of memory");
    return RL_CODEC_NOMEM;
}

/* CloudEvents 1.0: attribute names are lower-case ASCII letters and digits. */
static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

/* The media type of a Content-Type without its parameters: 1 when it is `want`
 * (case-insensitive, as RFC 9110 says media types are). */
static int media_is(const char *ct, const char *want)
{
    size_t n;

    if (!ct)
        return 0;
    ct += strspn(ct, " \t");
    n = strcspn(ct, "; \t");
    return n == strlen(want) && !strncasecmp(ct, want, n);
}

/* application/json or any type ending in +json: data that is JSON text. */
static int media_json(const char *ct)
{
    size_t n;

    if (!ct)
        return 0;
    ct += strspn(ct, " \t");
    n = strcspn(ct, "; \t");
    return media_is(ct, "application/json") || (n > 5 && !strncasecmp(ct + n - 5, "+json", 5));
}

/* ---- the envelope ---------------------------------------------------------- */

/* The attributes every event must have, and time when it has one (NULL:
 * absent). Says which one is wrong. */
static int check_envelope(ce_ctx_t *c, const char *spec, const char *id, const char *source,
                          const char *type, const char *time)
{
    const char *need[][2] = {{"specversion", spec}, {"id", id}, {"source", source}, {"type", type}};
    char utc[CU_TIME_SIZE];

    for (size_t i = 0; i < 4; i++) {
        if (!need[i][1])
            return refuse(c, "missing required attribute", need[i][0]);
        if (!*need[i][1])
            return refuse(c, "empty required attribute", need[i][0]);
    }
    if (strcmp(spec, "1.0") != 0)
        return cu_error(c->errstr, c->errsize, CE ": %sspecversion '%s' is not supported (1.0 is)",
                        c->where, spec);
    /* Kept as the producer wrote it (an offset stays an offset): only checked. */
    if (time && cu_time_rfc3339(time, utc, sizeof(utc)) != 0)
        return refuse(c, "not an RFC 3339 timestamp: attribute", "time");
    return 0;
}

/* ,"name": */
static void ob_key(cu_obuf_t *b, const char *name)
{
    cu_ob_put(b, ",\"", 2);
    cu_ob_put(b, name, strlen(name));
    cu_ob_put(b, "\":", 2);
}

/* Appends the event: `rest` holds the members after the envelope, each behind a
 * comma, before relay's extensions and data (taken: freed here whatever
 * happens). `channel` routes it; has_channelid / has_provider: the event has
 * those attributes itself. */
static int emit(ce_ctx_t *c, const char *id, const char *source, const char *type, const char *time,
                const char *channel, int has_channelid, int has_provider, cu_obuf_t *rest,
                const cu_obuf_t *data)
{
    char *dup = strdup(id), *src = strdup(source);
    rl_event_t *ev;
    int rc = 0;

    if (!has_channelid && *channel) {
        ob_key(rest, "channelid");
        cu_ob_strn(rest, channel, strlen(channel));
    }
    if (!has_provider)
        cu_ob_put(rest, ",\"provider\":\"" CE "\"", sizeof(",\"provider\":\"" CE "\"") - 1);
    if (data->len) /* an event without data has an empty buffer, p NULL */
        cu_ob_put(rest, data->p, data->len);
    cu_ob_put(rest, "", 1);
    if (!dup || !src || rest->oom || data->oom) {
        free(dup);
        rc = oom(c);
        goto done;
    }
    /* No normalized fields: ce_rest carries the data. */
    if (cu_emit(c->out, dup, type, channel, NULL, time, NULL, 0) != 0) {
        rc = oom(c);
        goto done;
    }
    ev = &c->out->v[c->out->n - 1];
    free(ev->fields);
    ev->fields = NULL;
    ev->ce_source = src;
    src = NULL;
    /* Every member came with a leading comma; ce_rest has none. */
    memmove(rest->p, rest->p + (rest->len > 1), rest->len - (rest->len > 1));
    ev->ce_rest = (char *)rest->p;
    rest->p = NULL;
done:
    free(src);
    free(rest->p);
    rest->p = NULL;
    return rc;
}

/* The channel of an event: its channelid, else partitionkey, else subject. */
static const char *pick_channel(const char *channelid, const char *partitionkey,
                                const char *subject)
{
    if (channelid && *channelid)
        return channelid;
    if (partitionkey && *partitionkey)
        return partitionkey;
    return subject ? subject : "";
}

/* ---- structured and batched ------------------------------------------------ */

/* obj[key] when present and not null (CloudEvents' JSON format: a null
 * attribute is an absent one), else -1. */
static int member(rl_jdoc_t *d, int obj, const char *key)
{
    int v = rl_jdoc_get(d, obj, key);

    return rl_jdoc_type(d, v) == RL_JNULL ? -1 : v;
}

/* obj[key]'s text into *out (NULL when absent); -1 when it is there but not a
 * string. */
static int str_attr(ce_ctx_t *c, rl_jdoc_t *d, int obj, const char *key, const char **out)
{
    int v = member(d, obj, key);

    *out = NULL;
    if (v < 0)
        return 0;
    if (!(*out = rl_jdoc_str(d, v, NULL)))
        return refuse(c, "not a string: attribute", key);
    return 0;
}

/* ,"key":<the member's bytes as sent> */
static void ob_raw(cu_obuf_t *b, rl_jdoc_t *d, const char *key, int v)
{
    size_t len;
    const char *raw = rl_jdoc_raw(d, v, &len);

    ob_key(b, key);
    cu_ob_put(b, raw, len);
}

/* The extensions of obj, in the order they came, into b. */
static int extensions(ce_ctx_t *c, rl_jdoc_t *d, int obj, cu_obuf_t *b)
{
    static const char *const known[] = {"specversion", "id",      "source",          "type",
                                        "time",        "subject", "datacontenttype", "dataschema",
                                        NULL};
    cu_member_t *m = NULL;
    size_t n = 0;
    int rc = 0;

    if (cu_members(d, obj, &m, &n) != 0)
        return oom(c);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *name = rl_jdoc_str(d, m[i].key, NULL);
        rl_jtype_t t = rl_jdoc_type(d, m[i].value);
        size_t k = 0;

        if (!name) {
            rc = oom(c);
            break;
        }
        while (known[k] && strcmp(known[k], name) != 0)
            k++;
        if (known[k] || !strcmp(name, "data") || !strcmp(name, "data_base64") || t == RL_JNULL)
            continue;
        if (!valid_name(name))
            rc = refuse(c, "attribute name is not lower-case a-z0-9:", name);
        else if (t == RL_JOBJECT || t == RL_JARRAY)
            rc = refuse(c, "not a string, number or boolean: extension", name);
        else
            ob_raw(b, d, name, m[i].value);
    }
    free(m);
    return rc;
}

/* One structured event, the object `obj` of d. */
static int structured(ce_ctx_t *c, rl_jdoc_t *d, int obj)
{
    static const char *const ordered[] = {"subject", "datacontenttype", "dataschema"};
    const char *spec, *id, *source, *type, *time, *subject, *ctype, *schema, *part, *chan;
    char num[32];
    int data, b64, rc;
    cu_obuf_t rest = {0}, body = {0};

    if (rl_jdoc_type(d, obj) != RL_JOBJECT)
        return cu_error(c->errstr, c->errsize, CE ": %s%s", c->where,
                        c->where[0] ? "not a JSON object" : "body is not a JSON object");
    if (str_attr(c, d, obj, "specversion", &spec) || str_attr(c, d, obj, "id", &id) ||
        str_attr(c, d, obj, "source", &source) || str_attr(c, d, obj, "type", &type) ||
        str_attr(c, d, obj, "time", &time) || str_attr(c, d, obj, "subject", &subject) ||
        str_attr(c, d, obj, "datacontenttype", &ctype) ||
        str_attr(c, d, obj, "dataschema", &schema) ||
        check_envelope(c, spec, id, source, type, time))
        return -1;
    if (schema && !*schema)
        return refuse(c, "empty attribute", "dataschema");
    data = member(d, obj, "data");
    b64 = member(d, obj, "data_base64");
    if (data >= 0 && b64 >= 0)
        return refuse(c, "both data and data_base64: choose one, not", "data_base64");
    if (b64 >= 0 && rl_jdoc_type(d, b64) != RL_JSTRING)
        return refuse(c, "not a string:", "data_base64");

    /* A channel may be a number too (its text then routes it). */
    chan = cu_text(d, member(d, obj, "channelid"), num, sizeof(num));
    part = rl_jdoc_str(d, member(d, obj, "partitionkey"), NULL);
    for (size_t i = 0; i < 3; i++)
        if (member(d, obj, ordered[i]) >= 0)
            ob_raw(&rest, d, ordered[i], member(d, obj, ordered[i]));
    if ((rc = extensions(c, d, obj, &rest)) != 0)
        goto done;
    if (data >= 0)
        ob_raw(&body, d, "data", data);
    else if (b64 >= 0)
        ob_raw(&body, d, "data_base64", b64);
    rc = emit(c, id, source, type, time, pick_channel(chan, part, subject),
              member(d, obj, "channelid") >= 0, member(d, obj, "provider") >= 0, &rest, &body);
done: /* emit freed rest */
    free(rest.p);
    free(body.p);
    return rc;
}

static int batch(ce_ctx_t *c, rl_jdoc_t *d)
{
    size_t i = 0;
    int rc = 0;

    if (!d)
        return cu_error(c->errstr, c->errsize, CE ": body is not JSON");
    if (rl_jdoc_type(d, 0) != RL_JARRAY)
        return cu_error(c->errstr, c->errsize, CE ": a batch is not a JSON array");
    if (rl_jdoc_count(d, 0) == 0)
        return cu_error(c->errstr, c->errsize, CE ": the batch holds no events");
    for (int v = rl_jdoc_first(d, 0); v >= 0 && rc == 0; v = rl_jdoc_next(d, 0, v), i++) {
        snprintf(c->where, sizeof(c->where), "event %zu: ", i);
        rc = structured(c, d, v);
    }
    return rc;
}

/* ---- binary ---------------------------------------------------------------- */

/* Appends s (n bytes) as a JSON string, and checks that what was written is one:
 * the project's tokenizer refuses invalid UTF-8 and NULs (\u0000), which jansson
 * and most consumers refuse too. 0; -1 (nothing appended) when s is not such
 * text; RL_CODEC_NOMEM. */
static int ob_text(ce_ctx_t *c, cu_obuf_t *b, const char *s, size_t n)
{
    size_t at = b->len;
    int rc;

    cu_ob_strn(b, s, n);
    if (b->oom || (!c->check && !(c->check = rl_jdoc_new(NULL, 0))))
        return RL_CODEC_NOMEM;
    rc = rl_jdoc_parse(c->check, (const char *)b->p + at, b->len - at, 1, NULL, 0);
    if (rc == RL_JDOC_NOMEM)
        return RL_CODEC_NOMEM;
    if (rc != 0) {
        b->len = at;
        return -1;
    }
    return 0;
}

/* ,"name":"value" for an attribute of the binary mode; refuses text that is
 * not UTF-8, naming the attribute. */
static int text_attr(ce_ctx_t *c, cu_obuf_t *b, const char *name, const char *value)
{
    int rc;

    ob_key(b, name);
    if ((rc = ob_text(c, b, value, strlen(value))) == -1)
        refuse(c, "not UTF-8 text: attribute", name);
    return rc;
}

static int hexval(char h)
{
    if (h >= '0' && h <= '9')
        return h - '0';
    h = (char)(h | 0x20);
    return h >= 'a' && h <= 'f' ? h - 'a' + 10 : -1;
}

/* The HTTP binding's header value encoding: %XX is the byte XX (the bytes are
 * UTF-8, checked when written). Malloc'd into *out; -1 for a '%' without two
 * hex digits. */
static int percent_decode(const char *s, char **out, size_t *len)
{
    size_t n = strlen(s), o = 0;
    char *p = malloc(n + 1);

    *out = p;
    if (!p)
        return RL_CODEC_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            p[o++] = s[i];
            continue;
        }
        if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
            return -1;
        p[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
        i += 2;
    }
    p[o] = '\0';
    *len = o;
    return 0;
}

/* each_header's callback: keeps every ce-* header as an attribute. */
static int collect(void *arg, const char *name, const char *value)
{
    ce_attrs_t *a = arg;
    ce_attr_t at = {0}, *v;
    size_t len = 0;
    int rc;

    if (strncasecmp(name, "ce-", 3) != 0)
        return 0;
    if (!(at.name = strdup(name + 3)))
        goto nomem;
    for (char *p = at.name; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (!valid_name(at.name) || !strcmp(at.name, "data")) {
        a->rc = refuse(a->c, "header names no CloudEvents attribute:", name);
        goto stop;
    }
    rc = percent_decode(value ? value : "", &at.value, &len);
    if (rc == RL_CODEC_NOMEM)
        goto nomem;
    /* A NUL would cut the C string: the value is not text relay can keep. */
    if (rc != 0 || memchr(at.value, '\0', len)) {
        a->rc = refuse(a->c, "bad percent-encoding in header", name);
        goto stop;
    }
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->v[i].name, at.name)) {
            a->rc = refuse(a->c, "attribute given twice: header", name);
            goto stop;
        }
    if (!(v = rl_array_grow(a->v, &a->cap, a->n + 1, sizeof(*v), 8)))
        goto nomem;
    a->v = v;
    a->v[a->n++] = at;
    return 0;
nomem:
    a->rc = oom(a->c);
stop:
    free(at.name);
    free(at.value);
    return 1;
}

static void attrs_free(ce_attrs_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].name);
        free(a->v[i].value);
    }
    free(a->v);
}

static const char *attr(const ce_attrs_t *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->v[i].name, name))
            return a->v[i].value;
    return NULL;
}

/* The body as `data`: JSON as it came, text as a JSON string, anything else
 * (or text that is not UTF-8) as data_base64. An empty body: no data. */
static int binary_data(ce_ctx_t *c, rl_jdoc_t *d, const rl_codec_in_t *in, cu_obuf_t *b)
{
    const char *ct = in->content_type;
    char *b64;
    size_t len;
    int rc;

    if (!in->body || in->len == 0)
        return 0;
    if (media_json(ct)) {
        if (!d) /* data_base64 would hide from consumers that the producer is wrong */
            return cu_error(c->errstr, c->errsize, CE ": Content-Type %s but the body is not JSON",
                            ct);
        const char *raw = rl_jdoc_raw(d, 0, &len);
        ob_key(b, "data");
        cu_ob_put(b, raw, len);
        return 0;
    }
    if (ct && !strncasecmp(ct + strspn(ct, " \t"), "text/", 5)) {
        ob_key(b, "data");
        if ((rc = ob_text(c, b, in->body, in->len)) != -1)
            return rc;
        b->len -= sizeof(",\"data\":") - 1;
    }
    if (!(b64 = rl_b64_encode((const uint8_t *)in->body, in->len)))
        return oom(c);
    ob_key(b, "data_base64");
    cu_ob_put(b, "\"", 1);
    cu_ob_put(b, b64, strlen(b64));
    cu_ob_put(b, "\"", 1);
    free(b64);
    return 0;
}

/* One event from the ce-* headers in a, the body its data. */
static int binary(ce_ctx_t *c, rl_jdoc_t *d, const rl_codec_in_t *in, const ce_attrs_t *a)
{
    static const char *const envelope[] = {"specversion", "id", "source", "type", "time", NULL};
    const char *ct = in->content_type, *subject = attr(a, "subject");
    cu_obuf_t rest = {0}, body = {0};
    int rc;

    if (attr(a, "datacontenttype"))
        return refuse(c, "binary mode takes Content-Type, not header", "ce-datacontenttype");
    if ((rc = check_envelope(c, attr(a, "specversion"), attr(a, "id"), attr(a, "source"),
                             attr(a, "type"), attr(a, "time"))) != 0)
        return rc;
    if (attr(a, "dataschema") && !*attr(a, "dataschema"))
        return refuse(c, "empty attribute", "dataschema");
    if (subject && (rc = text_attr(c, &rest, "subject", subject)) != 0)
        goto done;
    if (ct && (rc = text_attr(c, &rest, "datacontenttype", ct)) != 0)
        goto done;
    for (size_t i = 0; i < a->n; i++) {
        const char *name = a->v[i].name;
        size_t k = 0;

        while (envelope[k] && strcmp(envelope[k], name) != 0)
            k++;
        if (envelope[k] || !strcmp(name, "subject"))
            continue;
        if ((rc = text_attr(c, &rest, name, a->v[i].value)) != 0)
            goto done;
    }
    if ((rc = binary_data(c, d, in, &body)) != 0)
        goto done;
    rc = emit(c, attr(a, "id"), attr(a, "source"), attr(a, "type"), attr(a, "time"),
              pick_channel(attr(a, "channelid"), attr(a, "partitionkey"), subject),
              attr(a, "channelid") != NULL, attr(a, "provider") != NULL, &rest, &body);
done: /* emit freed rest */
    free(rest.p);
    free(body.p);
    return rc;
}

/* ---- the codec ------------------------------------------------------------- */

static int ce_decode(rl_jdoc_t *d, const rl_codec_in_t *in, rl_event_list_t *out, char *errstr,
                     size_t errsize)
{
    ce_ctx_t c = {.out = out, .errstr = errstr, .errsize = errsize};
    ce_attrs_t a = {.c = &c};
    const char *ct = in->content_type && *in->content_type ? in->content_type : NULL;
    rl_codec_in_t mine = *in;
    int rc;

    mine.content_type = ct;
    if (media_is(ct, "application/cloudevents-batch+json")) {
        rc = batch(&c, d);
        goto done;
    }
    if (!media_is(ct, "application/cloudevents+json") && in->each_header) {
        in->each_header(in->header_ctx, collect, &a);
        if ((rc = a.rc) != 0)
            goto done;
        if (a.n > 0) {
            rc = binary(&c, d, &mine, &a);
            goto done;
        }
    }
    /* Structured: by its Content-Type, or leniently for a JSON body without
     * ce-* headers (a CloudEvent posted as application/json, or no request). */
    if (ct && !media_is(ct, "application/cloudevents+json") && !media_json(ct))
        rc = cu_error(errstr, errsize, CE ": Content-Type %s without ce-* headers is no CloudEvent",
                      ct);
    else if (!d)
        rc = cu_error(errstr, errsize, CE ": body is not JSON");
    else
        rc = structured(&c, d, 0);
done:
    attrs_free(&a);
    rl_jdoc_destroy(c.check);
    return rc;
}

const rl_codec_t rl_codec_cloudevents = {
    .name = CE,
    .help = "CloudEvents 1.0 over HTTP (structured, batched or binary), passed through",
    .flags = RL_CODEC_ANY_BODY,
    .decode = ce_decode,
};
