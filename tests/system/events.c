/* events.c -- see events.h. */
#include "events.h"

const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

json_t *expect_ok(const th_resp_t *resp, int accepted, int duplicates, size_t nids,
                  const char *what)
{
    cr_assert(resp->status == 200, "%s: HTTP %ld, want 200; body: %s %s", what, resp->status,
              resp->body ? resp->body : "", resp->error);
    cr_assert(json_is_object(resp->json), "%s: 200 body is not a JSON object: %s", what,
              resp->body);
    json_t *acc = json_object_get(resp->json, "accepted");
    json_t *dup = json_object_get(resp->json, "duplicates");
    json_t *ids = json_object_get(resp->json, "ids");
    cr_assert(json_is_integer(acc) && json_is_integer(dup) && json_is_array(ids),
              "%s: 200 body lacks accepted/duplicates/ids: %s", what, resp->body);
    cr_expect(json_integer_value(acc) == accepted && json_integer_value(dup) == duplicates,
              "%s: accepted %lld duplicates %lld, want %d and %d: %s", what,
              json_integer_value(acc), json_integer_value(dup), accepted, duplicates, resp->body);
    cr_assert(json_array_size(ids) == nids, "%s: %zu ids, want %zu: %s", what, json_array_size(ids),
              nids, resp->body);
    for (size_t i = 0; i < nids; i++)
        cr_assert(json_string_value(json_array_get(ids, i)) &&
                      *json_string_value(json_array_get(ids, i)),
                  "%s: ids[%zu] is not a non-empty string: %s", what, i, resp->body);
    return ids;
}

void post_one(const th_relay_t *r, const char *source, const char *body, const char *id)
{
    th_resp_t resp;
    th_post(r, source, body, NULL, &resp);
    json_t *ids = expect_ok(&resp, 1, 0, 1, id);
    cr_expect(strcmp(json_string_value(json_array_get(ids, 0)), id) == 0, "answer id %s, want %s",
              json_string_value(json_array_get(ids, 0)), id);
    th_resp_free(&resp);
}

const char *kid(const th_kmsg_t *m)
{
    const char *s = m->json ? jstr(m->json, "id") : NULL;
    return s ? s : "";
}

const char *xid(const th_xentry_t *e)
{
    const char *s = th_xfield(e, "id");
    return s ? s : "";
}

int kcount(const th_kmsgs_t *l, const char *id, const th_kmsg_t **first)
{
    int n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(kid(&l->v[i]), id) == 0 && n++ == 0 && first)
            *first = &l->v[i];
    return n;
}

int xcount(const th_xentries_t *l, const char *id, const th_xentry_t **first)
{
    int n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(xid(&l->v[i]), id) == 0 && n++ == 0 && first)
            *first = &l->v[i];
    return n;
}
