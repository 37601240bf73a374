/* test_log.c -- log.c's two formats (log.h): text lines, and JSON lines that
 * a log shipper can parse, with the module taken from the message prefix. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs the logging in fn with stderr sent to a file; returns the lines. */
static char *capture(void (*fn)(void))
{
    static char buf[8192];
    FILE *f = tmpfile();
    int saved = dup(2);

    cr_assert_not_null(f);
    cr_assert_geq(saved, 0);
    fflush(stderr);
    cr_assert_geq(dup2(fileno(f), 2), 0);
    fn();
    fflush(stderr);
    cr_assert_geq(dup2(saved, 2), 0);
    close(saved);
    rewind(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void log_some(void)
{
    rl_info("wal: %s: %d segment(s)", "/tmp/x", 3);
    rl_debug("wal: not shown at info");
    rl_warn("no module here: \"quoted\"\tand a tab");
    rl_error("kafka: bad bytes \xff\xfe end");
}

Test(log, text_lines_have_time_level_and_message)
{
    cr_assert_eq(rl_log_set_level("info"), 0);
    cr_assert_eq(rl_log_set_format("text"), 0);
    char *out = capture(log_some);

    cr_assert_not_null(strstr(out, " info  wal: /tmp/x: 3 segment(s)\n"), "%s", out);
    cr_assert_null(strstr(out, "not shown"), "%s", out);
    cr_assert_not_null(strstr(out, " warn  no module here"), "%s", out);
    cr_assert_eq(out[4], '-');
    cr_assert_not_null(strstr(out, "Z info "), "%s", out);
}

Test(log, json_lines_parse_with_module_and_message)
{
    cr_assert_eq(rl_log_set_level("info"), 0);
    cr_assert_eq(rl_log_set_format("json"), 0);
    char *out = capture(log_some);
    char *save = NULL;
    int n = 0;

    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);

        cr_assert_not_null(o, "line %d is not JSON (%s): %s", n, err.text, line);
        const char *time = json_string_value(json_object_get(o, "time"));
        const char *level = json_string_value(json_object_get(o, "level"));
        const char *module = json_string_value(json_object_get(o, "module"));
        const char *msg = json_string_value(json_object_get(o, "message"));
        cr_assert_not_null(time);
        cr_assert_eq(strlen(time), 24, "%s", time);
        cr_assert_eq(time[23], 'Z');
        if (n == 0) {
            cr_assert_str_eq(level, "info");
            cr_assert_str_eq(module, "wal");
            cr_assert_str_eq(msg, "/tmp/x: 3 segment(s)");
        } else if (n == 1) {
            cr_assert_str_eq(level, "warn");
            cr_assert_null(module, "a message without a prefix has no module");
            cr_assert_str_eq(msg, "no module here: \"quoted\"\tand a tab");
        } else {
            cr_assert_str_eq(level, "error");
            cr_assert_str_eq(module, "kafka");
            cr_assert_str_eq(msg, "bad bytes ?? end");
        }
        json_decref(o);
        n++;
    }
    cr_assert_eq(n, 3, "3 lines at info, got %d", n);
    cr_assert_eq(rl_log_set_format("text"), 0);
}

Test(log, unknown_names_are_refused)
{
    cr_assert_eq(rl_log_set_format("xml"), -1);
    cr_assert_eq(rl_log_set_level("verbose"), -1);
}

static void log_fields(void)
{
    rl_log_kv(RL_LOG_INFO, "backlog_events=12 down_ms=-3 sink=redis", "redis: outage ended");
}

Test(log, fields_are_text_pairs_and_a_json_object)
{
    cr_assert_eq(rl_log_set_level("info"), 0);
    cr_assert_eq(rl_log_set_format("text"), 0);
    char *out = capture(log_fields);
    cr_assert_not_null(
        strstr(out, " info  redis: outage ended backlog_events=12 down_ms=-3 sink=redis\n"), "%s",
        out);

    cr_assert_eq(rl_log_set_format("json"), 0);
    out = capture(log_fields);
    json_error_t err;
    json_t *o = json_loads(out, 0, &err), *f = json_object_get(o, "fields");
    cr_assert_not_null(o, "not JSON (%s): %s", err.text, out);
    cr_assert_str_eq(json_string_value(json_object_get(o, "message")), "outage ended");
    cr_assert(json_is_integer(json_object_get(f, "backlog_events")), "%s", out);
    cr_assert_eq(json_integer_value(json_object_get(f, "backlog_events")), 12);
    cr_assert_eq(json_integer_value(json_object_get(f, "down_ms")), -3);
    cr_assert_str_eq(json_string_value(json_object_get(f, "sink")), "redis");
    json_decref(o);
    cr_assert_eq(rl_log_set_format("text"), 0);
}
