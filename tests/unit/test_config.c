/* test_config.c -- configuration loading (relay/config/config.c), tested against
 * config.h and docs/configuration.md: every error names FILE:LINE (or
 * "environment: VAR"), every key has an environment override, secrets never
 * show in a dump.
 *
 * Each test writes its own small files into a mkdtemp directory. Criterion runs
 * every test in its own process, so setenv() does not leak between tests; tests
 * that set several variables still unset them as they go. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tmpdir.h"

static char tmpdir[64];
static char path[128];

static void setup(void)
{
    tu_tmpdir_make(tmpdir, sizeof tmpdir, "config");
    snprintf(path, sizeof(path), "%s/relay.conf", tmpdir);
}

static void teardown(void)
{
    tu_tmpdir_remove(tmpdir);
}

TestSuite(config, .init = setup, .fini = teardown);

/* The smallest valid config: one source. */
#define SRC "[source timely]\ncodec = timely\n"

static void write_file_at(const char *file, const char *text)
{
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f, "%s: %s", file, strerror(errno));
    cr_assert_eq(fputs(text, f) >= 0, 1);
    fclose(f);
}

static void write_file(const char *text)
{
    write_file_at(path, text);
}

static rl_config_t *load_text(const char *text, char *err, size_t errsz)
{
    write_file(text);
    err[0] = '\0';
    return rl_config_load(path, err, errsz);
}

static rl_config_t *load_ok(const char *text)
{
    char err[1024];
    rl_config_t *c = load_text(text, err, sizeof(err));
    cr_assert_not_null(c, "config should load, got: %s\n--- config:\n%s", err, text);
    return c;
}

/* The load fails with "PATH:LINE: ..." containing `why`. */
static void expect_error_at(const char *text, int line, const char *why)
{
    char err[1024], prefix[256];
    rl_config_t *c = load_text(text, err, sizeof(err));
    if (c)
        rl_config_destroy(c);
    cr_assert_null(c, "config should fail (%s)\n--- config:\n%s", why, text);
    snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    cr_expect(strncmp(err, prefix, strlen(prefix)) == 0, "error '%s' does not start with '%s'", err,
              prefix);
    cr_expect_not_null(strstr(err, why), "error '%s' does not mention '%s'", err, why);
}

/* ---- defaults and good files ------------------------------------------------------- */

Test(config, defaults)
{
    rl_config_t *c = load_ok(SRC);

    cr_expect_str_eq(c->path, path);
    cr_expect_str_eq(c->http.listen, "0.0.0.0:8080");
    cr_expect_eq(c->http.threads, 2);
    cr_expect_eq(c->http.max_body, 1024 * 1024);
    cr_expect_eq(c->http.timeout, 30);
    cr_expect_eq(c->http.max_connections, 1024);
    cr_expect_str_eq(c->wal.dir, "./data/wal");
    cr_expect_eq(c->wal.segment_size, 64LL * 1024 * 1024);
    cr_expect_eq(c->wal.max_size, 1024LL * 1024 * 1024);
    cr_expect_eq(c->wal.fsync, 1);
    cr_expect_eq(c->dedup.window, 24 * 3600);
    cr_expect_eq(c->dedup.max_entries, 2000000);
    cr_expect_eq(c->kafka.enabled, 1);
    cr_expect_str_eq(c->kafka.brokers, "127.0.0.1:9092");
    cr_expect_str_eq(c->kafka.topic, "events.{family}");
    cr_expect_eq(c->kafka.nprops, 0);
    cr_expect_eq(c->redis.enabled, 1);
    cr_expect_str_eq(c->redis.url, "redis://127.0.0.1:6379/0");
    cr_expect_str_eq(c->redis.stream, "events:{channel_id}");
    cr_expect_eq(c->redis.maxlen, 1000000);
    cr_expect_eq(c->redis.batch, 1024);
    cr_expect_str_eq(c->log.level, "info");
    cr_expect_eq(c->http.shutdown_grace, 5);
    cr_expect_eq(c->kafka.outage_budget, 0);
    cr_expect_eq(c->redis.outage_budget, 0);

    cr_assert_eq(c->nsources, 1);
    const rl_source_conf_t *s = rl_config_source(c, "timely");
    cr_assert_not_null(s);
    cr_expect_str_eq(s->name, "timely");
    cr_expect_str_eq(s->codec, "timely");
    cr_expect_str_eq(s->auth, "none");
    cr_expect_str_eq(s->secret, "");
    cr_expect_str_eq(s->token_header, "Authorization");
    cr_expect_str_eq(s->ack, "wal");
    cr_expect_eq(s->ack_timeout, 10);
    cr_expect_eq(s->line, 1, "line of the [source] header");
    cr_expect_null(rl_config_source(c, "whapi"));
    rl_config_destroy(c);
    rl_config_destroy(NULL); /* NULL-safe */
}

Test(config, every_key_set)
{
    rl_config_t *c = load_ok("; every key, none at its default\n"
                             "[http]\n"
                             "listen = 127.0.0.1:9999\n"
                             "threads = 8\n"
                             "max_body = 2m\n"
                             "timeout = 1m\n"
                             "max_connections = 10\n"
                             "shutdown_grace = 30\n"
                             "[wal]\n"
                             "dir = /var/lib/relay/wal\n"
                             "segment_size = 128k\n"
                             "max_size = 10m\n"
                             "fsync = false\n"
                             "[dedup]\n"
                             "window = 2h\n"
                             "max_entries = 5\n"
                             "[kafka]\n"
                             "enabled = no\n"
                             "brokers = k1:9092,k2:9092\n"
                             "topic = relay.{source}.{type}\n"
                             "outage_budget = 15m\n"
                             "[redis]\n"
                             "enabled = off\n"
                             "url = unix:///run/redis.sock\n"
                             "stream = s:{source}:{channel_id}\n"
                             "maxlen = 77\n"
                             "batch = 3\n"
                             "outage_budget = 1h\n"
                             "[log]\n"
                             "level = debug\n"
                             "\n"
                             "[source whapi]\n"
                             "codec = whapi\n"
                             "auth = token\n"
                             "secret = s3cret\n"
                             "token_header = X-Relay-Token\n"
                             "ack = publish\n"
                             "ack_timeout = 30\n"
                             "[source timely-2]\n"
                             "codec = timely\n");
    cr_expect_str_eq(c->http.listen, "127.0.0.1:9999");
    cr_expect_eq(c->http.threads, 8);
    cr_expect_eq(c->http.max_body, 2 * 1024 * 1024);
    cr_expect_eq(c->http.timeout, 60);
    cr_expect_eq(c->http.max_connections, 10);
    cr_expect_str_eq(c->wal.dir, "/var/lib/relay/wal");
    cr_expect_eq(c->wal.segment_size, 128 * 1024);
    cr_expect_eq(c->wal.max_size, 10 * 1024 * 1024);
    cr_expect_eq(c->wal.fsync, 0);
    cr_expect_eq(c->dedup.window, 7200);
    cr_expect_eq(c->dedup.max_entries, 5);
    cr_expect_eq(c->kafka.enabled, 0);
    cr_expect_str_eq(c->kafka.brokers, "k1:9092,k2:9092");
    cr_expect_str_eq(c->kafka.topic, "relay.{source}.{type}");
    cr_expect_eq(c->redis.enabled, 0);
    cr_expect_str_eq(c->redis.url, "unix:///run/redis.sock");
    cr_expect_str_eq(c->redis.stream, "s:{source}:{channel_id}");
    cr_expect_eq(c->redis.maxlen, 77);
    cr_expect_eq(c->redis.batch, 3);
    cr_expect_str_eq(c->log.level, "debug");
    cr_expect_eq(c->http.shutdown_grace, 30);
    cr_expect_eq(c->kafka.outage_budget, 15 * 60);
    cr_expect_eq(c->kafka.nprops, 0, "outage_budget is relay's own, not librdkafka's");
    cr_expect_eq(c->redis.outage_budget, 3600);
    cr_assert_eq(c->nsources, 2);
    const rl_source_conf_t *s = rl_config_source(c, "whapi");
    cr_assert_not_null(s);
    cr_expect_str_eq(s->codec, "whapi");
    cr_expect_str_eq(s->auth, "token");
    cr_expect_str_eq(s->secret, "s3cret");
    cr_expect_str_eq(s->token_header, "X-Relay-Token");
    cr_expect_str_eq(s->ack, "publish");
    cr_expect_eq(s->ack_timeout, 30);
    cr_expect_eq(s->line, 32);
    s = rl_config_source(c, "timely-2");
    cr_assert_not_null(s);
    cr_expect_eq(s->line, 39);
    cr_expect_str_eq(s->ack, "wal");
    rl_config_destroy(c);
}

/* The contract: the shipped relay.conf runs as is, with sources timely and whapi. */
Test(config, shipped_relay_conf_loads)
{
    char err[1024] = "";
    if (access("relay.conf", R_OK) != 0)
        cr_skip_test("relay.conf not found: run from the repository root");
    rl_config_t *c = rl_config_load("relay.conf", err, sizeof(err));
    cr_assert_not_null(c, "relay.conf: %s", err);
    const rl_source_conf_t *t = rl_config_source(c, "timely"), *w = rl_config_source(c, "whapi");
    cr_assert_not_null(t);
    cr_assert_not_null(w);
    cr_expect_str_eq(t->codec, "timely");
    cr_expect_str_eq(w->codec, "whapi");
    rl_config_destroy(c);
}

Test(config, syntax_details)
{
    /* Inline ';' comments, ':' as separator, repeated sections merge, a later
     * value wins, a UTF-8 BOM is skipped. */
    rl_config_t *c = load_ok("\xEF\xBB\xBF[http]\n"
                             "threads = 4 ; four threads\n"
                             "timeout: 10\n"
                             "[source a]\n"
                             "codec = timely\n"
                             "[http]\n"
                             "threads = 5\n"
                             "[source a]\n"
                             "auth = none\n");
    cr_expect_eq(c->http.threads, 5);
    cr_expect_eq(c->http.timeout, 10);
    cr_assert_eq(c->nsources, 1);
    cr_expect_eq(c->sources[0].line, 4, "the first header names the source");
    rl_config_destroy(c);
}

Test(config, long_lines)
{
    char text[2048], value[256];

    /* inih reads at most 199 characters of a line. A longer comment is fine... */
    snprintf(text, sizeof(text), "# %0300d x = y\n" SRC, 0);
    rl_config_t *c = load_ok(text);
    cr_expect_eq(c->nsources, 1);
    rl_config_destroy(c);

    /* ... a line of exactly 199 characters keeps its whole value... */
    memset(value, 'b', sizeof(value));
    value[199 - strlen("brokers = ")] = '\0';
    snprintf(text, sizeof(text), "[kafka]\nbrokers = %s\n" SRC, value);
    c = load_ok(text);
    cr_expect_str_eq(c->kafka.brokers, value);
    rl_config_destroy(c);

    /* ... and a longer one must not be cut silently or parsed as two lines. */
    memset(value, 'b', sizeof(value));
    value[200] = '\0';
    snprintf(text, sizeof(text), "[kafka]\n\nbrokers = %s\n" SRC, value);
    expect_error_at(text, 3, "longer than");
    snprintf(text, sizeof(text), "[kafka]\nbrokers = %s linger.ms = 5\n" SRC, value);
    expect_error_at(text, 2, "longer than");
}

/* ---- errors name FILE:LINE ------------------------------------------------------------- */

typedef struct bad {
    const char *text;
    int line;
    const char *why;
} bad_t;

static const bad_t bad[] = {
    /* unknown keys and sections, wherever they are */
    {"[http]\nlisten2 = 1.2.3.4:5\n" SRC, 2, "unknown key 'listen2'"},
    {SRC "[http]\n; a comment\n\n# another\n\nthreads = 2\n\n\n\nthreds = 3\n", 12,
     "unknown key 'threds'"},
    {"# c\n; c\n\n\n\n\n\n\n\n\n\n\n\n[wal]\nfsync = true\nsize = 1\n" SRC, 16,
     "unknown key 'size'"},
    {SRC "color = blue\n", 3, "unknown key 'color'"},
    {"[htpp]\nlisten = 1.2.3.4:5\n" SRC, 2, "unknown section"},
    {"\n\nthreads = 2\n" SRC, 3, "outside any section"},
    {"http.thread = 2\n" SRC, 1, "unknown key 'thread'"},
    /* bad values */
    {"[http]\nthreads = four\n" SRC, 2, "not a number"},
    {"[http]\nthreads = 4x\n" SRC, 2, "trailing garbage"},
    {"[http]\nthreads =\n" SRC, 2, "not a number"},
    {"[http]\nthreads = 0\n" SRC, 2, "out of range"},
    {"[http]\nthreads = 257\n" SRC, 2, "out of range"},
    {"[http]\nthreads = -1\n" SRC, 2, "out of range"},
    {"[http]\nthreads = 99999999999999999999\n" SRC, 2, "not a number"},
    {"[http]\nmax_body = 255\n" SRC, 2, "out of range"},
    {"[http]\nmax_body = 2g\n" SRC, 2, "out of range"},
    {"[http]\nmax_body = 1.5m\n" SRC, 2, "trailing garbage"},
    {"[http]\nmax_body = 1t\n" SRC, 2, "trailing garbage"},
    {"[http]\nmax_body = 1kk\n" SRC, 2, "trailing garbage"},
    {"[http]\nmax_body = k\n" SRC, 2, "not a number"},
    /* n * unit overflows: must be "out of range", not undefined behaviour */
    {"[http]\nmax_body = -9223372036854775807k\n" SRC, 2, "out of range"},
    {"[http]\nmax_body = 9223372036854775807g\n" SRC, 2, "out of range"},
    {"[dedup]\nwindow = -9223372036854775807d\n" SRC, 2, "out of range"},
    {"[wal]\nsegment_size = 32k\n" SRC, 2, "out of range"},
    {"[wal]\nmax_size = 1025g\n" SRC, 2, "out of range"},
    {"[dedup]\nwindow = 31d\n" SRC, 2, "out of range"},
    {"[dedup]\nwindow = 0\n" SRC, 2, "out of range"},
    {"[dedup]\nwindow = 1w\n" SRC, 2, "trailing garbage"},
    {"[http]\ntimeout = 2h\n" SRC, 2, "out of range"},
    {"[wal]\nfsync = maybe\n" SRC, 2, "not a boolean"},
    {"[kafka]\nenabled = 2\n" SRC, 2, "not a boolean"},
    {"[log]\nlevel = verbose\n" SRC, 2, "'verbose' is not one of debug|info|warn|error"},
    {"[source a]\ncodec = nope\n", 2, "unknown codec 'nope'"},
    {"[source a]\ncodec = timely\nauth = hmac\n", 3, "'hmac' is not one of"},
    {"[source a]\ncodec = timely\nack = kafka\n", 3, "'kafka' is not one of"},
    /* sources: errors about a whole source name its header's line */
    {SRC "\n[source a]\nauth = none\n", 4, "[source a] has no 'codec' key"},
    {SRC "[source b]\n\n[source c]\ncodec = whapi\n", 3, "[source b] has no 'codec' key"},
    {"[source a]\ncodec = timely\nauth = token\n", 1, "auth = token needs a secret"},
    {"[source a]\ncodec = timely\nauth = token\nsecret =\n", 1, "auth = token needs a secret"},
    {SRC "[source bad.name]\ncodec = timely\n", 3, "a source name is"},
    {SRC "[source a/b]\ncodec = timely\n", 3, "a source name is"},
    {SRC "[source]\ncodec = timely\n", 3, "a source name is"},
    {SRC "[source a b]\ncodec = timely\n", 3, "a source name is"},
    {SRC "\n[source x]\n", 4, "[source x] has no 'codec' key"},
    /* librdkafka pass-through: checked now, with its line */
    {"[kafka]\nlinger.ms = 5\nlinger.mss = 5\n" SRC, 3, "linger.mss"},
    {"[kafka]\n\nlinger.ms = soon\n" SRC, 3, "linger.ms"},
    {"kafka.linger.mss = 5\n" SRC, 1, "linger.mss"},
    /* checks of a value alone name the line that set it */
    {"[http]\nlisten = 8080\n" SRC, 2, "http.listen '8080' is not host:port"},
    {"[redis]\n\nurl = http://127.0.0.1:6379\n" SRC, 3, "redis.url must start with redis://"},
    {"[wal]\nsegment_size = 2m\nmax_size = 1m\n" SRC, 2,
     "wal.segment_size is larger than wal.max_size"},
    {"[wal]\nmax_size = 1m\n" SRC, 2, "wal.segment_size is larger than wal.max_size"},
    /* inih cuts section names at 49 characters: never silently */
    {SRC "[source abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij]\ncodec = timely\n", 3,
     "longer than"},
    /* plain syntax errors */
    {SRC "[http\nthreads = 3\n", 3, "syntax error"},
    {SRC "[http]\nthreads 3\n", 4, "syntax error"},
};

Test(config, errors_name_file_and_line)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error_at(bad[i].text, bad[i].line, bad[i].why);
}

Test(config, file_level_errors)
{
    char err[1024], want[256];

    /* No line to name: "FILE: why". */
    rl_config_t *c = load_text("[http]\nthreads = 2\n", err, sizeof(err));
    cr_expect_null(c);
    snprintf(want, sizeof(want), "%s: ", path);
    cr_expect(strncmp(err, want, strlen(want)) == 0, "'%s'", err);
    cr_expect_not_null(strstr(err, "no [source NAME] section"), "'%s'", err);

    snprintf(want, sizeof(want), "%s/missing.conf", tmpdir);
    c = rl_config_load(want, err, sizeof(err));
    cr_expect_null(c);
    cr_expect(strncmp(err, want, strlen(want)) == 0, "'%s'", err);
    cr_expect_not_null(strstr(err, strerror(ENOENT)), "'%s'", err);
}

/* ---- units ------------------------------------------------------------------------- */

typedef struct unit_case {
    const char *v;
    long long want;
} unit_case_t;

Test(config, size_suffixes)
{
    static const unit_case_t sizes[] = {
        {"256", 256},       {"1024", 1024},    {"1k", 1024},        {"1K", 1024},
        {"1kb", 1024},      {"1KB", 1024},     {"1KiB", 1024},      {"1 KiB", 1024},
        {"3kib", 3072},     {"2m", 2LL << 20}, {"2M", 2LL << 20},   {"2MiB", 2LL << 20},
        {"2mb", 2LL << 20}, {"1g", 1LL << 30}, {"1GiB", 1LL << 30}, {"1G", 1LL << 30},
        {"300b", 300},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "[http]\nmax_body = %s\n" SRC, sizes[i].v);
        rl_config_t *c = load_ok(text);
        cr_expect_eq(c->http.max_body, sizes[i].want, "'%s' -> %lld, expected %lld", sizes[i].v,
                     c->http.max_body, sizes[i].want);
        rl_config_destroy(c);
    }
    /* The largest bounds: 4g segments, 1024g WAL. */
    rl_config_t *c = load_ok("[wal]\nsegment_size = 4g\nmax_size = 1024GiB\n" SRC);
    cr_expect_eq(c->wal.segment_size, 4LL << 30);
    cr_expect_eq(c->wal.max_size, 1024LL << 30);
    rl_config_destroy(c);
}

Test(config, durations)
{
    static const unit_case_t durs[] = {
        {"30", 30}, {"30s", 30}, {"5m", 300}, {"2h", 7200}, {"1d", 86400}, {"30d", 30 * 86400},
    };
    for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "[dedup]\nwindow = %s\n" SRC, durs[i].v);
        rl_config_t *c = load_ok(text);
        cr_expect_eq(c->dedup.window, durs[i].want, "'%s' -> %lld, expected %lld", durs[i].v,
                     c->dedup.window, durs[i].want);
        rl_config_destroy(c);
    }
}

Test(config, booleans)
{
    static const unit_case_t bools[] = {
        {"true", 1},  {"TRUE", 1}, {"yes", 1}, {"on", 1},  {"1", 1},
        {"false", 0}, {"No", 0},   {"off", 0}, {"OFF", 0}, {"0", 0},
    };
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "[wal]\nfsync = %s\n" SRC, bools[i].v);
        rl_config_t *c = load_ok(text);
        cr_expect_eq(c->wal.fsync, bools[i].want, "'%s'", bools[i].v);
        rl_config_destroy(c);
    }
}

/* ---- librdkafka pass-through ---------------------------------------------------------- */

static const char *prop(const rl_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->kafka.nprops; i++)
        if (!strcmp(c->kafka.props[i].name, name))
            return c->kafka.props[i].value;
    return NULL;
}

Test(config, kafka_pass_through)
{
    rl_config_t *c = load_ok("kafka.linger.ms = 7\n"
                             "[kafka]\n"
                             "brokers = b:1\n"
                             "compression.codec = lz4\n"
                             "linger.ms = 5\n" SRC);
    cr_expect_str_eq(c->kafka.brokers, "b:1", "relay's own key is not passed through");
    cr_expect_eq(c->kafka.nprops, 2);
    cr_expect_str_eq(prop(c, "compression.codec"), "lz4");
    cr_expect_str_eq(prop(c, "linger.ms"), "5", "a later value replaces the earlier");
    cr_expect_null(prop(c, "brokers"));
    rl_config_destroy(c);

    /* The top-level form alone, and relay's own key through it. */
    c = load_ok("kafka.linger.ms = 9\nkafka.topic = t.{type}\n" SRC);
    cr_expect_str_eq(prop(c, "linger.ms"), "9");
    cr_expect_str_eq(c->kafka.topic, "t.{type}");
    cr_expect_eq(c->kafka.nprops, 1);
    rl_config_destroy(c);
}

/* ---- environment -------------------------------------------------------------------- */

Test(config, environment_overrides)
{
    setenv("RELAY_HTTP_LISTEN", "127.0.0.1:1234", 1);
    setenv("RELAY_HTTP_MAX_BODY", "4k", 1);
    setenv("RELAY_WAL_SEGMENT_SIZE", "128KiB", 1);
    setenv("RELAY_WAL_FSYNC", "off", 1);
    setenv("RELAY_DEDUP_WINDOW", "1h", 1);
    setenv("RELAY_KAFKA_BROKERS", "env:9092", 1);
    setenv("RELAY_KAFKA_LINGER_MS", "5", 1);
    setenv("RELAY_REDIS_URL", "redis://env:6380/1", 1);
    setenv("RELAY_SOURCE_TIMELY_SECRET", "from-env", 1);
    setenv("RELAY_SOURCE_MY_SRC_CODEC", "whapi", 1); /* [source my-src]: '-' becomes '_' */
    rl_config_t *c = load_ok("[http]\nlisten = 0.0.0.0:80\n"
                             "[source timely]\ncodec = timely\nauth = token\n"
                             "[source my-src]\ncodec = timely\n");
    cr_expect_str_eq(c->http.listen, "127.0.0.1:1234");
    cr_expect_eq(c->http.max_body, 4096);
    cr_expect_eq(c->wal.segment_size, 128 * 1024);
    cr_expect_eq(c->wal.fsync, 0);
    cr_expect_eq(c->dedup.window, 3600);
    cr_expect_str_eq(c->kafka.brokers, "env:9092");
    cr_expect_null(prop(c, "brokers"), "RELAY_KAFKA_BROKERS is relay's key, not librdkafka's");
    cr_expect_str_eq(prop(c, "linger.ms"), "5");
    cr_expect_str_eq(c->redis.url, "redis://env:6380/1");
    const rl_source_conf_t *s = rl_config_source(c, "timely");
    cr_assert_not_null(s);
    cr_expect_str_eq(s->secret, "from-env", "the secret satisfies auth = token");
    s = rl_config_source(c, "my-src");
    cr_assert_not_null(s);
    cr_expect_str_eq(s->codec, "whapi");
    rl_config_destroy(c);
}

/* relay's own [kafka] keys with an underscore are recognised in the environment, not
 * mistaken for librdkafka properties ("outage.budget" does not exist there). */
Test(config, own_kafka_key_with_underscore_in_the_environment)
{
    char err[1024];
    setenv("RELAY_KAFKA_OUTAGE_BUDGET", "90", 1);
    setenv("RELAY_HTTP_SHUTDOWN_GRACE", "0", 1);
    rl_config_t *c = load_text(SRC, err, sizeof(err));
    unsetenv("RELAY_KAFKA_OUTAGE_BUDGET");
    unsetenv("RELAY_HTTP_SHUTDOWN_GRACE");
    cr_assert_not_null(c, "RELAY_KAFKA_OUTAGE_BUDGET=90: %s", err);
    cr_expect_eq(c->kafka.outage_budget, 90);
    cr_expect_eq(c->kafka.nprops, 0);
    cr_expect_eq(c->http.shutdown_grace, 0);
    rl_config_destroy(c);
}

typedef struct bad_env {
    const char *var, *value, *why;
} bad_env_t;

Test(config, environment_errors)
{
    static const bad_env_t cases[] = {
        {"RELAY_HTTP_THREADS", "abc", "not a number"},
        {"RELAY_HTTP_THREADS", "0", "out of range"},
        {"RELAY_WAL_FSYNC", "maybe", "not a boolean"},
        {"RELAY_LOG_LEVEL", "loud", "not one of"},
        {"RELAY_SOURCE_TIMELY_AUTH", "basic", "not one of"},
        {"RELAY_SOURCE_TIMELY_CODEC", "nope", "unknown codec"},
        {"RELAY_KAFKA_LINGER_MS", "soon", "linger.ms"},
        {"RELAY_KAFKA_NO_SUCH_PROPERTY", "1", "no.such.property"},
        {"RELAY_HTTP_LISTEN", "8080", "is not host:port"},
        {"RELAY_REDIS_URL", "tcp://x", "redis.url"},
        {"RELAY_SOURCE_TIMELY_ACK", "kafka", "not one of"},
        {"RELAY_SOURCE_TIMELY_ACK_TIMEOUT", "0", "out of range"},
        {"RELAY_KAFKA_OUTAGE_BUDGET", "soon", "not a number"},
        /* A name that is no key is a typo, never ignored. */
        {"RELAY_HTTP_MAX_BDOY", "5", "names no configuration key"},
        {"RELAY_HTPP_LISTEN", "127.0.0.1:1", "names no configuration key"},
        {"RELAY_LOG_FORMAT", "xml", "not one of"},
        {"RELAY_SOURCE_TIMELY_CODCE", "timely", "names no source key"},
        {"RELAY_SOURCE_TIMELY_SECRET", "whsec_!!", "secret #1"}, /* with AUTH below */
        {"RELAY_SOURCE_BAD.NAME_CODEC", "whapi", "a source name is"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[1024], prefix[128];
        setenv(cases[i].var, cases[i].value, 1);
        if (strstr(cases[i].var, "_SECRET")) /* a secret the scheme cannot use */
            setenv("RELAY_SOURCE_TIMELY_AUTH", "standard-webhooks", 1);
        rl_config_t *c = load_text(SRC, err, sizeof(err));
        unsetenv(cases[i].var);
        unsetenv("RELAY_SOURCE_TIMELY_AUTH");
        cr_expect_null(c, "%s=%s should fail", cases[i].var, cases[i].value);
        rl_config_destroy(c);
        snprintf(prefix, sizeof(prefix), "environment: %s: ", cases[i].var);
        cr_expect(strncmp(err, prefix, strlen(prefix)) == 0, "%s=%s: error '%s' is not '%s...'",
                  cases[i].var, cases[i].value, err, prefix);
        cr_expect_not_null(strstr(err, cases[i].why), "%s=%s: error '%s' lacks '%s'", cases[i].var,
                           cases[i].value, err, cases[i].why);
    }
}

/* A source the file does not have, defined by the environment alone (a
 * container configured by its variables); _ACK_TIMEOUT is not read as _ACK. */
Test(config, source_from_the_environment_alone)
{
    setenv("RELAY_SOURCE_CHAT_EU_CODEC", "whapi", 1);
    setenv("RELAY_SOURCE_CHAT_EU_ACK_TIMEOUT", "30", 1);
    setenv("RELAY_SOURCE_CHAT_EU_AUTH", "token", 1);
    setenv("RELAY_SOURCE_CHAT_EU_SECRET", "s3cret", 1);
    rl_config_t *c = load_ok("[http]\nlisten = 127.0.0.1:1\n");
    cr_assert_eq(c->nsources, 1);
    cr_expect_str_eq(c->sources[0].name, "chat_eu");
    cr_expect_str_eq(c->sources[0].codec, "whapi");
    cr_expect_str_eq(c->sources[0].auth, "token");
    cr_expect_str_eq(c->sources[0].ack, "wal");
    cr_expect_eq(c->sources[0].ack_timeout, 30);
    rl_config_destroy(c);

    /* Without its codec the source is incomplete; the message names the variables. */
    char err[1024];
    unsetenv("RELAY_SOURCE_CHAT_EU_CODEC");
    c = load_text("[http]\nlisten = 127.0.0.1:1\n", err, sizeof(err));
    cr_expect_null(c);
    rl_config_destroy(c);
    cr_expect_not_null(strstr(err, "environment: RELAY_SOURCE_CHAT_EU_*: [source chat_eu] has no "
                                   "'codec' key"),
                       "%s", err);
    /* auth = token without a secret: the message names RELAY_SOURCE_…_AUTH. */
    setenv("RELAY_SOURCE_CHAT_EU_CODEC", "whapi", 1);
    unsetenv("RELAY_SOURCE_CHAT_EU_SECRET");
    c = load_text("[http]\nlisten = 127.0.0.1:1\n", err, sizeof(err));
    cr_expect_null(c);
    rl_config_destroy(c);
    cr_expect_not_null(strstr(err, "environment: RELAY_SOURCE_CHAT_EU_AUTH: [source chat_eu] auth "
                                   "= token needs a secret"),
                       "%s", err);
    unsetenv("RELAY_SOURCE_CHAT_EU_CODEC");
    unsetenv("RELAY_SOURCE_CHAT_EU_ACK_TIMEOUT");
    unsetenv("RELAY_SOURCE_CHAT_EU_AUTH");
}

/* The scripts' own variables are not configuration and are not refused. */
Test(config, script_variables_are_not_refused)
{
    static const char *const vars[] = {
        "RELAY_CONF",     "RELAY_CACHE",       "RELAY_CFLAGS", "RELAY_RUN_KAFKA_PORT",
        "RELAY_TEST_BIN", "RELAY_FAULTS_SEED", "RELAY_BENCH_X"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        setenv(vars[i], "1", 1);
    rl_config_t *c = load_ok(SRC);
    rl_config_destroy(c);
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

/* ---- dump and reference --------------------------------------------------------------- */

static char *capture_dump(const rl_config_t *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    rl_config_dump(c, f);
    fclose(f);
    return buf;
}

Test(config, dump_hides_secrets)
{
    setenv("RELAY_SOURCE_WHAPI_SECRET", "env-secret-value", 1);
    rl_config_t *c = load_ok("[redis]\nurl = redis://:p4ssw0rd-value@redis.example:6379/0\n"
                             "[kafka]\nsasl.password = kafka-secret-value\n"
                             "ssl.key.password = key-secret-value\n"
                             "linger.ms = 5\n"
                             "[source timely]\ncodec = timely\nauth = token\n"
                             "secret = hunter2-value\n"
                             "[source whapi]\ncodec = whapi\nauth = token\n");
    char *out = capture_dump(c);
    static const char *const secrets[] = {"hunter2", "p4ssw0rd", "kafka-secret", "key-secret",
                                          "env-secret"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        cr_expect_null(strstr(out, secrets[i]), "dump shows '%s':\n%s", secrets[i], out);
    /* It is still the effective configuration. */
    cr_expect_not_null(strstr(out, "[http]"), "%s", out);
    cr_expect_not_null(strstr(out, "listen = 0.0.0.0:8080"), "%s", out);
    cr_expect_not_null(strstr(out, "max_body = 1048576"), "%s", out);
    cr_expect_not_null(strstr(out, "fsync = true"), "%s", out);
    cr_expect_not_null(strstr(out, "linger.ms = 5"), "%s", out);
    cr_expect_not_null(strstr(out, "[source timely]"), "%s", out);
    cr_expect_not_null(strstr(out, "[source whapi]"), "%s", out);
    cr_expect_not_null(strstr(out, "secret = (set)"), "%s", out);
    cr_expect_not_null(strstr(out, "codec = whapi"), "%s", out);
    free(out);
    rl_config_destroy(c);
}

Test(config, reference_lists_every_key)
{
    static const char *const keys[] = {
        "http.listen",
        "http.threads",
        "http.max_body",
        "http.timeout",
        "http.max_connections",
        "wal.dir",
        "wal.segment_size",
        "wal.max_size",
        "wal.fsync",
        "dedup.window",
        "dedup.max_entries",
        "dedup.store",
        "dedup.redis_url",
        "dedup.redis_prefix",
        "dedup.redis_timeout_ms",
        "dedup.pending_ttl",
        "kafka.enabled",
        "kafka.brokers",
        "kafka.topic",
        "redis.enabled",
        "redis.url",
        "redis.stream",
        "redis.maxlen",
        "redis.batch",
        "log.level",
        "source NAME.codec",
        "source NAME.auth",
        "source NAME.secret",
        "source NAME.token_header",
        "source NAME.ack",
        "source NAME.ack_timeout",
        "http.shutdown_grace",
        "kafka.outage_budget",
        "redis.outage_budget",
    };
    static const char *const vars[] = {"RELAY_HTTP_LISTEN", "RELAY_WAL_SEGMENT_SIZE",
                                       "RELAY_SOURCE_NAME_SECRET", "RELAY_LOG_LEVEL"};
    char *buf = NULL, want[128];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    rl_config_reference(f);
    fclose(f);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(want, sizeof(want), "`%s`", keys[i]);
        cr_expect_not_null(strstr(buf, want), "reference lacks %s", want);
    }
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        snprintf(want, sizeof(want), "`%s`", vars[i]);
        cr_expect_not_null(strstr(buf, want), "reference lacks %s", want);
    }
    free(buf);
}

/* ---- dedup store ------------------------------------------------------------------- */

Test(config, dedup_store_keys)
{
    rl_config_t *c = load_ok(SRC);
    cr_expect_str_eq(c->dedup.store, "local");
    cr_expect_str_eq(c->dedup.redis_url, "");
    cr_expect_str_eq(c->dedup.redis_prefix, "relay:dedup:");
    cr_expect_eq(c->dedup.redis_timeout_ms, 250);
    cr_expect_eq(c->dedup.pending_ttl, 10);
    rl_config_destroy(c);

    c = load_ok("[dedup]\nstore = redis\nredis_url = redis://:dd-s3cret@h:1/2\n"
                "redis_prefix = p:\nredis_timeout_ms = 50\npending_ttl = 1m\n" SRC);
    cr_expect_str_eq(c->dedup.store, "redis");
    cr_expect_str_eq(c->dedup.redis_url, "redis://:dd-s3cret@h:1/2");
    cr_expect_str_eq(c->dedup.redis_prefix, "p:");
    cr_expect_eq(c->dedup.redis_timeout_ms, 50);
    cr_expect_eq(c->dedup.pending_ttl, 60);
    char *dump = capture_dump(c);
    cr_expect_null(strstr(dump, "dd-s3cret"), "dedup.redis_url is a secret:\n%s", dump);
    free(dump);
    rl_config_destroy(c);

    /* Without a URL of its own, store = redis uses redis.url, even with the sink off. */
    c = load_ok("[redis]\nenabled = false\n[dedup]\nstore = redis\n" SRC);
    rl_config_destroy(c);

    expect_error_at("[dedup]\nstore = memcached\n" SRC, 2, "not one of local|redis");
    expect_error_at("[dedup]\nstore = redis\nredis_url = http://x\n" SRC, 3, "redis:// or unix://");
    expect_error_at("[redis]\nenabled = false\nurl = tcp://x\n[dedup]\nstore = redis\n" SRC, 5,
                    "redis:// or unix://");
    expect_error_at("[dedup]\nredis_timeout_ms = 5\n" SRC, 2, "out of range");
    expect_error_at("[dedup]\npending_ttl = 0\n" SRC, 2, "out of range");

    char err[1024];
    setenv("RELAY_DEDUP_STORE", "redis", 1);
    setenv("RELAY_DEDUP_REDIS_URL", "tcp://x", 1);
    c = load_text(SRC, err, sizeof(err));
    unsetenv("RELAY_DEDUP_STORE");
    unsetenv("RELAY_DEDUP_REDIS_URL");
    cr_expect_null(c);
    rl_config_destroy(c);
    cr_expect_not_null(strstr(err, "environment: RELAY_DEDUP_REDIS_URL: "), "'%s'", err);
}

/* ---- authentication and limits (issue 5) ---------------------------------------------- */

Test(config, auth_and_limit_keys)
{
    rl_config_t *c = load_ok(SRC);
    cr_expect_eq(c->http.max_connections_per_ip, 256);
    cr_expect_eq(c->http.max_header, 8 * 1024);
    cr_expect_eq(c->http.request_timeout, 30);
    cr_expect_eq(c->http.max_json_depth, 64);
    cr_expect_eq(c->http.max_items, 1000);
    cr_expect_str_eq(c->http.tls_cert, "");
    cr_expect_str_eq(c->http.tls_key, "");
    cr_expect_str_eq(c->kafka.deadletter_topic, "events.deadletter");
    cr_expect_str_eq(c->redis.deadletter_stream, "events:deadletter");
    const rl_source_conf_t *s = rl_config_source(c, "timely");
    cr_expect_eq(s->timestamp_tolerance, 300);
    cr_expect_eq(s->rate_limit, 0);
    cr_expect_eq(s->rate_burst, 0);
    rl_config_destroy(c);

    /* The TLS files must be readable (the check of the load). */
    char cert[160], key[160], text[1024];
    snprintf(cert, sizeof(cert), "%s/c.pem", tmpdir);
    snprintf(key, sizeof(key), "%s/k.pem", tmpdir);
    write_file_at(cert, "cert\n");
    write_file_at(key, "key\n");
    snprintf(text, sizeof(text),
             "[http]\nmax_connections_per_ip = 3\nmax_header = 8k\nrequest_timeout = 2m\n"
             "max_json_depth = 5\nmax_items = 7\ntls_cert = %s\ntls_key = %s\n"
             "[kafka]\ndeadletter_topic = dl.{source}\n"
             "[redis]\ndeadletter_stream = dl:{source}\n"
             "[source a]\ncodec = whapi\nauth = standard-webhooks\n"
             "secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\ntimestamp_tolerance = 1m\n"
             "rate_limit = 5/m\nrate_burst = 9\n"
             "[source b]\ncodec = whapi\nauth = hub-signature-256\nsecret = x, y\n"
             "[source c]\ncodec = timely\nauth = timely\nsecret = t\n",
             cert, key);
    c = load_ok(text);
    cr_expect_eq(c->http.max_connections_per_ip, 3);
    cr_expect_eq(c->http.max_header, 8192);
    cr_expect_eq(c->http.request_timeout, 120);
    cr_expect_eq(c->http.max_json_depth, 5);
    cr_expect_eq(c->http.max_items, 7);
    cr_expect_str_eq(c->http.tls_cert, cert);
    cr_expect_str_eq(c->http.tls_key, key);
    cr_expect_str_eq(c->kafka.deadletter_topic, "dl.{source}");
    cr_expect_str_eq(c->redis.deadletter_stream, "dl:{source}");
    s = rl_config_source(c, "a");
    cr_expect_str_eq(s->auth, "standard-webhooks");
    cr_expect_eq(s->timestamp_tolerance, 60);
    cr_expect_eq(s->rate_limit, 300, "5/m is 300 an hour");
    cr_expect_eq(s->rate_burst, 9);
    cr_expect_str_eq(rl_config_source(c, "b")->auth, "hub-signature-256");
    cr_expect_str_eq(rl_config_source(c, "c")->auth, "timely");
    rl_config_destroy(c);
}

Test(config, rates)
{
    static const unit_case_t rates[] = {
        {"0", 0},
        {"1", 3600},
        {"7", 25200},
        {"100/s", 360000},
        {"5/m", 300},
        {"1/h", 1},
        {"1000000/s", 3600000000LL},
    };
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), SRC "rate_limit = %s\n", rates[i].v);
        rl_config_t *c = load_ok(text);
        cr_expect_eq(c->sources[0].rate_limit, rates[i].want, "'%s' -> %lld, expected %lld",
                     rates[i].v, c->sources[0].rate_limit, rates[i].want);
        rl_config_destroy(c);
    }
    static const struct {
        const char *text;
        int line;
        const char *why;
    } bad[] = {
        {SRC "rate_limit = 1/d\n", 3, "trailing garbage"},
        {SRC "rate_limit = 1000001/s\n", 3, "out of range"},
        {SRC "rate_limit = -1\n", 3, "out of range"},
        {SRC "rate_limit = /s\n", 3, "not a number"},
        {SRC "rate_burst = -1\n", 3, "out of range"},
        {SRC "timestamp_tolerance = 2d\n", 3, "out of range"},
        {"[http]\nmax_header = 4k\n" SRC, 2, "out of range"},
        {"[http]\nmax_json_depth = 0\n" SRC, 2, "out of range"},
        {"[http]\nmax_items = 0\n" SRC, 2, "out of range"},
        {"[http]\nmax_connections_per_ip = 0\n" SRC, 2, "out of range"},
        {"[http]\nrequest_timeout = 0\n" SRC, 2, "out of range"},
        {"[source a]\ncodec = timely\nauth = hmac-sha256\n", 3, "'hmac-sha256' is not one of"},
        {"[source a]\ncodec = timely\nauth = timely\n", 1, "auth = timely needs a secret"},
        {"[source a]\ncodec = whapi\nauth = standard-webhooks\nsecret = , ,\n", 1,
         "auth = standard-webhooks needs a secret"},
        {"[source a]\ncodec = whapi\nauth = hub-signature-256\n", 1,
         "auth = hub-signature-256 needs a secret"},
        {"[http]\ntls_cert = /c.pem\n" SRC, 2, "http.tls_cert and http.tls_key go together"},
        {"[http]\n\ntls_key = /k.pem\n" SRC, 3, "http.tls_cert and http.tls_key go together"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error_at(bad[i].text, bad[i].line, bad[i].why);
}

/* RELAY_SOURCE_<NAME>_AUTH and _SECRET: how a container sets a source's scheme. */
Test(config, auth_from_the_environment)
{
    setenv("RELAY_SOURCE_TIMELY_AUTH", "timely", 1);
    setenv("RELAY_SOURCE_TIMELY_SECRET", "env-one,env-two", 1);
    setenv("RELAY_SOURCE_TIMELY_RATE_LIMIT", "10/s", 1);
    rl_config_t *c = load_ok(SRC);
    cr_expect_str_eq(c->sources[0].auth, "timely");
    cr_expect_str_eq(c->sources[0].secret, "env-one,env-two");
    cr_expect_eq(c->sources[0].rate_limit, 36000);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    rl_config_dump(c, f);
    fclose(f);
    cr_expect_null(strstr(out, "env-one"), "the dump shows a secret:\n%s", out);
    cr_expect_not_null(strstr(out, "secret = (set)"), "%s", out);
    cr_expect_not_null(strstr(out, "rate_limit = 36000/h"), "%s", out);
    free(out);
    rl_config_destroy(c);
    setenv("RELAY_SOURCE_TIMELY_AUTH", "hmac", 1);
    char err[512];
    cr_expect_null(load_text(SRC, err, sizeof(err)));
    cr_expect_not_null(strstr(err, "RELAY_SOURCE_TIMELY_AUTH"), "%s", err);
    unsetenv("RELAY_SOURCE_TIMELY_AUTH");
    unsetenv("RELAY_SOURCE_TIMELY_SECRET");
    unsetenv("RELAY_SOURCE_TIMELY_RATE_LIMIT");
}

Test(config, reference_lists_the_auth_and_limit_keys)
{
    static const char *const keys[] = {
        "http.max_connections_per_ip",
        "http.max_header",
        "http.request_timeout",
        "http.max_json_depth",
        "http.max_items",
        "http.tls_cert",
        "http.tls_key",
        "kafka.deadletter_topic",
        "redis.deadletter_stream",
        "source NAME.timestamp_tolerance",
        "source NAME.rate_limit",
        "source NAME.rate_burst",
        "none\\|token\\|timely\\|standard-webhooks\\|hub-signature-256", /* | escaped in Markdown */
    };
    char *buf = NULL, want[128];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    rl_config_reference(f);
    fclose(f);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(want, sizeof(want), "%s", keys[i]);
        cr_expect_not_null(strstr(buf, want), "reference lacks %s", want);
    }
    free(buf);
}

/* ---- checks across keys (moved from main.c into the load) ------------------------------ */

/* The destination templates of a sink that is on; errors name the key's line. */
Test(config, templates_are_checked)
{
    static const bad_t bad[] = {
        {"[kafka]\ntopic = events.{nope}\n" SRC, 2, "kafka.topic: template 'events.{nope}'"},
        {"[redis]\n\nstream = s:{channel_id\n" SRC, 3, "redis.stream: template"},
        {"[kafka]\ndeadletter_topic = dl.{famly}\n" SRC, 2, "kafka.deadletter_topic: template"},
        {"[redis]\ndeadletter_stream =\n" SRC, 2, "redis.deadletter_stream: template"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error_at(bad[i].text, bad[i].line, bad[i].why);

    /* A sink that is off is not published to: its templates are not checked. */
    rl_config_t *c = load_ok("[kafka]\nenabled = false\ntopic = {nope}\ndeadletter_topic = {x}\n"
                             "[redis]\nenabled = false\nstream = {nope}\n" SRC);
    rl_config_destroy(c);

    /* From the environment: the variable is named. */
    static const char want[] = "environment: RELAY_KAFKA_TOPIC: kafka.topic: template 't.{nope}'";
    char err[1024];
    setenv("RELAY_KAFKA_TOPIC", "t.{nope}", 1);
    c = load_text(SRC, err, sizeof(err));
    unsetenv("RELAY_KAFKA_TOPIC");
    cr_expect_null(c);
    rl_config_destroy(c);
    cr_expect(strncmp(err, want, strlen(want)) == 0, "'%s' is not '%s...'", err, want);
}

/* Each source's secrets must suit its scheme; the error names the source's header. */
Test(config, secrets_the_scheme_cannot_use)
{
    expect_error_at(SRC "[source sw]\ncodec = whapi\nauth = standard-webhooks\n"
                        "secret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_not*base64\n",
                    3, "[source sw] secret #2 is not whsec_");
    expect_error_at("[source sw]\ncodec = whapi\nauth = standard-webhooks\nsecret = !!!!\n", 1,
                    "[source sw] secret #1 is not whsec_");
    /* The same bytes are a fine secret for a scheme that uses them as they are. */
    rl_config_t *c = load_ok("[source h]\ncodec = whapi\nauth = hub-signature-256\n"
                             "secret = whsec_not*base64\n");
    rl_config_destroy(c);
}

/* The TLS files must be readable at load time, naming the key that named the file. */
Test(config, tls_files_must_be_readable)
{
    char cert[160], key[160], text[512];
    snprintf(cert, sizeof(cert), "%s/cert.pem", tmpdir);
    snprintf(key, sizeof(key), "%s/key.pem", tmpdir);

    /* Neither exists: the certificate is named first. */
    snprintf(text, sizeof(text), "[http]\ntls_cert = %s\ntls_key = %s\n" SRC, cert, key);
    expect_error_at(text, 2, "http.tls_cert");
    expect_error_at(text, 2, strerror(ENOENT));
    /* The certificate alone exists: the key is named, with its own line. */
    write_file_at(cert, "cert\n");
    snprintf(text, sizeof(text), "[http]\ntls_cert = %s\n\ntls_key = %s\n" SRC, cert, key);
    expect_error_at(text, 4, "http.tls_key");
    write_file_at(key, "key\n");
    rl_config_t *c = load_ok(text);
    cr_expect_str_eq(c->http.tls_key, key);
    rl_config_destroy(c);

    /* From the environment: the variable is named. */
    char err[1024];
    setenv("RELAY_HTTP_TLS_CERT", "/nonexistent/cert.pem", 1);
    snprintf(text, sizeof(text), "[http]\ntls_key = %s\n" SRC, key);
    c = load_text(text, err, sizeof(err));
    unsetenv("RELAY_HTTP_TLS_CERT");
    cr_expect_null(c);
    rl_config_destroy(c);
    static const char want[] =
        "environment: RELAY_HTTP_TLS_CERT: http.tls_cert /nonexistent/cert.pem: ";
    cr_expect(strncmp(err, want, strlen(want)) == 0, "'%s' is not '%s...'", err, want);
}

/* A codec's own keys: JSON Pointers checked where they are written, the codec's
 * setup run at load time, and a key of one codec refused on a source of another. */
Test(config, codec_keys)
{
    rl_config_t *c = load_ok("[source acme]\ncodec = generic\nitems = /events\nid = /id\n"
                             "type = /kind\nchannel = /line/~1x\ntime = /at\nworkspace = /acct\n"
                             "type_map = up=channel.connected, down=channel.disconnected\n");
    cr_expect_str_eq(c->sources[0].items, "/events");
    cr_expect_str_eq(c->sources[0].channel, "/line/~1x");
    cr_expect_str_eq(c->sources[0].verify_token, "");
    rl_config_destroy(c);
    /* A long type_map continued on indented lines. */
    c = load_ok("[source acme]\ncodec = generic\ntype = /kind\n"
                "type_map = up=channel.connected,\n  down=channel.disconnected,\n"
                "  in = message.received\n");
    rl_config_destroy(c);

    expect_error_at("[source acme]\ncodec = generic\ntype = kind\n", 3,
                    "source.type: 'kind' is not a JSON Pointer");
    expect_error_at("[source acme]\ncodec = generic\n\ntype = /a~2b\n", 4,
                    "'/a~2b' is not a JSON Pointer");
    expect_error_at("[source acme]\ncodec = generic\nitems = /x\n", 1,
                    "[source acme] codec = generic needs 'type'");
    expect_error_at("[source acme]\ncodec = generic\ntype = /t\ntype_map = a=b\n", 1,
                    "[source acme] type_map: 'b' is not a normalized type");
    expect_error_at("[source t]\ncodec = timely\nitems = /events\n", 1,
                    "[source t] 'items' is not a key of codec = timely");
    expect_error_at("[source t]\ncodec = whapi\ntype_map = a=message.sent\n", 1,
                    "'type_map' is not a key of codec = whapi");
}
