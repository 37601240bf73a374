/* codec_generic.c -- a provider described by configuration, not by C.
 *
 * The source's keys are JSON Pointers (RFC 6901) into the body: `items` (the
 * array whose elements are the events; unset: the body is one event), and in
 * each item `id`, `type` (required), `channel`, `time` and `workspace`, plus
 * `type_map`, "provider value=normalized type, ...". A mapped type gets its
 * family's normalized fields, as far as the type says them (a channel's status,
 * a message's direction); an unmapped one becomes "<source>.<value>" in family
 * other. An item without an id gets one derived from its canonical JSON, so a
 * retried body repeats it. */
#include "codec_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The normalized vocabulary a type_map may name, with what the type itself
 * says about the event. */
typedef struct norm_type {
    const char *type;
    const char *status;    /* channel family: its status */
    const char *direction; /* message family */
} norm_type_t;

static const norm_type_t norm_types[] = {
    {"channel.connected", "connected", NULL},
    {"channel.connecting", "connecting", NULL},
    {"channel.pairing", "pairing", NULL},
    {"channel.error", "degraded", NULL},
    {"channel.disconnected", "disconnected", NULL},
    {"message.received", NULL, "inbound"},
    {"message.sent", NULL, "outbound"},
    {"message.delivered", NULL, "outbound"},
    {"message.read", NULL, "outbound"},
    {"message.failed", NULL, "outbound"},
    {NULL, NULL, NULL},
};

typedef struct gen_map {
    char *from;            /* the provider's value */
    const norm_type_t *to; /* a row of norm_types */
} gen_map_t;

typedef struct gen_conf {
    const rl_source_conf_t *sc; /* borrowed: the pointers and the source's name */
    gen_map_t *map;
    size_t nmap;
} gen_conf_t;

static const norm_type_t *find_norm(const char *type, size_t len)
{
    for (const norm_type_t *t = norm_types; t->type; t++)
        if (strlen(t->type) == len && !strncmp(t->type, type, len))
            return t;
    return NULL;
}

static void gen_teardown(void *p)
{
    gen_conf_t *g = p;

    if (!g)
        return;
    for (size_t i = 0; i < g->nmap; i++)
        free(g->map[i].from);
    free(g->map);
    free(g);
}

/* Around pairs and values (a key continued on indented lines holds newlines). */
#define BLANKS " \t\r\n"

/* One "value=type" of type_map, `len` bytes at s, into g->map. 0, or -1 with
 * errstr. */
static int map_pair(gen_conf_t *g, const char *s, size_t len, char *errstr, size_t errsize)
{
    const char *eq = memchr(s, '=', len), *to, *end = s + len;
    size_t flen;

    if (!eq)
        return cu_error(errstr, errsize, "type_map: '%.*s' is not value=type", (int)len, s);
    flen = (size_t)(eq - s);
    while (flen && strchr(BLANKS, s[flen - 1]))
        flen--;
    for (to = eq + 1; to < end && strchr(BLANKS, *to); to++)
        ;
    while (end > to && strchr(BLANKS, end[-1]))
        end--;
    if (!flen)
        return cu_error(errstr, errsize, "type_map: '%.*s' has no provider value", (int)len, s);
    const norm_type_t *nt = find_norm(to, (size_t)(end - to));
    if (!nt)
        return cu_error(errstr, errsize,
                        "type_map: '%.*s' is not a normalized type (channel.connected, "
                        "channel.connecting, channel.pairing, channel.error, channel.disconnected, "
                        "message.received, message.sent, message.delivered, message.read, "
                        "message.failed)",
                        (int)(end - to), to);
    for (size_t i = 0; i < g->nmap; i++)
        if (strlen(g->map[i].from) == flen && !strncmp(g->map[i].from, s, flen))
            return cu_error(errstr, errsize, "type_map: '%.*s' is mapped twice", (int)flen, s);
    gen_map_t *m = realloc(g->map, (g->nmap + 1) * sizeof(*m));
    if (!m)
        return cu_error(errstr, errsize, "out of memory");
    g->map = m;
    if (!(m[g->nmap].from = strndup(s, flen)))
        return cu_error(errstr, errsize, "out of memory");
    m[g->nmap++].to = nt;
    return 0;
}

static void *gen_setup(const rl_source_conf_t *sc, const char **key, char *errstr, size_t errsize)
{
    gen_conf_t *g = calloc(1, sizeof(*g));
    const char *s;

    if (!g) {
        cu_error(errstr, errsize, "out of memory");
        goto fail;
    }
    g->sc = sc;
    if (!sc->type || !*sc->type) {
        *key = "type";
        cu_error(errstr, errsize,
                 "codec = generic needs 'type', the JSON Pointer of each event's type");
        goto fail;
    }
    for (s = sc->type_map ? sc->type_map : ""; *s;) {
        size_t n = strcspn(s, ",");
        size_t lead = strspn(s, BLANKS);
        if (lead < n && map_pair(g, s + lead, n - lead, errstr, errsize) != 0) {
            *key = "type_map";
            goto fail;
        }
        s += n + (s[n] == ',');
    }
    return g;
fail:
    gen_teardown(g);
    return NULL;
}

/* The text of the value `ptr` names in item v: a string, or an integer as text
 * (into buf); NULL when the pointer is unset or names neither. */
static const char *text_at(rl_jdoc_t *d, int v, const char *ptr, char *buf, size_t size)
{
    if (!ptr || !*ptr)
        return NULL;
    return cu_text(d, rl_jdoc_pointer(d, v, ptr), buf, size);
}

/* One item into one event. 0, -1 with errstr, or RL_CODEC_NOMEM. */
static int gen_item(const gen_conf_t *g, rl_jdoc_t *d, int item, size_t pos, rl_event_list_t *out,
                    char *errstr, size_t errsize)
{
    const rl_source_conf_t *sc = g->sc;
    const norm_type_t *nt = NULL;
    const char *value, *id_text, *channel, *workspace;
    char vbuf[32], ibuf[32], cbuf[32], wbuf[32], occurred[CU_TIME_SIZE] = "";
    char *id = NULL, *type = NULL, *canon = NULL;
    rl_field_t f[CU_MAX_FIELDS];
    size_t nf;
    int rc = RL_CODEC_NOMEM;

    if (!(value = text_at(d, item, sc->type, vbuf, sizeof(vbuf))) || !*value) {
        rc = cu_error(errstr, errsize, "generic: item %zu has no string at %s (type)", pos,
                      sc->type);
        goto done;
    }
    for (size_t i = 0; i < g->nmap && !nt; i++)
        if (!strcmp(g->map[i].from, value))
            nt = g->map[i].to;
    if (nt)
        type = strdup(nt->type);
    else if (asprintf(&type, "%s.%s", sc->name, value) < 0)
        type = NULL;
    id_text = text_at(d, item, sc->id, ibuf, sizeof(ibuf));
    if (id_text && *id_text) {
        id = strdup(id_text);
    } else if ((canon = cu_canonical(d, item))) {
        char prefix[80];
        const char *parts[1] = {canon};
        snprintf(prefix, sizeof(prefix), "%.70s_", sc->name);
        id = cu_derive_id(prefix, parts, 1);
    }
    if (!type || !id)
        goto done;
    channel = text_at(d, item, sc->channel, cbuf, sizeof(cbuf));
    workspace = text_at(d, item, sc->workspace, wbuf, sizeof(wbuf));
    if (!sc->time || !*sc->time ||
        cu_time_any(d, rl_jdoc_pointer(d, item, sc->time), occurred, sizeof(occurred)) != 0)
        occurred[0] = '\0';

    if (nt && nt->status) {
        cu_channel_t ch = {.channel_id = channel,
                           .status = nt->status,
                           .occurred_at = occurred[0] ? occurred : NULL};
        nf = cu_channel_fields(&ch, d, item, f);
    } else if (nt) {
        cu_message_t m = {.direction = nt->direction, .occurred_at = occurred[0] ? occurred : NULL};
        nf = cu_message_fields(&m, d, item, f);
    } else {
        nf = cu_other_fields(channel, occurred[0] ? occurred : NULL, d, item, f);
    }
    rc = cu_emit(out, id, type, channel, workspace, occurred, f, nf);
    id = NULL; /* stolen by cu_emit */
    if (rc == 0)
        out->v[out->n - 1].id_derived = !(id_text && *id_text);
done:
    if (rc == RL_CODEC_NOMEM)
        cu_error(errstr, errsize, "generic: out of memory");
    free(id);
    free(type);
    free(canon);
    return rc;
}

static int gen_decode(rl_jdoc_t *d, const rl_codec_in_t *in, rl_event_list_t *out, char *errstr,
                      size_t errsize)
{
    const gen_conf_t *g = in->conf;
    int items, rc = -1;
    size_t pos = 0;

    if (!g) {
        cu_error(errstr, errsize, "generic: the source has no configuration");
        goto done;
    }
    if (!d || rl_jdoc_type(d, 0) == RL_JNONE) {
        cu_error(errstr, errsize, "generic: body is not JSON");
        goto done;
    }
    if (!g->sc->items || !*g->sc->items) {
        rc = gen_item(g, d, 0, 0, out, errstr, errsize);
        goto done;
    }
    items = rl_jdoc_pointer(d, 0, g->sc->items);
    if (rl_jdoc_type(d, items) != RL_JARRAY) {
        cu_error(errstr, errsize, "generic: no array at %s (items)", g->sc->items);
        goto done;
    }
    rc = 0;
    for (int it = rl_jdoc_first(d, items); it >= 0 && rc == 0; it = rl_jdoc_next(d, items, it))
        rc = gen_item(g, d, it, pos++, out, errstr, errsize);
done:
    return rc;
}

static const char *const gen_keys[] = {"items", "id",        "type",     "channel",
                                       "time",  "workspace", "type_map", NULL};

const rl_codec_t rl_codec_generic = {
    .name = "generic",
    .help = "any JSON provider, described by JSON Pointers in its [source] (items, id, type, "
            "channel, time, workspace, type_map)",
    .keys = gen_keys,
    .setup = gen_setup,
    .teardown = gen_teardown,
    .decode = gen_decode,
};
