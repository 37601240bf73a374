/* events.h -- what the system tests post and how they count what came out: bodies,
 * the checks of a 200 answer, copies of an event on Kafka and Redis. The code is
 * events.c, in $(BUILD)/libtests.a with the harness (harness.h). Returned strings and
 * JSON are borrowed from the message, entry or answer they come from. */
#ifndef RELAY_TEST_EVENTS_H
#define RELAY_TEST_EVENTS_H

#include "harness.h"

/* The string value of obj.key, or NULL. */
const char *jstr(const json_t *obj, const char *key);

/* Checks a 200 answer {"accepted":A,"duplicates":D,"ids":[N strings]} and returns ids
 * (borrowed from resp->json). */
json_t *expect_ok(const th_resp_t *resp, int accepted, int duplicates, size_t nids,
                  const char *what);

/* POSTs and expects one new event with id `id`. */
void post_one(const th_relay_t *r, const char *source, const char *body, const char *id);

/* The CloudEvent id of a Kafka message / stream entry ("" when unreadable). */
const char *kid(const th_kmsg_t *m);

const char *xid(const th_xentry_t *e);

/* How many messages carry id; *first gets the first of them. */
int kcount(const th_kmsgs_t *l, const char *id, const th_kmsg_t **first);

int xcount(const th_xentries_t *l, const char *id, const th_xentry_t **first);

#endif
