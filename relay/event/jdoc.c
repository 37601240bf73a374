/* jdoc.c -- see jdoc.h.
 *
 * One allocation holds the tokens, then (reserved at the first string decode,
 * before any decoded pointer exists, so it never moves afterwards) room for
 * every decoded string: decoded text is never longer than its literal, quotes
 * included, so len + 1 bytes hold them all. */
#include "jdoc.h"

#include "array.h"
#include "err.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct jtok {
    uint8_t type; /* rl_jtype_t */
    uint8_t esc;  /* a string with escapes */
    uint32_t off, len;
    uint32_t n;    /* children: elements, or members of an object */
    uint32_t next; /* the token after this value and its descendants; while a
                    * container is open: its parent's index + 1 (0: none) */
    uint32_t dec;  /* decoded string: offset in the string area + 1; 0: not yet */
    uint32_t declen;
} jtok_t;

struct rl_jdoc {
    unsigned char *mem; /* tokens, then the string area */
    size_t cap;         /* bytes */
    size_t ntok;
    size_t str_at, str_cap, str_used; /* the string area: offset, size, used */
    const char *text;
    size_t len;
    int nomem;
    long fail_after; /* test hook: allocations left before failing; < 0: never */
    long allocs;
};

#define TOK(d) ((jtok_t *)(void *)(d)->mem)

/* Grows d->mem to at least `need` bytes; 0 or -1 (nomem set, mem unchanged). */
static int grow(rl_jdoc_t *d, size_t need)
{
    unsigned char *p;
    int rc = -1;

    if (need <= d->cap)
        return 0;
    if (d->fail_after == 0)
        goto done;
    if (!(p = rl_array_grow(d->mem, &d->cap, need, 1, 4096)))
        goto done;
    if (d->fail_after > 0)
        d->fail_after--;
    d->allocs++;
    d->mem = p;
    rc = 0;
done:
    if (rc)
        d->nomem = 1;
    return rc;
}

rl_jdoc_t *rl_jdoc_new(char *errstr, size_t errstr_size)
{
    rl_jdoc_t *d = calloc(1, sizeof(*d));

    if (!d)
        rl_seterr(errstr, errstr_size, "jdoc: out of memory");
    else
        d->fail_after = -1;
    return d;
}

void rl_jdoc_destroy(rl_jdoc_t *d)
{
    if (!d)
        return;
    free(d->mem);
    free(d);
}

size_t rl_jdoc_capacity(const rl_jdoc_t *d)
{
    return d->cap;
}

int rl_jdoc_nomem(const rl_jdoc_t *d)
{
    return d->nomem;
}

void rl_jdoc_test_fail_after(rl_jdoc_t *d, long n)
{
    d->fail_after = n;
}

long rl_jdoc_test_allocs(const rl_jdoc_t *d)
{
    return d->allocs;
}

/* ---- parsing ---------------------------------------------------------------- */

typedef struct parser {
    rl_jdoc_t *d;
    const unsigned char *s;
    size_t len, pos;
    const char *why; /* syntax error */
} parser_t;

static void skip_ws(parser_t *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\n' ||
                               p->s[p->pos] == '\r' || p->s[p->pos] == '\t'))
        p->pos++;
}

/* A new token at p->pos; its index, or -1 on out-of-memory. */
static long push(parser_t *p, rl_jtype_t type)
{
    rl_jdoc_t *d = p->d;
    size_t need = (d->ntok + 1) * sizeof(jtok_t);

    if (grow(d, need) != 0)
        return -1;
    jtok_t *t = &TOK(d)[d->ntok];
    memset(t, 0, sizeof(*t));
    t->type = (uint8_t)type;
    t->off = (uint32_t)p->pos;
    t->next = (uint32_t)(d->ntok + 1);
    return (long)d->ntok++;
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* The length of the UTF-8 sequence at s (at most `left` bytes), 0 when invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* One escape after the backslash at s[i]; returns its length or 0. */
static size_t escape_len(const unsigned char *s, size_t i, size_t len)
{
    unsigned cp, lo;

    if (i + 1 >= len)
        return 0;
    switch (s[i + 1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't': return 2;
    case 'u': break;
    default: return 0;
    }
    if (i + 6 > len || hex4(s + i + 2, &cp) != 0 || cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
        return 0;
    if (cp < 0xD800 || cp > 0xDBFF)
        return 6;
    /* A high surrogate: a low one must follow. */
    if (i + 12 > len || s[i + 6] != '\\' || s[i + 7] != 'u' || hex4(s + i + 8, &lo) != 0 ||
        lo < 0xDC00 || lo > 0xDFFF)
        return 0;
    return 12;
}

static int parse_string(parser_t *p, rl_jtype_t type)
{
    long t = push(p, type);
    size_t i = p->pos + 1, n;
    const unsigned char *s = p->s;
    int esc = 0;

    if (t < 0)
        return RL_JDOC_NOMEM;
    for (;;) {
        while (i < p->len && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
            i++;
        if (i >= p->len) {
            p->why = "unterminated string";
            return RL_JDOC_SYNTAX;
        }
        if (s[i] == '"')
            break;
        if (s[i] < 0x20) {
            p->why = "control character in a string";
            p->pos = i;
            return RL_JDOC_SYNTAX;
        }
        if (s[i] == '\\') {
            if (!(n = escape_len(s, i, p->len))) {
                p->why = "invalid escape (or \\u0000, or a lone surrogate)";
                p->pos = i;
                return RL_JDOC_SYNTAX;
            }
            esc = 1;
        } else if (!(n = utf8_len(s + i, p->len - i))) {
            p->why = "invalid UTF-8";
            p->pos = i;
            return RL_JDOC_SYNTAX;
        }
        i += n;
    }
    jtok_t *tk = &TOK(p->d)[t];
    tk->len = (uint32_t)(i + 1 - p->pos);
    tk->esc = (uint8_t)esc;
    p->pos = i + 1;
    return 0;
}

static size_t digits(const unsigned char *s, size_t i, size_t len)
{
    size_t start = i;

    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    return i - start;
}

static int parse_number(parser_t *p)
{
    const unsigned char *s = p->s;
    size_t i = p->pos, n;
    long t = push(p, RL_JNUMBER);

    if (t < 0)
        return RL_JDOC_NOMEM;
    if (s[i] == '-')
        i++;
    if (i < p->len && s[i] == '0')
        i++;
    else if (!(n = digits(s, i, p->len)))
        goto bad;
    else
        i += n;
    if (i < p->len && s[i] == '.') {
        if (!(n = digits(s, i + 1, p->len)))
            goto bad;
        i += 1 + n;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (!(n = digits(s, i, p->len)))
            goto bad;
        i += n;
    }
    TOK(p->d)[t].len = (uint32_t)(i - p->pos);
    p->pos = i;
    return 0;
bad:
    p->why = "invalid number";
    p->pos = i;
    return RL_JDOC_SYNTAX;
}

static int parse_literal(parser_t *p)
{
    static const struct {
        const char *text;
        size_t len;
        rl_jtype_t type;
    } lits[] = {{"true", 4, RL_JTRUE}, {"false", 5, RL_JFALSE}, {"null", 4, RL_JNULL}};

    for (size_t k = 0; k < 3; k++) {
        if (p->len - p->pos >= lits[k].len && !memcmp(p->s + p->pos, lits[k].text, lits[k].len)) {
            long t = push(p, lits[k].type);
            if (t < 0)
                return RL_JDOC_NOMEM;
            TOK(p->d)[t].len = (uint32_t)lits[k].len;
            p->pos += lits[k].len;
            return 0;
        }
    }
    p->why = "invalid token";
    return RL_JDOC_SYNTAX;
}

/* A member's key and its ':' at p->pos (whitespace before skipped). */
static int parse_key(parser_t *p)
{
    int rc;

    if (p->pos >= p->len || p->s[p->pos] != '"') {
        p->why = "string (an object key) expected";
        return RL_JDOC_SYNTAX;
    }
    if ((rc = parse_string(p, RL_JSTRING)) != 0)
        return rc;
    skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != ':') {
        p->why = "':' expected";
        return RL_JDOC_SYNTAX;
    }
    p->pos++;
    skip_ws(p);
    return 0;
}

/* The whole document: values are read in a loop, open containers are chained
 * through their `next` field (parent + 1) until they close. */
static int parse_doc(parser_t *p, int max_depth)
{
    jtok_t *tk;
    long cur = -1, t; /* the innermost open container */
    int depth = 0, rc;
    unsigned char c;

value:
    if (p->pos >= p->len) {
        p->why = "unexpected end of input";
        return RL_JDOC_SYNTAX;
    }
    c = p->s[p->pos];
    if (c == '{' || c == '[') {
        if (++depth > max_depth)
            return RL_JDOC_TOO_DEEP;
        if ((t = push(p, c == '{' ? RL_JOBJECT : RL_JARRAY)) < 0)
            return RL_JDOC_NOMEM;
        TOK(p->d)[t].next = (uint32_t)(cur + 1);
        cur = t;
        p->pos++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == (c == '{' ? '}' : ']'))
            goto close;
        if (c == '{' && (rc = parse_key(p)) != 0)
            return rc;
        goto value;
    }
    if (c == '"')
        rc = parse_string(p, RL_JSTRING);
    else if (c == '-' || (c >= '0' && c <= '9'))
        rc = parse_number(p);
    else
        rc = parse_literal(p);
    if (rc)
        return rc;

after:
    if (cur < 0) {
        skip_ws(p);
        if (p->pos < p->len) {
            p->why = "end of input expected";
            return RL_JDOC_SYNTAX;
        }
        return 0;
    }
    tk = &TOK(p->d)[cur];
    tk->n++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
        p->pos++;
        skip_ws(p);
        if (tk->type == RL_JOBJECT && (rc = parse_key(p)) != 0)
            return rc;
        goto value;
    }
    if (p->pos >= p->len || p->s[p->pos] != (tk->type == RL_JOBJECT ? '}' : ']')) {
        p->why = tk->type == RL_JOBJECT ? "',' or '}' expected" : "',' or ']' expected";
        return RL_JDOC_SYNTAX;
    }

close:
    tk = &TOK(p->d)[cur];
    p->pos++;
    tk->len = (uint32_t)(p->pos - tk->off);
    t = (long)tk->next - 1;
    tk->next = (uint32_t)p->d->ntok;
    cur = t;
    depth--;
    goto after;
}

int rl_jdoc_parse(rl_jdoc_t *d, const char *text, size_t len, int max_depth, char *errstr,
                  size_t errstr_size)
{
    parser_t p = {.d = d, .s = (const unsigned char *)text, .len = len};
    int rc;

    d->ntok = d->str_at = d->str_cap = d->str_used = 0;
    d->nomem = 0;
    d->text = text;
    d->len = len;
    if (len >= UINT32_MAX - 1) {
        rl_seterr(errstr, errstr_size, "body too large for the JSON parser");
        rc = RL_JDOC_SYNTAX;
        goto done;
    }
    skip_ws(&p);
    rc = parse_doc(&p, max_depth);
    if (rc == RL_JDOC_SYNTAX) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < p.pos && i < len; i++, col++)
            if (p.s[i] == '\n')
                line++, col = 0;
        rl_seterr(errstr, errstr_size, "%s (line %zu, column %zu)", p.why, line, col);
    } else if (rc == RL_JDOC_TOO_DEEP) {
        rl_seterr(errstr, errstr_size, "arrays and objects nested deeper than %d", max_depth);
    } else if (rc == RL_JDOC_NOMEM) {
        rl_seterr(errstr, errstr_size, "out of memory");
    }
done:
    if (rc)
        d->ntok = 0;
    return rc;
}

/* ---- lookups ---------------------------------------------------------------- */

static const jtok_t *tok(const rl_jdoc_t *d, int v)
{
    return (v >= 0 && (size_t)v < d->ntok) ? &TOK(d)[v] : NULL;
}

rl_jtype_t rl_jdoc_type(const rl_jdoc_t *d, int v)
{
    const jtok_t *t = tok(d, v);
    return t ? (rl_jtype_t)t->type : RL_JNONE;
}

size_t rl_jdoc_count(const rl_jdoc_t *d, int v)
{
    const jtok_t *t = tok(d, v);
    return (t && (t->type == RL_JARRAY || t->type == RL_JOBJECT)) ? t->n : 0;
}

const char *rl_jdoc_raw(const rl_jdoc_t *d, int v, size_t *len)
{
    const jtok_t *t = tok(d, v);

    if (!t)
        return NULL;
    *len = t->len;
    return d->text + t->off;
}

int rl_jdoc_first(const rl_jdoc_t *d, int v)
{
    return rl_jdoc_count(d, v) ? v + 1 : -1;
}

int rl_jdoc_next(const rl_jdoc_t *d, int parent, int v)
{
    const jtok_t *pt = tok(d, parent), *t = tok(d, v);
    uint32_t n;

    if (!pt || !t || (pt->type != RL_JARRAY && pt->type != RL_JOBJECT))
        return -1;
    n = t->next;
    if (pt->type == RL_JOBJECT) /* past the member's value */
        n = TOK(d)[n].next;
    return n < pt->next ? (int)n : -1;
}

/* Decodes the escapes of literal s (between the quotes) into out; the length. */
static size_t unescape(const unsigned char *s, size_t n, char *out)
{
    size_t o = 0;
    unsigned cp, lo;

    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            out[o++] = (char)s[i++];
            continue;
        }
        switch (s[i + 1]) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': break;
        default: out[o++] = (char)s[i + 1];
        }
        if (s[i + 1] != 'u') {
            i += 2;
            continue;
        }
        hex4(s + i + 2, &cp); /* validated by the parse */
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            hex4(s + i + 2, &lo);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        }
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else if (cp < 0x800) {
            out[o++] = (char)(0xC0 | cp >> 6);
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[o++] = (char)(0xE0 | cp >> 12);
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | cp >> 18);
            out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return o;
}

const char *rl_jdoc_str(rl_jdoc_t *d, int v, size_t *len)
{
    jtok_t *t;
    char *out;
    size_t n;

    if (rl_jdoc_type(d, v) != RL_JSTRING)
        return NULL;
    if (!d->str_cap) { /* the first decode: reserve room for all of them */
        d->str_at = (d->ntok * sizeof(jtok_t) + 15) & ~(size_t)15;
        if (grow(d, d->str_at + d->len + 1) != 0)
            return NULL;
        d->str_cap = d->len + 1;
    }
    t = &TOK(d)[v];
    if (!t->dec) {
        out = (char *)d->mem + d->str_at + d->str_used;
        n = t->len - 2;
        if (t->esc)
            n = unescape((const unsigned char *)d->text + t->off + 1, n, out);
        else
            memcpy(out, d->text + t->off + 1, n);
        out[n] = '\0';
        t->dec = (uint32_t)(d->str_used + 1);
        t->declen = (uint32_t)n;
        d->str_used += n + 1;
    }
    if (len)
        *len = t->declen;
    return (const char *)d->mem + d->str_at + t->dec - 1;
}

/* 1 when key token k's text is `key` (klen bytes). */
static int key_is(rl_jdoc_t *d, int k, const char *key, size_t klen)
{
    const jtok_t *t = &TOK(d)[k];
    const char *s;
    size_t n;

    if (!t->esc)
        return t->len - 2 == klen && !memcmp(d->text + t->off + 1, key, klen);
    s = rl_jdoc_str(d, k, &n);
    return s && n == klen && !memcmp(s, key, klen);
}

int rl_jdoc_get(rl_jdoc_t *d, int obj, const char *key)
{
    size_t klen = strlen(key);
    int found = -1;

    if (rl_jdoc_type(d, obj) != RL_JOBJECT)
        return -1;
    for (int k = rl_jdoc_first(d, obj); k >= 0; k = rl_jdoc_next(d, obj, k))
        if (key_is(d, k, key, klen))
            found = k + 1; /* keep looking: the last one wins */
    return found;
}

/* The member of obj whose key is the n bytes of reference token `seg` unescaped
 * (RFC 6901: "~1" is '/', "~0" is '~'), the last one when it repeats; -1. */
static int pointer_member(rl_jdoc_t *d, int obj, const char *seg, size_t n)
{
    char small[256], *key = n < sizeof(small) ? small : malloc(n + 1);
    size_t klen = 0;
    int found = -1;

    if (!key)
        return -1;
    for (size_t i = 0; i < n; i++)
        key[klen++] = seg[i] == '~' && i + 1 < n ? (seg[++i] == '1' ? '/' : '~') : seg[i];
    for (int k = rl_jdoc_first(d, obj); k >= 0; k = rl_jdoc_next(d, obj, k))
        if (key_is(d, k, key, klen))
            found = k + 1;
    if (key != small)
        free(key);
    return found;
}

int rl_jdoc_pointer(rl_jdoc_t *d, int v, const char *ptr)
{
    while (v >= 0 && *ptr) {
        size_t n;
        if (*ptr++ != '/')
            return -1;
        n = strcspn(ptr, "/");
        if (rl_jdoc_type(d, v) == RL_JOBJECT) {
            v = pointer_member(d, v, ptr, n);
        } else if (rl_jdoc_type(d, v) == RL_JARRAY) {
            /* An index: decimal digits, no leading zero ("-" names no element). */
            size_t idx = 0, i;
            for (i = 0; i < n && ptr[i] >= '0' && ptr[i] <= '9' && idx < 100000000; i++)
                idx = idx * 10 + (size_t)(ptr[i] - '0');
            if (n == 0 || i < n || (n > 1 && ptr[0] == '0'))
                return -1;
            int arr = v;
            for (v = rl_jdoc_first(d, arr); v >= 0 && idx > 0; idx--)
                v = rl_jdoc_next(d, arr, v);
        } else {
            return -1;
        }
        ptr += n;
    }
    return v;
}

const char *rl_jdoc_getstr(rl_jdoc_t *d, int obj, const char *key)
{
    return rl_jdoc_str(d, rl_jdoc_get(d, obj, key), NULL);
}

int rl_jdoc_is_integer(const rl_jdoc_t *d, int v)
{
    const jtok_t *t = tok(d, v);

    if (!t || t->type != RL_JNUMBER)
        return 0;
    for (uint32_t i = 0; i < t->len; i++) {
        char c = d->text[t->off + i];
        if (c == '.' || c == 'e' || c == 'E')
            return 0;
    }
    return 1;
}

int rl_jdoc_int(const rl_jdoc_t *d, int v, long long *out)
{
    const jtok_t *t = tok(d, v);
    const char *s;
    unsigned long long acc = 0, limit;
    int neg;

    if (!rl_jdoc_is_integer(d, v))
        return -1;
    s = d->text + t->off;
    neg = s[0] == '-';
    limit = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (uint32_t i = (uint32_t)neg; i < t->len; i++) {
        unsigned dgt = (unsigned)(s[i] - '0');
        if (acc > (limit - dgt) / 10)
            return -1;
        acc = acc * 10 + dgt;
    }
    *out = neg ? (acc == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)acc)
               : (long long)acc;
    return 0;
}

int rl_jdoc_real(const rl_jdoc_t *d, int v, double *out)
{
    const jtok_t *t = tok(d, v);
    char small[64], *buf = small;
    int rc = -1;

    if (!t || t->type != RL_JNUMBER)
        goto done;
    if (t->len >= sizeof(small) && !(buf = malloc(t->len + 1)))
        goto done;
    memcpy(buf, d->text + t->off, t->len);
    buf[t->len] = '\0';
    *out = strtod(buf, NULL);
    rc = 0;
done:
    if (buf != small)
        free(buf);
    return rc;
}
