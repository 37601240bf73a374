/* fuzz_codec.h -- the body of a codec target: fuzz_timely.c and fuzz_whapi.c
 * define FUZZ_CODEC and include this. Seeds: tests/fixtures/CODEC/ (and for
 * Timely the seed bodies in tests/system/fixtures/timely/).
 *
 * Any bytes go through the path a request takes after authentication: JSON
 * parse, decode, CloudEvent, WAL record encode and decode. Invariants: an
 * accepted body yields events with a non-empty id and type, a CloudEvent that is
 * JSON and carries that id and `data` exactly as jansson would dump it, a
 * record that decodes back to the same fields, and
 * the same ids when decoded twice (providers' retries must dedup); a refused
 * body comes with a reason. */
#include "fuzz.h"

#include "codec.h"
#include "record.h"

#include <jansson.h>
#include <string.h>

static void check_events(const rl_codec_t *c, const rl_event_list_t *evs)
{
    for (size_t i = 0; i < evs->n; i++) {
        const rl_event_t *ev = &evs->v[i];
        FUZZ_CHECK(ev->id && *ev->id && ev->type && *ev->type && ev->channel_id && ev->data,
                   "event %zu incomplete", i);
        char *ce = rl_record_cloudevent(ev, "fuzz", c->name);
        FUZZ_CHECK(ce, "no CloudEvent for event %zu", i);
        json_t *j = json_loads(ce, 0, NULL);
        FUZZ_CHECK(j && json_is_object(j), "CloudEvent is not a JSON object: %.200s", ce);
        const char *id = json_string_value(json_object_get(j, "id"));
        FUZZ_CHECK(id && !strcmp(id, ev->id), "CloudEvent id differs from the event's");
        json_decref(j);
        /* record.c writes `data` itself: the bytes jansson's dump would write. */
        char *want = json_dumps(ev->data, JSON_COMPACT | JSON_ENCODE_ANY);
        const char *got = strstr(ce, ",\"datacontenttype\":\"application/json\",\"data\":");
        FUZZ_CHECK(want && got, "no data in the CloudEvent");
        got += strlen(",\"datacontenttype\":\"application/json\",\"data\":");
        FUZZ_CHECK(strlen(got) == strlen(want) + 1 && !memcmp(got, want, strlen(want)),
                   "data differs from jansson's dump: %.200s", got);
        free(want);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const rl_codec_t *c;
    rl_event_list_t evs, again;
    char err[256], err2[256];
    json_t *root;

    if (!c && !(c = rl_codec_find(FUZZ_CODEC)))
        abort();
    if (!(root = json_loadb((const char *)data, size, 0, NULL)))
        return 0;
    rl_event_list_init(&evs);
    rl_event_list_init(&again);
    err[0] = err2[0] = '\0';
    int rc = c->decode(root, &evs, err, sizeof(err));
    if (rc == 0) {
        check_events(c, &evs);
        FUZZ_CHECK(c->decode(root, &again, err2, sizeof(err2)) == 0 && again.n == evs.n,
                   "a second decode differs");
        for (size_t i = 0; i < evs.n; i++)
            FUZZ_CHECK(!strcmp(evs.v[i].id, again.v[i].id), "ids are not stable: %s vs %s",
                       evs.v[i].id, again.v[i].id);
    } else {
        FUZZ_CHECK(rc == -1 && err[0], "refused without a reason (rc %d)", rc);
    }
    rl_event_list_clear(&evs);
    rl_event_list_clear(&again);
    json_decref(root);
    return 0;
}
