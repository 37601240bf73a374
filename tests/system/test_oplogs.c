/* test_oplogs.c -- what an operator reads in relay's log (docs/deployment.md,
 * "Reading the log"): a Redis unreachable at start-up, an outage's start and
 * end with its backlog, a replay's start and "caught up", structured fields in
 * log.format = json, and no warning for Kafka's normal start. */
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

static void post_events(th_relay_t *r, const char *tag, int n)
{
    for (int i = 0; i < n; i++) {
        char *id = th_strf("oplog-%s-%d", tag, i);
        char *body = th_timely_message(id, "chan_oplog", i);
        th_resp_t resp = {0};
        cr_assert(th_post(r, "timely", body, NULL, &resp) == 0 && resp.status == 200,
                  "POST answered %ld", resp.status);
        th_resp_free(&resp);
        free(body);
        free(id);
    }
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
