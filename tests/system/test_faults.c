/* test_faults.c -- relay's promise under faults: an event answered 200 reaches Kafka
 * and Redis, in the order relay accepted it per channel, whatever happens in between.
 *
 * Each test runs the real build/relay against the real Kafka and Redis that
 * tools/run-tests.sh started, puts it under load (faults.h), breaks something -- relay
 * itself (kill -9, SIGTERM), a sink (tools/kafka.sh / tools/redis.sh stop), the disk
 * (a WAL cap, a full tmpfs, a torn record) -- and then reads both sinks and prints
 * "FAULT <test>: answered 200: N | on kafka: N, lost N, duplicated N | on redis: ...".
 * Lost must be 0 and order must hold; duplicates (same CloudEvent id, identical bytes)
 * are allowed and counted.
 *
 * `make test` runs the short forms (3 crashes, 10 s outages); `make faults`
 * (RELAY_FAULTS_LONG=1) the long ones (20 crashes, 60 s outages). Waits are bounded
 * by generous deadlines that only turn a hang into a failure; nothing asserts speed. */
#include "faults.h"

#include <dirent.h>
#include <sys/mount.h>

#define SETTLE_WAIT_MS 180000 /* the longest a check waits for the sinks to catch up */

static char mounted[PATH_MAX]; /* a tmpfs a test mounted, unmounted at teardown */

static void faults_fini(void)
{
    /* Lazily, before th_teardown stops relay: a relay still using it keeps its files. */
    if (mounted[0] && umount2(mounted, MNT_DETACH) != 0)
        fprintf(stderr, "umount %s: %s\n", mounted, strerror(errno));
    mounted[0] = '\0';
    th_teardown();
}

TestSuite(faults, .init = th_setup, .fini = faults_fini, .timeout = 1500);

static int need_services(void)
{
    return getenv("RELAY_TEST_TOOLS") && getenv("RELAY_TEST_REDIS_DIR") &&
           getenv("RELAY_TEST_KAFKA_DIR") && getenv("RELAY_TEST_KAFKA_PORT");
}

#define NEED_SERVICES()                                                                            \
    do {                                                                                           \
        if (!need_services())                                                                      \
            cr_skip_test("needs tools/run-tests.sh (RELAY_TEST_TOOLS, RELAY_TEST_*_DIR)");         \
    } while (0)

static long lg_failures(lg_t *lg)
{
    return atomic_load(&lg->s503) + atomic_load(&lg->other) + atomic_load(&lg->refused) +
           atomic_load(&lg->broken);
}

/* Polls until metric `name{labels}` of r satisfies cmp against `want`, or timeout. */
static double wait_metric(const th_relay_t *r, const char *name, const char *labels, int ge,
                          double want, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    double v;
    for (;;) {
        v = th_relay_metric(r, name, labels);
        if ((ge && v >= want) || (!ge && v >= 0 && v <= want) || th_now_ms() >= deadline)
            return v;
        th_sleep_ms(200);
    }
}

/* Polls /readyz until its status is `want`, or timeout. Returns the last status. */
static long wait_ready(const th_relay_t *r, long want, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    long st = 0;
    for (;;) {
        json_decref(fault_readyz(r, &st));
        if (st == want || th_now_ms() >= deadline)
            return st;
        th_sleep_ms(200);
    }
}

static int log_count(const th_relay_t *r, const char *needle)
{
    char *text = th_read_file(r->log, NULL);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p++)
        n++;
    free(text);
    return n;
}

/* ====================================================================== 1. crash */

/* kill -9 at random moments while eight channels post, restart at once, over and over.
 * A 200 means the event was durable in the WAL; every one must reach both sinks. */
Test(faults, crash_kill9_under_load)
{
    int crashes = faults_long() ? 20 : 3;
    unsigned seed = faults_seed("crash");
    th_relay_t *r = th_relay_new();
    TH_START(r);
    lg_t *lg = lg_start(r, "timely", 8, 2, 0);
    cr_assert(lg_wait_acked(lg, 50, 60000), "the load never got going");
    for (int i = 0; i < crashes; i++) {
        th_sleep_ms(50 + (int)(rand_r(&seed) % 2500));
        th_relay_kill(r);
        th_sleep_ms((int)(rand_r(&seed) % 500));
        cr_assert(th_relay_start_timeout(r, 60000) == 0,
                  "crash %d: relay did not start again; see %s", i + 1, r->log);
    }
    cr_assert(lg_wait_acked(lg, 100, 60000), "no event was answered after the last restart");
    lg_stop(lg, LG_FINISH);
    fprintf(stderr, "FAULT crash: %d kills, %d start-ups recovered a torn WAL tail\n", crashes,
            log_count(r, "torn or damaged records"));
    ck_check("crash", lg, r, SETTLE_WAIT_MS);
    free(lg);
}

/* ================================================================ 2, 3. outages */

/* Stops one sink's service for a while under load. relay answers 200 the whole time
 * (from the WAL), the other sink keeps receiving, /readyz stays ready (no outage
 * budget) and shows the sink down with a growing lag, and after the service is back
 * its backlog drains, in order. */
static void outage_under_load(const char *test, const char *down, const char *up,
                              int (*service)(const char *))
{
    int secs = faults_long() ? 60 : 10;
    char up_label[32], down_label[32];
    snprintf(up_label, sizeof up_label, "sink=%s", up);
    snprintf(down_label, sizeof down_label, "sink=%s", down);
    th_relay_t *r = th_relay_new();
    TH_START(r);
    cr_assert(wait_ready(r, 200, 30000) == 200, "relay is not ready before the outage");
    lg_t *lg = lg_start(r, "timely", 8, 5, 0);
    cr_assert(lg_wait_acked(lg, 200, 60000), "the load never got going");

    long fail0 = lg_failures(lg), acked0 = lg_acked(lg);
    double up0 = th_relay_metric(r, "relay_sink_published_total", up_label);
    cr_assert(service("stop") == 0, "cannot stop %s", down);
    int64_t t0 = th_now_ms(), end = t0 + secs * 1000L;
    int saw_down = 0, not_ready = 0;
    long long max_lag_events = 0, max_lag_bytes = 0;
    double fill = 0;
    while (th_now_ms() < end) {
        long st;
        json_t *rz = fault_readyz(r, &st);
        saw_down |= !strcmp(fault_sink_state(rz, down), "down");
        not_ready += st != 200;
        if (fault_sink_num(rz, down, "lag_events") > max_lag_events)
            max_lag_events = fault_sink_num(rz, down, "lag_events");
        if (fault_sink_num(rz, down, "lag_bytes") > max_lag_bytes)
            max_lag_bytes = fault_sink_num(rz, down, "lag_bytes");
        json_decref(rz);
        th_sleep_ms(500);
    }
    double lag_metric = th_relay_metric(r, "relay_sink_lag_bytes", down_label);
    double up_metric = th_relay_metric(r, "relay_sink_up", down_label);
    fill = th_relay_metric(r, "relay_wal_fill_ratio", NULL);
    long during = lg_acked(lg) - acked0, failed = lg_failures(lg) - fail0;
    double up1 = th_relay_metric(r, "relay_sink_published_total", up_label);
    cr_assert(service("start") == 0, "cannot start %s again", down);
    int64_t back = th_now_ms();
    cr_assert(lg_wait_acked(lg, 200, 60000), "no event was answered after %s came back", down);
    lg_stop(lg, LG_FINISH);

    fprintf(stderr,
            "FAULT %s: %s down %.1f s; answered 200 meanwhile: %ld, not 200: %ld; %s received "
            "%.0f meanwhile; max lag %lld events / %lld bytes; WAL fill %.4f\n",
            test, down, (double)(back - t0) / 1000, during, failed, up, up1 - up0, max_lag_events,
            max_lag_bytes, fill);
    cr_expect(failed == 0, "%s: %ld requests were not answered 200 while %s was down", test, failed,
              down);
    cr_expect(during > 0, "%s: nothing was answered 200 while %s was down", test, down);
    cr_expect(up1 > up0, "%s: %s received nothing while %s was down", test, up, down);
    cr_expect(saw_down, "%s: /readyz never showed %s down", test, down);
    cr_expect(not_ready == 0, "%s: /readyz was not ready %d times (no outage budget is set)", test,
              not_ready);
    cr_expect(max_lag_events > 0 && max_lag_bytes > 0 && lag_metric > 0,
              "%s: no lag shown for %s (readyz %lld events %lld bytes, metric %g)", test, down,
              max_lag_events, max_lag_bytes, lag_metric);
    cr_expect(up_metric == 0, "%s: relay_sink_up{%s} = %g during the outage", test, down_label,
              up_metric);
    cr_expect(fill > 0, "%s: relay_wal_fill_ratio = %g", test, fill);
    ck_check(test, lg, r, SETTLE_WAIT_MS);
    double lag_after = wait_metric(r, "relay_sink_lag_events", down_label, 0, 0, 60000);
    cr_expect(lag_after == 0, "%s: %s still %g events behind after the check", test, down,
              lag_after);
    free(lg);
}

Test(faults, kafka_outage_under_load)
{
    NEED_SERVICES();
    outage_under_load("kafka_outage", "kafka", "redis", th_kafka_service);
}

Test(faults, redis_outage_under_load)
{
    NEED_SERVICES();
    outage_under_load("redis_outage", "redis", "kafka", th_redis_service);
}

/* ================================================= 5. WAL cap and a full disk */

/* A request the WAL cannot take: it must be a JSON 503 with Retry-After. The body
 * (16 KiB, id outside the load's) is larger than any event of the load, so that it
 * cannot slip into the room a refused one left. */
static void expect_refused(const th_relay_t *r, const char *code)
{
    char pad[16385];
    memset(pad, 'y', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    char *id = th_strf("probe_%s", r->prefix);
    char *body = th_timely_message(id, "chan_probe", 0);
    char *fat = th_strf("%.*s,\"note\":\"%s\"}}", (int)strlen(body) - 2, body, pad);
    th_resp_t resp;
    th_post(r, "timely", fat, NULL, &resp);
    cr_expect(resp.status == 503, "a full WAL answered %ld: %s", resp.status, resp.body);
    cr_expect(resp.retry_after[0], "503 without Retry-After");
    const char *err = json_string_value(json_object_get(resp.json, "error"));
    cr_expect(err && !strcmp(err, code), "503 error code %s, want %s", err ? err : "(none)", code);
    th_resp_free(&resp);
    free(fat);
    free(body);
    free(id);
}

/* Starts r, stops Redis so that the WAL keeps everything, and posts events of about
 * `pad` bytes on two channels until relay refuses one. Returns the load, still
 * running, and in *at_full how many events it had answered 200 by then. */
static lg_t *load_until_refused(th_relay_t *r, int pad, long *at_full)
{
    TH_START(r);
    cr_assert(wait_ready(r, 200, 30000) == 200, "relay is not ready");
    cr_assert(th_redis_service("stop") == 0, "cannot stop Redis");
    lg_t *lg = lg_start(r, "timely", 2, 0, pad);
    int64_t deadline = th_now_ms() + 180000;
    while (atomic_load(&lg->s503) == 0 && th_now_ms() < deadline)
        th_sleep_ms(50);
    *at_full = lg_acked(lg);
    cr_assert(atomic_load(&lg->s503) > 0, "the WAL never filled up (%ld answered 200)", *at_full);
    return lg;
}

/* relay refuses events for `reason`: /readyz says so, a request gets a JSON 503 with
 * `code` and Retry-After, and the process is alive and well. */
static void expect_refusing(const th_relay_t *r, const char *reason, const char *code)
{
    long st;
    json_t *rz = fault_readyz(r, &st);
    cr_expect(st == 503 && fault_has_reason(rz, reason), "/readyz: %ld, want 503 %s", st, reason);
    json_decref(rz);
    expect_refused(r, code);
    th_resp_t resp;
    th_get(r, "/healthz", &resp);
    cr_expect(resp.status == 200, "relay is not alive while refusing events (%s)", reason);
    th_resp_free(&resp);
}

/* Redis is down and Kafka up: the WAL keeps what Redis has not taken until it reaches
 * wal.max_size; then relay answers 503, never 200, never crashes, and /readyz says so.
 * Once Redis is back and drains, relay takes events again by itself. */
Test(faults, wal_cap_answers_503_then_recovers_by_itself)
{
    NEED_SERVICES();
    th_relay_t *r = th_relay_new();
    snprintf(r->wal_extra, sizeof r->wal_extra, "segment_size = 64k\nmax_size = 1m\n");
    long at_full;
    lg_t *lg = load_until_refused(r, 8192, &at_full);
    expect_refusing(r, "wal_full", "wal_full");

    long st;
    json_t *rz = fault_readyz(r, &st);
    double fill = json_real_value(json_object_get(json_object_get(rz, "wal"), "fill_ratio"));
    cr_expect(fill > 0.9, "fill_ratio %g with a full WAL", fill);
    cr_expect(fault_sink_num(rz, "redis", "lag_bytes") > 900000, "redis lag_bytes %lld",
              fault_sink_num(rz, "redis", "lag_bytes"));
    json_decref(rz);
    cr_expect(th_relay_metric(r, "relay_wal_full", NULL) == 1, "relay_wal_full is not 1");
    cr_expect(th_relay_metric(r, "relay_events_rejected_wal_full_total", NULL) > 0);

    cr_assert(th_redis_service("start") == 0, "cannot start Redis again");
    cr_expect(lg_wait_acked(lg, 50, 120000),
              "relay did not take events again after Redis came back");
    cr_expect(wait_ready(r, 200, 60000) == 200, "/readyz did not recover");
    lg_stop(lg, LG_FINISH);
    fprintf(stderr,
            "FAULT wal_cap: answered 200 before the cap: %ld, 503 answers: %ld, fill %.3f; "
            "answered 200 after Redis came back: %ld\n",
            at_full, atomic_load(&lg->s503), fill, lg_acked(lg) - at_full);
    ck_check("wal_cap", lg, r, SETTLE_WAIT_MS);
    free(lg);
}

/* The WAL on a small tmpfs that fills up (Redis down, so nothing is deleted): writes
 * fail with ENOSPC, relay answers 503 and never 200 for what it could not write, keeps
 * running, says not ready; when space returns (another file is deleted) it notices by
 * itself, answers 200 again, and every event it answered 200 reaches both sinks. The
 * failed writes leave nothing behind: the next start finds no torn tail. */
Test(faults, disk_full_answers_503_then_recovers_by_itself)
{
    NEED_SERVICES();
    th_relay_t *r = th_relay_new();
    cr_assert(th_mkdir_p(r->wal_dir) == 0);
    if (mount("relay-test", r->wal_dir, "tmpfs", 0, "size=4m,mode=0755") != 0) {
        if (errno == EPERM)
            cr_skip_test("mounting a tmpfs needs root (CAP_SYS_ADMIN)");
        cr_assert_fail("mount tmpfs on %s: %s", r->wal_dir, strerror(errno));
    }
    snprintf(mounted, sizeof mounted, "%s", r->wal_dir);
    char filler[PATH_MAX + 16];
    snprintf(filler, sizeof filler, "%s/filler", r->wal_dir);
    FILE *f = fopen(filler, "w");
    cr_assert(f, "cannot create %s", filler);
    static char block[64 * 1024];
    for (int i = 0; i < 40; i++) /* 2.5 MiB of the 4 */
        fwrite(block, 1, sizeof block, f);
    cr_assert(fclose(f) == 0, "cannot fill %s", filler);

    snprintf(r->wal_extra, sizeof r->wal_extra, "segment_size = 256k\n");
    long at_full;
    lg_t *lg = load_until_refused(r, 4096, &at_full);
    expect_refusing(r, "wal_not_writable", "wal_unavailable");
    cr_expect(th_relay_metric(r, "relay_wal_write_errors_total", NULL) > 0);
    cr_expect(th_relay_metric(r, "relay_wal_writable", NULL) == 0);
    th_resp_t resp;

    /* Stop the load first: it would fill the space again at once. */
    lg_stop(lg, LG_ABANDON);
    cr_assert(unlink(filler) == 0, "rm %s: %s", filler, strerror(errno));
    cr_expect(wait_ready(r, 200, 60000) == 200, "/readyz did not notice the space that returned");
    /* A channel event: on events.channel, apart from what the checker reads. */
    char *body = th_strf("{\"event\":\"channel.connected\",\"event_id\":\"evt_%s_back\","
                         "\"timestamp\":\"2026-04-19T10:00:00Z\",\"workspace_id\":\"ws_abc123\","
                         "\"data\":{\"channel_id\":\"chan_back\",\"channel_type\":\"whatsapp\","
                         "\"status\":\"connected\"}}",
                         r->prefix);
    th_post(r, "timely", body, NULL, &resp);
    cr_expect(resp.status == 200, "a post after space returned: %ld %s", resp.status, resp.body);
    th_resp_free(&resp);
    free(body);
    cr_assert(th_redis_service("start") == 0, "cannot start Redis again");
    fprintf(stderr,
            "FAULT disk_full: answered 200 before the disk was full: %ld, 503 answers: %ld, "
            "write errors: %.0f; ready and answering 200 again once space returned\n",
            at_full, atomic_load(&lg->s503),
            th_relay_metric(r, "relay_wal_write_errors_total", NULL));
    ck_check("disk_full", lg, r, SETTLE_WAIT_MS);

    int stop = th_relay_stop(r, 60000);
    cr_expect(stop != -1 && WIFEXITED(stop) && WEXITSTATUS(stop) == 0,
              "relay did not exit 0 on SIGTERM (status 0x%x)", stop);
    TH_START(r);
    cr_expect(th_relay_metric(r, "relay_wal_torn_total", NULL) == 0,
              "the failed writes left a torn tail in the WAL");
    free(lg);
}

/* ================================================================= 6. torn write */

/* How many of got[] match want[] position by position from the start; adds the
 * others (out of place or extra copies) to *other. */
static int prefix_match(const char *const *got, size_t ngot, char *const *want, int nwant,
                        int *other)
{
    int n = 0;
    for (size_t i = 0; i < ngot; i++) {
        if (got[i] && n < nwant && !strcmp(got[i], want[n]))
            n++;
        else
            (*other)++;
    }
    return n;
}

/* relay dies while writing its last record (simulated: the segment is cut in the
 * middle of that record). The next start keeps every complete record, drops and
 * counts the torn one, and starts; the event that was cut is taken again when the
 * provider retries it, and sequence numbers go on. */
Test(faults, torn_tail_is_dropped_and_counted)
{
    enum { N = 20 };
    char *ids[N + 1];
    th_relay_t *r = th_relay_new();
    th_relay_sinks_unreachable(r); /* everything stays in the WAL */
    TH_START(r);
    for (int i = 0; i <= N; i++)
        ids[i] = th_strf("evt_%s_c0_%d", r->prefix, i);
    for (int i = 0; i < N; i++) {
        char *body = th_timely_message(ids[i], "chan_0", i);
        th_resp_t resp;
        th_post(r, "timely", body, NULL, &resp);
        cr_assert(resp.status == 200, "post %d: %ld %s", i, resp.status, resp.body);
        th_resp_free(&resp);
        free(body);
    }
    th_relay_kill(r);

    /* The last segment ends with the last record: cut 40 bytes off its end. */
    DIR *d = opendir(r->wal_dir);
    cr_assert(d, "cannot open %s", r->wal_dir);
    struct dirent *de;
    unsigned long long last = 0;
    int found = 0;
    while ((de = readdir(d))) {
        char *end;
        unsigned long long v = strtoull(de->d_name, &end, 10);
        if (end != de->d_name && !strcmp(end, ".wal") && (!found || v > last))
            last = v, found = 1;
    }
    closedir(d);
    cr_assert(found, "no WAL segment in %s", r->wal_dir);
    char seg[PATH_MAX + 32];
    snprintf(seg, sizeof seg, "%s/%020llu.wal", r->wal_dir, last);
    struct stat sb;
    cr_assert(stat(seg, &sb) == 0 && sb.st_size > 40, "%s: %s", seg, strerror(errno));
    cr_assert(truncate(seg, sb.st_size - 40) == 0, "truncate %s: %s", seg, strerror(errno));

    th_relay_sinks_reachable(r);
    TH_START(r);
    double torn = th_relay_metric(r, "relay_wal_torn_total", NULL);
    double torn_bytes = th_relay_metric(r, "relay_wal_torn_bytes_total", NULL);
    cr_expect(torn == 1, "relay_wal_torn_total = %g, want 1", torn);
    cr_expect(torn_bytes > 0, "relay_wal_torn_bytes_total = %g", torn_bytes);
    cr_expect(log_count(r, "torn or damaged records") == 1,
              "the log does not say what was dropped");

    /* The provider retries the torn event (it was never acknowledged as far as the
     * disk is concerned), then sends a new one. */
    for (int i = N - 1; i <= N; i++) {
        char *body = th_timely_message(ids[i], "chan_0", i);
        th_resp_t resp;
        th_post(r, "timely", body, NULL, &resp);
        cr_expect(resp.status == 200 && strstr(resp.body, "\"accepted\":1"),
                  "post of %s after recovery: %ld %s", ids[i], resp.status, resp.body);
        th_resp_free(&resp);
        free(body);
    }
    char topic[256], stream[256];
    th_kmsgs_t msgs = {0};
    th_xentries_t xs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), N + 1, 60000, 1000, &msgs);
    th_redis_read(th_stream(r, "chan_0", stream, sizeof stream), N + 1, 60000, 500, &xs);
    /* Expected on each sink: 0 .. N-2 (kept), then N-1 (retried), then N. */
    const char *got[2 * (N + 1)];
    size_t ngot = 0;
    for (size_t i = 0; i < msgs.n && ngot < N + 1; i++)
        got[ngot++] = th_kheader(&msgs.v[i], "ce_id");
    int kdup = (int)(msgs.n - ngot), kn = prefix_match(got, ngot, ids, N + 1, &kdup);
    ngot = 0;
    for (size_t i = 0; i < xs.n && ngot < N + 1; i++)
        got[ngot++] = th_xfield(&xs.v[i], "id");
    int xdup = (int)(xs.n - ngot), xn = prefix_match(got, ngot, ids, N + 1, &xdup);
    int korder = kdup == 0, xorder = xdup == 0;
    fprintf(stderr,
            "FAULT torn: answered 200: %d (then %d retried/new) | complete records kept: %d, torn "
            "records dropped: %.0f (%.0f bytes) | on kafka: %d, on redis: %d, lost: %d, out of "
            "place or duplicated: kafka %d, redis %d\n",
            N, 2, N - 1, torn, torn_bytes, kn, xn, (N + 1 - kn) + (N + 1 - xn), kdup, xdup);
    cr_expect(kn == N + 1 && korder, "kafka holds %d of the %d events in order (%zu messages)", kn,
              N + 1, msgs.n);
    cr_expect(xn == N + 1 && xorder, "redis holds %d of the %d events in order (%zu entries)", xn,
              N + 1, xs.n);
    th_kmsgs_free(&msgs);
    th_xentries_free(&xs);
    for (int i = 0; i <= N; i++)
        free(ids[i]);
}

/* ========================================================== 7. graceful shutdown */

/* Starts r with http.shutdown_grace = grace, stops Redis if asked, puts it under load
 * on `channels` channels and sends SIGTERM once `acked` events were answered 200.
 * relay must exit 0; the load stops then. Returns the load; *took is how long relay
 * took to exit. */
static lg_t *sigterm_under_load(th_relay_t *r, const char *grace, int redis_down, int channels,
                                long acked, int64_t *took)
{
    th_relay_setenv(r, "RELAY_HTTP_SHUTDOWN_GRACE", grace);
    TH_START(r);
    cr_assert(wait_ready(r, 200, 30000) == 200, "relay is not ready");
    if (redis_down)
        cr_assert(th_redis_service("stop") == 0, "cannot stop Redis");
    lg_t *lg = lg_start(r, "timely", channels, 2, 0);
    cr_assert(lg_wait_acked(lg, acked, 60000), "the load never got going");
    int64_t t0 = th_now_ms();
    int st = th_relay_stop(r, 120000);
    *took = th_now_ms() - t0;
    lg_stop(lg, LG_ABANDON);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "relay did not exit 0 on SIGTERM (status 0x%x)", st);
    return lg;
}

/* SIGTERM under load with both sinks up: relay stops accepting, answers what is in
 * flight, publishes everything to both sinks before it exits 0 -- checked without
 * starting it again. */
Test(faults, sigterm_under_load_flushes_both_sinks)
{
    int64_t took;
    th_relay_t *r = th_relay_new();
    lg_t *lg = sigterm_under_load(r, "60", 0, 8, 300, &took);
    cr_expect(log_count(r, "shutdown: kafka: everything acknowledged") == 1 &&
                  log_count(r, "shutdown: redis: everything acknowledged") == 1,
              "relay did not say that both sinks had everything");
    fprintf(stderr,
            "FAULT shutdown: exit 0 %.1f s after SIGTERM; connections broken mid-request: %ld\n",
            (double)took / 1000, atomic_load(&lg->broken));
    ck_check("shutdown", lg, r, 60000);
    free(lg);
}

/* SIGTERM with Redis down: relay exits 0 within its grace period, Kafka has
 * everything before it exits, and what Redis missed is published at the next start. */
Test(faults, sigterm_with_redis_down_exits_in_grace_and_replays)
{
    NEED_SERVICES();
    int64_t took;
    th_relay_t *r = th_relay_new();
    lg_t *lg = sigterm_under_load(r, "2", 1, 4, 100, &took);
    cr_expect(log_count(r, "shutdown: kafka: everything acknowledged") == 1,
              "relay did not flush Kafka before it exited");
    cr_expect(log_count(r, "events not acknowledged yet; they are published at the next start") ==
                  1,
              "relay did not say what Redis missed");

    ck_sink_t k;
    ck_init(&k, "kafka", lg);
    ck_read_kafka(&k, r, 60000);
    fprintf(
        stderr,
        "FAULT shutdown_redis_down: exit 0 %.1f s after SIGTERM (grace 2 s); answered 200: %ld, "
        "on kafka before the restart: %ld\n",
        (double)took / 1000, k.expected, k.found);
    cr_expect(k.found == k.expected, "%ld events were not on Kafka when relay exited",
              k.expected - k.found);
    ck_free(&k);

    cr_assert(th_redis_service("start") == 0, "cannot start Redis again");
    TH_START(r);
    ck_check("shutdown_redis_down", lg, r, SETTLE_WAIT_MS);
    free(lg);
}

/* ============================================================ 8. ack = publish */

#define PUB_SOURCE "\n[source pub]\ncodec = timely\nack = publish\nack_timeout = 6\n"

/* Every 200 from an ack = publish source comes after both sinks acknowledged the
 * event: it is on the Redis stream, and counted as published by Kafka, at the moment
 * the answer arrives. Under load, nothing is lost either. */
Test(faults, ack_publish_answers_once_every_sink_has_the_event)
{
    enum { N = 20 };
    th_relay_t *r = th_relay_new();
    snprintf(r->extra, sizeof r->extra, PUB_SOURCE);
    TH_START(r);
    cr_assert(wait_ready(r, 200, 30000) == 200, "relay is not ready");
    char stream[256];
    th_stream(r, "chan_direct", stream, sizeof stream);
    int on_redis = 0, counted = 0;
    for (int i = 0; i < N; i++) {
        char *id = th_strf("direct_%s_%d", r->prefix, i);
        char *body = th_timely_message(id, "chan_direct", i);
        th_resp_t resp;
        th_post(r, "pub", body, NULL, &resp);
        cr_assert(resp.status == 200, "ack = publish post %d: %ld %s", i, resp.status, resp.body);
        th_resp_free(&resp);
        /* No waiting: at the moment of the 200 the event must be there. */
        th_xentries_t xs = {0};
        th_redis_read(stream, 0, 0, 0, &xs);
        on_redis += xs.n == (size_t)i + 1 && !strcmp(th_xfield(&xs.v[i], "id"), id);
        counted += th_relay_metric(r, "relay_sink_published_total", "sink=kafka") >= i + 1;
        th_xentries_free(&xs);
        free(body);
        free(id);
    }
    char topic[256];
    th_kmsgs_t msgs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), N, 60000, 500, &msgs);
    fprintf(stderr,
            "FAULT ack_publish: answered 200: %d | on redis at the moment of the 200: %d | "
            "acknowledged by kafka at the moment of the 200: %d | on kafka: %zu\n",
            N, on_redis, counted, msgs.n);
    cr_expect(on_redis == N, "%d of %d events were on Redis when their 200 came", on_redis, N);
    cr_expect(counted == N, "%d of %d events were acknowledged by Kafka when their 200 came",
              counted, N);
    cr_expect(msgs.n == N, "kafka holds %zu messages, want %d", msgs.n, N);
    th_kmsgs_free(&msgs);

    /* The load on an instance of its own: its topic holds nothing else. */
    th_relay_t *r2 = th_relay_new();
    snprintf(r2->extra, sizeof r2->extra, PUB_SOURCE);
    TH_START(r2);
    lg_t *lg = lg_start(r2, "pub", 4, 0, 0);
    cr_assert(lg_wait_acked(lg, 200, 60000), "the ack = publish load never got going");
    lg_stop(lg, LG_FINISH);
    ck_check("ack_publish_load", lg, r2, SETTLE_WAIT_MS);
    free(lg);
}

typedef struct pub_post {
    const th_relay_t *r;
    char *body;
    th_resp_t resp;
    pthread_t thread;
} pub_post_t;

static void *pub_post_main(void *arg)
{
    pub_post_t *p = arg;
    th_post(p->r, "pub", p->body, NULL, &p->resp);
    return NULL;
}

/* With Redis down, ack = publish requests wait (suspended: more of them than HTTP
 * threads, and /metrics is still answered), then get 503 publish_timeout with
 * Retry-After. The events are durable: Kafka gets them, and once Redis is back the
 * provider's retry is answered 200 (a duplicate) with the event published once. */
Test(faults, ack_publish_times_out_with_a_sink_down)
{
    enum { N = 4 };
    NEED_SERVICES();
    th_relay_t *r = th_relay_new();
    snprintf(r->extra, sizeof r->extra, PUB_SOURCE);
    TH_START(r);
    cr_assert(wait_ready(r, 200, 30000) == 200, "relay is not ready");
    cr_assert(th_redis_service("stop") == 0, "cannot stop Redis");
    pub_post_t posts[N];
    char *ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = th_strf("evt_%s_c%d_0", r->prefix, i);
        char channel[16];
        snprintf(channel, sizeof channel, "chan_%d", i);
        posts[i] = (pub_post_t){.r = r, .body = th_timely_message(ids[i], channel, 0)};
        cr_assert(pthread_create(&posts[i].thread, NULL, pub_post_main, &posts[i]) == 0);
    }
    /* Two HTTP threads, four requests waiting: /metrics must still be answered. */
    double waiting = wait_metric(r, "relay_http_inflight", NULL, 1, N, 5500);
    for (int i = 0; i < N; i++)
        pthread_join(posts[i].thread, NULL);
    int timeouts = 0;
    for (int i = 0; i < N; i++) {
        const char *err = json_string_value(json_object_get(posts[i].resp.json, "error"));
        timeouts += posts[i].resp.status == 503 && err && !strcmp(err, "publish_timeout") &&
                    posts[i].resp.retry_after[0];
        th_resp_free(&posts[i].resp);
    }
    cr_expect(waiting >= N, "relay_http_inflight reached %g, want %d waiting requests", waiting, N);
    cr_expect(timeouts == N, "%d of %d requests were answered 503 publish_timeout + Retry-After",
              timeouts, N);
    cr_expect(th_relay_metric(r, "relay_ack_publish_timeouts_total", "source=pub") == N);

    char topic[256];
    th_kmsgs_t msgs = {0};
    th_kafka_read(th_topic(r, "message", topic, sizeof topic), N, 60000, 500, &msgs);
    cr_expect(msgs.n == N, "kafka holds %zu of the %d durable events", msgs.n, N);
    th_kmsgs_free(&msgs);

    cr_assert(th_redis_service("start") == 0, "cannot start Redis again");
    int ok = 0, once = 0;
    for (int i = 0; i < N; i++) {
        th_resp_t resp;
        th_post(r, "pub", posts[i].body, NULL, &resp);
        ok += resp.status == 200 && strstr(resp.body, "\"duplicates\":1") != NULL;
        th_resp_free(&resp);
        char channel[16], stream[256];
        snprintf(channel, sizeof channel, "chan_%d", i);
        th_xentries_t xs = {0};
        th_redis_read(th_stream(r, channel, stream, sizeof stream), 0, 0, 0, &xs);
        once += xs.n == 1 && !strcmp(th_xfield(&xs.v[0], "id"), ids[i]);
        th_xentries_free(&xs);
        free(posts[i].body);
        free(ids[i]);
    }
    fprintf(stderr,
            "FAULT ack_publish_timeout: requests: %d, waiting at once: %.0f, answered 503 "
            "publish_timeout: %d | on kafka: %d | retries answered 200 after Redis came back: "
            "%d, on redis once at that moment: %d\n",
            N, waiting, timeouts, N, ok, once);
    cr_expect(ok == N, "%d of %d retries were answered 200 as duplicates", ok, N);
    cr_expect(once == N, "%d of %d events were on Redis exactly once when the retry's 200 came",
              once, N);
}

/* SIGTERM while ack = publish requests wait for a sink that is down: each still gets an
 * answer (503: relay is going away, the events are durable) before relay exits 0
 * within its grace period, and the events are published at the next start. */
Test(faults, sigterm_answers_requests_waiting_for_publication)
{
    enum { N = 3 };
    NEED_SERVICES();
    th_relay_t *r = th_relay_new();
    snprintf(r->extra, sizeof r->extra,
             "\n[source pub]\ncodec = timely\nack = publish\n"
             "ack_timeout = 600\n");
    th_relay_setenv(r, "RELAY_HTTP_SHUTDOWN_GRACE", "2");
    TH_START(r);
    cr_assert(wait_ready(r, 200, 30000) == 200, "relay is not ready");
    cr_assert(th_redis_service("stop") == 0, "cannot stop Redis");
    pub_post_t posts[N];
    for (int i = 0; i < N; i++) {
        char *id = th_strf("evt_%s_c%d_0", r->prefix, i);
        char channel[16];
        snprintf(channel, sizeof channel, "chan_%d", i);
        posts[i] = (pub_post_t){.r = r, .body = th_timely_message(id, channel, 0)};
        free(id);
        cr_assert(pthread_create(&posts[i].thread, NULL, pub_post_main, &posts[i]) == 0);
    }
    double waiting = wait_metric(r, "relay_http_inflight", NULL, 1, N, 60000);
    int st = th_relay_stop(r, 60000);
    int answered = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(posts[i].thread, NULL);
        const char *err = json_string_value(json_object_get(posts[i].resp.json, "error"));
        answered += posts[i].resp.status == 503 && err && !strcmp(err, "unavailable") &&
                    posts[i].resp.retry_after[0];
        th_resp_free(&posts[i].resp);
        free(posts[i].body);
    }
    fprintf(stderr,
            "FAULT shutdown_ack_publish: requests waiting: %.0f, answered 503 at shutdown: %d, "
            "exit status 0x%x\n",
            waiting, answered, st);
    cr_expect(waiting >= N, "only %g requests were waiting", waiting);
    cr_expect(answered == N, "%d of %d waiting requests were answered 503 unavailable", answered,
              N);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "relay did not exit 0 (status 0x%x)", st);

    cr_assert(th_redis_service("start") == 0, "cannot start Redis again");
    TH_START(r);
    for (int i = 0; i < N; i++) {
        char channel[16], stream[256], *id = th_strf("evt_%s_c%d_0", r->prefix, i);
        th_xentries_t xs = {0};
        snprintf(channel, sizeof channel, "chan_%d", i);
        th_redis_read(th_stream(r, channel, stream, sizeof stream), 1, 60000, 0, &xs);
        cr_expect(xs.n == 1 && !strcmp(th_xfield(&xs.v[0], "id"), id),
                  "%s is not on Redis after the restart", id);
        th_xentries_free(&xs);
        free(id);
    }
}

/* ================================================ 9. readiness and outage budget */

/* With redis.outage_budget set, /readyz fails once Redis has been down longer than
 * that, names the reason and the sink, and recovers when Redis is back. */
Test(faults, readyz_fails_when_a_sink_is_down_past_its_budget)
{
    NEED_SERVICES();
    th_relay_t *r = th_relay_new();
    th_relay_setenv(r, "RELAY_REDIS_OUTAGE_BUDGET", "2");
    TH_START(r);
    cr_assert(wait_ready(r, 200, 30000) == 200, "relay is not ready with both sinks up");
    cr_assert(th_redis_service("stop") == 0, "cannot stop Redis");
    char *id = th_strf("evt_%s_budget", r->prefix);
    char *body = th_timely_message(id, "chan_budget", 0);
    th_resp_t resp;
    th_post(r, "timely", body, NULL, &resp); /* the sink notices at its next XADD */
    cr_expect(resp.status == 200, "post with Redis down: %ld", resp.status);
    th_resp_free(&resp);
    cr_expect(wait_ready(r, 503, 60000) == 503, "/readyz stayed ready with Redis down past 2 s");
    long st;
    json_t *rz = fault_readyz(r, &st);
    cr_expect(fault_has_reason(rz, "redis_down_past_outage_budget"), "reasons: %s",
              json_dumps(json_object_get(rz, "reasons"), 0));
    cr_expect(!strcmp(fault_sink_state(rz, "redis"), "down") &&
                  fault_sink_num(rz, "redis", "down_seconds") >= 2 &&
                  fault_sink_num(rz, "redis", "outage_budget_seconds") == 2,
              "readyz redis: %s",
              json_dumps(json_object_get(json_object_get(rz, "sinks"), "redis"), 0));
    cr_expect(!strcmp(fault_sink_state(rz, "kafka"), "up"), "kafka is %s",
              fault_sink_state(rz, "kafka"));
    json_decref(rz);
    cr_expect(th_relay_metric(r, "relay_sink_down_seconds", "sink=redis") >= 2);
    cr_assert(th_redis_service("start") == 0, "cannot start Redis again");
    cr_expect(wait_ready(r, 200, 60000) == 200, "/readyz did not recover with Redis back");
    fprintf(
        stderr,
        "FAULT readyz_budget: not ready past a 2 s budget, ready again after Redis came back\n");
    free(body);
    free(id);
}
