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

int cu_time_unix(const json_t *v, char *out, size_t size)
{
    const char *s;
    long long n = 0;
    size_t len;

    if (json_is_integer(v))
        return cu_time_epoch(json_integer_value(v), out, size);
    if (!json_is_string(v))
        return -1;
    /* Digits only, and few enough that they cannot overflow. */
    s = json_string_value(v);
    len = strlen(s);
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

int cu_time_any(const json_t *v, char *out, size_t size)
{
    if (json_is_string(v) && cu_time_rfc3339(json_string_value(v), out, size) == 0)
        return 0;
    return cu_time_unix(v, out, size);
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

/* Output buffer for cu_canonical. `failed` is sticky. */
typedef struct canon_buf {
    char *p;
    size_t len, cap;
    int failed;
} canon_buf_t;

static int canon_append(const char *buf, size_t size, void *data)
{
    canon_buf_t *b = data;
    char *p;

    if (b->failed)
        return -1;
    if (!(p = rl_array_grow(b->p, &b->cap, b->len + size + 1, 1, 256))) {
        b->failed = 1;
        return -1;
    }
    b->p = p;
    memcpy(b->p + b->len, buf, size);
    b->len += size;
    b->p[b->len] = '\0';
    return 0;
}

/* Not json_dumps: jansson 2.14 ignores a failed write of an object key under
 * JSON_SORT_KEYS and returns text with the key missing (akheron/jansson#655), an
 * id hashed from it would be wrong. Our own sink remembers any failure. */
char *cu_canonical(const json_t *v)
{
    canon_buf_t b = {0};

    if (json_dump_callback(v, canon_append, &b, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY) !=
            0 ||
        b.failed || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ----------------------------------------------------------------------------
 * Getters and errors
 * ------------------------------------------------------------------------- */

const char *cu_str(const json_t *obj, const char *key)
{
    /* json_object_get returns NULL for a NULL or non-object `obj`. */
    return json_string_value(json_object_get(obj, key));
}

const char *cu_text(const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (!json_is_integer(v))
        return NULL;
    snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
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

/* Sets obj[key] to a string or null. json_object_set_new consumes the value even
 * when it fails, and fails on a NULL obj, so callers just OR the results. */
static int set_str(json_t *obj, const char *key, const char *v)
{
    return json_object_set_new(obj, key, v ? json_string(v) : json_null());
}

/* Adds "raw" (a new reference to `raw`) and returns obj, or frees obj on any
 * earlier failure (rc != 0) and returns NULL. */
static json_t *finish(json_t *obj, int rc, json_t *raw)
{
    rc |= json_object_set(obj, "raw", raw ? raw : json_null());
    if (rc) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *cu_channel_data(const cu_channel_t *f, json_t *raw)
{
    json_t *d = json_object();
    int rc = 0;

    rc |= set_str(d, "channel_id", f->channel_id);
    rc |= set_str(d, "channel_type", f->channel_type);
    rc |= set_str(d, "provider", f->provider);
    rc |= set_str(d, "status", f->status);
    rc |= set_str(d, "reason", f->reason);
    rc |= set_str(d, "error_code", f->error_code);
    rc |= set_str(d, "error_message", f->error_message);
    rc |= set_str(d, "error_category", f->error_category);
    rc |= set_str(d, "occurred_at", f->occurred_at);
    return finish(d, rc, raw);
}

json_t *cu_message_data(const cu_message_t *f, json_t *raw)
{
    json_t *d = json_object();
    int rc = 0;

    rc |= set_str(d, "message_id", f->message_id);
    rc |= set_str(d, "conversation_id", f->conversation_id);
    rc |= set_str(d, "contact_id", f->contact_id);
    rc |= set_str(d, "direction", f->direction);
    rc |= set_str(d, "content_type", f->content_type);
    rc |= set_str(d, "content", f->content);
    rc |= set_str(d, "media_url", f->media_url);
    rc |= set_str(d, "occurred_at", f->occurred_at);
    rc |= set_str(d, "sent_by_type", f->sent_by_type);
    return finish(d, rc, raw);
}

json_t *cu_other_data(const char *channel_id, const char *occurred_at, json_t *raw)
{
    json_t *d = json_object();
    int rc = 0;

    rc |= set_str(d, "channel_id", channel_id);
    rc |= set_str(d, "occurred_at", occurred_at);
    return finish(d, rc, raw);
}

/* ----------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------- */

int cu_emit(rl_event_list_t *out, char *id, const char *type, const char *channel_id,
            const char *workspace_id, const char *time, json_t *data)
{
    rl_event_t ev = {.id = id, .data = data};
    rl_event_t *slot;

    /* Build the whole event first so that the list never holds a half-made one. */
    ev.type = strdup(type);
    ev.channel_id = strdup(channel_id ? channel_id : "");
    ev.workspace_id = workspace_id ? strdup(workspace_id) : NULL;
    ev.time = (time && *time) ? strdup(time) : NULL;
    if (!ev.id || !ev.data || !ev.type || !ev.channel_id || (workspace_id && !ev.workspace_id) ||
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
    json_decref(ev.data);
    return -1;
}
