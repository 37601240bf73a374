/* codecs.c -- the codec table and the event list shared by every codec.
 *
 * Adding a provider: write codec_NAME.c exporting `const rl_codec_t rl_codec_NAME`,
 * declare it below and add it to rl_codecs[]. */
#include "codec.h"

#include "array.h"
#include "err.h"

#include <stdlib.h>
#include <string.h>

extern const rl_codec_t rl_codec_timely;
extern const rl_codec_t rl_codec_whapi;
extern const rl_codec_t rl_codec_generic;
extern const rl_codec_t rl_codec_cloudevents;
extern const rl_codec_t rl_codec_meta;

const rl_codec_t *const rl_codecs[] = {
    &rl_codec_timely,
    &rl_codec_whapi,
    &rl_codec_generic,
    &rl_codec_cloudevents, /* CloudEvents 1.0, passed through */
    &rl_codec_meta,        /* Meta's WhatsApp Cloud API */
    NULL,
};

const rl_codec_t *rl_codec_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; rl_codecs[i]; i++)
        if (strcmp(rl_codecs[i]->name, name) == 0)
            return rl_codecs[i];
    return NULL;
}

int rl_codec_decode(const rl_codec_t *c, rl_jdoc_t *doc, const rl_codec_in_t *in,
                    rl_event_list_t *out, char *errstr, size_t errstr_size)
{
    static const rl_codec_in_t none = {0};
    int rc = c->decode(doc, in ? in : &none, out, errstr, errstr_size);

    if ((doc && rl_jdoc_nomem(doc)) || rc == RL_CODEC_NOMEM) {
        rl_seterr(errstr, errstr_size, "%s: out of memory", c->name);
        rc = RL_CODEC_NOMEM;
    }
    return rc;
}

int rl_codec_check(const rl_codec_t *c, const rl_source_conf_t *sc, const char **key, char *errstr,
                   size_t errstr_size)
{
    void *conf;

    *key = NULL;
    if (!c->setup)
        return 0;
    if (!(conf = c->setup(sc, key, errstr, errstr_size)))
        return -1;
    if (c->teardown)
        c->teardown(conf);
    return 0;
}

int rl_codec_owns_key(const char *key)
{
    for (size_t i = 0; rl_codecs[i]; i++)
        for (size_t k = 0; rl_codecs[i]->keys && rl_codecs[i]->keys[k]; k++)
            if (strcmp(rl_codecs[i]->keys[k], key) == 0)
                return 1;
    return 0;
}

const char *rl_event_family(const char *type)
{
    if (type && strncmp(type, "channel.", 8) == 0)
        return "channel";
    if (type && strncmp(type, "message.", 8) == 0)
        return "message";
    return "other";
}

void rl_event_list_init(rl_event_list_t *l)
{
    l->v = NULL;
    l->n = l->cap = 0;
}

rl_event_t *rl_event_list_push(rl_event_list_t *l)
{
    rl_event_t *v;

    if (!(v = rl_array_grow(l->v, &l->cap, l->n + 1, sizeof(*v), 8)))
        return NULL;
    l->v = v;
    memset(&l->v[l->n], 0, sizeof(l->v[0]));
    return &l->v[l->n++];
}

/* Also releases the array itself: codec.h has no separate destroy, so a list
 * that is cleared for the last time must not keep memory. Pushing afterwards
 * allocates again, so the list stays usable. */
void rl_event_list_clear(rl_event_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        rl_event_t *ev = &l->v[i];
        free(ev->id);
        free(ev->type);
        free(ev->channel_id);
        free(ev->workspace_id);
        free(ev->time);
        free(ev->fields);
        free(ev->ce_source);
        free(ev->ce_rest);
    }
    free(l->v);
    rl_event_list_init(l);
}
