/* state.c -- channel state in Redis and Kafka, and the debounced channel.down /
 * channel.up events (state.h; docs/channels.md for the contract).
 *
 * Redis holds everything that must outlive relay and be shared by several
 * relays: the state of each channel (hash P:{channel_id}), the index by status
 * (sorted sets P.status:{status}, scored by since) and the debounce's timers (the
 * sorted set P.outbox, scored by when each is due). Every change is one Lua
 * script, so an event's update, its index and its timer move together, and a
 * due timer is handed to one relay only (for state.lease; after that, another
 * may take it over). relay itself keeps nothing but its two WAL cursors. */
#include "state.h"

#include "backoff.h"
#include "clock.h"
#include "codec_util.h"
#include "err.h"
#include "log.h"
#include "prio.h"
#include "record.h"
#include "redis_conn.h"
#include "sink.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 256             /* records read per round */
#define CLAIM_EVERY_MS 200    /* how often the outbox is looked at */
#define CLAIM_MAX 64          /* due timers taken at once */
#define TOPIC_RETRY_MS 10000  /* between attempts to create the state topic */
#define KEY_MAX 1024          /* prefix + channel id */
#define REDIS_TIMEOUT_MS 2000 /* the engine's commands */
#define API_TIMEOUT_MS 500    /* an HTTP request's */
#define LIST_MAX 1000         /* most channels one list answers */

/* Applies one channel event. KEYS: the hash, the outbox. ARGV: channel, status,
 * occurred ms, event id, type, provider, source, reason, error code, message,
 * category, now ms, debounce ms, the status index's prefix, received ms. A
 * channel leaving connected gets a timer due a debounce after the later of its
 * event's time and when relay received it. Returns {verdict,
 * HGETALL}: "stale" (older than the state: nothing changed), "duplicate" (the
 * event the state already holds) or "applied". */
static const char APPLY[] =
    "local h, ob, ch = KEYS[1], KEYS[2], ARGV[1]\n"
    "local st, occ, id = ARGV[2], tonumber(ARGV[3]), ARGV[4]\n"
    "local cur = redis.call('HMGET', h, 'status', 'occurred_ms', 'last_event_id',"
    " 'out_since_ms', 'down')\n"
    "if cur[2] then\n"
    "  local last = tonumber(cur[2])\n"
    "  if occ < last then return {'stale'} end\n"
    "  if occ == last and id == cur[3] then\n"
    "    return {'duplicate', redis.call('HGETALL', h)}\n"
    "  end\n"
    "end\n"
    "local prev = cur[1]\n"
    "redis.call('HSET', h, 'channel_id', ch, 'status', st, 'occurred_ms', ARGV[3],"
    " 'last_event_id', id, 'last_event_type', ARGV[5], 'provider', ARGV[6], 'source', ARGV[7],"
    " 'reason', ARGV[8], 'error_code', ARGV[9], 'error_message', ARGV[10],"
    " 'error_category', ARGV[11], 'updated_ms', ARGV[12])\n"
    "if prev ~= st then\n"
    "  redis.call('HSET', h, 'since_ms', ARGV[3])\n"
    "  redis.call('HINCRBY', h, 'transitions', 1)\n"
    "  if prev then redis.call('ZREM', ARGV[14] .. prev, ch) end\n"
    "  redis.call('ZADD', ARGV[14] .. st, occ, ch)\n"
    "end\n"
    "local out = cur[4] or ''\n"
    "if st == 'connected' then\n"
    "  if out ~= '' then\n"
    "    if cur[5] == '1' then\n"
    "      redis.call('ZADD', ob, tonumber(ARGV[12]), 'up|' .. out .. '|' .. ARGV[3] .. '|' .. "
    "ch)\n"
    "    else\n"
    "      redis.call('ZREM', ob, 'down|' .. out .. '|' .. ch)\n"
    "    end\n"
    "  end\n"
    "  redis.call('HSET', h, 'out_since_ms', '', 'down', '0')\n"
    "elseif out == '' then\n"
    "  local due = math.max(occ, tonumber(ARGV[15])) + tonumber(ARGV[13])\n"
    "  redis.call('HSET', h, 'out_since_ms', ARGV[3], 'down', '0', 'due_ms', due)\n"
    "  redis.call('ZADD', ob, due, 'down|' .. ARGV[3] .. '|' .. ch)\n"
    "end\n"
    "return {'applied', redis.call('HGETALL', h)}\n";

/* Takes the due timers. KEYS: the outbox. ARGV: now ms, lease ms, limit, the
 * hashes' prefix. A "down" whose channel is no longer out of connected since
 * that moment is dropped; the others are leased (rescored to now + lease) and
 * returned as {member, kind, channel, since, back, status, provider, source,
 * reason, error code, message, category, last event id, due ms}. */
static const char CLAIM[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0,"
    " tonumber(ARGV[3]))\n"
    "local res = {}\n"
    "for _, m in ipairs(due) do\n"
    "  local kind, since, rest = string.match(m, '^(%a+)|(%d+)|(.*)$')\n"
    "  local back, ch = '', rest\n"
    "  if kind == 'up' and rest then back, ch = string.match(rest, '^(%d+)|(.*)$') end\n"
    "  if not kind or not ch or (kind ~= 'up' and kind ~= 'down') then\n"
    "    redis.call('ZREM', KEYS[1], m)\n"
    "  else\n"
    "    local h = ARGV[4] .. ch\n"
    "    if kind == 'down' and redis.call('HGET', h, 'out_since_ms') ~= since then\n"
    "      redis.call('ZREM', KEYS[1], m)\n"
    "    else\n"
    "      if kind == 'down' then redis.call('HSET', h, 'down', '1') end\n"
    "      redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), m)\n"
    "      local f = redis.call('HMGET', h, 'status', 'provider', 'source', 'reason',"
    " 'error_code', 'error_message', 'error_category', 'last_event_id', 'due_ms')\n"
    "      local e = {m, kind, ch, since, back}\n"
    "      for i = 1, 9 do e[5 + i] = f[i] or '' end\n"
    "      res[#res + 1] = e\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return res\n";

struct rl_state {
    const rl_config_t *cfg;
    rl_wal_t *wal;
    rl_wal_reader_t *reader, *kreader; /* kreader NULL: no state topic */
    rl_ingest_t *ig;
    rl_redis_target_t target;
    char hash_prefix[KEY_MAX], status_prefix[KEY_MAX], outbox[KEY_MAX];
    int64_t debounce_ms, lease_ms, next_claim_ms;
    /* The engine's thread alone: */
    redisContext *rc;
    rl_backoff_t backoff;
    int logged_down;
    rd_kafka_t *rk;
    int topic_ready;
    int64_t next_topic_ms;
    /* The Kafka reader's batch: its last record, messages in flight, a failure
     * seen, a record read past the first reader (read again next time). */
    uint64_t kbatch_last;
    int kbatch_open, kinflight, kfailed, krewind;
    /* HTTP workers: */
    pthread_mutex_t api_mu;
    redisContext *api_rc;

    pthread_t thread;
    int started;
    _Atomic int stop;
    rl_metric_t *m_applied, *m_stale, *m_dup, *m_down, *m_up, *m_errors, *m_redis_up;
    rl_metric_t *m_published;
};

int rl_state_wanted(const rl_config_t *cfg, int *kafka)
{
    int on = cfg->state.enabled && (*cfg->state.redis_url || cfg->redis.enabled);
    *kafka = on && cfg->kafka.enabled && *cfg->state.kafka_topic;
    return on;
}

static void nap(rl_state_t *st, int ms)
{
    for (int left = ms; left > 0 && !atomic_load(&st->stop); left -= 20) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static struct timeval tv_ms(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* ---- the state as JSON ---------------------------------------------------- */

/* The value of field `name` in an HGETALL reply, NULL when absent. */
static const char *hfield(const redisReply *h, const char *name)
{
    for (size_t i = 0; h && i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && !strcmp(h->element[i]->str, name) &&
            h->element[i + 1]->type == REDIS_REPLY_STRING)
            return h->element[i + 1]->str;
    return NULL;
}

/* A string member, null when absent or "". */
static json_t *jstr(const redisReply *h, const char *name)
{
    const char *v = hfield(h, name);
    return v && *v ? json_string(v) : json_null();
}

/* A time member from a field of unix ms, null when absent or "". */
static json_t *jtime(const redisReply *h, const char *name)
{
    const char *v = hfield(h, name);
    char buf[40];
    if (!v || !*v)
        return json_null();
    return json_string(rl_clock_format_ms(strtoll(v, NULL, 10), buf, sizeof(buf)));
}

/* The state object of one channel from its hash (HGETALL); NULL on OOM. */
static json_t *state_object(const redisReply *h)
{
    const char *tr = hfield(h, "transitions"), *down = hfield(h, "down");
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "channel_id", jstr(h, "channel_id"));
    json_object_set_new(o, "status", jstr(h, "status"));
    json_object_set_new(o, "since", jtime(h, "since_ms"));
    json_object_set_new(o, "provider", jstr(h, "provider"));
    json_object_set_new(o, "source", jstr(h, "source"));
    json_object_set_new(o, "last_event_id", jstr(h, "last_event_id"));
    json_object_set_new(o, "last_event_type", jstr(h, "last_event_type"));
    json_object_set_new(o, "last_event_at", jtime(h, "occurred_ms"));
    json_object_set_new(o, "reason", jstr(h, "reason"));
    json_object_set_new(o, "error_code", jstr(h, "error_code"));
    json_object_set_new(o, "error_message", jstr(h, "error_message"));
    json_object_set_new(o, "error_category", jstr(h, "error_category"));
    json_object_set_new(o, "transitions", json_integer(tr ? strtoll(tr, NULL, 10) : 0));
    json_object_set_new(o, "down", json_boolean(down && !strcmp(down, "1")));
    json_object_set_new(o, "down_since", jtime(h, "out_since_ms"));
    json_object_set_new(o, "updated_at", jtime(h, "updated_ms"));
    return o;
}

static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* ---- Redis ------------------------------------------------------------------ */

static void redis_drop(rl_state_t *st, const char *why)
{
    if (st->rc) {
        rl_warn("state: Redis: %s; reconnecting", why);
        redisFree(st->rc);
        st->rc = NULL;
    }
    rl_metric_add(st->m_errors, 1);
    rl_metric_set(st->m_redis_up, 0);
    rl_wal_reader_rewind(st->reader);
}

static int redis_up(rl_state_t *st)
{
    char why[256];
    if (st->rc)
        return 0;
    st->rc = rl_redis_connect(&st->target, tv_ms(1000), tv_ms(REDIS_TIMEOUT_MS), why, sizeof(why));
    if (!st->rc) {
        if (!st->logged_down)
            rl_warn("state: cannot reach Redis: %s; retrying (channel state waits in the WAL)",
                    why);
        st->logged_down = 1;
        return -1;
    }
    if (st->logged_down)
        rl_info("state: Redis reachable again");
    st->logged_down = 0;
    rl_backoff_reset(&st->backoff);
    rl_metric_set(st->m_redis_up, 1);
    return 0;
}

/* A reply that is not an error, or NULL (the connection is dropped). */
static redisReply *checked(rl_state_t *st, redisReply *r)
{
    if (!r || r->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof(why), "%s", r ? r->str : st->rc->errstr);
        freeReplyObject(r);
        redis_drop(st, why);
        return NULL;
    }
    return r;
}

/* ---- applying events --------------------------------------------------------- */

typedef struct chan_event {
    char channel[512], id[512], type[128], source[256];
    const char *status, *provider, *reason, *ecode, *emsg, *ecat; /* in the JSON */
    int64_t occurred_ms, received_ms;
} chan_event_t;

static const char *data_str(json_t *data, const char *name)
{
    const char *v = json_string_value(json_object_get(data, name));
    return v ? v : "";
}

/* 1 when the record is a channel event the state follows (filled), else 0. */
static int channel_event(const rl_record_t *rec, json_t **ce, chan_event_t *e)
{
    json_t *data;
    const char *t;

    if (rec->kind != RL_RECORD_EVENT || rec->type_len < 8 || memcmp(rec->type, "channel.", 8) ||
        !rec->channel_id_len || rec->channel_id_len >= sizeof(e->channel) ||
        rec->id_len >= sizeof(e->id) || rec->type_len >= sizeof(e->type) ||
        rec->source_len >= sizeof(e->source))
        return 0;
    snprintf(e->type, sizeof(e->type), "%.*s", (int)rec->type_len, rec->type);
    if (!strcmp(e->type, "channel.down") || !strcmp(e->type, "channel.up"))
        return 0; /* relay's own */
    if (!(*ce = json_loadb(rec->event, rec->event_len, 0, NULL)))
        return 0;
    data = json_object_get(*ce, "data");
    e->status = data_str(data, "status");
    if (!*e->status)
        return 0;
    snprintf(e->channel, sizeof(e->channel), "%.*s", (int)rec->channel_id_len, rec->channel_id);
    snprintf(e->id, sizeof(e->id), "%.*s", (int)rec->id_len, rec->id);
    snprintf(e->source, sizeof(e->source), "%.*s", (int)rec->source_len, rec->source);
    e->provider = json_string_value(json_object_get(*ce, "provider"));
    if (!e->provider)
        e->provider = data_str(data, "provider");
    e->received_ms = (int64_t)rec->received_ms;
    e->reason = data_str(data, "reason");
    e->ecode = data_str(data, "error_code");
    e->emsg = data_str(data, "error_message");
    e->ecat = data_str(data, "error_category");
    t = json_string_value(json_object_get(data, "occurred_at"));
    if (!t || rl_clock_parse_ms(t, 1, &e->occurred_ms) != 0) {
        t = json_string_value(json_object_get(*ce, "time"));
        if (!t || rl_clock_parse_ms(t, 1, &e->occurred_ms) != 0)
            e->occurred_ms = (int64_t)rec->received_ms;
    }
    return 1;
}

/* Runs APPLY for e. 0, or -1 when Redis failed (dropped). */
static int apply(rl_state_t *st, const chan_event_t *e)
{
    char key[KEY_MAX + 512], occ[24], now[24], deb[24], rcv[24];
    snprintf(key, sizeof(key), "%s%s", st->hash_prefix, e->channel);
    snprintf(occ, sizeof(occ), "%lld", (long long)e->occurred_ms);
    snprintf(now, sizeof(now), "%lld", (long long)rl_clock_wall_ms());
    snprintf(deb, sizeof(deb), "%lld", (long long)st->debounce_ms);
    snprintf(rcv, sizeof(rcv), "%lld", (long long)e->received_ms);
    const char *argv[] = {
        "EVAL",  APPLY,   "2",     key,         st->outbox,        e->channel, e->status,
        occ,     e->id,   e->type, e->provider, e->source,         e->reason,  e->ecode,
        e->emsg, e->ecat, now,     deb,         st->status_prefix, rcv};
    redisReply *r =
        checked(st, redisCommandArgv(st->rc, (int)(sizeof(argv) / sizeof(argv[0])), argv, NULL));
    if (!r)
        return -1;
    const char *v = r->type == REDIS_REPLY_ARRAY && r->elements ? r->element[0]->str : "";
    rl_metric_add(!strcmp(v, "stale")       ? st->m_stale
                  : !strcmp(v, "duplicate") ? st->m_dup
                                            : st->m_applied,
                  1);
    freeReplyObject(r);
    return 0;
}

/* One round of the first reader: up to BATCH records, waiting up to wait_ms for
 * the first. Its cursor moves over what Redis took. */
static void apply_batch(rl_state_t *st, int wait_ms)
{
    char errstr[256];
    uint64_t last = 0;
    rl_wal_rec_t rec;

    for (int i = 0; i < BATCH && !atomic_load(&st->stop); i++) {
        int rc = rl_wal_reader_next(st->reader, &rec, i ? 0 : wait_ms, errstr, sizeof(errstr));
        if (rc < 0) {
            rl_warn("state: reading the WAL: %s", errstr);
            rl_wal_reader_rewind(st->reader);
            return;
        }
        if (rc == 0)
            break;
        rl_record_t r;
        json_t *ce = NULL;
        chan_event_t e;
        int take = rl_record_decode(rec.data, rec.len, &r) == 0 && channel_event(&r, &ce, &e);
        int failed = take && apply(st, &e) != 0;
        json_decref(ce);
        if (failed)
            return; /* rewound: read again once Redis is back */
        last = rec.seq;
    }
    if (last)
        rl_wal_reader_commit(st->reader, last);
}

/* ---- the outbox: debounced events ------------------------------------------- */

static rl_field_t sfield(const char *name, const char *v)
{
    if (!v || !*v)
        return (rl_field_t){.name = name, .kind = RL_FIELD_NULL};
    return (rl_field_t){.name = name, .kind = RL_FIELD_STRING, .str = v, .len = strlen(v)};
}

static rl_field_t ifield(const char *name, long long v)
{
    return (rl_field_t){.name = name, .kind = RL_FIELD_INT, .num = v};
}

/* Builds the channel.down or channel.up of one taken timer (e: the CLAIM
 * entry's 14 strings) into evs. 0, or -1 on out-of-memory. */
static int transition_event(const rl_state_t *st, char *const *e, rl_event_list_t *evs)
{
    const char *kind = e[1], *ch = e[2], *since = e[3], *back = e[4];
    int64_t since_ms = strtoll(since, NULL, 10), back_ms = strtoll(back, NULL, 10);
    char t_since[40], t_at[40], t_back[40];
    const char *parts[] = {ch, since, back};
    rl_field_t f[10];
    size_t n = 0;

    rl_clock_format_ms(since_ms, t_since, sizeof(t_since));
    f[n++] = sfield("channel_id", ch);
    f[n++] = sfield("provider", e[6]);
    if (!strcmp(kind, "down")) {
        f[n++] = sfield("status", e[5]);
        f[n++] = sfield("reason", e[8]);
        f[n++] = sfield("error_code", e[9]);
        f[n++] = sfield("error_message", e[10]);
        f[n++] = sfield("error_category", e[11]);
        f[n++] = sfield("down_since", t_since);
        f[n++] = ifield("debounce_seconds", st->debounce_ms / 1000);
        f[n++] = sfield("last_event_id", e[12]);
        rl_clock_format_ms(*e[13] ? strtoll(e[13], NULL, 10) : since_ms + st->debounce_ms, t_at,
                           sizeof(t_at));
        return cu_emit(evs, cu_derive_id("down_", parts, 2), "channel.down", ch, NULL, t_at, f, n);
    }
    rl_clock_format_ms(back_ms, t_back, sizeof(t_back));
    f[n++] = sfield("status", "connected");
    f[n++] = sfield("down_since", t_since);
    f[n++] = sfield("up_at", t_back);
    f[n++] = ifield("down_seconds", (back_ms - since_ms) / 1000);
    f[n++] = ifield("down_ms", back_ms - since_ms);
    return cu_emit(evs, cu_derive_id("up_", parts, 3), "channel.up", ch, NULL, t_back, f, n);
}

/* Appends one taken timer's event and, once durable, removes the timer. */
static void emit_one(rl_state_t *st, const redisReply *entry)
{
    char *e[14], errstr[512];
    rl_event_list_t evs;
    size_t accepted = 0, dups = 0;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 14)
        return;
    for (size_t i = 0; i < 14; i++)
        e[i] = entry->element[i]->type == REDIS_REPLY_STRING ? entry->element[i]->str : "";
    rl_event_list_init(&evs);
    if (!*e[7]) {
        rl_warn("state: channel '%s' has no source; its %s is dropped", e[2], e[1]);
    } else if (transition_event(st, e, &evs) != 0) {
        rl_warn("state: out of memory building channel.%s of '%s'; retried", e[1], e[2]);
        goto out;
    } else if (rl_ingest_emit(st->ig, e[7], &evs, &accepted, &dups, errstr, sizeof(errstr))) {
        rl_warn("state: channel.%s of '%s' not appended: %s; retried after %lld s", e[1], e[2],
                errstr, (long long)(st->lease_ms / 1000));
        rl_metric_add(st->m_errors, 1);
        goto out;
    } else {
        rl_metric_add(!strcmp(e[1], "down") ? st->m_down : st->m_up, accepted);
        rl_info("state: channel '%s' %s%s", e[2], e[1],
                dups ? " (already emitted: a duplicate)" : "");
    }
    /* Durable (or never to be): the timer is done. A crash before this ZREM
     * leaves it leased; it is taken again after the lease, and its event,
     * with the same id, is then a duplicate. */
    freeReplyObject(checked(st, redisCommand(st->rc, "ZREM %s %s", st->outbox, e[0])));
out:
    rl_event_list_clear(&evs);
}

static void run_outbox(rl_state_t *st)
{
    char now[24], lease[24], limit[16];
    snprintf(now, sizeof(now), "%lld", (long long)rl_clock_wall_ms());
    snprintf(lease, sizeof(lease), "%lld", (long long)st->lease_ms);
    snprintf(limit, sizeof(limit), "%d", CLAIM_MAX);
    const char *argv[] = {"EVAL", CLAIM, "1", st->outbox, now, lease, limit, st->hash_prefix};
    redisReply *r = checked(st, redisCommandArgv(st->rc, 8, argv, NULL));
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements && st->rc; i++)
        emit_one(st, r->element[i]);
    freeReplyObject(r);
}

/* ---- the state topic ------------------------------------------------------- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    rl_state_t *st = opaque;
    (void)rk;
    st->kinflight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rl_metric_add(st->m_published, 1);
        return;
    }
    if (m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT &&
        !st->kfailed)
        rl_warn("state: Kafka: %s: %s; published again", st->cfg->state.kafka_topic,
                rd_kafka_err2str(m->err));
    st->kfailed = 1;
}

/* Creates the state topic compacted, unless it exists. 0 once it does. */
static int ensure_topic(rl_state_t *st)
{
    const char *name = st->cfg->state.kafka_topic;
    char errstr[512];
    int rc = -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, -1, -1, errstr, sizeof(errstr));
    rd_kafka_queue_t *q = rd_kafka_queue_new(st->rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(st->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;

    if (!nt || !q || !o ||
        rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact") != RD_KAFKA_RESP_ERR_NO_ERROR)
        goto out;
    /* Short: the thread that waits also runs the debounce, and a stop waits for it. */
    rd_kafka_AdminOptions_set_request_timeout(o, 3000, NULL, 0);
    rd_kafka_AdminOptions_set_operation_timeout(o, 2000, NULL, 0);
    rd_kafka_CreateTopics(st->rk, &nt, 1, o, q);
    ev = rd_kafka_queue_poll(q, 4000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    size_t n = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
    rd_kafka_resp_err_t err = !ev                        ? RD_KAFKA_RESP_ERR__TIMED_OUT
                              : rd_kafka_event_error(ev) ? rd_kafka_event_error(ev)
                              : n == 1                   ? rd_kafka_topic_result_error(tr[0])
                                                         : RD_KAFKA_RESP_ERR__FAIL;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rl_info("state: created the compacted topic %s", name);
        rc = 0;
    } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        rc = 0;
    } else {
        rl_warn("state: cannot create the topic %s: %s; retrying in %d s", name,
                rd_kafka_err2str(err), TOPIC_RETRY_MS / 1000);
    }
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* Publishes the state of `ch` as Redis holds it now. 0, or -1 (Redis dropped). */
static int publish_state(rl_state_t *st, const char *ch)
{
    redisReply *h = checked(st, redisCommand(st->rc, "HGETALL %s%s", st->hash_prefix, ch));
    char *body;
    if (!h)
        return -1;
    if (h->type == REDIS_REPLY_ARRAY && h->elements && (body = dump(state_object(h)))) {
        if (rd_kafka_producev(st->rk, RD_KAFKA_V_TOPIC(st->cfg->state.kafka_topic),
                              RD_KAFKA_V_KEY(ch, strlen(ch)), RD_KAFKA_V_VALUE(body, strlen(body)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END)) {
            free(body);
            st->kfailed = 1;
        } else {
            st->kinflight++;
        }
    }
    freeReplyObject(h);
    return 0;
}

/* One step of the second reader: settles the batch in flight, or starts the
 * next with the records the first reader has applied. */
static void kafka_step(rl_state_t *st)
{
    char errstr[256], chans[BATCH][512];
    size_t nch = 0;
    uint64_t applied = rl_wal_reader_cursor(st->reader), last = 0;
    rl_wal_rec_t rec;

    rd_kafka_poll(st->rk, 0);
    if (st->kbatch_open) {
        if (st->kinflight > 0)
            return;
        if (!st->kfailed)
            rl_wal_reader_commit(st->kreader, st->kbatch_last);
        if (st->kfailed || st->krewind)
            rl_wal_reader_rewind(st->kreader);
        st->kbatch_open = st->kfailed = st->krewind = 0;
        return;
    }
    if (!st->topic_ready) {
        if (rl_clock_mono_ms() < st->next_topic_ms)
            return;
        st->next_topic_ms = rl_clock_mono_ms() + TOPIC_RETRY_MS;
        if (ensure_topic(st) != 0)
            return;
        st->topic_ready = 1;
    }
    for (int i = 0; i < BATCH; i++) {
        int rc = rl_wal_reader_next(st->kreader, &rec, 0, errstr, sizeof(errstr));
        if (rc <= 0)
            break;
        if (rec.seq > applied) { /* not applied yet: read again next time */
            st->krewind = 1;
            break;
        }
        last = rec.seq;
        rl_record_t r;
        json_t *ce = NULL;
        chan_event_t e;
        if (rl_record_decode(rec.data, rec.len, &r) == 0 && channel_event(&r, &ce, &e)) {
            size_t j = 0;
            while (j < nch && strcmp(chans[j], e.channel))
                j++;
            if (j == nch)
                snprintf(chans[nch++], sizeof(chans[0]), "%s", e.channel);
        }
        json_decref(ce);
    }
    for (size_t j = 0; j < nch; j++)
        if (publish_state(st, chans[j]) != 0) {
            st->kfailed = 1;
            break;
        }
    if (!last && !st->krewind)
        return;
    st->kbatch_last = last;
    st->kbatch_open = 1;
    if (!last) /* only a record not applied yet: rewind and wait */
        st->kfailed = 1;
}

/* ---- the thread ------------------------------------------------------------ */

static void *state_main(void *arg)
{
    rl_state_t *st = arg;
    rl_prio_background();
    while (!atomic_load(&st->stop)) {
        if (redis_up(st) != 0) {
            nap(st, rl_backoff_next(&st->backoff));
            continue;
        }
        if (rl_clock_wall_ms() >= st->next_claim_ms) {
            run_outbox(st);
            st->next_claim_ms = rl_clock_wall_ms() + CLAIM_EVERY_MS;
        }
        if (st->rc && st->rk)
            kafka_step(st);
        if (st->rc)
            apply_batch(st, st->kbatch_open ? 10 : 100);
    }
    return NULL;
}

rl_state_t *rl_state_new(const rl_config_t *cfg, rl_wal_t *wal, rl_ingest_t *ig,
                         rl_metrics_t *metrics, char *errstr, size_t errstr_size)
{
    rl_state_t *st = calloc(1, sizeof(*st));
    const char *url = *cfg->state.redis_url ? cfg->state.redis_url : cfg->redis.url;
    int kafka = 0;

    if (!st) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&st->api_mu, NULL);
    st->cfg = cfg;
    st->wal = wal;
    st->ig = ig;
    rl_state_wanted(cfg, &kafka);
    st->debounce_ms = cfg->state.debounce * 1000;
    st->lease_ms = cfg->state.lease * 1000;
    snprintf(st->hash_prefix, sizeof(st->hash_prefix), "%s:", cfg->state.redis_prefix);
    snprintf(st->status_prefix, sizeof(st->status_prefix), "%s.status:", cfg->state.redis_prefix);
    snprintf(st->outbox, sizeof(st->outbox), "%s.outbox", cfg->state.redis_prefix);
    rl_backoff_init(&st->backoff, 100, 5000);
    if (rl_redis_target_parse(&st->target, url, errstr, errstr_size) != 0)
        goto fail;
    if (!(st->reader = rl_wal_reader(wal, RL_STATE_READER))) {
        rl_seterr(errstr, errstr_size, "the WAL has no reader '%s'", RL_STATE_READER);
        goto fail;
    }
    if (kafka) {
        rd_kafka_conf_t *conf = rl_sink_kafka_conf(cfg, errstr, errstr_size);
        if (!(st->kreader = rl_wal_reader(wal, RL_STATE_KAFKA_READER)) || !conf) {
            if (conf)
                rd_kafka_conf_destroy(conf);
            if (!st->kreader)
                rl_seterr(errstr, errstr_size, "the WAL has no reader '%s'", RL_STATE_KAFKA_READER);
            goto fail;
        }
        rd_kafka_conf_set_opaque(conf, st);
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        if (rd_kafka_conf_set(conf, "message.timeout.ms", "30000", errstr, errstr_size) ||
            !(st->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size))) {
            rd_kafka_conf_destroy(conf);
            goto fail;
        }
    }
    static const char ev_help[] = "Channel events the state engine read, by result.",
                      em_help[] = "Debounced channel.down / channel.up events appended.";
    const struct {
        rl_metric_t **m;
        const char *name, *labels, *help;
    } counters[] = {
        {&st->m_applied, "relay_state_events_total", "result=\"applied\"", ev_help},
        {&st->m_stale, "relay_state_events_total", "result=\"stale\"", ev_help},
        {&st->m_dup, "relay_state_events_total", "result=\"duplicate\"", ev_help},
        {&st->m_down, "relay_state_emitted_total", "type=\"down\"", em_help},
        {&st->m_up, "relay_state_emitted_total", "type=\"up\"", em_help},
        {&st->m_errors, "relay_state_errors_total", "",
         "Failed Redis commands or appends (retried)."},
        {&st->m_published, "relay_state_published_total", "",
         "Channel states acknowledged by Kafka on state.kafka_topic."},
    };
    for (size_t i = 0; metrics && i < sizeof(counters) / sizeof(counters[0]); i++)
        *counters[i].m =
            rl_metrics_counter(metrics, counters[i].name, counters[i].labels, counters[i].help);
    if (metrics)
        st->m_redis_up = rl_metrics_gauge(metrics, "relay_state_redis_up", "",
                                          "1 while the state engine is connected to Redis.");
    if (pthread_create(&st->thread, NULL, state_main, st) != 0) {
        rl_seterr(errstr, errstr_size, "cannot start the state thread");
        goto fail;
    }
    pthread_setname_np(st->thread, "rl-state");
    st->started = 1;
    return st;
fail:
    rl_state_destroy(st);
    return NULL;
}

void rl_state_destroy(rl_state_t *st)
{
    if (!st)
        return;
    atomic_store(&st->stop, 1);
    if (st->started)
        pthread_join(st->thread, NULL);
    if (st->rk) {
        rd_kafka_purge(st->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(st->rk, 0);
        rd_kafka_destroy(st->rk);
    }
    if (st->rc)
        redisFree(st->rc);
    if (st->api_rc)
        redisFree(st->api_rc);
    pthread_mutex_destroy(&st->api_mu);
    free(st);
}

/* ---- the HTTP API -------------------------------------------------------------- */

static int api_error(char **body, int status, const char *code, const char *message)
{
    json_t *o = json_pack("{s:s,s:s}", "error", code, "message", message);
    *body = dump(o);
    return status;
}

/* The API's connection, (re)opened as needed; call under api_mu. */
static redisContext *api_conn(rl_state_t *st)
{
    char why[256];
    if (!st->api_rc)
        st->api_rc = rl_redis_connect(&st->target, tv_ms(API_TIMEOUT_MS), tv_ms(API_TIMEOUT_MS),
                                      why, sizeof(why));
    return st->api_rc;
}

/* A reply, or NULL (the connection dropped); call under api_mu. */
static redisReply *api_reply(rl_state_t *st, redisReply *r)
{
    if (!r || r->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        redisFree(st->api_rc);
        st->api_rc = NULL;
        return NULL;
    }
    return r;
}

int rl_state_get(rl_state_t *st, const char *channel_id, char **body)
{
    redisReply *h = NULL;
    int status;

    pthread_mutex_lock(&st->api_mu);
    if (api_conn(st))
        h = api_reply(st, redisCommand(st->api_rc, "HGETALL %s%s", st->hash_prefix, channel_id));
    pthread_mutex_unlock(&st->api_mu);
    if (!h)
        status = api_error(body, 503, "state_unavailable", "Redis cannot be reached");
    else if (h->type != REDIS_REPLY_ARRAY || !h->elements)
        status = api_error(body, 404, "unknown_channel", "relay has no state for this channel");
    else
        status = (*body = dump(state_object(h))) ? 200 : 500;
    freeReplyObject(h);
    return status;
}

int rl_state_list(rl_state_t *st, const char *status, long offset, long limit, char **body)
{
    redisReply *total = NULL, *ids = NULL, **hs = NULL;
    json_t *o = NULL, *arr = NULL;
    int rc;

    if (limit > LIST_MAX)
        limit = LIST_MAX;
    pthread_mutex_lock(&st->api_mu);
    if (!api_conn(st))
        goto unlocked;
    total = api_reply(st, redisCommand(st->api_rc, "ZCARD %s%s", st->status_prefix, status));
    if (total)
        ids = api_reply(st, redisCommand(st->api_rc, "ZRANGE %s%s %ld %ld", st->status_prefix,
                                         status, offset, offset + limit - 1));
    if (ids && ids->type == REDIS_REPLY_ARRAY && ids->elements &&
        (hs = calloc(ids->elements, sizeof(*hs)))) {
        for (size_t i = 0; i < ids->elements; i++)
            redisAppendCommand(st->api_rc, "HGETALL %s%s", st->hash_prefix, ids->element[i]->str);
        for (size_t i = 0; i < ids->elements && st->api_rc; i++) {
            void *r = NULL;
            if (redisGetReply(st->api_rc, &r) != REDIS_OK)
                r = NULL;
            hs[i] = api_reply(st, r);
        }
    }
unlocked:
    pthread_mutex_unlock(&st->api_mu);
    if (!total || !ids || (ids->elements && (!hs || !hs[ids->elements - 1]))) {
        rc = api_error(body, 503, "state_unavailable", "Redis cannot be reached");
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; arr && i < ids->elements; i++)
        if (hs[i]->type == REDIS_REPLY_ARRAY && hs[i]->elements)
            json_array_append_new(arr, state_object(hs[i]));
    o = json_pack("{s:s,s:I,s:I,s:o}", "status", status, "total", (json_int_t)total->integer,
                  "offset", (json_int_t)offset, "channels", arr);
    rc = (*body = dump(o)) ? 200 : 500;
out:
    for (size_t i = 0; hs && i < ids->elements; i++)
        freeReplyObject(hs[i]);
    free(hs);
    freeReplyObject(ids);
    freeReplyObject(total);
    return rc;
}
