/* test_dedup.c -- the in-memory dedup window (relay/dedup/dedup.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "dedup.h"

static rl_dedup_t *mk(uint32_t window_s, size_t max_entries)
{
    char err[128] = "";
    rl_dedup_t *d = rl_dedup_new(window_s, max_entries, err, sizeof(err));

    cr_assert_not_null(d, "rl_dedup_new: %s", err);
    return d;
}

Test(dedup, claim_then_duplicate)
{
    rl_dedup_t *d = mk(60, 100);

    cr_expect_eq(rl_dedup_claim(d, "timely", "evt-1", 1000), 1);
    cr_expect_eq(rl_dedup_claim(d, "timely", "evt-1", 1000), 0);
    cr_expect_eq(rl_dedup_claim(d, "timely", "evt-1", 1030), 0);
    cr_expect_eq(rl_dedup_claim(d, "timely", "evt-2", 1030), 1);
    cr_expect_eq(rl_dedup_count(d), 2);
    cr_expect_eq(rl_dedup_evicted(d), 0);
    cr_expect_eq(rl_dedup_expired(d), 0);
    rl_dedup_destroy(d);
}

Test(dedup, same_id_other_source_is_new)
{
    rl_dedup_t *d = mk(60, 100);

    cr_expect_eq(rl_dedup_claim(d, "timely", "evt-1", 1000), 1);
    cr_expect_eq(rl_dedup_claim(d, "whapi", "evt-1", 1000), 1);
    /* The separator keeps the concatenations apart. */
    cr_expect_eq(rl_dedup_claim(d, "ab", "c", 1000), 1);
    cr_expect_eq(rl_dedup_claim(d, "a", "bc", 1000), 1);
    cr_expect_eq(rl_dedup_claim(d, "", "abc", 1000), 1);
    cr_expect_eq(rl_dedup_claim(d, "abc", "", 1000), 1);
    cr_expect_eq(rl_dedup_claim(d, "whapi", "evt-1", 1001), 0);
    cr_expect_eq(rl_dedup_count(d), 6);
    rl_dedup_destroy(d);
}

Test(dedup, window_expiry)
{
    rl_dedup_t *d = mk(60, 100);

    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1000), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 1010), 1);
    /* Remembered while now < t + window. */
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1059), 0);
    cr_expect_eq(rl_dedup_expired(d), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1060), 1);
    cr_expect_eq(rl_dedup_expired(d), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 1069), 0);
    /* A long gap drops everything that is due in one go. */
    cr_expect_eq(rl_dedup_claim(d, "s", "c", 5000), 1);
    cr_expect_eq(rl_dedup_expired(d), 3);
    cr_expect_eq(rl_dedup_count(d), 1);
    cr_expect_eq(rl_dedup_evicted(d), 0);
    rl_dedup_destroy(d);
}

/* Node times are kept modulo 2^32: a clock that jumps by 2^32 seconds or more
 * must not bring old ids back to life, and ids near the largest window live
 * exactly as long as they should. */
Test(dedup, times_modulo_two_to_the_32)
{
    const uint64_t big = (uint64_t)1 << 32;
    rl_dedup_t *d = mk(60, 100);
    rl_dedup_digest_t dg;

    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1000), 1);
    cr_assert_eq(rl_dedup_digest(d, "s", 1, "a", 1, &dg), 0);
    cr_expect_eq(rl_dedup_contains(d, &dg, 1000 + big), 0, "seen as 1000 mod 2^32");
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 1010 + big), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1020 + big), 1, "a came back from 2^32 s ago");
    cr_expect_eq(rl_dedup_expired(d), 1);
    rl_dedup_destroy(d);

    /* The largest window: 2^31 - 1 seconds. */
    d = mk(0x7fffffffu, 100);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 5), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 5 + 0x7ffffffeu), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 5 + 0x7ffffffeu), 0, "one second left");
    cr_expect_eq(rl_dedup_claim(d, "s", "c", 5 + 0x7fffffffu), 1);
    cr_expect_eq(rl_dedup_expired(d), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 3 + 2 * (uint64_t)0x7fffffffu), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 4 + 2 * (uint64_t)0x7fffffffu), 1);
    rl_dedup_destroy(d);
}

Test(dedup, expiry_before_eviction)
{
    rl_dedup_t *d = mk(10, 2);

    cr_expect_eq(rl_dedup_claim(d, "s", "a", 0), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 5), 1);
    /* Full, but the oldest is due: that is an expiry, not an eviction. */
    cr_expect_eq(rl_dedup_claim(d, "s", "c", 10), 1);
    cr_expect_eq(rl_dedup_expired(d), 1);
    cr_expect_eq(rl_dedup_evicted(d), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 10), 0);
    rl_dedup_destroy(d);
}

Test(dedup, clock_going_backwards)
{
    rl_dedup_t *d = mk(60, 100);

    cr_expect_eq(rl_dedup_claim(d, "s", "a", 10000), 1);
    /* Clock stepped back an hour: still a duplicate, nothing expires, no crash. */
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 10000 - 3600), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 0), 1);
    cr_expect_eq(rl_dedup_expired(d), 0);
    /* "b" is stamped with the latest time seen, so it lives as long as "a". */
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 10059), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 10060), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 10060), 1);
    cr_expect_eq(rl_dedup_expired(d), 2);
    rl_dedup_destroy(d);
}

Test(dedup, release_then_claim_again)
{
    rl_dedup_t *d = mk(60, 100);

    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1000), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 1000), 1);
    rl_dedup_release(d, "s", "a");
    cr_expect_eq(rl_dedup_count(d), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1001), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1001), 0);
    /* Unknown ids and other sources are no-ops. */
    rl_dedup_release(d, "s", "zzz");
    rl_dedup_release(d, "other", "b");
    cr_expect_eq(rl_dedup_count(d), 2);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 1001), 0);
    /* Releasing twice is harmless. */
    rl_dedup_release(d, "s", "b");
    rl_dedup_release(d, "s", "b");
    cr_expect_eq(rl_dedup_count(d), 1);
    cr_expect_eq(rl_dedup_evicted(d), 0);
    cr_expect_eq(rl_dedup_expired(d), 0);
    rl_dedup_destroy(d);
}

Test(dedup, bound_evicts_oldest_first)
{
    rl_dedup_t *d = mk(3600, 3);

    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 2), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "c", 3), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "d", 4), 1); /* forgets a */
    cr_expect_eq(rl_dedup_evicted(d), 1);
    cr_expect_eq(rl_dedup_count(d), 3);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 5), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "c", 5), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "d", 5), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 6), 1); /* forgets b */
    cr_expect_eq(rl_dedup_claim(d, "s", "c", 6), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 7), 1); /* forgets c */
    cr_expect_eq(rl_dedup_evicted(d), 3);
    cr_expect_eq(rl_dedup_claim(d, "s", "d", 7), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 7), 0);
    cr_expect_eq(rl_dedup_expired(d), 0);
    rl_dedup_destroy(d);
}

Test(dedup, release_in_the_middle_frees_room)
{
    rl_dedup_t *d = mk(3600, 3);

    cr_expect_eq(rl_dedup_claim(d, "s", "a", 1), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "b", 1), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "c", 1), 1);
    rl_dedup_release(d, "s", "b");
    /* The released room is reused: nothing older is forgotten. */
    cr_expect_eq(rl_dedup_claim(d, "s", "d", 2), 1);
    cr_expect_eq(rl_dedup_evicted(d), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 2), 0);
    /* The order is still by claim time: a, c, d. */
    cr_expect_eq(rl_dedup_claim(d, "s", "e", 3), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "a", 3), 1);
    cr_expect_eq(rl_dedup_claim(d, "s", "d", 3), 0);
    cr_expect_eq(rl_dedup_claim(d, "s", "e", 3), 0);
    cr_expect_eq(rl_dedup_evicted(d), 2);
    rl_dedup_destroy(d);
}

/* ------------------------------------------------ against a reference model -- */

typedef struct ref_entry {
    char source[8];
    char id[24];
    uint64_t t;
} ref_entry;

/* The obvious implementation: an array in claim order, linear search. */
typedef struct ref_model {
    ref_entry *v;
    size_t n, max;
    uint64_t window, now, evicted, expired;
} ref_model;

static void ref_remove(ref_model *m, size_t i)
{
    memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(m->v[0]));
    m->n--;
}

static long ref_find(const ref_model *m, const char *source, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->v[i].source, source) && !strcmp(m->v[i].id, id))
            return (long)i;
    return -1;
}

static int ref_claim(ref_model *m, const char *source, const char *id, uint64_t now)
{
    if (now > m->now)
        m->now = now;
    while (m->n > 0 && m->now - m->v[0].t >= m->window) {
        ref_remove(m, 0);
        m->expired++;
    }
    if (ref_find(m, source, id) >= 0)
        return 0;
    if (m->n == m->max) {
        ref_remove(m, 0);
        m->evicted++;
    }
    snprintf(m->v[m->n].source, sizeof(m->v[0].source), "%s", source);
    snprintf(m->v[m->n].id, sizeof(m->v[0].id), "%s", id);
    m->v[m->n].t = m->now;
    m->n++;
    return 1;
}

static void ref_release(ref_model *m, const char *source, const char *id)
{
    long i = ref_find(m, source, id);

    if (i >= 0)
        ref_remove(m, (size_t)i);
}

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* Runs random claims and releases (with clock steps back) until the ring of `max`
 * nodes has been refilled `laps` times, comparing every answer and counter. */
static void check_against_model(uint32_t window, size_t max, size_t laps, uint64_t seed)
{
    static const char *sources[] = {"timely", "whapi", "x"};
    ref_model m = {.v = calloc(max, sizeof(ref_entry)), .max = max, .window = window};
    rl_dedup_t *d = mk(window, max);
    uint64_t now = 1700000000, inserted = 0;
    char last_src[8] = "", last_id[24] = "";

    cr_assert_not_null(m.v);
    rng_state = seed;
    for (uint64_t op = 0; inserted < laps * max; op++) {
        const char *src = sources[rng() % 3];
        char id[24];
        uint64_t r = rng() % 100;

        snprintf(id, sizeof(id), "e%llu", (unsigned long long)(rng() % (max * 3 + 2)));
        if (r < 30)
            now += rng() % 3;
        else if (r == 99)
            now -= rng() % 10; /* clock step back, sometimes past the window */
        if (r < 75) {
            int want = ref_claim(&m, src, id, now), got = rl_dedup_claim(d, src, id, now);
            cr_assert_eq(got, want, "op %llu claim(%s,%s,%llu): got %d want %d",
                         (unsigned long long)op, src, id, (unsigned long long)now, got, want);
            if (got == 1) {
                inserted++;
                snprintf(last_src, sizeof(last_src), "%s", src);
                snprintf(last_id, sizeof(last_id), "%s", id);
            }
        } else if (r < 85) {
            /* The caller's pattern: the claim just made could not be made durable. */
            ref_release(&m, last_src, last_id);
            rl_dedup_release(d, last_src, last_id);
        } else {
            ref_release(&m, src, id);
            rl_dedup_release(d, src, id);
        }
        cr_assert_eq(rl_dedup_count(d), m.n, "op %llu count", (unsigned long long)op);
        cr_assert_eq(rl_dedup_evicted(d), m.evicted, "op %llu evicted", (unsigned long long)op);
        cr_assert_eq(rl_dedup_expired(d), m.expired, "op %llu expired", (unsigned long long)op);
    }
    /* Every id the model remembers is a duplicate in the real thing too. */
    for (size_t i = 0; i < m.n; i++)
        cr_assert_eq(rl_dedup_claim(d, m.v[i].source, m.v[i].id, m.now), 0);
    cr_log_info("model max=%zu window=%u: %llu inserted, %llu evicted, %llu expired", max, window,
                (unsigned long long)inserted, (unsigned long long)m.evicted,
                (unsigned long long)m.expired);
    rl_dedup_destroy(d);
    free(m.v);
}

Test(dedup, model_small_ring_many_laps)
{
    check_against_model(15, 64, 20, 0x9e3779b97f4a7c15ULL);
}

Test(dedup, model_growth_past_initial_size)
{
    /* 1000 > the initial allocation, so the slab and index grow while in use. */
    check_against_model(450, 1000, 10, 42);
}

Test(dedup, model_index_moves_while_ids_come_and_go)
{
    /* Four doublings of the index (256 -> 3000 nodes); each is moved over a few
     * slots per claim while claims, releases and expiry go on: an id must be
     * found whichever of the two indexes holds it, and forgotten from either. */
    check_against_model(900, 3000, 6, 0xdecafbadULL);
}

Test(dedup, model_slab_in_chunks)
{
    /* 9000 nodes: the slab's first chunk (4096) and two more, the last partial. */
    check_against_model(3000, 9000, 2, 0x5eedULL);
}

Test(dedup, model_one_entry)
{
    check_against_model(2, 1, 200, 7);
}

Test(dedup, model_eviction_only)
{
    check_against_model(1000000, 7, 100, 1234567);
}

Test(dedup, model_expiry_mostly)
{
    check_against_model(3, 500, 10, 99);
}

/* ---------------------------------------------------------------- memory -- */

Test(dedup, memory_per_id_at_one_million)
{
    const size_t n = 1000000;
    rl_dedup_t *d = mk(86400, n);
    char id[32];
    size_t mem;

    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "evt-%zu", i);
        cr_assert_eq(rl_dedup_claim(d, "timely", id, 1700000000 + i / 1000), 1);
    }
    cr_assert_eq(rl_dedup_count(d), n);
    mem = rl_dedup_memory(d);
    fprintf(stderr, "dedup: %zu ids, %zu bytes, %.1f bytes/id\n", n, mem, (double)mem / (double)n);
    cr_expect_leq(mem, 40 * n, "%.1f bytes per id", (double)mem / (double)n);

    /* All still remembered; a second million evicts the first, memory stays put. */
    for (size_t i = 0; i < n; i += 997) {
        snprintf(id, sizeof(id), "evt-%zu", i);
        cr_assert_eq(rl_dedup_claim(d, "timely", id, 1700001000), 0);
    }
    for (size_t i = n; i < 2 * n; i++) {
        snprintf(id, sizeof(id), "evt-%zu", i);
        cr_assert_eq(rl_dedup_claim(d, "timely", id, 1700001000), 1);
    }
    cr_expect_eq(rl_dedup_count(d), n);
    cr_expect_eq(rl_dedup_evicted(d), n);
    cr_expect_eq(rl_dedup_memory(d), mem);
    rl_dedup_destroy(d);
}

Test(dedup, small_use_does_not_reserve_max_entries)
{
    rl_dedup_t *d = mk(86400, 1000000);

    for (int i = 0; i < 10; i++) {
        char id[24];
        snprintf(id, sizeof(id), "%d", i);
        cr_expect_eq(rl_dedup_claim(d, "s", id, 1), 1);
    }
    cr_expect_lt(rl_dedup_memory(d), 16 * 1024, "memory %zu", rl_dedup_memory(d));
    rl_dedup_destroy(d);
}

/* ------------------------------------------------------------- arguments -- */

Test(dedup, destroy_null_is_safe)
{
    rl_dedup_destroy(NULL);
}

Test(dedup, bad_arguments)
{
    char err[128];

    err[0] = '\0';
    cr_expect_null(rl_dedup_new(60, 0, err, sizeof(err)));
    cr_expect_neq(err[0], '\0');

    err[0] = '\0';
    cr_expect_null(rl_dedup_new(0, 100, err, sizeof(err)));
    cr_expect_neq(err[0], '\0');

    err[0] = '\0';
    cr_expect_null(rl_dedup_new(0x80000000u, 100, err, sizeof(err)), "window over 2^31 - 1");
    cr_expect_neq(err[0], '\0');

    err[0] = '\0';
    cr_expect_null(rl_dedup_new(60, RL_DEDUP_MAX_ENTRIES + 1, err, sizeof(err)));
    cr_expect_neq(err[0], '\0');

    /* No room for the reason is fine, so is a short one. */
    cr_expect_null(rl_dedup_new(60, 0, NULL, 0));
    memset(err, 'x', sizeof(err));
    cr_expect_null(rl_dedup_new(60, 0, err, 4));
    cr_expect_eq(strlen(err), 3);
}

Test(dedup, null_handles_and_strings)
{
    rl_dedup_t *d = mk(60, 10);

    cr_expect_eq(rl_dedup_claim(NULL, "s", "a", 1), -1);
    cr_expect_eq(rl_dedup_claim(d, NULL, "a", 1), -1);
    cr_expect_eq(rl_dedup_claim(d, "s", NULL, 1), -1);
    rl_dedup_release(NULL, "s", "a");
    rl_dedup_release(d, NULL, "a");
    rl_dedup_release(d, "s", NULL);
    cr_expect_eq(rl_dedup_count(d), 0);
    cr_expect_eq(rl_dedup_count(NULL), 0);
    cr_expect_eq(rl_dedup_evicted(NULL), 0);
    cr_expect_eq(rl_dedup_expired(NULL), 0);
    cr_expect_eq(rl_dedup_memory(NULL), 0);
    rl_dedup_destroy(d);
}

/* ------------------------------------------------------- keys and digests -- */

Test(dedup, same_key_same_digests_across_handles)
{
    const unsigned char key[RL_DEDUP_KEY_LEN] = "0123456789abcdef";
    char err[128] = "";
    rl_dedup_t *a = rl_dedup_new_keyed(60, 10, key, err, sizeof(err));
    rl_dedup_t *b = rl_dedup_new_keyed(60, 10, key, err, sizeof(err));
    rl_dedup_t *c = mk(60, 10); /* a random key */
    rl_dedup_hasher_t *h = rl_dedup_hasher_new(key, err, sizeof(err));
    rl_dedup_digest_t da, db, dc, dh;

    cr_assert(a && b && h, "%s", err);
    cr_assert_eq(rl_dedup_digest(a, "timely", 6, "evt-1", 5, &da), 0);
    cr_assert_eq(rl_dedup_digest(b, "timely", 6, "evt-1", 5, &db), 0);
    cr_assert_eq(rl_dedup_digest(c, "timely", 6, "evt-1", 5, &dc), 0);
    /* Lengths, not NULs: the hasher reads exactly what it is given. */
    cr_assert_eq(rl_dedup_hash(h, "timelyX", 6, "evt-1XYZ", 5, &dh), 0);
    cr_expect(!memcmp(&da, &db, sizeof(da)), "same key, same digest (a restart with a kept key)");
    cr_expect(!memcmp(&da, &dh, sizeof(da)), "a hasher with the key agrees with the window");
    cr_expect(memcmp(&da, &dc, sizeof(da)), "another key, another digest");

    /* A digest claimed in one handle is a duplicate in the other: what reloading the
     * dedup file relies on. */
    cr_expect_eq(rl_dedup_claim_digest(b, &da, 1000), 1);
    cr_expect_eq(rl_dedup_claim(b, "timely", "evt-1", 1000), 0);
    rl_dedup_release_digest(b, &da);
    cr_expect_eq(rl_dedup_claim(b, "timely", "evt-1", 1000), 1);
    rl_dedup_destroy(a);
    rl_dedup_destroy(b);
    rl_dedup_destroy(c);
    rl_dedup_hasher_destroy(h);
    rl_dedup_hasher_destroy(NULL);
}

Test(dedup, contains_looks_without_claiming)
{
    rl_dedup_t *d = mk(60, 10);
    rl_dedup_digest_t x, y;

    cr_assert_eq(rl_dedup_digest(d, "s", 1, "x", 1, &x), 0);
    cr_assert_eq(rl_dedup_digest(d, "s", 1, "y", 1, &y), 0);
    cr_expect_eq(rl_dedup_contains(d, &x, 1000), 0);
    cr_expect_eq(rl_dedup_count(d), 0, "contains claims nothing");
    cr_expect_eq(rl_dedup_claim_digest(d, &x, 1000), 1);
    cr_expect_eq(rl_dedup_contains(d, &x, 1059), 1);
    cr_expect_eq(rl_dedup_contains(d, &y, 1059), 0);
    /* Out of the window: not contained, though not dropped yet. */
    cr_expect_eq(rl_dedup_contains(d, &x, 1060), 0);
    cr_expect_eq(rl_dedup_count(d), 1);
    /* A clock stepped back is taken as the latest time seen, as claim does. */
    cr_expect_eq(rl_dedup_contains(d, &x, 10), 1);
    cr_expect_eq(rl_dedup_contains(NULL, &x, 1000), 0);
    cr_expect_eq(rl_dedup_claim_digest(NULL, &x, 1000), -1);
    rl_dedup_destroy(d);
}
