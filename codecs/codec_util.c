/* codec_util.c -- helpers shared by the provider codecs (see codec_util.h). */
#include "codec_util.h"
#include "array.h"
#include "err.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#define CU_MS_THRESHOLD 100000000000LL /* 1e11 s is the year 5138: must be ms */
#define CU_MAX_SECONDS 253402300799LL  /* 9999-12-31T23:59:59Z, RFC 3339's last */

/* ----------------------------------------------------------------------------
 * Times
 * ------------------------------------------------------------------------- */

/* Writes `secs` as RFC 3339 UTC with an optional fraction (digits, no dot). We
 * print the fields ourselves: strftime's %Y does not pad years below 1000. */
static int format_utc(long long secs, const char *frac, size_t nfrac, char *out, size_t size)
{
    struct tm tm;
    time_t t = (time_t)secs;
    int n;

    if (secs < 0 || secs > CU_MAX_SECONDS || !gmtime_r(&t, &tm))
        return -1;
    n = snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d%s%.*sZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nfrac ? "." : "",
                 (int)nfrac, frac ? frac : "");
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

int cu_time_epoch(long long v, char *out, size_t size)
{
    char ms[4];

    if (v < CU_MS_THRESHOLD)
        return format_utc(v, NULL, 0, out, size);
    /* Milliseconds: keep them, but only when there are any. */
    snprintf(ms, sizeof(ms), "%03d", (int)(v % 1000));
    return format_utc(v / 1000, ms, v % 1000 ? 3 : 0, out, size);
}

int cu_time_unix(rl_jdoc_t *d, int v, char *out, size_t size)
{
    const char *s;
    long long n = 0;
    size_t len;

    if (rl_jdoc_int(d, v, &n) == 0)
        return cu_time_epoch(n, out, size);
    if (!(s = rl_jdoc_str(d, v, &len)))
        return -1;
    /* Digits only, and few enough that they cannot overflow. */
    if (len == 0 || len > 15 || strspn(s, "0123456789") != len)
        return -1;
    for (; *s; s++)
        n = n * 10 + (*s - '0');
    return cu_time_epoch(n, out, size);
}

/* The value of exactly `n` decimal digits at s, or -1. */
static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int cu_time_rfc3339(const char *s, char *out, size_t size)
{
    struct tm tm = {0};
    const char *p, *frac = NULL;
    size_t nfrac = 0;
    long long offset = 0, t;
    int oh, om;

    if (!s || strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':')
        return -1;
    tm.tm_year = digits(s, 4) - 1900;
    tm.tm_mon = digits(s + 5, 2) - 1;
    tm.tm_mday = digits(s + 8, 2);
    tm.tm_hour = digits(s + 11, 2);
    tm.tm_min = digits(s + 14, 2);
    tm.tm_sec = digits(s + 17, 2);
    if (tm.tm_year < -1900 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 ||
        tm.tm_sec < 0 || tm.tm_sec > 60)
        return -1;
    if (tm.tm_sec == 60) /* a leap second: time_t cannot hold it */
        tm.tm_sec = 59;

    p = s + 19;
    if (*p == '.') {
        frac = ++p;
        while (isdigit((unsigned char)*p))
            p++;
        nfrac = (size_t)(p - frac);
        if (nfrac == 0 || nfrac > 9)
            return -1;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strnlen(p, 6) == 6 && p[3] == ':') {
        oh = digits(p + 1, 2);
        om = digits(p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -1;
        offset = (oh * 60LL + om) * 60 * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;

    /* timegm normalizes 02-30 into 03-02: a changed day means no such date. */
    int mday = tm.tm_mday;
    t = (long long)timegm(&tm);
    if (tm.tm_mday != mday)
        return -1;
    return format_utc(t - offset, frac, nfrac, out, size);
}

int cu_time_any(rl_jdoc_t *d, int v, char *out, size_t size)
{
    const char *s = rl_jdoc_str(d, v, NULL);

    if (s && cu_time_rfc3339(s, out, size) == 0)
        return 0;
    return cu_time_unix(d, v, out, size);
}

/* ----------------------------------------------------------------------------
 * Ids
 * ------------------------------------------------------------------------- */

char *cu_derive_id(const char *prefix, const char *const *parts, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t plen = strlen(prefix);
    char *id = NULL;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);

    for (size_t i = 0; ok && i < n; i++) {
        const char *p = parts[i] ? parts[i] : "";
        if (i > 0)
            ok = EVP_DigestUpdate(ctx, "\x1f", 1);
        ok = ok && EVP_DigestUpdate(ctx, p, strlen(p));
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen >= 16;
    if (!ok || !(id = malloc(plen + 33)))
        goto done;
    memcpy(id, prefix, plen);
    for (int i = 0; i < 16; i++) {
        id[plen + 2 * i] = hex[md[i] >> 4];
        id[plen + 2 * i + 1] = hex[md[i] & 15];
    }
    id[plen + 32] = '\0';
done:
    EVP_MD_CTX_free(ctx);
    return id;
}

/* ----------------------------------------------------------------------------
 * The output buffer
 * ------------------------------------------------------------------------- */

int cu_ob_reserve(cu_obuf_t *b, size_t more)
{
    uint8_t *np;

    if (b->oom)
        return -1;
    if (!(np = rl_array_grow(b->p, &b->cap, b->len + more, 1, 1024))) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    return 0;
}

void cu_ob_put(cu_obuf_t *b, const void *s, size_t n)
{
    if (cu_ob_reserve(b, n) == 0) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

/* Only '"', '\\' and control characters must be escaped (RFC 8259 section 7);
 * the text is UTF-8 already (jdoc validated it, or it is the config's or
 * relay's). Runs of plain bytes are copied whole. */
void cu_ob_strn(cu_obuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (cu_ob_reserve(b, 2 + 6 * n) != 0) /* the worst case: every byte \u00XX */
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

/* ----------------------------------------------------------------------------
 * Canonical JSON
 * ------------------------------------------------------------------------- */

/* A member of an object being sorted: its key's text and its place. */
typedef struct canon_member {
    const char *key;
    size_t len;
    int k; /* the key's token; the value is k + 1 */
} canon_member_t;

/* jansson's order (dump.c compare_keys): bytes, then length; ties by place so
 * that the last of a repeated key sorts last. */
static int canon_cmp(const void *a, const void *b)
{
    const canon_member_t *x = a, *y = b;
    int r = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);

    if (r)
        return r;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

/* A number as jansson dumps it: an integer as %lld, a real as %.17g with ".0"
 * when it has neither '.' nor 'e', and no '+' or leading zeros in the exponent.
 * An integer too big for a long long (which jansson refuses to parse) is kept
 * as written. */
static void canon_number(cu_obuf_t *b, rl_jdoc_t *d, int v)
{
    char num[64];
    long long i;
    double r;
    size_t n;
    const char *raw;

    if (rl_jdoc_int(d, v, &i) == 0) {
        cu_ob_put(b, num, (size_t)snprintf(num, sizeof(num), "%lld", i));
        return;
    }
    if (rl_jdoc_is_integer(d, v) || rl_jdoc_real(d, v, &r) != 0) {
        raw = rl_jdoc_raw(d, v, &n);
        cu_ob_put(b, raw, n);
        return;
    }
    n = (size_t)snprintf(num, sizeof(num) - 2, "%.17g", r);
    if (!strchr(num, '.') && !strchr(num, 'e')) {
        memcpy(num + n, ".0", 3);
        n += 2;
    }
    char *e = strchr(num, 'e');
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, strlen(end) + 1);
            n = strlen(num);
        }
    }
    cu_ob_put(b, num, n);
}

static void canon_value(cu_obuf_t *b, rl_jdoc_t *d, int v);

static void canon_object(cu_obuf_t *b, rl_jdoc_t *d, int v)
{
    size_t n = rl_jdoc_count(d, v), m = 0;
    canon_member_t *ms = n ? malloc(n * sizeof(*ms)) : NULL;
    int first = 1;

    if (n && !ms) {
        b->oom = 1;
        return;
    }
    for (int k = rl_jdoc_first(d, v); k >= 0; k = rl_jdoc_next(d, v, k), m++) {
        ms[m].k = k;
        if (!(ms[m].key = rl_jdoc_str(d, k, &ms[m].len)))
            b->oom = 1;
    }
    if (!b->oom && m > 1)
        qsort(ms, m, sizeof(*ms), canon_cmp);
    cu_ob_put(b, "{", 1);
    for (size_t i = 0; !b->oom && i < m; i++) {
        if (i + 1 < m && ms[i + 1].len == ms[i].len && !memcmp(ms[i + 1].key, ms[i].key, ms[i].len))
            continue; /* a repeated key: only its last value counts */
        if (!first)
            cu_ob_put(b, ",", 1);
        first = 0;
        cu_ob_strn(b, ms[i].key, ms[i].len);
        cu_ob_put(b, ":", 1);
        canon_value(b, d, ms[i].k + 1);
    }
    cu_ob_put(b, "}", 1);
    free(ms);
}

/* The depth is bounded by http.max_json_depth. */
static void canon_value(cu_obuf_t *b, rl_jdoc_t *d, int v)
{
    const char *s;
    size_t n;

    switch (rl_jdoc_type(d, v)) {
    case RL_JOBJECT: canon_object(b, d, v); break;
    case RL_JARRAY:
        cu_ob_put(b, "[", 1);
        for (int e = rl_jdoc_first(d, v); e >= 0; e = rl_jdoc_next(d, v, e)) {
            if (e != v + 1)
                cu_ob_put(b, ",", 1);
            canon_value(b, d, e);
        }
        cu_ob_put(b, "]", 1);
        break;
    case RL_JSTRING:
        if (!(s = rl_jdoc_str(d, v, &n)))
            b->oom = 1;
        else
            cu_ob_strn(b, s, n);
        break;
    case RL_JNUMBER: canon_number(b, d, v); break;
    case RL_JTRUE: cu_ob_put(b, "true", 4); break;
    case RL_JFALSE: cu_ob_put(b, "false", 5); break;
    case RL_JNULL: cu_ob_put(b, "null", 4); break;
    default: b->oom = 1;
    }
}

static int member_cmp(const void *a, const void *b)
{
    const cu_member_t *x = a, *y = b;

    return x->key < y->key ? -1 : x->key > y->key;
}

int cu_members(rl_jdoc_t *d, int obj, cu_member_t **out, size_t *nout)
{
    size_t n = rl_jdoc_count(d, obj), m = 0, i;
    canon_member_t *ms = malloc((n ? n : 1) * sizeof(*ms));
    cu_member_t *res = malloc((n ? n : 1) * sizeof(*res));
    int rc = -1;

    if (!ms || !res)
        goto done;
    for (int k = rl_jdoc_first(d, obj); k >= 0; k = rl_jdoc_next(d, obj, k), m++) {
        ms[m].k = k;
        if (!(ms[m].key = rl_jdoc_str(d, k, &ms[m].len)))
            goto done;
    }
    qsort(ms, m, sizeof(*ms), canon_cmp);
    n = 0;
    for (i = 0; i < m; i++) {
        size_t first = i;
        while (i + 1 < m && ms[i + 1].len == ms[i].len &&
               !memcmp(ms[i + 1].key, ms[i].key, ms[i].len))
            i++;
        res[n].key = ms[first].k;
        res[n++].value = ms[i].k + 1;
    }
    qsort(res, n, sizeof(*res), member_cmp);
    *out = res;
    *nout = n;
    res = NULL;
    rc = 0;
done:
    free(ms);
    free(res);
    return rc;
}

char *cu_canonical(rl_jdoc_t *d, int v)
{
    cu_obuf_t b = {0};

    canon_value(&b, d, v);
    cu_ob_put(&b, "", 1);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return (char *)b.p;
}

/* ----------------------------------------------------------------------------
 * Getters and errors
 * ------------------------------------------------------------------------- */

const char *cu_str(rl_jdoc_t *d, int obj, const char *key)
{
    return rl_jdoc_getstr(d, obj, key);
}

const char *cu_text(rl_jdoc_t *d, int v, char *buf, size_t size)
{
    const char *s = rl_jdoc_str(d, v, NULL);
    long long n;

    if (s || rl_jdoc_int(d, v, &n) != 0)
        return s;
    snprintf(buf, size, "%lld", n);
    return buf;
}

int cu_error(char *errstr, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rl_vseterr(errstr, size, fmt, ap);
    va_end(ap);
    return -1;
}

/* ----------------------------------------------------------------------------
 * Normalized data
 * ------------------------------------------------------------------------- */

/* A string field, or null for NULL. */
static rl_field_t str_field(const char *name, const char *v)
{
    rl_field_t f = {.name = name, .kind = v ? RL_FIELD_STRING : RL_FIELD_NULL, .str = v};

    f.len = v ? strlen(v) : 0;
    return f;
}

/* "raw": the provider's bytes of value v verbatim (null when v is none). */
static rl_field_t raw_field(rl_jdoc_t *d, int v)
{
    rl_field_t f = {.name = "raw", .kind = RL_FIELD_NULL};

    if ((f.str = rl_jdoc_raw(d, v, &f.len)))
        f.kind = RL_FIELD_JSON;
    return f;
}

size_t cu_channel_fields(const cu_channel_t *f, rl_jdoc_t *d, int raw, rl_field_t *out)
{
    size_t n = 0;

    out[n++] = str_field("channel_id", f->channel_id);
    out[n++] = str_field("channel_type", f->channel_type);
    out[n++] = str_field("provider", f->provider);
    out[n++] = str_field("status", f->status);
    out[n++] = str_field("reason", f->reason);
    out[n++] = str_field("error_code", f->error_code);
    out[n++] = str_field("error_message", f->error_message);
    out[n++] = str_field("error_category", f->error_category);
    out[n++] = str_field("occurred_at", f->occurred_at);
    out[n++] = raw_field(d, raw);
    return n;
}

size_t cu_message_fields(const cu_message_t *f, rl_jdoc_t *d, int raw, rl_field_t *out)
{
    size_t n = 0;

    out[n++] = str_field("message_id", f->message_id);
    out[n++] = str_field("conversation_id", f->conversation_id);
    out[n++] = str_field("contact_id", f->contact_id);
    out[n++] = str_field("direction", f->direction);
    out[n++] = str_field("content_type", f->content_type);
    out[n++] = str_field("content", f->content);
    out[n++] = str_field("media_url", f->media_url);
    out[n++] = str_field("occurred_at", f->occurred_at);
    out[n++] = str_field("sent_by_type", f->sent_by_type);
    out[n++] = str_field("error_code", f->error_code);
    out[n++] = str_field("error_message", f->error_message);
    out[n++] = raw_field(d, raw);
    return n;
}

size_t cu_other_fields(const char *channel_id, const char *occurred_at, rl_jdoc_t *d, int raw,
                       rl_field_t *out)
{
    size_t n = 0;

    out[n++] = str_field("channel_id", channel_id);
    out[n++] = str_field("occurred_at", occurred_at);
    out[n++] = raw_field(d, raw);
    return n;
}

/* The n fields and every string they point to, copied into one block. */
static rl_field_t *copy_fields(const rl_field_t *fields, size_t n)
{
    size_t size = n * sizeof(rl_field_t);
    rl_field_t *out;
    char *p;

    for (size_t i = 0; i < n; i++)
        if (fields[i].str)
            size += fields[i].len + 1;
    if (!(out = malloc(size)))
        return NULL;
    p = (char *)(out + n);
    for (size_t i = 0; i < n; i++) {
        out[i] = fields[i];
        if (fields[i].str) {
            memcpy(p, fields[i].str, fields[i].len);
            p[fields[i].len] = '\0';
            out[i].str = p;
            p += fields[i].len + 1;
        }
    }
    return out;
}

/* ----------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------- */

int cu_emit(rl_event_list_t *out, char *id, const char *type, const char *channel_id,
            const char *workspace_id, const char *time, const rl_field_t *fields, size_t n)
{
    rl_event_t ev = {.id = id, .nfields = n};
    rl_event_t *slot;

    /* Build the whole event first so that the list never holds a half-made one. */
    ev.fields = copy_fields(fields, n);
    ev.type = strdup(type);
    ev.channel_id = strdup(channel_id ? channel_id : "");
    ev.workspace_id = workspace_id ? strdup(workspace_id) : NULL;
    ev.time = (time && *time) ? strdup(time) : NULL;
    if (!ev.id || !ev.fields || !ev.type || !ev.channel_id || (workspace_id && !ev.workspace_id) ||
        (time && *time && !ev.time))
        goto fail;
    if (!(slot = rl_event_list_push(out)))
        goto fail;
    *slot = ev;
    return 0;
fail:
    free(ev.id);
    free(ev.type);
    free(ev.channel_id);
    free(ev.workspace_id);
    free(ev.time);
    free(ev.fields);
    return RL_CODEC_NOMEM;
}
