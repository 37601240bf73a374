/* fuzz_codec.h -- the body of a codec target: fuzz_timely.c and fuzz_whapi.c
 * define FUZZ_CODEC and include this (a codec with settings also defines
 * FUZZ_SOURCE, the initializer of the rl_source_conf_t its setup reads). Seeds:
 * tests/fixtures/CODEC/ (and for Timely the seed bodies in tests/system/fixtures/timely/).
 *
 * Any bytes go through the path a request takes after authentication: rl_jdoc
 * parse (depth 2000), rl_codec_decode, CloudEvent, WAL record encode and
 * decode. Invariants: jdoc and jansson agree on what is JSON (jdoc may accept
 * only numbers jansson finds too big, and the raw span of the root is the body
 * without its outer blanks); an accepted body yields events with a non-empty id
 * and type, a CloudEvent that is JSON and carries that id and, in `data`, every
 * field of the event with its value (raw: the provider's bytes verbatim), a
 * record that decodes back to the same fields, and the same ids when decoded
 * twice (providers' retries must dedup); a refused body comes with a reason. */
#include "fuzz.h"

#include "codec.h"
#include "jdoc.h"
#include "record.h"

#include <jansson.h>
#include <string.h>

static void check_events(const rl_codec_t *c, const rl_event_list_t *evs)
{
    for (size_t i = 0; i < evs->n; i++) {
        const rl_event_t *ev = &evs->v[i];
        FUZZ_CHECK(ev->id && *ev->id && ev->type && *ev->type && ev->channel_id &&
                       (ev->fields || ev->ce_rest),
                   "event %zu incomplete", i);
        char *ce = rl_record_cloudevent(ev, "fuzz", c->name);
        FUZZ_CHECK(ce, "no CloudEvent for event %zu", i);
        json_error_t e;
        json_t *j = json_loads(ce, 0, &e);
        /* raw may hold a number jdoc accepts and jansson finds too big. */
        if (!j && (strstr(e.text, "too big") || strstr(e.text, "overflow")))
            goto record;
        FUZZ_CHECK(j && json_is_object(j), "CloudEvent is not a JSON object: %.200s", ce);
        const char *id = json_string_value(json_object_get(j, "id"));
        FUZZ_CHECK(id && !strcmp(id, ev->id), "CloudEvent id differs from the event's");
        /* A CloudEvent passed through has no fields: its data is the producer's,
         * and its source must be the producer's too. */
        if (ev->ce_rest) {
            const char *src = json_string_value(json_object_get(j, "source"));
            FUZZ_CHECK(src && !strcmp(src, ev->ce_source), "CloudEvent source differs");
            json_decref(j);
            goto record;
        }
        /* Every field is in the CloudEvent's data with its value. */
        json_t *data = json_object_get(j, "data");
        FUZZ_CHECK(json_is_object(data) && json_object_size(data) == ev->nfields,
                   "data has not the event's %zu fields: %.200s", ev->nfields, ce);
        for (size_t f = 0; f < ev->nfields; f++) {
            const rl_field_t *fl = &ev->fields[f];
            json_t *v = json_object_get(data, fl->name), *want = NULL;
            FUZZ_CHECK(v, "data.%s missing", fl->name);
            switch (fl->kind) {
            case RL_FIELD_STRING: want = json_stringn(fl->str, fl->len); break;
            case RL_FIELD_INT: want = json_integer(fl->num); break;
            case RL_FIELD_BOOL: want = json_boolean(fl->num); break;
            case RL_FIELD_JSON: want = json_loadb(fl->str, fl->len, JSON_DECODE_ANY, NULL); break;
            default: want = json_null();
            }
            FUZZ_CHECK(want && json_equal(v, want), "data.%s differs from the event's field",
                       fl->name);
            json_decref(want);
        }
        json_decref(j);
    record:;
        uint8_t *buf = NULL, *one = NULL;
        size_t len = 0, one_len = 0;
        int rc2 = rl_record_encode("fuzz", ev, ce, 1, &buf, &len);
        /* What ingest writes (the CloudEvent straight into the payload) is the
         * same bytes as the two steps. */
        FUZZ_CHECK((rl_record_event("fuzz", c->name, ev, 1, &one, &one_len) == 0) == (rc2 == 0),
                   "one-step and two-step encoding disagree on success");
        if (rc2 == 0) {
            rl_record_t rec;
            FUZZ_CHECK(one_len == len && !memcmp(one, buf, len), "one-step payload differs");
            FUZZ_CHECK(rl_record_decode(buf, len, &rec) == 0, "record does not decode");
            FUZZ_CHECK(rec.kind == RL_RECORD_EVENT && rec.id_len == strlen(ev->id) &&
                           !memcmp(rec.id, ev->id, rec.id_len) && rec.event_len == strlen(ce),
                       "record fields differ");
        } /* else a field over 64 KiB: the request is answered 500, nothing written */
        free(buf);
        free(one);
        free(ce);
    }
}

/* jdoc's verdict against jansson's on the same bytes (rc: rl_jdoc_parse's). */
static void check_parse(rl_jdoc_t *d, int rc, const uint8_t *data, size_t size)
{
    json_error_t e;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &e);

    /* jansson (JSON_DECODE_ANY) takes a NUL byte after a scalar root for the end
     * of input ("8\0"); jdoc refuses any NUL outside a string, as RFC 8259. */
    if (j && !memchr(data, '\0', size)) {
        FUZZ_CHECK(rc == 0 || rc == RL_JDOC_TOO_DEEP, "jansson accepts what jdoc refuses (%d)", rc);
    } else if (!j && rc == 0) {
        FUZZ_CHECK(strstr(e.text, "too big") || strstr(e.text, "overflow") ||
                       strstr(e.text, "maximum parsing depth"),
                   "jdoc accepts what jansson refuses: %s", e.text);
    }
    if (rc == 0) {
        size_t len, lead = 0;
        const char *raw = rl_jdoc_raw(d, 0, &len);
        while (lead < size && data[lead] && strchr(" \t\r\n", data[lead]))
            lead++;
        FUZZ_CHECK(raw == (const char *)data + lead && len <= size - lead,
                   "the root's span is not the body's");
    }
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const rl_codec_t *c;
    static rl_jdoc_t *d; /* reused, as ingest reuses its documents */
    static rl_codec_in_t in;
    rl_event_list_t evs, again;
    char err[256], err2[256];

    if (!c && !(c = rl_codec_find(FUZZ_CODEC)))
        abort();
#ifdef FUZZ_SOURCE /* a codec with settings: the [source] its setup reads */
    static const rl_source_conf_t source = FUZZ_SOURCE;
    const char *key = NULL;
    if (!in.conf && !(in.conf = c->setup(&source, &key, err, sizeof(err))))
        abort();
#endif
    if (!d && !(d = rl_jdoc_new(NULL, 0)))
        abort();
    int prc = rl_jdoc_parse(d, (const char *)data, size, 2000, err, sizeof(err));
    check_parse(d, prc, data, size);
    if (prc != 0)
        return 0;
    rl_event_list_init(&evs);
    rl_event_list_init(&again);
    err[0] = err2[0] = '\0';
    int rc = rl_codec_decode(c, d, &in, &evs, err, sizeof(err));
    if (rc == 0) {
        check_events(c, &evs);
        FUZZ_CHECK(rl_codec_decode(c, d, &in, &again, err2, sizeof(err2)) == 0 && again.n == evs.n,
                   "a second decode differs");
        for (size_t i = 0; i < evs.n; i++)
            FUZZ_CHECK(!strcmp(evs.v[i].id, again.v[i].id), "ids are not stable: %s vs %s",
                       evs.v[i].id, again.v[i].id);
    } else {
        FUZZ_CHECK((rc == -1 || rc == RL_CODEC_NOMEM) && err[0], "refused without a reason (rc %d)",
                   rc);
    }
    rl_event_list_clear(&evs);
    rl_event_list_clear(&again);
    return 0;
}
