/* test_oplogs.c -- what an operator reads in relay's log (docs/deployment.md,
 * "Reading the log"): a Redis unreachable at start-up, an outage's start and
 * end with its backlog, a replay's start and "caught up", structured fields in
 * log.format = json, no warning for Kafka's normal start, and a Redis that
 * refuses every XADD retried with a growing back-off, not in a tight loop. */
#include "harness.h"

TestSuite(oplogs, .init = th_setup, .fini = th_teardown, .timeout = 180);

/* Waits up to ms for the relay's log to contain needle; returns the log
 * (malloc'd) when it does, NULL otherwise. */
static char *wait_log(const th_relay_t *r, const char *needle, int ms)
{
    int64_t until = th_now_ms() + ms;
    for (;;) {
        char *log = th_read_file(r->log, NULL);
        if (log && strstr(log, needle))
            return log;
        free(log);
        if (th_now_ms() >= until)
            return NULL;
        th_sleep_ms(100);
    }
}

static void post_events_to(th_relay_t *r, const char *tag, const char *channel, int n)
{
    for (int i = 0; i < n; i++) {
        char *id = th_strf("oplog-%s-%d", tag, i);
        char *body = th_timely_message(id, channel, i);
        th_resp_t resp = {0};
        cr_assert(th_post(r, "timely", body, NULL, &resp) == 0 && resp.status == 200,
                  "POST answered %ld", resp.status);
        th_resp_free(&resp);
        free(body);
        free(id);
    }
}

static void post_events(th_relay_t *r, const char *tag, int n)
{
    post_events_to(r, tag, "chan_oplog", n);
}

/* A line of the log holding every one of the NULL-terminated needles. */
static int line_with(const char *log, const char *const *needles)
{
    for (const char *p = log; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char *line = th_memdup(p, n);
        int all = 1;
        for (size_t i = 0; needles[i]; i++)
            all = all && strstr(line, needles[i]) != NULL;
        free(line);
        if (all)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

Test(oplogs, redis_outage_and_replay_in_json)
{
    th_relay_t *r = th_relay_new();
    th_relay_setenv(r, "RELAY_LOG_FORMAT", "json");
    TH_START(r);
    free(wait_log(r, "\"module\":\"redis\",\"message\":\"connected\"", 15000));
    cr_assert(th_redis_service("stop") == 0, "cannot stop Redis");
    post_events(r, "a", 5);
    char *log = wait_log(r, "outage started", 20000);
    cr_assert(log, "no outage start in %s", r->log);
    free(log);
    cr_assert(th_redis_service("start") == 0, "cannot start Redis again");
    log = wait_log(r, "replay caught up", 30000);
    cr_assert(log, "no \"replay caught up\" in %s", r->log);
    cr_assert(line_with(log, (const char *[]){"\"level\":\"warn\"", "\"module\":\"redis\"",
                                              "outage started", "\"backlog_events\":", NULL}),
              "outage start without its backlog field");
    cr_assert(line_with(log, (const char *[]){"\"level\":\"info\"", "outage ended after",
                                              "\"down_ms\":", "\"backlog_events\":", NULL}),
              "no outage end at info with its length");
    cr_assert(line_with(log, (const char *[]){"replay started", "\"events\":", NULL}),
              "no replay start with its size");
    cr_assert(line_with(log, (const char *[]){"replay caught up", "\"published\":",
                                              "\"events_per_s\":", "\"lag_events\":0", NULL}),
              "caught up without its figures");
    /* Kafka's transient start-up answer is not a warning. */
    cr_assert(!line_with(log, (const char *[]){"\"level\":\"warn\"", "Coordinator load", NULL}),
              "librdkafka's Coordinator load in progress logged as a warning");
    free(log);
}

Test(oplogs, redis_unreachable_at_start_is_info)
{
    th_relay_t *r = th_relay_new();
    snprintf(r->redis_url, sizeof(r->redis_url), "redis://127.0.0.1:%d/0", th_free_port());
    TH_START(r);
    char *log = wait_log(r, "redis: unreachable at start-up", 15000);
    cr_assert(log, "no start-up line for the unreachable Redis in %s", r->log);
    cr_assert(line_with(log, (const char *[]){" info ", "redis: unreachable at start-up",
                                              "Connection refused", "attempts=1", NULL}),
              "the start-up line is not at info with the reason and attempts");
    free(log);
}

/* Lines of the log holding needle. */
static int count_lines(const char *log, const char *needle)
{
    int n = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void redis_acl(const char *cmd)
{
    redisContext *c = redisConnect("127.0.0.1", th_redis_port());
    cr_assert(c && !c->err, "cannot connect to the test Redis");
    char *copy = th_strf("%s", cmd), *argv[16], *save = NULL;
    int argc = 0;
    for (char *w = strtok_r(copy, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    redisReply *rep = redisCommandArgv(c, argc, (const char **)argv, NULL);
    free(copy);
    cr_assert(rep && rep->type != REDIS_REPLY_ERROR, "%s: %s", cmd, rep ? rep->str : c->errstr);
    freeReplyObject(rep);
    redisFree(c);
}

/* Redis takes the connection and PING but refuses XADD (an ACL, or -OOM at
 * maxmemory): each refused batch is a reconnect, and the back-off grows (100 ms
 * to 5 s) instead of starting again at 100 ms after every connect. Once XADD
 * is allowed the events arrive, none lost. */
Test(oplogs, redis_refusing_every_xadd_is_retried_with_back_off)
{
    char *user = th_strf("oplog%d", (int)getpid());
    char *acl = th_strf("ACL SETUSER %s on >pw ~* +@all -xadd", user);
    redis_acl(acl);
    free(acl);
    th_relay_t *r = th_relay_new();
    snprintf(r->redis_url, sizeof(r->redis_url), "redis://%s:pw@127.0.0.1:%d/0", user,
             th_redis_port());
    TH_START(r);
    char stream[256];
    post_events_to(r, "noperm", "chan_noperm", 3);
    char *log = wait_log(r, "XADD refused", 15000);
    if (!log) {
        char *all = th_read_file(r->log, NULL);
        cr_assert(0, "no refused XADD in %s: %s", r->log, all ? all : "");
    }
    free(log);
    th_sleep_ms(6000);
    log = th_read_file(r->log, NULL);
    int refused = count_lines(log, "XADD refused");
    free(log);
    fprintf(stderr, "OPLOGS refused XADDs in the first ~6 s: %d\n", refused);
    /* 6 s of back-off from 100 ms doubling: about 6 attempts; a tight loop
     * made about 60. */
    cr_expect_leq(refused, 10, "%d refused XADDs in about 6 s: no back-off", refused);
    cr_expect_geq(refused, 2, "only %d attempt: not retried", refused);
    acl = th_strf("ACL SETUSER %s +xadd", user);
    redis_acl(acl);
    free(acl);
    th_xentries_t got = {0};
    cr_expect_eq(
        th_redis_read(th_stream(r, "chan_noperm", stream, sizeof(stream)), 3, 15000, 0, &got), 3,
        "the events did not arrive once XADD was allowed");
    th_xentries_free(&got);
    acl = th_strf("ACL DELUSER %s", user);
    redis_acl(acl);
    free(acl);
    free(user);
}
