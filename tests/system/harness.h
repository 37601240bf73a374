/* harness.h -- what the system tests need to drive relay the way a real deployment does.
 *
 * The declarations; the code is tests/system/harness.c, compiled once into
 * $(BUILD)/libtests.a, which the system test binaries link (the Makefile). The test
 * file names the suite's .init and .fini, and harness.c brings a Criterion report hook:
 *
 *     TestSuite(pipeline, .init = th_setup, .fini = th_teardown);
 *
 *   - th_setup / th_teardown: the suite's .init and .fini. th_setup makes a fresh
 *     directory for the test ($RELAY_TEST_TMP/<suite>.<test>, th_test_dir()) and starts
 *     libcurl; th_teardown stops (SIGTERM, checked) and frees every relay of the test,
 *     starts again a Redis or Kafka the test stopped, and ends libcurl.
 *   - th_relay_*: run build/relay (RELAY_TEST_BIN) in the foreground with a generated
 *     config in a fresh directory, on a free port, with a topic/stream prefix of its
 *     own, so that tests never see each other's output on the shared Kafka and Redis;
 *     stop it (SIGTERM), crash it (SIGKILL) and start it again on the same WAL.
 *   - th_http*: a libcurl client (status, body, parsed JSON).
 *   - th_kafka_read / th_kafka_consume: a librdkafka consumer that reads a whole topic
 *     from the beginning (into a list, or message by message for large volumes).
 *   - th_redis_service / th_kafka_service: stop and start the shared services (faults).
 *   - th_timely_message: a Timely message.received body.
 *   - th_redis_read: XRANGE over a stream with hiredis.
 *   - th_metric: one value out of Prometheus text.
 *   - th_run: run a command (relay --check-config) and capture what it prints.
 *
 * Readers poll until they have what the test expects or a deadline passes, then keep
 * reading for a short "settle" time so that an extra copy (a duplicate) is seen too.
 * Nothing sleeps blindly.
 *
 * Ownership: a th_relay_t belongs to the harness (th_relay_new registers it, th_teardown
 * stops and frees it; a test never frees one). Everything else a helper hands back
 * belongs to the caller: strings marked malloc'd are free()d, a th_resp_t is emptied
 * with th_resp_free, th_kmsgs_t with th_kmsgs_free, th_xentries_t with
 * th_xentries_free. A helper that cannot go on (out of memory, fork, socket) fails the
 * test.
 *
 * Every relay started through th_relay_new is killed by th_teardown (which Criterion
 * also runs after a failed assertion), and the child gets PR_SET_PDEATHSIG so that even
 * a test process that crashes or times out leaves no relay behind. When a test fails,
 * the report hook prints the tail of its relays' logs.
 *
 * The system headers below come with harness.h: the test files use them too. */
#ifndef RELAY_TEST_HARNESS_H
#define RELAY_TEST_HARNESS_H

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TH_MAX_RELAYS 8
#define TH_MAX_ENV 16

/* ------------------------------------------------------------------ small utilities */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t th_now_ms(void);

/* Sleeps ms milliseconds (through EINTR). */
void th_sleep_ms(int ms);

/* getenv(name), or fallback when it is unset or empty. */
const char *th_env(const char *name, const char *fallback);

/* malloc'd printf; aborts the test on out-of-memory (a test cannot go on without it). */
char *th_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A NUL-terminated copy of n bytes (NULL for NULL). */
char *th_memdup(const void *p, size_t n);

/* The whole file, NUL-terminated and malloc'd, or NULL. *len may be NULL. */
char *th_read_file(const char *path, size_t *len);

/* Writes text to path (created or truncated). Returns 0, or -1. */
int th_write_file(const char *path, const char *text);

/* mkdir -p (mode 0755). Returns 0, or -1. */
int th_mkdir_p(const char *path);

/* A TCP port on 127.0.0.1 that nothing uses right now. Drawn below the kernel's
 * ephemeral range (as tools/freeport.sh does) so that an outgoing connection cannot
 * take it between now and the moment relay binds it; checked by binding it without
 * SO_REUSEADDR, which also fails while TIME_WAIT connections hold it. Also serves as
 * "a closed port" for a sink that must be unreachable. */
int th_free_port(void);

/* Parses an RFC 3339 date-time ("2026-04-19T10:00:00Z", fractions and offsets allowed)
 * into Unix seconds. Returns 0, or -1 when the text is not RFC 3339. */
int th_rfc3339(const char *s, time_t *out);

/* --------------------------------------------------------------------- test state */

/* One relay of a test: made by th_relay_new, owned and freed by the harness. */
typedef struct th_relay {
    /* Set by th_relay_new to the test defaults; a test may change them before each
     * th_relay_start (the config file is rewritten at every start). */
    char kafka_brokers[256];
    char redis_url[256];
    char max_body[32];
    int conf_port;             /* when set, the config file listens here instead of on `port`
                                * (a test that moves relay with RELAY_HTTP_LISTEN) */
    char wal_extra[512];       /* lines added to [wal] */
    char kafka_extra[512];     /* lines added to [kafka] */
    char state_extra[1024];    /* the lines of [state]; by default the relay's own Redis
                                * prefix and topic, and a debounce of an hour (nothing is
                                * emitted); a test of the state replaces them */
    char extra[4096];          /* appended verbatim to the generated config (new sections) */
    char *env[TH_MAX_ENV + 1]; /* extra "NAME=value" for relay's environment (owned) */

    /* Fixed for the life of the instance, so that a restart finds the same WAL and
     * publishes to the same topics and streams. */
    int n; /* instance number within the test */
    char dir[PATH_MAX - 128];
    char conf[PATH_MAX];
    char wal_dir[PATH_MAX];
    char log[PATH_MAX];
    char prefix[64]; /* "t<pid>-<time>-<n>" */
    int port;
    char base[64]; /* "http://127.0.0.1:PORT" */
    pid_t pid;     /* 0 when not running */
    int starts;
} th_relay_t;

/* The suite's .init: a fresh, empty directory for this test (th_test_dir), libcurl
 * started, SIGPIPE ignored (a relay that died would otherwise kill the test on a write). */
void th_setup(void);

/* The test's directory ($RELAY_TEST_TMP/<suite>.<test>, made by th_setup): the relays'
 * directories are r1, r2, ... in it. It belongs to the harness (th_setup empties it). */
const char *th_test_dir(void);

/* The suite's .fini, also run after a failed assertion: no relay outlives its test,
 * and a Redis or Kafka that a fault test stopped is running again for the next test.
 * A relay still running is stopped with SIGTERM and must exit 0, and no relay log may
 * hold a sanitizer report; otherwise th_teardown aborts (Criterion 2.4 ignores
 * assertions made in .fini, a crash it reports). */
void th_teardown(void);

/* ---------------------------------------------------------------------- commands */

/* Runs argv (argv[0] is a path) with stdout and stderr captured together into *output
 * (malloc'd, NUL-terminated). Returns the exit code, or -1 when the command did not
 * exit by itself within timeout_ms (it is killed) or died of a signal. */
int th_run(char *const argv[], int timeout_ms, char **output);

/* ------------------------------------------------------------------------- HTTP */

typedef struct th_resp {
    long status; /* 0 when no HTTP answer came (connection refused, timeout) */
    char *body;  /* NUL-terminated, never NULL after th_http */
    size_t len;
    char content_type[128];
    char retry_after[32];
    json_t *json; /* the body parsed, or NULL when it is not JSON */
    char error[CURL_ERROR_SIZE];
} th_resp_t;

/* Frees what a th_resp_t holds and zeroes it (a zeroed one may be freed again). */
void th_resp_free(th_resp_t *r);

/* A CURLOPT_WRITEFUNCTION appending to the th_resp_t given as CURLOPT_WRITEDATA (its
 * body grows, NUL-terminated; start from a zeroed th_resp_t). */
size_t th_curl_body(char *p, size_t size, size_t nmemb, void *ud);

/* Sets what every test request shares on a curl handle: URL, headers (the caller keeps
 * the list), no signals, the time limits (hang guards, not speed requirements) and
 * where the body goes. */
void th_curl_prepare(CURL *c, const char *url, struct curl_slist *hl, long timeout_ms,
                     long connect_ms, curl_write_callback body_fn, void *body_arg);

/* One HTTP request. `headers` is a NULL-terminated list of "Name: value" (or NULL).
 * curl's own defaults that a provider would not send are suppressed: "Expect:
 * 100-continue", and the form Content-Type curl adds to a POST when the caller gives
 * none (so "no Content-Type" really sends none). Returns 0 when an HTTP answer came. */
/* `out` is overwritten (not freed first): th_resp_free it after each call. */
int th_http(const char *method, const char *url, const char *body, size_t len,
            const char *const *headers, th_resp_t *out);

/* ------------------------------------------------------------------ relay process */

/* The default sinks: the Kafka and Redis that tools/run-tests.sh started
 * (RELAY_TEST_KAFKA_BROKERS, RELAY_TEST_REDIS_PORT). */
const char *th_kafka_brokers(void);

int th_redis_port(void);

/* A new, not yet started relay instance with its own directory, port and prefix.
 * At most TH_MAX_RELAYS per test; owned by the harness (freed by th_teardown). */
th_relay_t *th_relay_new(void);

/* Points the instance's sinks at ports where nothing listens (both sinks down), or
 * back at the test Kafka and Redis, for the following starts. */
void th_relay_sinks_unreachable(th_relay_t *r);

void th_relay_sinks_reachable(th_relay_t *r);

/* Sets "NAME=value" in relay's environment for the following starts (replacing
 * an earlier value of NAME). Both strings are copied. */
void th_relay_setenv(th_relay_t *r, const char *name, const char *value);

/* The Kafka topic for a family ("channel", "message", "other") under this instance's
 * prefix, and the Redis stream for a channel. Written into buf. */
const char *th_topic(const th_relay_t *r, const char *family, char *buf, size_t size);

const char *th_stream(const th_relay_t *r, const char *channel, char *buf, size_t size);

/* The config every test starts from: both sinks on, the four sources the tests use.
 * `locked` and `lockedhdr` check token authentication, the way Whapi sends a custom
 * header. fsync stays on: tests should see the durability real deployments get. */
char *th_relay_config_text(const th_relay_t *r); /* malloc'd */

/* Makes relay listen with TLS (http.tls_cert / tls_key through the environment)
 * and this test's HTTP client reach it by https:// trusting `cert` (self-signed,
 * for 127.0.0.1; the path is copied). Call before th_relay_start. */
void th_relay_use_tls(th_relay_t *r, const char *cert, const char *key);

/* Writes the config and runs `relay -c CONF` (RELAY_TEST_BIN, default build/relay;
 * with the test's environment minus every RELAY_* variable, plus th_relay_setenv's), its output
 * appended to r->log, then waits up to timeout_ms for GET /healthz to answer 200. Returns 0, or -1
 * (relay exited or never answered; it is killed in the latter case). */
int th_relay_start_timeout(th_relay_t *r, int timeout_ms);

/* th_relay_start_timeout with 15 s. */
int th_relay_start(th_relay_t *r);

/* Starts relay or fails the test, pointing at the log. */
#define TH_START(r) cr_assert(th_relay_start(r) == 0, "relay did not start; see %s", (r)->log)

/* SIGTERM and wait up to timeout_ms. Returns the wait status when relay exited in
 * time; otherwise SIGKILLs it and returns -1. */
int th_relay_stop(th_relay_t *r, int timeout_ms);

/* SIGKILL: a crash, nothing flushed. Nothing when it is not running. */
void th_relay_kill(th_relay_t *r);

/* GET path from this relay (`out` as th_http's). */
int th_get(const th_relay_t *r, const char *path, th_resp_t *out);

/* POST body to /v1/webhooks/{source} with Content-Type application/json plus
 * `headers` (NULL-terminated, may be NULL). */
int th_post(const th_relay_t *r, const char *source, const char *body, const char *const *headers,
            th_resp_t *out);

/* A Timely message.received for `channel` with a given event id and position `seq`
 * (which sets its timestamp and text). malloc'd. */
char *th_timely_message(const char *event_id, const char *channel, int seq);

/* Sends `request` verbatim over a plain TCP connection to 127.0.0.1:port and reads
 * the answer until the server closes or timeout_ms passes. For requests libcurl will
 * not send, such as headers that announce a body that never comes. Returns the HTTP
 * status of the answer, or 0 when none came in time. *reply (may be NULL) gets what
 * was read, malloc'd. */
long th_raw_http(int port, const char *request, int timeout_ms, char **reply);

/* Reads one HTTP answer from a connected socket until the server closes, the
 * answer is complete, or timeout_ms passes. Returns its status, 0 when none came
 * in time; *reply (may be NULL) gets what was read, malloc'd. */
long th_read_answer(int fd, int timeout_ms, char **reply);

/* ------------------------------------------------------------------------ Kafka */

typedef struct th_kheader {
    char *name;
    char *value; /* NUL-terminated copy; NULL for a null header value */
} th_kheader_t;

typedef struct th_kmsg {
    int32_t partition;
    int64_t offset;
    char *key; /* NUL-terminated copy, NULL when the message has no key */
    char *value;
    size_t value_len;
    json_t *json; /* the value parsed, NULL when it is not JSON */
    th_kheader_t *headers;
    size_t nheaders;
} th_kmsg_t;

typedef struct th_kmsgs {
    th_kmsg_t *v;
    size_t n, cap;
} th_kmsgs_t;

/* Frees every message of the list and zeroes it. */
void th_kmsgs_free(th_kmsgs_t *l);

/* The value of the header `name` (last one wins), or NULL. */
const char *th_kheader(const th_kmsg_t *m, const char *name);

/* How many times the header `name` occurs. */
int th_kheader_count(const th_kmsg_t *m, const char *name);

/* Called for every message th_kafka_consume reads (err == 0 only). */
typedef void (*th_kafka_msg_fn)(void *arg, const rd_kafka_message_t *km);
/* Tells th_kafka_consume that it has what it waits for. */
typedef int (*th_kafka_done_fn)(void *arg);

/* Reads `topic` from the beginning of every partition, handing every message to fn.
 * Waits up to timeout_ms for the topic to exist and for done(arg), then keeps reading
 * settle_ms more so that extra copies show up too. Order within a partition is offset
 * order. The topic's partitions come from the cluster's metadata, since auto-created
 * topics have several. Returns the number of messages read. */
size_t th_kafka_consume(const char *topic, th_kafka_msg_fn fn, th_kafka_done_fn done, void *arg,
                        int timeout_ms, int settle_ms);

/* Reads `topic` from the beginning (th_kafka_consume) until it holds at least `want`
 * messages, appending them to *out (start from a zeroed list; th_kmsgs_free it) in
 * arrival order. Returns the number read. */
size_t th_kafka_read(const char *topic, size_t want, int timeout_ms, int settle_ms,
                     th_kmsgs_t *out);

/* ------------------------------------------------------------------------ Redis */

/* One stream entry, as th_redis_read copies it out of hiredis. */

typedef struct th_xentry {
    char *sid;     /* the stream entry id, "1700000000000-0" */
    char **fields; /* name, value, name, value, ... (NUL-terminated copies) */
    size_t nfields;
    json_t *event; /* the "event" field parsed, or NULL */
} th_xentry_t;

typedef struct th_xentries {
    th_xentry_t *v;
    size_t n;
} th_xentries_t;

/* Frees every entry of the list and zeroes it. */
void th_xentries_free(th_xentries_t *l);

/* The value of field `name` of an entry, or NULL. */
const char *th_xfield(const th_xentry_t *e, const char *name);

/* How many times field `name` occurs in an entry. */
int th_xfield_count(const th_xentry_t *e, const char *name);

/* Reads the whole stream `key` (XRANGE - +) until it holds at least `want` entries or
 * timeout_ms passes, then once more after settle_ms so that extra copies are seen.
 * Replaces *out; returns out->n. */
size_t th_redis_read(const char *key, size_t want, int timeout_ms, int settle_ms,
                     th_xentries_t *out);

/* "stop", "start" or "kill" the shared test Redis with tools/redis.sh (its data
 * survives: redis.sh keeps DIR/dump.rdb). Needs RELAY_TEST_TOOLS and
 * RELAY_TEST_REDIS_DIR, which tools/run-tests.sh sets. Returns -2 without them, else
 * the script's exit code. A Redis this test left stopped is started by th_teardown. */
int th_redis_service(const char *action);

/* The same for the shared test Kafka with tools/kafka.sh (RELAY_TEST_KAFKA_DIR and
 * RELAY_TEST_KAFKA_PORT). A broker on a busy 2-core machine may take a minute to
 * come up. */
int th_kafka_service(const char *action);

/* -------------------------------------------------------------------- Prometheus */

/* The sum of every sample of metric `name` whose labels include each of `labels`
 * ("k=v,k2=v2", may be NULL or ""), or -1 when no sample matches. */
double th_metric(const char *text, const char *name, const char *labels);

/* GET /metrics and return th_metric of it (-1 when absent or not reachable). */
double th_relay_metric(const th_relay_t *r, const char *name, const char *labels);

#endif
