/* config.h -- relay's configuration: one table of keys from which parsing,
 * validation, environment overrides, --check-config and the docs all come.
 *
 * File format: INI. Sections [http] [wal] [dedup] [kafka] [redis] [state] [log] and one
 * [source NAME] per webhook source. Keys in [kafka] that relay does not know are
 * handed to librdkafka unchanged (kcat's -X). Every key can be overridden by the
 * environment: RELAY_<SECTION>_<KEY>, RELAY_SOURCE_<NAME>_<KEY>. */
#ifndef RL_CONFIG_H
#define RL_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef struct rl_source_conf {
    char *name;
    char *codec;           /* a name from codecs.c's table */
    char *auth;            /* none | token | timely | standard-webhooks | hub-signature-256 */
    char *secret;          /* one or more secrets (rotation), split by auth.c: never logged */
    char *token_header;    /* header carrying the token (auth = token) */
    char *ack;             /* wal | publish */
    long long ack_timeout; /* seconds (ack = publish) */
    long long timestamp_tolerance; /* seconds a signed timestamp may be off (signature schemes) */
    long long rate_limit;          /* requests per hour allowed (token bucket); 0: unlimited */
    long long rate_burst;          /* bucket size; 0: one second's worth, at least 1 */
    /* Keys of one codec each ("" when unset; config refuses them on another codec). */
    char *verify_token; /* meta: the subscription handshake's hub.verify_token (secret) */
    /* generic: JSON Pointers (RFC 6901) into each item, and the type mapping */
    char *items, *id, *type, *channel, *time, *workspace;
    char *type_map; /* "provider value=normalized type, ..." */
    int line;       /* line of the [source NAME] header, for messages */
} rl_source_conf_t;

/* A librdkafka property passed through from [kafka]. */
typedef struct rl_conf_prop {
    char *name, *value;
} rl_conf_prop_t;

/* Plain values, read by every module after rl_config_load(); never written
 * after start-up. Numbers are long long whatever their unit (bytes, seconds). */
typedef struct rl_config {
    char *path;
    struct {
        char *listen;
        long long threads, max_body, timeout, max_connections, shutdown_grace;
        /* Limits against hostile clients (see the key table for their meaning). */
        long long max_connections_per_ip, max_header, request_timeout, max_json_depth, max_items;
        char *tls_cert, *tls_key; /* PEM files; both empty: plain HTTP */
        char *admin_token;        /* "" : the admin routes are open */
    } http;
    struct {
        char *dir;
        long long segment_size, max_size, fsync, preallocate;
        long long retention, retention_size; /* seconds, bytes (0: no cap but max_size) */
    } wal;
    struct {
        long long window, max_entries;
        char *store;        /* local | redis */
        char *redis_url;    /* "" : redis.url */
        char *redis_prefix; /* key prefix in Redis */
        long long redis_timeout_ms, pending_ttl;
    } dedup;
    struct {
        long long enabled, outage_budget;
        char *brokers, *topic;
        char *deadletter_topic; /* template of the dead-letter topic */
        rl_conf_prop_t *props;
        size_t nprops, props_cap; /* props_cap: room (rl_array_grow) */
    } kafka;
    struct {
        long long enabled, maxlen, batch, outage_budget;
        char *url, *stream;
        char *deadletter_stream; /* template of the dead-letter stream */
    } redis;
    struct {
        long long enabled, debounce, lease; /* debounce, lease: seconds */
        char *redis_url;                    /* "" : redis.url (when redis.enabled) */
        char *redis_prefix, *kafka_topic;   /* kafka_topic "": no state topic */
    } state;
    struct {
        char *level, *format;
    } log;
    rl_source_conf_t *sources;
    size_t nsources, sources_cap; /* sources_cap: room (rl_array_grow) */
} rl_config_t;

/* Loads `path`, applies environment overrides, validates: each value, and the
 * keys together (each source's codec and secrets, the TLS files both set and
 * readable, the sinks' templates, ...), so that --check-config finds all that
 * start-up would refuse. Returns a config owned by the caller (free with
 * rl_config_destroy), or NULL with "FILE:LINE: why" (or "environment: VAR:
 * why") in errstr. */
rl_config_t *rl_config_load(const char *path, char *errstr, size_t errstr_size);
void rl_config_destroy(rl_config_t *cfg); /* NULL-safe */

/* The source named `name`, or NULL. */
const rl_source_conf_t *rl_config_source(const rl_config_t *cfg, const char *name);

/* Writes the effective configuration as INI, secrets replaced by "(set)". */
void rl_config_dump(const rl_config_t *cfg, FILE *out);
/* Writes the key reference (name, type, default, bounds, help) as Markdown. */
void rl_config_reference(FILE *out);

#endif
