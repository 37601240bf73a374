/* config.c -- the key table and everything derived from it.
 *
 * inih does the INI syntax. It does not tell the handler which line it is on, so
 * we feed it through our own reader that counts lines: every error can then
 * name FILE:LINE, which is what a user fixing a typo needs. The reader also
 * spots section headers, which inih (as distributions build it) does not report,
 * and refuses lines longer than inih's fixed line buffer, which inih would
 * otherwise cut and parse as two lines. */
#include "config.h"

#include "array.h"
#include "auth.h"
#include "codec.h"
#include "err.h"
#include "record.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* T_RATE: "N", "N/s", "N/m" or "N/h", stored as requests per hour so that slow
 * rates stay integers. */
typedef enum { T_STR, T_INT, T_SIZE, T_DURATION, T_BOOL, T_ENUM, T_RATE } key_type_t;

typedef struct key {
    const char *section; /* "source" for per-source keys */
    const char *name;
    key_type_t type;
    const char *def;     /* REQUIRED (NULL): no default, the key must be set */
    long long min, max;  /* T_INT, T_SIZE, T_DURATION, T_RATE: bounds, after the unit */
    const char *choices; /* T_ENUM: "a|b|c"; CODEC_NAMES (NULL): a codec's name */
    int secret;          /* never shown: "(set)" in a dump */
    int pointer;         /* T_STR: "" or a JSON Pointer (RFC 6901) */
    size_t off;          /* into rl_config_t (G), or rl_source_conf_t (S) for "source" */
    const char *help;    /* the reference's description */
} key_t_;

#define G(f) offsetof(rl_config_t, f)
#define S(f) offsetof(rl_source_conf_t, f)
#define GiB (1024LL * 1024 * 1024)
#define REQUIRED NULL
#define CODEC_NAMES NULL /* the choices are codecs.c's table */

/* One row per key, named by its type: SECTION, NAME, DEFAULT, what the type
 * needs (MIN, MAX after the unit; CHOICES), the FIELD (G or S) and the HELP of
 * the reference. A SECRET_KEY is a string that --check-config shows as "(set)". */
/* clang-format off */
#define KEY_(sec, nm, t, dflt, fld, hlp) \
    .section = (sec), .name = (nm), .type = (t), .def = (dflt), .off = (fld), .help = (hlp)
#define STR_KEY(sec, nm, dflt, fld, hlp)              {KEY_(sec, nm, T_STR, dflt, fld, hlp)}
#define SECRET_KEY(sec, nm, dflt, fld, hlp)           {KEY_(sec, nm, T_STR, dflt, fld, hlp), .secret = 1}
#define INT_KEY(sec, nm, dflt, lo, hi, fld, hlp)      {KEY_(sec, nm, T_INT, dflt, fld, hlp), .min = (lo), .max = (hi)}
#define SIZE_KEY(sec, nm, dflt, lo, hi, fld, hlp)     {KEY_(sec, nm, T_SIZE, dflt, fld, hlp), .min = (lo), .max = (hi)}
#define DURATION_KEY(sec, nm, dflt, lo, hi, fld, hlp) {KEY_(sec, nm, T_DURATION, dflt, fld, hlp), .min = (lo), .max = (hi)}
#define RATE_KEY(sec, nm, dflt, lo, hi, fld, hlp)     {KEY_(sec, nm, T_RATE, dflt, fld, hlp), .min = (lo), .max = (hi)}
#define BOOL_KEY(sec, nm, dflt, fld, hlp)             {KEY_(sec, nm, T_BOOL, dflt, fld, hlp), .max = 1}
#define ENUM_KEY(sec, nm, dflt, ch, fld, hlp)         {KEY_(sec, nm, T_ENUM, dflt, fld, hlp), .choices = (ch)}
#define POINTER_KEY(sec, nm, fld, hlp)                {KEY_(sec, nm, T_STR, "", fld, hlp), .pointer = 1}
/* clang-format on */

static const key_t_ keys[] = {
    STR_KEY("http", "listen", "0.0.0.0:8080", G(http.listen),
            "Address and port of the webhook listener (host:port; [v6]:port)."),
    INT_KEY("http", "threads", "2", 1, 256, G(http.threads),
            "HTTP worker threads (libmicrohttpd thread pool, epoll)."),
    SIZE_KEY(
        "http", "max_body", "1m", 256, GiB, G(http.max_body),
        "Largest accepted request body; larger Content-Length is answered 413 before reading."),
    DURATION_KEY("http", "timeout", "30", 1, 3600, G(http.timeout),
                 "Idle connection timeout in seconds."),
    INT_KEY("http", "max_connections", "1024", 1, 100000, G(http.max_connections),
            "Most concurrent client connections; more are closed at once (metric)."),
    DURATION_KEY("http", "shutdown_grace", "5", 0, 3600, G(http.shutdown_grace),
                 "On SIGTERM/SIGINT: longest wait for in-flight requests to be answered and for "
                 "the sinks to publish what the WAL holds. relay then exits 0; the rest is "
                 "replayed at the next start."),
    INT_KEY("http", "max_connections_per_ip", "256", 1, 100000, G(http.max_connections_per_ip),
            "Most concurrent connections from one client address (behind a proxy every client has "
            "the proxy's: raise it to max_connections)."),
    SIZE_KEY("http", "max_header", "8k", 8192, 1024 * 1024, G(http.max_header),
             "Memory for one request's line and headers; a request that does not fit is answered "
             "431 (414 for the line)."),
    DURATION_KEY("http", "request_timeout", "30", 1, 3600, G(http.request_timeout),
                 "Seconds a client may take to send a whole request, counted from its connection "
                 "or its previous answer; slower clients (slowloris) are cut off."),
    INT_KEY("http", "max_json_depth", "64", 1, 2048, G(http.max_json_depth),
            "Deepest nesting of arrays and objects accepted in a body; deeper is answered 400."),
    INT_KEY("http", "max_items", "1000", 1, 1000000, G(http.max_items),
            "Most events one request may carry; more is answered 413."),
    STR_KEY("http", "tls_cert", "", G(http.tls_cert),
            "PEM certificate (chain) file: with tls_key, the listener speaks HTTPS (TLS 1.2 and "
            "1.3 only)."),
    STR_KEY("http", "tls_key", "", G(http.tls_key), "PEM private key file of tls_cert."),
    SECRET_KEY("http", "admin_token", "", G(http.admin_token),
               "When set, GET /metrics and GET /v1/channels need Authorization: Bearer <token> "
               "(401 otherwise); /healthz and /readyz stay open."),
    STR_KEY("wal", "dir", "./data/wal", G(wal.dir),
            "Directory of the write-ahead log (segments and sink cursors)."),
    SIZE_KEY("wal", "segment_size", "64m", 64 * 1024, 4 * GiB, G(wal.segment_size),
             "Size at which a WAL segment is closed and a new one started."),
    SIZE_KEY("wal", "max_size", "1g", 1024 * 1024, 1024 * GiB, G(wal.max_size),
             "Hard cap on WAL bytes on disk; past it requests are answered 503 with Retry-After."),
    BOOL_KEY("wal", "fsync", "true", G(wal.fsync),
             "fsync before answering 200. false trades durability across power loss for speed."),
    BOOL_KEY("wal", "preallocate", "true", G(wal.preallocate),
             "Write each next segment full of zeros ahead of time, in the background: a sync then "
             "flushes data only, not the file system's journal, so commits are quicker and no "
             "longer wait behind other programs' writes (Kafka's, on a shared disk). Costs up to "
             "two segment_size files more on disk than max_size, and writing each segment twice."),
    DURATION_KEY("wal", "retention", "24h", 0, 365LL * 86400, G(wal.retention),
                 "How long published segments are kept for relay replay and redrive, after their "
                 "last write (0: deleted once every sink has passed them). Kept data always gives "
                 "way to new events under max_size, oldest first; it never causes a 503."),
    SIZE_KEY("wal", "retention_size", "0", 0, 1024 * GiB, G(wal.retention_size),
             "Most bytes of published segments kept (0: no cap of its own, only max_size)."),
    DURATION_KEY("dedup", "window", "24h", 1, 30LL * 86400, G(dedup.window),
                 "How long a (source, id) is remembered to drop provider retries."),
    INT_KEY("dedup", "max_entries", "2000000", 1, 1000000000, G(dedup.max_entries),
            "Most ids remembered; past it the oldest are forgotten first (metric)."),
    ENUM_KEY(
        "dedup", "store", "local", "local|redis", G(dedup.store),
        "local: this instance's window, kept in wal.dir/dedup/ across restarts and crashes. redis: "
        "shared by every instance through Redis, the local window in front as a cache."),
    SECRET_KEY("dedup", "redis_url", "", G(dedup.redis_url),
               "Redis of store = redis, redis://[[user]:password@]host:port[/db] or unix://; "
               "empty: redis.url."),
    STR_KEY("dedup", "redis_prefix", "relay:dedup:", G(dedup.redis_prefix),
            "Prefix of the Redis key of each id, PREFIX{source}:{id}; the instances that share a "
            "window use the same."),
    INT_KEY("dedup", "redis_timeout_ms", "250", 10, 10000, G(dedup.redis_timeout_ms),
            "Longest a request waits for Redis (connect or reply) before deciding on the local "
            "window alone (degraded)."),
    DURATION_KEY("dedup", "pending_ttl", "10", 1, 3600, G(dedup.pending_ttl),
                 "How long an unconfirmed claim in Redis holds an id: a retry of an event whose "
                 "instance died before making it durable is refused 503 for at most this long."),
    BOOL_KEY("kafka", "enabled", "true", G(kafka.enabled), "Publish to Kafka."),
    STR_KEY("kafka", "brokers", "127.0.0.1:9092", G(kafka.brokers),
            "Bootstrap brokers (librdkafka bootstrap.servers)."),
    STR_KEY("kafka", "topic", "events.{family}", G(kafka.topic),
            "Topic template; {family} {type} {source} {channel_id} are replaced."),
    DURATION_KEY(
        "kafka", "outage_budget", "0", 0, 30LL * 86400, G(kafka.outage_budget),
        "/readyz fails once Kafka has been unreachable this long (0: never; the WAL buffers)."),
    STR_KEY("kafka", "deadletter_topic", "events.deadletter", G(kafka.deadletter_topic),
            "Topic (template) of dead letters: authenticated bodies answered 400, kept raw."),
    BOOL_KEY("redis", "enabled", "true", G(redis.enabled), "Publish to Redis streams."),
    SECRET_KEY("redis", "url", "redis://127.0.0.1:6379/0", G(redis.url),
               "redis://[[user]:password@]host:port[/db], user for a Redis 6 ACL user (secret: may "
               "hold a password)."),
    STR_KEY("redis", "stream", "events:{channel_id}", G(redis.stream),
            "Stream key template; {family} {type} {source} {channel_id} are replaced."),
    STR_KEY("redis", "deadletter_stream", "events:deadletter", G(redis.deadletter_stream),
            "Stream key (template) of dead letters: authenticated bodies answered 400, kept raw."),
    INT_KEY("redis", "maxlen", "1000000", 1, 1LL << 40, G(redis.maxlen),
            "XADD MAXLEN ~ N: approximate cap on each stream's length."),
    INT_KEY("redis", "batch", "1024", 1, 100000, G(redis.batch),
            "Most XADD commands pipelined in one round trip (two batches are in flight; a larger "
            "batch drains a backlog faster, and a quiet stream sends what there is at once)."),
    DURATION_KEY(
        "redis", "outage_budget", "0", 0, 30LL * 86400, G(redis.outage_budget),
        "/readyz fails once Redis has been unreachable this long (0: never; the WAL buffers)."),
    BOOL_KEY("state", "enabled", "true", G(state.enabled),
             "Keep each channel's state and emit debounced channel.down / channel.up. Needs a "
             "Redis: state.redis_url, or redis.url while redis.enabled; without one it is off."),
    DURATION_KEY("state", "debounce", "60", 1, 86400, G(state.debounce),
                 "How long a channel may be out of connected before channel.down is emitted."),
    DURATION_KEY("state", "lease", "30", 1, 3600, G(state.lease),
                 "How long one relay holds a due transition it took before another relay sharing "
                 "the Redis may take it over (after a crash)."),
    SECRET_KEY("state", "redis_url", "", G(state.redis_url),
               "Redis of the channel state (\"\": redis.url); several relays share it."),
    STR_KEY("state", "redis_prefix", "channels", G(state.redis_prefix),
            "Key prefix P: hashes P:{channel_id}, index P.status:{status}, timers P.outbox."),
    STR_KEY("state", "kafka_topic", "channels.state", G(state.kafka_topic),
            "Log-compacted topic of every channel's state, key = channel id (\"\": none); "
            "created compacted when missing."),
    ENUM_KEY("log", "level", "info", "debug|info|warn|error", G(log.level),
             "Least severe level written to stderr."),
    ENUM_KEY("log", "format", "text", "text|json", G(log.format),
             "Line format on stderr: text (time, level, message) or json (one object a line: "
             "time, level, module, message) for log shippers."),
    ENUM_KEY("source", "codec", REQUIRED, CODEC_NAMES, S(codec),
             "Provider codec decoding this source's bodies (required): see relay --help."),
    ENUM_KEY("source", "auth", "none", "none|token|timely|standard-webhooks|hub-signature-256",
             S(auth),
             "How requests are authenticated: a static token header, or an HMAC-SHA256 signature "
             "of the raw body (docs/http-api.md: Authentication)."),
    SECRET_KEY("source", "secret", "", S(secret),
               "Secret(s) of the auth scheme, separated by commas (rotation: any one matches). "
               "Never logged."),
    STR_KEY("source", "token_header", "Authorization", S(token_header),
            "auth = token: header carrying the token ('Bearer <secret>' for Authorization)."),
    ENUM_KEY("source", "ack", "wal", "wal|publish", S(ack),
             "When 200 is sent. wal: once every new event is durable in the WAL. publish: once "
             "every sink has acknowledged it too (end-to-end; slower, and 503 past ack_timeout)."),
    DURATION_KEY("source", "ack_timeout", "10", 1, 3600, S(ack_timeout),
                 "ack = publish: longest wait for the sinks; past it 503 + Retry-After (the events "
                 "stay in the WAL and a retry is answered once they are published)."),
    DURATION_KEY(
        "source", "timestamp_tolerance", "5m", 1, 86400, S(timestamp_tolerance),
        "Signature schemes with a signed timestamp: how far it may be from relay's clock."),
    RATE_KEY("source", "rate_limit", "0", 0, 3600000000LL, S(rate_limit),
             "Authenticated requests allowed (N/s, N/m or N/h; 0: no limit); past it 429 with "
             "Retry-After."),
    INT_KEY("source", "rate_burst", "0", 0, 1000000, S(rate_burst),
            "Requests rate_limit lets through at once (0: one second's worth, at least 1)."),
    SECRET_KEY("source", "verify_token", "", S(verify_token),
               "codec = meta: the Verify Token of the app's webhook subscription; a GET with "
               "hub.mode=subscribe and this hub.verify_token is answered with hub.challenge."),
    POINTER_KEY("source", "items", S(items),
                "codec = generic: the array whose elements are the events (empty: the body is one "
                "event)."),
    POINTER_KEY("source", "id", S(id),
                "codec = generic: the event id in an item (empty or absent in an item: an id "
                "derived from the item's canonical JSON)."),
    POINTER_KEY("source", "type", S(type),
                "codec = generic (required): the provider's event type in an item, mapped by "
                "type_map."),
    POINTER_KEY("source", "channel", S(channel), "codec = generic: the channel id in an item."),
    POINTER_KEY("source", "time", S(time),
                "codec = generic: when it happened (RFC 3339, or unix seconds or milliseconds)."),
    POINTER_KEY("source", "workspace", S(workspace),
                "codec = generic: the provider's workspace or account id."),
    STR_KEY("source", "type_map", "", S(type_map),
            "codec = generic: provider value=normalized type pairs separated by commas (e.g. "
            "'online=channel.connected, offline=channel.disconnected'); unmapped values become "
            "SOURCE.<value> in family other."),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

typedef struct parse_state {
    rl_config_t *cfg;
    const char *file;
    int line;   /* line the reader is on */
    int in_key; /* a key was seen in this section: indented lines continue it */
    FILE *fp;
    char err[512];       /* first error, "FILE:LINE: why" */
    int err_line;        /* its line */
    int key_line[NKEYS]; /* where a key got its value: file line, -1 environment, 0 default */
} parse_state_t;

static void set_err(parse_state_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(parse_state_t *ps, const char *fmt, ...)
{
    if (ps->err[0])
        return; /* keep the first error: later ones are often consequences */
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    ps->err_line = ps->line;
    if (ps->line > 0)
        snprintf(ps->err, sizeof(ps->err), "%s:%d: %s", ps->file, ps->line, why);
    else
        snprintf(ps->err, sizeof(ps->err), "%s: %s", ps->file, why);
}

/* Parses `v` as a value of key `k` into `dst` (field address). 0 or -1 + why. */
static int parse_value(const key_t_ *k, const char *v, void *dst, char *why, size_t whysz)
{
    long long n = 0, mult = 1;
    char *end = NULL;

    switch (k->type) {
    case T_STR:
        if (k->pointer && *v) {
            const char *bad = v[0] != '/' ? v : NULL;
            for (const char *c = v; !bad && (c = strchr(c, '~')); c++)
                if (c[1] != '0' && c[1] != '1')
                    bad = c;
            if (bad) {
                snprintf(why, whysz,
                         "%s.%s: '%s' is not a JSON Pointer (RFC 6901: \"/a/b/0\", '~0' for '~' "
                         "and '~1' for '/'; empty for none)",
                         k->section, k->name, v);
                return -1;
            }
        }
        free(*(char **)dst);
        *(char **)dst = strdup(v);
        return 0;
    case T_ENUM: {
        const char *choices = k->choices;
        int ok = 0;
        if (!choices) { /* codec: the table of codecs is the list of choices */
            ok = rl_codec_find(v) != NULL;
        } else {
            size_t vl = strlen(v);
            for (const char *c = choices; *c;) {
                size_t cl = strcspn(c, "|");
                if (cl == vl && strncmp(c, v, vl) == 0)
                    ok = 1;
                c += cl + (c[cl] == '|');
            }
        }
        if (!ok) {
            if (choices) {
                snprintf(why, whysz, "%s.%s: '%s' is not one of %s", k->section, k->name, v,
                         choices);
            } else {
                char list[200] = "";
                for (size_t i = 0; rl_codecs[i]; i++)
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "|" : "",
                             rl_codecs[i]->name);
                snprintf(why, whysz, "%s.%s: unknown codec '%s' (known: %s)", k->section, k->name,
                         v, list);
            }
            return -1;
        }
        free(*(char **)dst);
        *(char **)dst = strdup(v);
        return 0;
    }
    case T_BOOL:
        if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") ||
            !strcmp(v, "1"))
            n = 1;
        else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") ||
                 !strcmp(v, "0"))
            n = 0;
        else {
            snprintf(why, whysz, "%s.%s: '%s' is not a boolean (true|false)", k->section, k->name,
                     v);
            return -1;
        }
        *(long long *)dst = n;
        return 0;
    default: break;
    }

    errno = 0;
    n = strtoll(v, &end, 10);
    if (end == v || errno) {
        snprintf(why, whysz, "%s.%s: '%s' is not a number", k->section, k->name, v);
        return -1;
    }
    while (*end == ' ')
        end++;
    if (k->type == T_SIZE) {
        switch (tolower((unsigned char)*end)) {
        case 'k': mult = 1024LL, end++; break;
        case 'm': mult = 1024LL * 1024, end++; break;
        case 'g': mult = GiB, end++; break;
        default: break;
        }
        if (mult > 1 && tolower((unsigned char)*end) == 'i')
            end++;
        if (tolower((unsigned char)*end) == 'b')
            end++;
    } else if (k->type == T_RATE) {
        mult = 3600; /* a bare number is per second */
        if (*end == '/') {
            switch (end[1]) {
            case 's': mult = 3600, end += 2; break;
            case 'm': mult = 60, end += 2; break;
            case 'h': mult = 1, end += 2; break;
            default: break;
            }
        }
    } else if (k->type == T_DURATION) {
        switch (*end) {
        case 's': end++; break;
        case 'm': mult = 60, end++; break;
        case 'h': mult = 3600, end++; break;
        case 'd': mult = 86400, end++; break;
        default: break;
        }
    }
    if (*end) {
        snprintf(why, whysz, "%s.%s: '%s' has trailing garbage '%s'", k->section, k->name, v, end);
        return -1;
    }
    /* n >= min / mult (>= 0 for every key) keeps n * mult from overflowing. */
    if (n > k->max / mult || n < k->min / mult || n * mult < k->min) {
        snprintf(why, whysz, "%s.%s: %s is out of range [%lld, %lld]", k->section, k->name, v,
                 k->min, k->max);
        return -1;
    }
    *(long long *)dst = n * mult;
    return 0;
}

static const key_t_ *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

static int known_section(const char *section)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section))
            return 1;
    return 0;
}

static int source_init(rl_source_conf_t *s, const char *name, int line)
{
    char why[8];
    memset(s, 0, sizeof(*s));
    s->name = strdup(name);
    s->line = line;
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, "source") && keys[i].def)
            parse_value(&keys[i], keys[i].def, (char *)s + keys[i].off, why, sizeof(why));
    return s->name ? 0 : -1;
}

static rl_source_conf_t *source_get(rl_config_t *cfg, const char *name, int line)
{
    for (size_t i = 0; i < cfg->nsources; i++)
        if (!strcmp(cfg->sources[i].name, name))
            return &cfg->sources[i];
    rl_source_conf_t *v =
        rl_array_grow(cfg->sources, &cfg->sources_cap, cfg->nsources + 1, sizeof(*v), 4);
    if (!v)
        return NULL;
    cfg->sources = v;
    if (source_init(&v[cfg->nsources], name, line) != 0)
        return NULL;
    return &v[cfg->nsources++];
}

/* A source name must be usable in a URL path and an environment variable. */
static int valid_source_name(const char *n)
{
    if (!*n)
        return 0;
    for (; *n; n++)
        if (!isalnum((unsigned char)*n) && *n != '_' && *n != '-')
            return 0;
    return 1;
}

/* Checks a librdkafka property now, so that a typo stops start-up with its line. */
static int kafka_prop_check(const char *name, const char *value, char *why, size_t whysz)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK;
    rd_kafka_conf_destroy(conf);
    if (!rc)
        snprintf(why, whysz, "kafka.%s: %s", name, errstr);
    return rc ? 0 : -1;
}

static int kafka_prop_set(rl_config_t *cfg, const char *name, const char *value, char *why,
                          size_t whysz)
{
    rl_conf_prop_t *p = NULL;
    char *v = strdup(value);
    int rc = -1;

    if (!v)
        goto out;
    for (size_t i = 0; i < cfg->kafka.nprops; i++) {
        if (!strcmp(cfg->kafka.props[i].name, name)) {
            free(cfg->kafka.props[i].value);
            cfg->kafka.props[i].value = v;
            rc = 0;
            goto out;
        }
    }
    p = rl_array_grow(cfg->kafka.props, &cfg->kafka.props_cap, cfg->kafka.nprops + 1, sizeof(*p),
                      8);
    if (!p)
        goto out;
    cfg->kafka.props = p;
    if (!(p[cfg->kafka.nprops].name = strdup(name)))
        goto out;
    p[cfg->kafka.nprops++].value = v;
    rc = 0;
out:
    if (rc != 0) {
        free(v);
        rl_seterr(why, whysz, "out of memory");
    }
    return rc;
}

/* Sets section.name = value; the common path of the file and the environment. */
static int set_key(rl_config_t *cfg, const char *section, const char *name, const char *value,
                   int line, char *why, size_t whysz)
{
    const key_t_ *k;
    void *base = cfg;

    if (!strncmp(section, "source ", 7) || !strcmp(section, "source")) {
        const char *sname = section[6] ? section + 7 : "";
        while (*sname == ' ')
            sname++;
        if (!valid_source_name(sname)) {
            snprintf(why, whysz, "[source %s]: a source name is letters, digits, '_' or '-'",
                     sname);
            return -1;
        }
        if (!(base = source_get(cfg, sname, line))) {
            snprintf(why, whysz, "out of memory");
            return -1;
        }
        section = "source";
    }
    k = find_key(section, name);
    if (!k && !strcmp(section, "kafka")) {
        if (kafka_prop_check(name, value, why, whysz) != 0)
            return -1;
        return kafka_prop_set(cfg, name, value, why, whysz);
    }
    if (!k) {
        if (known_section(section))
            snprintf(why, whysz, "unknown key '%s' in [%s]", name, section);
        else
            snprintf(why, whysz, "unknown section [%s]", section);
        return -1;
    }
    return parse_value(k, value, (char *)base + k->off, why, whysz);
}

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    parse_state_t *ps = user;
    char why[400];
    char sec[128];

    /* A key before any section may carry its section as a prefix: kafka.linger.ms. */
    if (!*section && name && strchr(name, '.')) {
        size_t n = strcspn(name, ".");
        snprintf(sec, sizeof(sec), "%.*s", (int)n, name);
        section = sec;
        name += n + 1;
    }
    if (!name) /* a [section] header: section_header() has seen it */
        return 1;
    ps->in_key = 1;
    if (!*section) {
        set_err(ps, "key '%s' outside any section", name);
        return 0;
    }
    if (set_key(ps->cfg, section, name, value, ps->line, why, sizeof(why)) != 0) {
        set_err(ps, "%s", why);
        return 0;
    }
    const key_t_ *k = find_key(section, name);
    if (k)
        ps->key_line[k - keys] = ps->line;
    return 1;
}

/* A "[section]" line, as inih reads it (an indented line after a key continues
 * that key's value). Sources are created here, with the header's line, so that
 * an empty [source NAME] is caught and messages about a source name its header. */
static void section_header(parse_state_t *ps, const char *line)
{
    char sec[128], why[400];

    if (ps->line == 1 && !strncmp(line, "\xEF\xBB\xBF", 3))
        line += 3;
    int indented = *line == ' ' || *line == '\t';
    line += strspn(line, " \t");
    if (*line != '[' || (indented && ps->in_key))
        return;
    const char *end = strchr(line, ']');
    if (!end)
        return; /* inih reports the syntax error */
    ps->in_key = 0;
    if (end - line - 1 > 49) { /* inih's MAX_SECTION: it would cut the name */
        set_err(ps, "section name longer than 49 characters");
        return;
    }
    snprintf(sec, sizeof(sec), "%.*s", (int)(end - line - 1), line + 1);
    if (!strncmp(sec, "source", 6) &&
        set_key(ps->cfg, sec, "ack", "wal", ps->line, why, sizeof(why)) != 0)
        set_err(ps, "%s", why);
}

/* inih's reader callback: one whole line per call, counted. */
static char *counting_reader(char *str, int num, void *stream)
{
    parse_state_t *ps = stream;
    char *r = fgets(str, num, ps->fp);
    if (!r)
        return NULL;
    ps->line++;
    size_t n = strlen(r);
    if (n > 0 && r[n - 1] != '\n' && !feof(ps->fp)) {
        /* inih's buffer is full: skip the rest of the line. A long comment is
         * fine; any other long line would be misread. */
        int c = fgetc(ps->fp), more = c != EOF && c != '\n';
        while (c != EOF && c != '\n')
            c = fgetc(ps->fp);
        const char *s = r + strspn(r, " \t");
        if (more && *s != ';' && *s != '#')
            set_err(ps, "line longer than %d characters", num - 1);
    }
    section_header(ps, r);
    return r;
}

/* RELAY_HTTP_MAX_BODY style name of section/key. */
static void env_name(char *out, size_t outsz, const char *section, const char *src, const char *key)
{
    size_t o = 0;
    const char *parts[3] = {section, src, key};
    o += (size_t)snprintf(out, outsz, "RELAY");
    for (int p = 0; p < 3 && o + 1 < outsz; p++) {
        if (!parts[p])
            continue;
        out[o++] = '_';
        for (const char *c = parts[p]; *c && o + 1 < outsz; c++)
            out[o++] = (*c == '.' || *c == '-') ? '_' : (char)toupper((unsigned char)*c);
    }
    out[o] = '\0';
}

/* RELAY_* variables that are not configuration keys: the scripts' own
 * (tools/run.sh, tools/lib.sh, the Makefile, the test runner, bench/). They
 * are documented in docs/configuration.md and never refused. */
static const char *const env_reserved[] = {"RELAY_CONF",    "RELAY_CACHE",  "RELAY_CFLAGS",
                                           "RELAY_LDFLAGS", "RELAY_LDLIBS", "RELAY_DEBIAN_MIRROR"};
static const char *const env_reserved_prefix[] = {"RELAY_RUN_", "RELAY_TEST_", "RELAY_FAULTS_",
                                                  "RELAY_BENCH_", "RELAY_DOCKER_"};

static int env_is_reserved(const char *var, size_t n)
{
    for (size_t i = 0; i < sizeof(env_reserved) / sizeof(env_reserved[0]); i++)
        if (strlen(env_reserved[i]) == n && !strncmp(var, env_reserved[i], n))
            return 1;
    for (size_t i = 0; i < sizeof(env_reserved_prefix) / sizeof(env_reserved_prefix[0]); i++)
        if (!strncmp(var, env_reserved_prefix[i], strlen(env_reserved_prefix[i])))
            return 1;
    return 0;
}

/* RELAY_SOURCE_<NAME>_<KEY>: the source key whose upper-case name ends var
 * (the longest, so _ACK_TIMEOUT is not read as _ACK), NULL when none does or
 * NAME would be empty. *name_len is NAME's length. */
static const key_t_ *env_source_key(const char *var, size_t n, size_t *name_len)
{
    const key_t_ *best = NULL;
    size_t best_len = 0, pre = strlen("RELAY_SOURCE_");
    char up[64];

    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, "source") != 0)
            continue;
        env_name(up, sizeof(up), keys[i].name, NULL, NULL); /* "RELAY_CODEC" */
        size_t kl = strlen(up) - strlen("RELAY");           /* "_CODEC" */
        if (n > pre + kl && !strncmp(var + n - kl, up + 5, kl) && kl > best_len) {
            best = &keys[i];
            best_len = kl;
        }
    }
    *name_len = best ? n - pre - best_len : 0;
    return best;
}

/* The source RELAY_SOURCE_<NAME>_… configures: the one whose name is NAME in
 * upper case ('-' as '_'), or a new one named NAME in lower case. */
static rl_source_conf_t *env_source(rl_config_t *cfg, const char *name, size_t len)
{
    char var[256], lower[128];
    size_t pre = strlen("RELAY_SOURCE_");

    for (size_t i = 0; i < cfg->nsources; i++) {
        env_name(var, sizeof(var), "source", cfg->sources[i].name, NULL);
        if (strlen(var) == pre + len && !strncmp(var + pre, name, len))
            return &cfg->sources[i];
    }
    if (len > 100)
        return NULL;
    for (size_t i = 0; i < len; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    lower[len] = '\0';
    return valid_source_name(lower) ? source_get(cfg, lower, 0) : NULL;
}

/* One RELAY_* variable (var, n bytes of name, value v) applied to cfg; 0, or
 * -1 with why set. */
static int apply_env_var(rl_config_t *cfg, int *key_line, const char *var, size_t n, const char *v,
                         char *why, size_t whysz)
{
    char own[256], prop[200];
    size_t name_len;

    if (!strncmp(var, "RELAY_SOURCE_", 13)) {
        const key_t_ *k = env_source_key(var, n, &name_len);
        if (!k) {
            snprintf(why, whysz,
                     "names no source key (RELAY_SOURCE_<NAME>_<KEY>, KEY a [source] key such "
                     "as CODEC, AUTH or SECRET)");
            return -1;
        }
        rl_source_conf_t *src = env_source(cfg, var + 13, name_len);
        if (!src) {
            snprintf(why, whysz, "a source name is letters, digits and '_' (at most 100)");
            return -1;
        }
        return parse_value(k, v, (char *)src + k->off, why, whysz);
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (!strcmp(keys[i].section, "source"))
            continue;
        env_name(own, sizeof(own), keys[i].section, NULL, keys[i].name);
        if (strlen(own) == n && !strncmp(own, var, n)) {
            key_line[i] = -1;
            return parse_value(&keys[i], v, (char *)cfg + keys[i].off, why, whysz);
        }
    }
    /* RELAY_KAFKA_<PROP> that is not one of relay's [kafka] keys: a librdkafka
     * property, whose names use dots where the variable has underscores. */
    if (!strncmp(var, "RELAY_KAFKA_", 12) && n > 12 && n - 12 < sizeof(prop)) {
        for (size_t j = 0; j < n - 12; j++) {
            char c = var[12 + j];
            prop[j] = c == '_' ? '.' : (char)tolower((unsigned char)c);
        }
        prop[n - 12] = '\0';
        if (kafka_prop_check(prop, v, why, whysz) != 0)
            return -1;
        return kafka_prop_set(cfg, prop, v, why, whysz);
    }
    snprintf(why, whysz,
             "names no configuration key (RELAY_<SECTION>_<KEY>: see relay --config-reference)");
    return -1;
}

/* Every RELAY_* variable of the environment either sets a key or is one of the
 * scripts' own (env_reserved): a typo stops start-up naming the variable. */
static int apply_env(rl_config_t *cfg, int *key_line, char *errstr, size_t errstr_size)
{
    extern char **environ;
    char why[400];

    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || strncmp(*e, "RELAY_", 6) != 0)
            continue;
        size_t n = (size_t)(eq - *e);
        if (env_is_reserved(*e, n))
            continue;
        if (apply_env_var(cfg, key_line, *e, n, eq + 1, why, sizeof(why)) != 0) {
            rl_seterr(errstr, errstr_size, "environment: %.*s: %s", (int)n, *e, why);
            return -1;
        }
    }
    return 0;
}

/* Where a key got its value, for a message: "FILE:LINE", "environment: VAR", or
 * "FILE" for a default. */
static void key_where(const rl_config_t *cfg, const int *key_line, const char *section,
                      const char *name, char *out, size_t outsz)
{
    const key_t_ *k = find_key(section, name);
    int line = k ? key_line[k - keys] : 0;
    char var[128];

    if (line > 0) {
        snprintf(out, outsz, "%s:%d", cfg->path, line);
    } else if (line < 0) {
        env_name(var, sizeof(var), section, NULL, name);
        snprintf(out, outsz, "environment: %s", var);
    } else {
        snprintf(out, outsz, "%s", cfg->path);
    }
}

/* Where a source key got its value, for a message: "environment: VAR" when
 * the variable is set, else "FILE:LINE" of the [source NAME] header, or
 * "environment: RELAY_SOURCE_<NAME>_*" for a source the file does not have. */
static void source_where(const rl_config_t *cfg, const rl_source_conf_t *s, const char *key,
                         char *out, size_t outsz)
{
    char var[256];

    env_name(var, sizeof(var), "source", s->name, key);
    if (getenv(var)) {
        snprintf(out, outsz, "environment: %s: [source %s]", var, s->name);
    } else if (s->line > 0) {
        snprintf(out, outsz, "%s:%d: [source %s]", cfg->path, s->line, s->name);
    } else {
        env_name(var, sizeof(var), "source", s->name, NULL);
        snprintf(out, outsz, "environment: %s_*: [source %s]", var, s->name);
    }
}

static int validate(rl_config_t *cfg, const int *key_line, char *errstr, size_t errstr_size)
{
    int rc = -1;
    char where[300], why[256];

    if (cfg->nsources == 0) {
        rl_seterr(errstr, errstr_size, "%s: no [source NAME] section: nothing could be received",
                  cfg->path);
        goto out;
    }
    for (size_t i = 0; i < cfg->nsources; i++) {
        rl_source_conf_t *s = &cfg->sources[i];
        if (!s->codec) {
            source_where(cfg, s, "codec", where, sizeof(where));
            rl_seterr(errstr, errstr_size, "%s has no 'codec' key", where);
            goto out;
        }
        const rl_codec_t *c = rl_codec_find(s->codec);
        for (size_t k = 0; c && k < NKEYS; k++) {
            const char *v;
            int mine = 0;
            if (strcmp(keys[k].section, "source") != 0 || keys[k].type != T_STR ||
                !rl_codec_owns_key(keys[k].name))
                continue;
            if (!(v = *(char *const *)((const char *)s + keys[k].off)) || !*v)
                continue;
            for (size_t m = 0; c->keys && c->keys[m]; m++)
                mine |= !strcmp(c->keys[m], keys[k].name);
            if (!mine) {
                source_where(cfg, s, keys[k].name, where, sizeof(where));
                rl_seterr(errstr, errstr_size, "%s '%s' is not a key of codec = %s", where,
                          keys[k].name, s->codec);
                goto out;
            }
        }
        const char *bad_key = NULL;
        if (c && rl_codec_check(c, s, &bad_key, why, sizeof(why)) != 0) {
            source_where(cfg, s, bad_key ? bad_key : "codec", where, sizeof(where));
            rl_seterr(errstr, errstr_size, "%s %s", where, why);
            goto out;
        }
        if (strcmp(s->auth, "none") != 0 && !s->secret[strspn(s->secret, ", \t")]) {
            source_where(cfg, s, "auth", where, sizeof(where));
            rl_seterr(errstr, errstr_size, "%s auth = %s needs a secret", where, s->auth);
            goto out;
        }
    }
    if (!*cfg->http.tls_cert != !*cfg->http.tls_key) {
        key_where(cfg, key_line, "http", *cfg->http.tls_cert ? "tls_cert" : "tls_key", where,
                  sizeof(where));
        rl_seterr(errstr, errstr_size, "%s: http.tls_cert and http.tls_key go together", where);
        goto out;
    }
    const char *colon = strrchr(cfg->http.listen, ':');
    char *pend = NULL;
    long port = colon ? strtol(colon + 1, &pend, 10) : -1;
    if (!colon || pend == colon + 1 || *pend || port < 0 || port > 65535) {
        key_where(cfg, key_line, "http", "listen", where, sizeof(where));
        rl_seterr(errstr, errstr_size,
                  "%s: http.listen '%s' is not host:port with a port from 0 to 65535", where,
                  cfg->http.listen);
        goto out;
    }
    if (cfg->wal.segment_size > cfg->wal.max_size) {
        key_where(cfg, key_line, "wal", "segment_size", where, sizeof(where));
        if (!strcmp(where, cfg->path))
            key_where(cfg, key_line, "wal", "max_size", where, sizeof(where));
        rl_seterr(errstr, errstr_size, "%s: wal.segment_size is larger than wal.max_size", where);
        goto out;
    }
    if (cfg->redis.enabled && strncmp(cfg->redis.url, "redis://", 8) != 0 &&
        strncmp(cfg->redis.url, "unix://", 7) != 0) {
        key_where(cfg, key_line, "redis", "url", where, sizeof(where));
        rl_seterr(errstr, errstr_size, "%s: redis.url must start with redis:// or unix://", where);
        goto out;
    }
    if (!strcmp(cfg->dedup.store, "redis")) {
        const char *url = *cfg->dedup.redis_url ? cfg->dedup.redis_url : cfg->redis.url;
        key_where(cfg, key_line, "dedup", *cfg->dedup.redis_url ? "redis_url" : "store", where,
                  sizeof(where));
        if (strncmp(url, "redis://", 8) != 0 && strncmp(url, "unix://", 7) != 0) {
            rl_seterr(errstr, errstr_size,
                      "%s: dedup.store = redis needs a redis:// or unix:// URL (dedup.redis_url "
                      "or redis.url)",
                      where);
            goto out;
        }
    }
    if (*cfg->state.redis_url && strncmp(cfg->state.redis_url, "redis://", 8) != 0 &&
        strncmp(cfg->state.redis_url, "unix://", 7) != 0) {
        key_where(cfg, key_line, "state", "redis_url", where, sizeof(where));
        rl_seterr(errstr, errstr_size, "%s: state.redis_url must start with redis:// or unix://",
                  where);
        goto out;
    }
    /* The destination templates of the sinks that are on. */
    const struct {
        long long on;
        const char *section, *name, *tpl;
    } tpls[] = {
        {cfg->kafka.enabled, "kafka", "topic", cfg->kafka.topic},
        {cfg->redis.enabled, "redis", "stream", cfg->redis.stream},
        {cfg->kafka.enabled, "kafka", "deadletter_topic", cfg->kafka.deadletter_topic},
        {cfg->redis.enabled, "redis", "deadletter_stream", cfg->redis.deadletter_stream},
    };
    for (size_t i = 0; i < sizeof(tpls) / sizeof(tpls[0]); i++) {
        if (tpls[i].on && rl_record_template_check(tpls[i].tpl, why, sizeof(why)) != 0) {
            key_where(cfg, key_line, tpls[i].section, tpls[i].name, where, sizeof(where));
            rl_seterr(errstr, errstr_size, "%s: %s.%s: %s", where, tpls[i].section, tpls[i].name,
                      why);
            goto out;
        }
    }
    /* Secrets the scheme cannot use (a whsec_ secret that is not Base64): the
     * checker start-up builds is built once here and thrown away. */
    for (size_t i = 0; i < cfg->nsources; i++) {
        const rl_source_conf_t *s = &cfg->sources[i];
        rl_auth_t *a = rl_auth_new(s, why, sizeof(why));
        if (!a) {
            source_where(cfg, s, "secret", where, sizeof(where));
            rl_seterr(errstr, errstr_size, "%s %s", where, why);
            goto out;
        }
        rl_auth_destroy(a);
    }
    /* The TLS files (both set or neither, above) must be readable now, not at
     * the first connection. */
    for (int i = 0; i < 2 && *cfg->http.tls_cert; i++) {
        const char *name = i ? "tls_key" : "tls_cert";
        const char *file = i ? cfg->http.tls_key : cfg->http.tls_cert;
        if (access(file, R_OK) != 0) {
            key_where(cfg, key_line, "http", name, where, sizeof(where));
            rl_seterr(errstr, errstr_size, "%s: http.%s %s: %s", where, name, file,
                      strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

rl_config_t *rl_config_load(const char *path, char *errstr, size_t errstr_size)
{
    parse_state_t ps = {0};
    rl_config_t *cfg = calloc(1, sizeof(*cfg));
    char why[400];
    int ok = 0;

    if (!cfg) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    cfg->path = strdup(path);
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, "source") != 0)
            parse_value(&keys[i], keys[i].def, (char *)cfg + keys[i].off, why, sizeof(why));

    ps.cfg = cfg;
    ps.file = path;
    if (!(ps.fp = fopen(path, "r"))) {
        rl_seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
        goto out;
    }
    int line = ini_parse_stream(counting_reader, &ps, on_ini_entry, &ps);
    fclose(ps.fp);
    if (line != 0 || ps.err[0]) {
        /* inih's syntax errors do not reach set_err: report whichever came first. */
        if (line != 0 && (!ps.err[0] || line < ps.err_line))
            snprintf(ps.err, sizeof(ps.err), "%s:%d: syntax error", path, line);
        rl_seterr(errstr, errstr_size, "%s", ps.err);
        goto out;
    }
    if (apply_env(cfg, ps.key_line, errstr, errstr_size) != 0 ||
        validate(cfg, ps.key_line, errstr, errstr_size) != 0)
        goto out;
    ok = 1;
out:
    if (!ok) {
        rl_config_destroy(cfg);
        cfg = NULL;
    }
    return cfg;
}

void rl_config_destroy(rl_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NKEYS; i++) {
        const key_t_ *k = &keys[i];
        if ((k->type == T_STR || k->type == T_ENUM) && strcmp(k->section, "source") != 0)
            free(*(char **)((char *)cfg + k->off));
    }
    for (size_t s = 0; s < cfg->nsources; s++) {
        for (size_t i = 0; i < NKEYS; i++)
            if (!strcmp(keys[i].section, "source") &&
                (keys[i].type == T_STR || keys[i].type == T_ENUM))
                free(*(char **)((char *)&cfg->sources[s] + keys[i].off));
        free(cfg->sources[s].name);
    }
    for (size_t i = 0; i < cfg->kafka.nprops; i++) {
        free(cfg->kafka.props[i].name);
        free(cfg->kafka.props[i].value);
    }
    free(cfg->kafka.props);
    free(cfg->sources);
    free(cfg->path);
    free(cfg);
}

const rl_source_conf_t *rl_config_source(const rl_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nsources; i++)
        if (!strcmp(cfg->sources[i].name, name))
            return &cfg->sources[i];
    return NULL;
}

static void dump_value(const key_t_ *k, const void *base, FILE *out)
{
    const void *p = (const char *)base + k->off;
    if (k->type == T_STR || k->type == T_ENUM) {
        const char *s = *(char *const *)p;
        if (k->secret && s && *s)
            fprintf(out, "%s = (set)\n", k->name);
        else
            fprintf(out, "%s = %s\n", k->name, s ? s : "");
    } else if (k->type == T_BOOL) {
        fprintf(out, "%s = %s\n", k->name, *(const long long *)p ? "true" : "false");
    } else if (k->type == T_RATE) {
        fprintf(out, "%s = %lld/h\n", k->name, *(const long long *)p);
    } else {
        fprintf(out, "%s = %lld\n", k->name, *(const long long *)p);
    }
}

void rl_config_dump(const rl_config_t *cfg, FILE *out)
{
    const char *section = "";
    for (size_t i = 0; i < NKEYS; i++) {
        if (!strcmp(keys[i].section, "source"))
            continue;
        if (strcmp(section, keys[i].section) != 0) {
            section = keys[i].section;
            fprintf(out, "\n[%s]\n", section);
            if (!strcmp(section, "kafka"))
                for (size_t p = 0; p < cfg->kafka.nprops; p++)
                    fprintf(out, "%s = %s\n", cfg->kafka.props[p].name,
                            strstr(cfg->kafka.props[p].name, "password") ||
                                    strstr(cfg->kafka.props[p].name, "secret")
                                ? "(set)"
                                : cfg->kafka.props[p].value);
        }
        dump_value(&keys[i], cfg, out);
    }
    for (size_t s = 0; s < cfg->nsources; s++) {
        const rl_codec_t *c = rl_codec_find(cfg->sources[s].codec);
        fprintf(out, "\n[source %s]\n", cfg->sources[s].name);
        for (size_t i = 0; i < NKEYS; i++) {
            int mine = !rl_codec_owns_key(keys[i].name);
            for (size_t k = 0; !mine && c && c->keys && c->keys[k]; k++)
                mine = !strcmp(c->keys[k], keys[i].name);
            /* Another codec's keys are not this source's: not shown. */
            if (!strcmp(keys[i].section, "source") && mine)
                dump_value(&keys[i], &cfg->sources[s], out);
        }
    }
}

void rl_config_reference(FILE *out)
{
    static const char *const tnames[] = {"string", "integer", "size", "seconds",
                                         "bool",   "enum",    "rate"};
    fprintf(out, "| key | type | default | range / values | env | description |\n");
    fprintf(out, "| --- | --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const key_t_ *k = &keys[i];
        char var[128], range[64] = "";
        int src = !strcmp(k->section, "source");
        env_name(var, sizeof(var), k->section, src ? "NAME" : NULL, k->name);
        if (k->type == T_ENUM && k->choices) {
            /* A bare '|' would end the Markdown table cell. */
            size_t o = 0;
            for (const char *c = k->choices; *c && o + 3 < sizeof(range); c++) {
                if (*c == '|')
                    range[o++] = '\\';
                range[o++] = *c;
            }
            range[o] = '\0';
        } else if (k->type == T_ENUM) {
            snprintf(range, sizeof(range), "a codec name");
        } else if (k->pointer) {
            snprintf(range, sizeof(range), "a JSON Pointer (RFC 6901)");
        } else if (k->type == T_RATE) {
            snprintf(range, sizeof(range), "0, or up to 1000000/s");
        } else if (k->type != T_STR && k->type != T_BOOL) {
            snprintf(range, sizeof(range), "%lld – %lld", k->min, k->max);
        }
        fprintf(out, "| `%s%s.%s` | %s | %s | %s | `%s` | %s%s |\n", k->section, src ? " NAME" : "",
                k->name, tnames[k->type], k->def ? k->def : "(required)", range, var, k->help,
                k->secret ? " **Secret.**" : "");
    }
}
