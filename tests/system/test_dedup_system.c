/* test_dedup_system.c -- system tests of deduplication: the window across kill -9 and clean
 * restarts (also once the WAL segments holding the originals are gone), its bound and
 * its length, concurrent retries on one instance, and the window shared by two instances
 * through Redis (store = redis): races, a claim left by a dead instance, Redis down.
 *
 * Real relay processes, the real Kafka and Redis of tools/run-tests.sh; what is checked
 * is what clients and consumers see: HTTP answers, /readyz, /metrics, the Kafka topics
 * and Redis streams. Ids carry the test's prefix, so tests never see each other's keys
 * in the shared Redis. */
#include "harness.h"
#include "events.h"

#include <pthread.h>

#define WAIT_MS 20000 /* the longest a test waits for something that should come */
#define SETTLE_MS 800 /* how long a reader keeps reading for extra copies */

TestSuite(dedup, .init = th_setup, .fini = th_teardown, .timeout = 240);

/* ------------------------------------------------------------------- helpers -- */

/* A relay with the window in Redis, under a key prefix of the test's own. */
static void use_redis_store(th_relay_t *r, const char *key_prefix)
{
    th_relay_setenv(r, "RELAY_DEDUP_STORE", "redis");
    th_relay_setenv(r, "RELAY_DEDUP_REDIS_PREFIX", key_prefix);
}

/* A second instance behind the same load balancer: it publishes to the same topics and
 * streams as `first` (same prefix), from a WAL and a port of its own. */
static th_relay_t *second_instance(const th_relay_t *first)
{
    th_relay_t *r = th_relay_new();
    snprintf(r->prefix, sizeof r->prefix, "%s", first->prefix);
    return r;
}

/* Two instances sharing one window in Redis, started; returns their key prefix
 * (malloc'd). */
static char *start_pair(th_relay_t **a, th_relay_t **b)
{
    *a = th_relay_new();
    char *kp = th_strf("%s:dedup:", (*a)->prefix);
    use_redis_store(*a, kp);
    *b = second_instance(*a);
    use_redis_store(*b, kp);
    TH_START(*a);
    TH_START(*b);
    return kp;
}

static int count_wal_segments(const th_relay_t *r)
{
    char cmd[PATH_MAX + 64], *out = NULL;
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '\\.wal$'", r->wal_dir);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    th_run(argv, 10000, &out);
    int n = atoi(out);
    free(out);
    return n;
}

static int first_segment_exists(const th_relay_t *r)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/00000000000000000001.wal", r->wal_dir);
    return access(path, F_OK) == 0;
}

/* Polls a metric until it is at least `want` (or the deadline passes); returns it. */
static double wait_metric(const th_relay_t *r, const char *name, const char *labels, double want)
{
    int64_t deadline = th_now_ms() + WAIT_MS;
    double v = th_relay_metric(r, name, labels);
    while (v < want && th_now_ms() < deadline) {
        th_sleep_ms(50);
        v = th_relay_metric(r, name, labels);
    }
    return v;
}

/* Waits until both sinks have acknowledged everything durable (lag 0). */
static void wait_sinks_caught_up(const th_relay_t *r)
{
    int64_t deadline = th_now_ms() + WAIT_MS;
    for (;;) {
        double k = th_relay_metric(r, "relay_sink_lag_events", "sink=kafka");
        double x = th_relay_metric(r, "relay_sink_lag_events", "sink=redis");
        if (k == 0 && x == 0)
            return;
        cr_assert(th_now_ms() < deadline, "sinks still behind: kafka lag %g, redis lag %g", k, x);
        th_sleep_ms(50);
    }
}

/* The detail of /readyz, with its status. */
static long readyz(const th_relay_t *r, char *detail, size_t size)
{
    th_resp_t resp;
    th_get(r, "/readyz", &resp);
    const char *d = resp.json ? jstr(resp.json, "detail") : NULL;
    snprintf(detail, size, "%s", d ? d : "");
    long st = resp.status;
    th_resp_free(&resp);
    return st;
}

/* Copies of each id on the Kafka topic and the Redis stream. */
static void count_copies(const th_relay_t *r, const char *channel, char **ids, int n, int want,
                         int *kc, int *xc)
{
    char topic[256], stream[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), (size_t)want, WAIT_MS, SETTLE_MS,
                  &msgs);
    th_redis_read(th_stream(r, channel, stream, sizeof stream), (size_t)want, WAIT_MS, SETTLE_MS,
                  &xs);
    for (int i = 0; i < n; i++) {
        kc[i] = kcount(&msgs, ids[i], NULL);
        xc[i] = xcount(&xs, ids[i], NULL);
    }
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
}

static void expect_exactly_once(const th_relay_t *r, const char *channel, char **ids, int n)
{
    int *kc = calloc((size_t)n, sizeof(int)), *xc = calloc((size_t)n, sizeof(int));
    cr_assert(kc && xc);
    count_copies(r, channel, ids, n, n, kc, xc);
    for (int i = 0; i < n; i++) {
        cr_expect(kc[i] == 1, "%s: %d copies on Kafka, want 1", ids[i], kc[i]);
        cr_expect(xc[i] == 1, "%s: %d copies on the Redis stream, want 1", ids[i], xc[i]);
    }
    free(kc);
    free(xc);
}

/* POSTs and expects a 200 that counts the event as a duplicate. */
static void post_dup(const th_relay_t *r, const char *body, const char *what)
{
    th_resp_t resp;
    th_post(r, "timely", body, NULL, &resp);
    expect_ok(&resp, 0, 1, 1, what);
    th_resp_free(&resp);
}

/* Retries `body` on `r` the way a provider does while it is answered 503
 * claimed_elsewhere (another instance has not confirmed its claim yet), and expects the
 * answer after that to count it as a duplicate. */
static void expect_dup_after_retries(const th_relay_t *r, const char *body, const char *what)
{
    int64_t deadline = th_now_ms() + WAIT_MS;
    th_resp_t resp;
    for (;;) {
        th_post(r, "timely", body, NULL, &resp);
        if (resp.status != 503 || th_now_ms() > deadline)
            break;
        cr_expect_str_eq(resp.json ? jstr(resp.json, "error") : "", "claimed_elsewhere");
        th_resp_free(&resp);
        th_sleep_ms(100);
    }
    expect_ok(&resp, 0, 1, 1, what);
    th_resp_free(&resp);
}

/* A Redis connection to the test server, for looking at the shared window's keys. */
static redisContext *redis_conn(void)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", th_redis_port(), tv);
    cr_assert(c && !c->err, "cannot connect to the test Redis");
    return c;
}

/* GET key into buf ("" when missing); returns its PTTL. */
static long long redis_key(redisContext *c, const char *key, char *buf, size_t size)
{
    redisReply *rep = redisCommand(c, "GET %s", key);
    snprintf(buf, size, "%s", rep && rep->type == REDIS_REPLY_STRING ? rep->str : "");
    freeReplyObject(rep);
    rep = redisCommand(c, "PTTL %s", key);
    long long ttl = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -3;
    freeReplyObject(rep);
    return ttl;
}

/* ========================================================= restarts and crashes */

/* Posts events until the WAL has rolled past its first segment and the sinks have
 * passed it, so that it is deleted: from then on only the dedup file knows those ids. */
static int post_until_first_segment_is_gone(th_relay_t *r, const char *channel, char **ids,
                                            char **bodies, int max)
{
    int n = 0;
    /* Rolled: a second segment exists, or the first is already gone (the sinks
     * can pass it and the WAL delete it between two looks). */
    while (n < max && count_wal_segments(r) < 2 && first_segment_exists(r)) {
        ids[n] = th_strf("evt_%s_seg_%d", r->prefix, n);
        bodies[n] = th_timely_message(ids[n], channel, n);
        post_one(r, "timely", bodies[n], ids[n]);
        n++;
    }
    cr_assert(count_wal_segments(r) >= 2 || !first_segment_exists(r),
              "%d events did not fill a 64 KB WAL segment", n);
    wait_sinks_caught_up(r);
    int64_t deadline = th_now_ms() + WAIT_MS;
    while (first_segment_exists(r) && th_now_ms() < deadline)
        th_sleep_ms(50);
    cr_assert(!first_segment_exists(r), "the first WAL segment was never deleted");
    return n;
}

static void window_survives(int crash)
{
    enum { MAX = 400 };
    char *ids[MAX], *bodies[MAX];
    th_relay_t *r = th_relay_new();
    /* retention = 0: the published segment is deleted at once, as this test needs. */
    snprintf(r->wal_extra, sizeof r->wal_extra, "segment_size = 64k\nretention = 0\n");
    TH_START(r);
    int n = post_until_first_segment_is_gone(r, "chan_seg", ids, bodies, MAX);
    double file_bytes = wait_metric(r, "relay_dedup_file_bytes", NULL, 24.0 * n);
    double entries = th_relay_metric(r, "relay_dedup_entries", NULL);
    double mem = th_relay_metric(r, "relay_dedup_memory_bytes", NULL);
    fprintf(stderr,
            "dedup: %d events; file %.0f bytes (%.1f bytes/id); memory %.0f bytes for %.0f ids "
            "(the slab grows by doubling from 256 ids)\n",
            n, file_bytes, file_bytes / n, mem, entries);
    cr_expect(file_bytes >= 24.0 * n && file_bytes <= 24.0 * n + 64,
              "dedup file %.0f bytes for %d ids: want 24 per id plus segment headers", file_bytes,
              n);

    int *before_k = calloc(MAX, sizeof(int)), *before_x = calloc(MAX, sizeof(int));
    int *after_k = calloc(MAX, sizeof(int)), *after_x = calloc(MAX, sizeof(int));
    cr_assert(before_k && before_x && after_k && after_x);
    if (crash) {
        th_relay_kill(r);
    } else {
        int st = th_relay_stop(r, 15000);
        cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "relay did not exit 0 on SIGTERM (wait status 0x%x)", st);
    }
    TH_START(r);
    /* After kill -9 the sinks may re-send what they had not persisted as acknowledged (at
     * least once, same id): count what is there once they caught up, before the retries. */
    wait_sinks_caught_up(r);
    count_copies(r, "chan_seg", ids, n, n, before_k, before_x);
    for (int i = 0; i < n; i++)
        post_dup(r, bodies[i], ids[i]);
    wait_sinks_caught_up(r);
    count_copies(r, "chan_seg", ids, n, n, after_k, after_x);
    for (int i = 0; i < n; i++) {
        cr_expect(before_k[i] >= 1 && before_x[i] >= 1, "%s: not published (%d Kafka, %d Redis)",
                  ids[i], before_k[i], before_x[i]);
        cr_expect(after_k[i] == before_k[i] && after_x[i] == before_x[i],
                  "%s: the retry was published again (Kafka %d -> %d, Redis %d -> %d)", ids[i],
                  before_k[i], after_k[i], before_x[i], after_x[i]);
        if (!crash)
            cr_expect(after_k[i] == 1 && after_x[i] == 1, "%s: %d copies on Kafka, %d on Redis",
                      ids[i], after_k[i], after_x[i]);
        free(ids[i]);
        free(bodies[i]);
    }
    free(before_k);
    free(before_x);
    free(after_k);
    free(after_x);
}

/* kill -9 once the WAL no longer holds the originals: the dedup file alone remembers. */
Test(dedup, window_survives_kill9_after_wal_segments_are_deleted)
{
    window_survives(1);
}

Test(dedup, window_survives_clean_restart_after_wal_segments_are_deleted)
{
    window_survives(0);
}

/* kill -9 right after the 200s: no time for anything to be written but the WAL. */
Test(dedup, window_survives_kill9_right_after_the_answer)
{
    enum { N = 8 };
    char *ids[N], *bodies[N];
    th_relay_t *r = th_relay_new();
    TH_START(r);
    for (int i = 0; i < N; i++) {
        ids[i] = th_strf("evt_%s_k9_%d", r->prefix, i);
        bodies[i] = th_timely_message(ids[i], "chan_k9", i);
        post_one(r, "timely", bodies[i], ids[i]);
    }
    th_relay_kill(r);
    TH_START(r);
    for (int i = 0; i < N; i++) {
        post_dup(r, bodies[i], ids[i]);
        free(ids[i]);
        free(bodies[i]);
    }
}

/* ================================================================ window and bound */

Test(dedup, window_length_is_configurable)
{
    th_relay_t *r = th_relay_new();
    th_relay_setenv(r, "RELAY_DEDUP_WINDOW", "2s");
    TH_START(r);
    char *id = th_strf("evt_%s_window", r->prefix);
    char *body = th_timely_message(id, "chan_window", 1);
    post_one(r, "timely", body, id);
    post_dup(r, body, "retry inside the window");
    /* Remembered while now < received + window: 3 s later it is out (whole seconds). */
    th_sleep_ms(3000);
    post_one(r, "timely", body, id);
    free(id);
    free(body);
}

Test(dedup, bound_forgets_the_oldest_first_and_counts_it)
{
    enum { N = 8, MAX = 5 };
    char *ids[N], *bodies[N];
    th_relay_t *r = th_relay_new();
    th_relay_setenv(r, "RELAY_DEDUP_MAX_ENTRIES", "5");
    TH_START(r);
    for (int i = 0; i < N; i++) {
        ids[i] = th_strf("evt_%s_bound_%d", r->prefix, i);
        bodies[i] = th_timely_message(ids[i], "chan_bound", i);
        post_one(r, "timely", bodies[i], ids[i]);
    }
    cr_expect_eq(th_relay_metric(r, "relay_dedup_entries", NULL), MAX);
    cr_expect_eq(th_relay_metric(r, "relay_dedup_evicted_total", NULL), N - MAX);
    post_dup(r, bodies[N - 1], "the newest id");
    post_dup(r, bodies[N - MAX], "the oldest id kept");
    /* The first was forgotten to make room: its retry is taken (and published) again. */
    post_one(r, "timely", bodies[0], ids[0]);
    cr_expect_eq(th_relay_metric(r, "relay_dedup_evicted_total", NULL), N - MAX + 1);

    /* A restart reloads the newest MAX of them. */
    int st = th_relay_stop(r, 15000);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: status 0x%x", st);
    TH_START(r);
    cr_expect_eq(th_relay_metric(r, "relay_dedup_entries", NULL), MAX);
    post_dup(r, bodies[0], "the id taken again last");
    post_dup(r, bodies[N - 1], "the newest id after the restart");
    for (int i = 0; i < N; i++) {
        free(ids[i]);
        free(bodies[i]);
    }
}

/* ================================================= concurrent posts of one event */

typedef struct racer {
    const th_relay_t *r;
    const char *body;
    pthread_barrier_t *go;
    long status;
    int accepted, duplicates;
    char error[64];
} racer_t;

static void *race_post(void *arg)
{
    racer_t *x = arg;
    th_resp_t resp;
    pthread_barrier_wait(x->go);
    th_post(x->r, "timely", x->body, NULL, &resp);
    x->status = resp.status;
    if (resp.json) {
        x->accepted = (int)json_integer_value(json_object_get(resp.json, "accepted"));
        x->duplicates = (int)json_integer_value(json_object_get(resp.json, "duplicates"));
        const char *e = jstr(resp.json, "error");
        snprintf(x->error, sizeof x->error, "%s", e ? e : "");
    }
    th_resp_free(&resp);
    return NULL;
}

/* Posts `body` to a and b at the same moment; fills both outcomes. */
static void race(const th_relay_t *a, const th_relay_t *b, const char *body, racer_t out[2])
{
    pthread_barrier_t go;
    pthread_t t[2];
    pthread_barrier_init(&go, NULL, 2);
    out[0] = (racer_t){.r = a, .body = body, .go = &go};
    out[1] = (racer_t){.r = b, .body = body, .go = &go};
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, race_post, &out[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
}

/* Two requests for one event at once on one instance: one takes it, the other is told
 * it is a duplicate (once the first is durable), both 200. */
static void same_instance_race(int shared)
{
    enum { ROUNDS = 25 };
    char *ids[ROUNDS];
    th_relay_t *r = th_relay_new();
    if (shared) {
        char *kp = th_strf("%s:dedup:", r->prefix);
        use_redis_store(r, kp);
        free(kp);
    }
    TH_START(r);
    for (int i = 0; i < ROUNDS; i++) {
        racer_t out[2];
        ids[i] = th_strf("evt_%s_twice_%d", r->prefix, i);
        char *body = th_timely_message(ids[i], "chan_twice", i);
        race(r, r, body, out);
        cr_expect(out[0].status == 200 && out[1].status == 200, "%s: HTTP %ld and %ld", ids[i],
                  out[0].status, out[1].status);
        cr_expect(out[0].accepted + out[1].accepted == 1 &&
                      out[0].duplicates + out[1].duplicates == 1,
                  "%s: accepted %d+%d, duplicates %d+%d; want one of each", ids[i], out[0].accepted,
                  out[1].accepted, out[0].duplicates, out[1].duplicates);
        free(body);
    }
    expect_exactly_once(r, "chan_twice", ids, ROUNDS);
    for (int i = 0; i < ROUNDS; i++)
        free(ids[i]);
}

Test(dedup, same_event_twice_at_once_on_one_instance)
{
    same_instance_race(0);
}

Test(dedup, same_event_twice_at_once_on_one_instance_with_redis_store)
{
    same_instance_race(1);
}

/* ========================================================== two instances, Redis */

Test(dedup, two_instances_share_the_window)
{
    th_relay_t *a, *b;
    char *kp = start_pair(&a, &b);
    char detail[256];
    cr_expect_eq(readyz(a, detail, sizeof detail), 200);
    cr_expect(strstr(detail, "dedup:redis"), "/readyz: %s", detail);

    char *ids[2] = {th_strf("evt_%s_share_a", a->prefix), th_strf("evt_%s_share_b", a->prefix)};
    char *body_a = th_timely_message(ids[0], "chan_share", 1);
    char *body_b = th_timely_message(ids[1], "chan_share", 2);
    post_one(a, "timely", body_a, ids[0]);
    post_one(b, "timely", body_b, ids[1]);
    /* The retries land on the other instance. The owner confirms right after its fsync;
     * until then the other answers 503 (retry), never 200 and never a second copy. */
    for (int i = 0; i < 2; i++) {
        const th_relay_t *other = i ? a : b;
        const char *body = i ? body_b : body_a;
        expect_dup_after_retries(other, body, ids[i]);
    }

    /* What Redis holds: "done" for the rest of the window (1 h in the harness). */
    redisContext *c = redis_conn();
    char key[512], val[64];
    snprintf(key, sizeof key, "%stimely:%s", kp, ids[0]);
    long long ttl = redis_key(c, key, val, sizeof val);
    cr_expect_str_eq(val, "done");
    cr_expect(ttl > 3500 * 1000LL && ttl <= 3600 * 1000LL, "PTTL %lld, want about an hour", ttl);
    redisReply *rep = redisCommand(c, "MEMORY USAGE %s", key);
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        fprintf(stderr,
                "dedup: one id in Redis takes %lld bytes (key of %zu bytes, value \"done\")\n",
                rep->integer, strlen(key));
    freeReplyObject(rep);
    redisFree(c);

    expect_exactly_once(a, "chan_share", ids, 2);
    free(ids[0]);
    free(ids[1]);
    free(body_a);
    free(body_b);
    free(kp);
}

/* The same event posted to both instances at the same moment, a hundred times over:
 * exactly one publication per id on each sink. */
Test(dedup, race_of_two_instances_a_hundred_times)
{
    enum { N = 100 };
    char *ids[N], *bodies[N];
    int accepted = 0, dup = 0, held = 0;
    racer_t out[N][2];
    th_relay_t *a, *b;
    char *kp = start_pair(&a, &b);
    for (int i = 0; i < N; i++) {
        ids[i] = th_strf("evt_%s_race_%d", a->prefix, i);
        bodies[i] = th_timely_message(ids[i], "chan_race", i);
        race(a, b, bodies[i], out[i]);
        int acc = 0;
        for (int k = 0; k < 2; k++) {
            const racer_t *x = &out[i][k];
            cr_expect(x->status == 200 ||
                          (x->status == 503 && !strcmp(x->error, "claimed_elsewhere")),
                      "%s on %c: HTTP %ld %s", ids[i], 'a' + k, x->status, x->error);
            if (x->status == 200 && x->accepted == 1)
                acc++, accepted++;
            else if (x->status == 200 && x->duplicates == 1)
                dup++;
            else if (x->status == 503)
                held++;
        }
        cr_expect(acc == 1, "%s: accepted by %d instances, want exactly 1", ids[i], acc);
    }
    fprintf(stderr,
            "race: %d ids, %d accepted, %d answered duplicate, %d answered 503 "
            "claimed_elsewhere; %.0f + %.0f found the other's claim pending first\n",
            N, accepted, dup, held, th_relay_metric(a, "relay_dedup_contended_total", NULL),
            th_relay_metric(b, "relay_dedup_contended_total", NULL));
    /* The provider retries what got 503: a duplicate once the owner confirmed. */
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 2; k++) {
            if (out[i][k].status == 503)
                expect_dup_after_retries(k ? b : a, bodies[i], ids[i]);
        }
    }
    expect_exactly_once(a, "chan_race", ids, N);
    for (int i = 0; i < N; i++) {
        free(ids[i]);
        free(bodies[i]);
    }
    free(kp);
}

/* An instance that claimed an id and died before making the event durable leaves its
 * pending claim in Redis ("pending:<its token>", with the pending TTL). Writing that key
 * here is that state, without having to kill a process between two instructions: the
 * retry is refused 503 (never 200: the event is nowhere), then taken once the claim has
 * expired, and published once. */
Test(dedup, claim_of_a_dead_instance_holds_the_id_until_it_expires)
{
    th_relay_t *a = th_relay_new();
    char *kp = th_strf("%s:dedup:", a->prefix);
    use_redis_store(a, kp);
    TH_START(a);
    char *ids[1] = {th_strf("evt_%s_orphan", a->prefix)};
    char *body = th_timely_message(ids[0], "chan_orphan", 1);
    char key[512], val[64];
    snprintf(key, sizeof key, "%stimely:%s", kp, ids[0]);
    redisContext *c = redis_conn();
    redisReply *rep = redisCommand(c, "SET %s pending:00dead00beef0000 PX 3000", key);
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS, "SET failed");
    freeReplyObject(rep);

    th_resp_t resp;
    th_post(a, "timely", body, NULL, &resp);
    cr_expect_eq(resp.status, 503, "retry while another instance holds the id: HTTP %ld %s",
                 resp.status, resp.body);
    cr_expect_str_eq(resp.json ? jstr(resp.json, "error") : "", "claimed_elsewhere");
    cr_expect(resp.retry_after[0], "503 without Retry-After");
    th_resp_free(&resp);
    cr_expect_geq(th_relay_metric(a, "relay_dedup_pending_total", NULL), 1);

    /* The claim expires: the next retry is taken. */
    int64_t deadline = th_now_ms() + WAIT_MS;
    while (redis_key(c, key, val, sizeof val) != -2 && th_now_ms() < deadline)
        th_sleep_ms(100);
    post_one(a, "timely", body, ids[0]);
    deadline = th_now_ms() + WAIT_MS;
    while (strcmp(val, "done") && th_now_ms() < deadline) {
        redis_key(c, key, val, sizeof val);
        th_sleep_ms(50);
    }
    cr_expect_str_eq(val, "done", "confirmed once durable");
    redisFree(c);
    expect_exactly_once(a, "chan_orphan", ids, 1);
    free(ids[0]);
    free(body);
    free(kp);
}

/* Redis down while store = redis: relay keeps taking events on its local window
 * (counted, /readyz degraded but ready). The cost: a retry that lands on another
 * instance during the outage is published again, with the same CloudEvent id. */
Test(dedup, redis_down_falls_back_to_the_local_window)
{
    if (!getenv("RELAY_TEST_TOOLS") || !getenv("RELAY_TEST_REDIS_DIR"))
        cr_skip_test("needs RELAY_TEST_TOOLS and RELAY_TEST_REDIS_DIR (tools/run-tests.sh)");
    th_relay_t *a, *b;
    char *kp = start_pair(&a, &b);
    char *ids[3];
    char *bodies[3];
    for (int i = 0; i < 3; i++) {
        ids[i] = th_strf("evt_%s_down_%d", a->prefix, i);
        bodies[i] = th_timely_message(ids[i], "chan_down", i);
    }
    post_one(a, "timely", bodies[0], ids[0]);

    cr_assert(th_redis_service("stop") == 0, "cannot stop the test Redis");
    post_one(a, "timely", bodies[1], ids[1]);
    post_dup(a, bodies[1], "retry on the same instance, Redis down");
    post_dup(a, bodies[0], "retry of an id taken before the outage");
    char detail[256];
    cr_expect_eq(readyz(a, detail, sizeof detail), 200, "degraded is still ready");
    cr_expect(strstr(detail, "dedup:degraded"), "/readyz: %s", detail);
    cr_expect_geq(th_relay_metric(a, "relay_dedup_redis_fallback_total", NULL), 1);
    cr_expect_eq(th_relay_metric(a, "relay_dedup_redis_up", NULL), 0);
    /* The cost: the retry lands on the other instance, which cannot know. */
    post_one(b, "timely", bodies[1], ids[1]);

    cr_assert(th_redis_service("start") == 0, "cannot start the test Redis again");
    /* Each instance notices on its own (it retries a second after its last failure). */
    for (int i = 0; i < 2; i++) {
        const th_relay_t *r = i ? b : a;
        int64_t deadline = th_now_ms() + WAIT_MS;
        while (readyz(r, detail, sizeof detail) == 200 && !strstr(detail, "dedup:redis") &&
               th_now_ms() < deadline)
            th_sleep_ms(100);
        cr_assert(strstr(detail, "dedup:redis"), "Redis is back but /readyz of %c says: %s",
                  'a' + i, detail);
    }
    post_one(a, "timely", bodies[2], ids[2]);
    expect_dup_after_retries(b, bodies[2], "shared again once Redis is back");

    int kc[3], xc[3];
    count_copies(a, "chan_down", ids, 3, 4, kc, xc);
    cr_expect(kc[0] == 1 && xc[0] == 1, "%s: %d/%d copies", ids[0], kc[0], xc[0]);
    cr_expect(kc[1] == 2 && xc[1] == 2,
              "%s: %d copies on Kafka, %d on Redis; want 2 (posted to both during the outage)",
              ids[1], kc[1], xc[1]);
    cr_expect(kc[2] == 1 && xc[2] == 1, "%s: %d/%d copies", ids[2], kc[2], xc[2]);
    for (int i = 0; i < 3; i++) {
        free(ids[i]);
        free(bodies[i]);
    }
    free(kp);
}

Test(dedup, readyz_names_the_local_store)
{
    th_relay_t *r = th_relay_new();
    TH_START(r);
    char detail[256];
    cr_expect_eq(readyz(r, detail, sizeof detail), 200);
    cr_expect(strstr(detail, "dedup:local"), "/readyz: %s", detail);
}
