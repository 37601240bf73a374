/* test_metrics.c -- the counter/gauge registry and its Prometheus text
 * (relay/common/metrics.c), tested against metrics.h and the text exposition format:
 * one HELP and one TYPE line per metric name, all series of a name together. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static rl_metrics_t *mk(void)
{
    char err[128] = "";
    rl_metrics_t *m = rl_metrics_new(err, sizeof(err));
    cr_assert_not_null(m, "rl_metrics_new: %s", err);
    return m;
}

static char *render(rl_metrics_t *m)
{
    size_t len = (size_t)-1;
    char *text = rl_metrics_render(m, &len);
    cr_assert_not_null(text);
    cr_assert_eq(len, strlen(text), "len %zu, strlen %zu", len, strlen(text));
    return text;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Checks the exposition rules this registry must follow: every line ends in
 * '\n'; "# HELP name", then "# TYPE name kind", then the series of that name and
 * no other; a name never comes back after another one started. */
static void check_format(const char *text)
{
    char cur[128] = "", seen[4096] = " ";
    int state = 0; /* 0: expect HELP, 1: expect TYPE, 2: in series */
    int hist = 0;  /* the family is a histogram: its series are name_bucket/_sum/_count */

    cr_assert(text[0] == '\0' || text[strlen(text) - 1] == '\n', "no final newline");
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        char l[512], name[128], kind[32];
        snprintf(l, sizeof(l), "%.*s", (int)(nl - line), line);
        if (!strncmp(l, "# HELP ", 7)) {
            cr_assert_eq(sscanf(l + 7, "%127s", name), 1, "'%s'", l);
            char key[140];
            snprintf(key, sizeof(key), " %s ", name);
            cr_assert_null(strstr(seen, key), "HELP for %s twice or after its series", name);
            snprintf(seen + strlen(seen), sizeof(seen) - strlen(seen), "%s ", name);
            snprintf(cur, sizeof(cur), "%s", name);
            state = 1;
        } else if (!strncmp(l, "# TYPE ", 7)) {
            cr_assert_eq(state, 1, "TYPE without HELP: '%s'", l);
            cr_assert_eq(sscanf(l + 7, "%127s %31s", name, kind), 2, "'%s'", l);
            cr_assert_str_eq(name, cur);
            cr_assert(!strcmp(kind, "counter") || !strcmp(kind, "gauge") ||
                          !strcmp(kind, "histogram"),
                      "'%s'", l);
            hist = !strcmp(kind, "histogram");
            state = 2;
        } else {
            cr_assert_eq(state, 2, "series line outside a family: '%s'", l);
            size_t n = strcspn(l, "{ "), c = strlen(cur);
            int ok = n == c && !strncmp(l, cur, n);
            if (hist)
                ok = n > c && !strncmp(l, cur, c) &&
                     (!strncmp(l + c, "_bucket", n - c) || !strncmp(l + c, "_sum", n - c) ||
                      !strncmp(l + c, "_count", n - c));
            cr_assert(ok, "'%s' inside family %s", l, cur);
            const char *v = strrchr(l, ' ');
            cr_assert_not_null(v, "'%s'", l);
            char *end;
            strtod(v + 1, &end); /* integers, and ratios from real-valued gauges */
            cr_assert(*end == '\0' && end > v + 1, "value of '%s'", l);
        }
        line = nl + 1;
    }
}

Test(metrics, counters_and_gauges_render)
{
    rl_metrics_t *m = mk();
    /* Series of one name registered apart: they must still render together. */
    rl_metric_t *ok = rl_metrics_counter(m, "relay_requests_total",
                                         "source=\"timely\",code=\"200\"", "HTTP requests.");
    rl_metric_t *bytes = rl_metrics_gauge(m, "relay_wal_bytes", "", "WAL bytes.");
    rl_metric_t *unauth = rl_metrics_counter(m, "relay_requests_total",
                                             "source=\"timely\",code=\"401\"", "HTTP requests.");
    rl_metric_t *lag = rl_metrics_gauge(m, "relay_sink_lag_events", "sink=\"kafka\"", "Lag.");
    cr_assert(ok && bytes && unauth && lag);

    rl_metric_add(ok, 3);
    rl_metric_add(ok, 2);
    rl_metric_add(unauth, 1);
    rl_metric_set(bytes, 123456789012LL);
    rl_metric_set(lag, -4);
    cr_expect_eq(rl_metric_get(ok), 5);
    cr_expect_eq(rl_metric_get(bytes), 123456789012LL);
    cr_expect_eq(rl_metric_get(lag), -4);

    char *text = render(m);
    check_format(text);
    cr_expect_eq(count(text, "# HELP relay_requests_total HTTP requests.\n"), 1, "%s", text);
    cr_expect_eq(count(text, "# TYPE relay_requests_total counter\n"), 1, "%s", text);
    cr_expect_eq(count(text, "# HELP relay_wal_bytes WAL bytes.\n"), 1, "%s", text);
    cr_expect_eq(count(text, "# TYPE relay_wal_bytes gauge\n"), 1, "%s", text);
    cr_expect_eq(count(text, "# TYPE relay_sink_lag_events gauge\n"), 1, "%s", text);
    cr_expect_eq(count(text, "\nrelay_requests_total{source=\"timely\",code=\"200\"} 5\n"), 1, "%s",
                 text);
    cr_expect_eq(count(text, "\nrelay_requests_total{source=\"timely\",code=\"401\"} 1\n"), 1, "%s",
                 text);
    cr_expect_eq(count(text, "\nrelay_wal_bytes 123456789012\n"), 1, "no braces without labels: %s",
                 text);
    cr_expect_eq(count(text, "\nrelay_sink_lag_events{sink=\"kafka\"} -4\n"), 1, "%s", text);
    free(text);

    /* A gauge goes down as well as up; a counter only adds. */
    rl_metric_set(bytes, 0);
    rl_metric_add(ok, 10);
    text = render(m);
    cr_expect_eq(count(text, "\nrelay_wal_bytes 0\n"), 1, "%s", text);
    cr_expect_eq(count(text, "code=\"200\"} 15\n"), 1, "%s", text);
    free(text);
    rl_metrics_destroy(m);
}

Test(metrics, strings_are_copied)
{
    rl_metrics_t *m = mk();
    char name[32] = "relay_x_total", labels[32] = "a=\"1\"", help[32] = "X.";
    rl_metric_t *c = rl_metrics_counter(m, name, labels, help);
    cr_assert_not_null(c);
    strcpy(name, "garbage");
    strcpy(labels, "garbage");
    strcpy(help, "garbage");
    rl_metric_add(c, 1);
    char *text = render(m);
    cr_expect_not_null(strstr(text, "# HELP relay_x_total X.\n"), "%s", text);
    cr_expect_not_null(strstr(text, "relay_x_total{a=\"1\"} 1\n"), "%s", text);
    cr_expect_null(strstr(text, "garbage"), "%s", text);
    free(text);
    rl_metrics_destroy(m);
}

/* The format escapes '\\' and newline in HELP text; a raw newline would end the
 * comment and turn the rest of the help into a bogus series line. */
Test(metrics, help_is_escaped)
{
    rl_metrics_t *m = mk();
    cr_assert_not_null(rl_metrics_gauge(m, "relay_odd", "", "Line one\nline two \\ end."));
    char *text = render(m);
    check_format(text);
    cr_expect_not_null(strstr(text, "# HELP relay_odd Line one\\nline two \\\\ end.\n"), "%s",
                       text);
    free(text);
    rl_metrics_destroy(m);
}

Test(metrics, empty_registry)
{
    rl_metrics_t *m = mk();
    char *text = render(m);
    cr_expect_str_eq(text, "");
    free(text);
    rl_metrics_destroy(m);
    rl_metrics_destroy(NULL); /* NULL-safe */
}

Test(metrics, many_metrics)
{
    /* Far more text than the first buffer: the output grows, nothing is lost. */
    rl_metrics_t *m = mk();
    enum { N = 600 };
    for (int i = 0; i < N; i++) {
        char name[64], labels[64];
        snprintf(name, sizeof(name), "relay_metric_%03d_total", i % 200);
        snprintf(labels, sizeof(labels), "shard=\"%d\"", i);
        rl_metric_t *c = rl_metrics_counter(m, name, labels, "A metric with a help text.");
        cr_assert_not_null(c);
        rl_metric_add(c, (uint64_t)i);
    }
    char *text = render(m);
    check_format(text);
    cr_expect_eq(count(text, "# HELP "), 200);
    cr_expect_eq(count(text, "# TYPE "), 200);
    for (int i = 0; i < N; i++) {
        char line[128];
        snprintf(line, sizeof(line), "\nrelay_metric_%03d_total{shard=\"%d\"} %d\n", i % 200, i, i);
        cr_expect_eq(count(text, line), 1, "missing %s", line + 1);
    }
    free(text);
    rl_metrics_destroy(m);
}

typedef struct hook_state {
    rl_metric_t *g;
    int calls;
    char order[8];
} hook_state_t;

static void hook_a(void *arg)
{
    hook_state_t *s = arg;
    s->calls++;
    rl_metric_set(s->g, s->calls);
    strcat(s->order, "a");
}

static void hook_b(void *arg)
{
    hook_state_t *s = arg;
    rl_metric_set(s->g, rl_metric_get(s->g) * 10);
    strcat(s->order, "b");
}

Test(metrics, on_render_hooks_run_in_order)
{
    rl_metrics_t *m = mk();
    hook_state_t s = {.g = rl_metrics_gauge(m, "relay_hooked", "", "Set by a hook.")};
    cr_assert_not_null(s.g);
    rl_metrics_on_render(m, hook_a, &s);
    rl_metrics_on_render(m, hook_b, &s);

    char *text = render(m);
    cr_expect_eq(s.calls, 1);
    cr_expect_str_eq(s.order, "ab", "hooks in registration order");
    cr_expect_not_null(strstr(text, "\nrelay_hooked 10\n"),
                       "hooks run before the values are read: %s", text);
    free(text);
    text = render(m);
    cr_expect_eq(s.calls, 2, "every render runs the hooks");
    cr_expect_not_null(strstr(text, "\nrelay_hooked 20\n"), "%s", text);
    free(text);
    rl_metrics_destroy(m);
}

Test(metrics, null_metric_is_a_no_op)
{
    rl_metric_add(NULL, 5);
    rl_metric_set(NULL, 5);
    cr_expect_eq(rl_metric_get(NULL), 0);
}

static void *adder(void *arg)
{
    for (int i = 0; i < 100000; i++)
        rl_metric_add(arg, 1);
    return NULL;
}

Test(metrics, concurrent_updates_are_not_lost)
{
    rl_metrics_t *m = mk();
    rl_metric_t *c = rl_metrics_counter(m, "relay_hits_total", "", "Hits.");
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, adder, c), 0);
    for (int i = 0; i < 4; i++) {
        char *text = render(m); /* scrapes while counting */
        free(text);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_expect_eq(rl_metric_get(c), 400000);
    rl_metrics_destroy(m);
}

/* A real-valued gauge renders as a number Prometheus parses (a ratio), not as the
 * integer bits it is stored in. */
Test(metrics, real_gauge_renders_as_a_decimal)
{
    rl_metrics_t *m = mk();
    rl_metric_t *g = rl_metrics_gauge_f(m, "relay_wal_fill_ratio", "", "Fill.");
    rl_metric_t *z = rl_metrics_gauge_f(m, "relay_zero_ratio", "a=\"b\"", "Zero.");
    rl_metric_set_f(g, 0.25);
    char *text = render(m);
    check_format(text);
    cr_expect_not_null(strstr(text, "\nrelay_wal_fill_ratio 0.25\n"), "%s", text);
    cr_expect_not_null(strstr(text, "# TYPE relay_wal_fill_ratio gauge\n"), "%s", text);
    cr_expect_not_null(strstr(text, "\nrelay_zero_ratio{a=\"b\"} 0\n"), "%s", text);
    free(text);
    rl_metric_set_f(g, 1.0 / 3);
    text = render(m);
    cr_expect_not_null(strstr(text, "\nrelay_wal_fill_ratio 0.333333333333333\n"), "%s", text);
    free(text);
    (void)z;
    rl_metrics_destroy(m);
}

/* A histogram: cumulative buckets in seconds, +Inf equal to _count, _sum in
 * seconds; observations on a bound fall in that bucket (le = less or equal). */
Test(metrics, histogram_renders_cumulative_buckets)
{
    rl_metrics_t *m = mk();
    rl_metric_t *h = rl_metrics_histogram(m, "t_seconds", "source=\"a\"", "A histogram.");
    rl_metric_t *bare = rl_metrics_histogram(m, "u_seconds", "", "Unlabelled.");
    cr_assert_not_null(h);
    rl_metric_observe_us(h, 100);      /* <= 250 us */
    rl_metric_observe_us(h, 250);      /* on the bound: still the 250 us bucket */
    rl_metric_observe_us(h, 3000);     /* <= 5 ms */
    rl_metric_observe_us(h, 99000000); /* past every bound: only +Inf */
    rl_metric_observe_us(bare, 1000);
    rl_metric_observe_us(NULL, 1); /* a failed registration is a no-op */
    char *text = render(m);
    check_format(text);
    cr_expect(strstr(text, "# TYPE t_seconds histogram\n"), "%s", text);
    cr_expect(strstr(text, "t_seconds_bucket{source=\"a\",le=\"0.00025\"} 2\n"), "%s", text);
    cr_expect(strstr(text, "t_seconds_bucket{source=\"a\",le=\"0.0025\"} 2\n"), "%s", text);
    cr_expect(strstr(text, "t_seconds_bucket{source=\"a\",le=\"0.005\"} 3\n"), "%s", text);
    cr_expect(strstr(text, "t_seconds_bucket{source=\"a\",le=\"30\"} 3\n"), "%s", text);
    cr_expect(strstr(text, "t_seconds_bucket{source=\"a\",le=\"+Inf\"} 4\n"), "%s", text);
    cr_expect(strstr(text, "t_seconds_count{source=\"a\"} 4\n"), "%s", text);
    cr_expect(strstr(text, "t_seconds_sum{source=\"a\"} 99.003350\n"), "%s", text);
    cr_expect(strstr(text, "u_seconds_bucket{le=\"0.001\"} 1\n"), "%s", text);
    cr_expect(strstr(text, "u_seconds_count 1\n"), "%s", text);
    free(text);
    rl_metrics_destroy(m);
}

/* A hook that was unregistered is never called again, the others still are;
 * unregistering it again, an unknown hook, or in a NULL registry does nothing. */
Test(metrics, off_render_unregisters_the_hook)
{
    rl_metrics_t *m = mk();
    hook_state_t s = {.g = rl_metrics_gauge(m, "relay_hooked", "", "Set by a hook.")};
    hook_state_t t = {.g = rl_metrics_gauge(m, "relay_other", "", "Set by another hook.")};
    cr_assert_not_null(s.g);
    cr_assert_not_null(t.g);
    rl_metrics_on_render(m, hook_a, &s);
    rl_metrics_on_render(m, hook_a, &t);

    char *text = render(m);
    cr_expect_eq(s.calls, 1);
    cr_expect_eq(t.calls, 1);
    free(text);

    rl_metrics_off_render(m, hook_a, &s);
    text = render(m);
    cr_expect_eq(s.calls, 1, "an unregistered hook is not called");
    cr_expect_eq(t.calls, 2, "the other hook still is");
    cr_expect_not_null(strstr(text, "\nrelay_hooked 1\n"), "%s", text);
    cr_expect_not_null(strstr(text, "\nrelay_other 2\n"), "%s", text);
    free(text);

    rl_metrics_off_render(m, hook_a, &s); /* again: a no-op */
    rl_metrics_off_render(m, hook_b, &t); /* never registered */
    rl_metrics_off_render(NULL, hook_a, &t);
    text = render(m);
    cr_expect_eq(s.calls, 1);
    cr_expect_eq(t.calls, 3);
    free(text);
    rl_metrics_destroy(m);
}
