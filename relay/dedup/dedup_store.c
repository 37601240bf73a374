/* dedup_store.c -- see dedup_store.h for what is guaranteed and why.
 *
 * Locking: `lock` guards the window and the set of ids in flight to Redis. A claim and
 * its WAL append happen under it in one step, so "in the window" implies "appended": a
 * retry that finds its id there can wait for a WAL barrier and know the original is
 * durable. With store = redis the Redis round trip happens outside the lock; the ids of
 * a request are "in flight" meanwhile, and a concurrent request for one of them waits
 * until they have landed, then finds them in the window (one accepted, one duplicate).
 * The persister never takes the lock: it reads the WAL and writes the file. */
#include "dedup_store.h"

#include "array.h"
#include "dedup.h"
#include "dedup_file.h"
#include "bytes.h"
#include "dedup_redis.h"
#include "clock.h"
#include "log.h"
#include "record.h"
#include "prio.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define DS_READER "dedup" /* the WAL reader of the persister */
#define DS_BATCH 4096     /* records the persister writes per round */
#define DS_WAIT_MS 200    /* the persister's wait for new records */
#define DS_RETRY_MS 1000  /* pause after a failed write before trying again */
#define DS_COMPACT_EVERY_MS 5000
/* Under load the persister writes at most one round per DS_ROUND_MS: each round
 * costs two fsyncs, and the ids can wait (the WAL keeps their events, and a
 * restart rebuilds from it), while the disk serves the WAL's group commits.
 * Short enough for a shared window's claims: another instance re-checks a
 * pending id for about 250 ms. */
#define DS_ROUND_MS 50

/* Re-checks of an id another instance holds pending: its owner normally confirms within
 * milliseconds of its fsync. About 250 ms in all, then 503. */
static const int recheck_ms[] = {10, 20, 40, 80, 100};

struct rl_dstore {
    pthread_mutex_t lock;  /* window + in flight */
    pthread_cond_t landed; /* ids left the in-flight set */
    rl_dedup_t *win;
    uint64_t window;           /* seconds */
    rl_dedup_digest_t *flight; /* ids being claimed in Redis */
    size_t nflight, capflight;

    rl_wal_t *wal;
    int hwm_fd;              /* dir/hwm: see hwm_write (-1: none) */
    uint64_t hwm;            /* its value */
    int fsync;               /* wal.fsync */
    rl_wal_reader_t *reader; /* NULL: nothing persisted */
    rl_dfile_t *file;
    uint64_t cursor0;          /* WAL records up to here were in the file at start-up */
    rl_dedup_hasher_t *hasher; /* the persister's own */
    pthread_t thread;
    int started;
    _Atomic int stop;

    rl_dredis_t *redis; /* NULL: store = local */

    _Atomic uint64_t file_bytes;
    rl_metrics_t *metrics; /* where render() is hooked, NULL without metrics */
    rl_metric_t *m_entries, *m_evicted, *m_memory, *m_file_bytes, *m_redis_up, *m_fallback,
        *m_pending, *m_contended, *m_unconfirmed, *m_persist_errors;
};

static uint64_t wall_now(void)
{
    return (uint64_t)(rl_clock_wall_ms() / 1000);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------ in flight -- */

static int flight_find(const rl_dstore_t *ds, const rl_dedup_digest_t *dg)
{
    for (size_t i = 0; i < ds->nflight; i++)
        if (ds->flight[i].k[0] == dg->k[0] && ds->flight[i].k[1] == dg->k[1])
            return (int)i;
    return -1;
}

static int flight_add(rl_dstore_t *ds, const rl_dedup_digest_t *dg)
{
    rl_dedup_digest_t *v =
        rl_array_grow(ds->flight, &ds->capflight, ds->nflight + 1, sizeof(*v), 64);

    if (!v)
        return -1;
    ds->flight = v;
    ds->flight[ds->nflight++] = *dg;
    return 0;
}

static void flight_remove(rl_dstore_t *ds, const rl_dedup_digest_t *dg)
{
    int i = flight_find(ds, dg);
    if (i >= 0)
        ds->flight[i] = ds->flight[--ds->nflight];
}

/* ----------------------------------------------------------- persister -- */

/* One round's records, and their keys for the Redis confirmation (copied: a WAL record is
 * valid only until the next read). */
typedef struct batch {
    rl_dfile_rec_t recs[DS_BATCH];
    rl_dredis_key_t keys[DS_BATCH];
    uint64_t ttl_ms[DS_BATCH];
    size_t off[DS_BATCH]; /* where keys[i]'s source starts in text */
    char *text;           /* source and id bytes of every key */
    size_t ntext, captext;
} batch_t;

static int batch_keep(batch_t *b, size_t i, const rl_record_t *rec, const char *id, size_t id_len)
{
    size_t need = rec->source_len + id_len;
    char *t = rl_array_grow(b->text, &b->captext, b->ntext + need, 1, 64 * 1024);

    if (!t)
        return -1;
    b->text = t;
    /* Offsets now, pointers once the buffer stops moving (batch_keys). */
    memcpy(b->text + b->ntext, rec->source, rec->source_len);
    memcpy(b->text + b->ntext + rec->source_len, id, id_len);
    b->off[i] = b->ntext;
    b->keys[i] = (rl_dredis_key_t){
        .source = NULL, .id = NULL, .source_len = rec->source_len, .id_len = id_len};
    b->ntext += need;
    return 0;
}

static void batch_keys(batch_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        b->keys[i].source = b->text + b->off[i];
        b->keys[i].id = b->text + b->off[i] + b->keys[i].source_len;
    }
}

/* Reads up to DS_BATCH durable records into b. Returns how many, or -1 on a read error;
 * *last gets the last sequence number read (records out of the window or malformed are
 * passed over but still counted as read). */
static long persist_read(rl_dstore_t *ds, batch_t *b, uint64_t *last)
{
    char errstr[256];
    rl_wal_rec_t wr;
    size_t n = 0;
    int k = 0;

    b->ntext = 0;
    *last = 0;
    while (n < DS_BATCH && (k = rl_wal_reader_next(ds->reader, &wr, *last ? 0 : DS_WAIT_MS, errstr,
                                                   sizeof(errstr))) > 0) {
        rl_record_t rec;
        *last = wr.seq;
        if (rl_record_decode(wr.data, wr.len, &rec) != 0)
            continue; /* the sinks count it; there is no id to remember */
        /* The clock is read after the wait for the record, so that the rest of its
         * window is never longer than the window. */
        uint64_t now_ms = (uint64_t)rl_clock_wall_ms();
        uint64_t t = rec.received_ms / 1000, end_ms = rec.received_ms + ds->window * 1000;
        if (end_ms <= now_ms)
            continue;
        char idbuf[512], *owned;
        size_t id_len;
        const char *id = rl_record_dedup_id(&rec, idbuf, sizeof(idbuf), &id_len, &owned);
        if (!id ||
            rl_dedup_hash(ds->hasher, rec.source, rec.source_len, id, id_len, &b->recs[n].dg) !=
                0 ||
            (ds->redis && batch_keep(b, n, &rec, id, id_len) != 0)) {
            free(owned);
            rl_error("dedup: cannot hash or keep WAL record %llu; retrying",
                     (unsigned long long)wr.seq);
            return -1;
        }
        free(owned);
        b->recs[n].t = (uint32_t)t;
        b->ttl_ms[n] = end_ms - now_ms; /* the rest of its window */
        n++;
    }
    if (k < 0) {
        rl_error("dedup: reading the WAL: %s", errstr);
        return -1;
    }
    return (long)n;
}

/* The high-water mark: the last WAL seq whose id may be in the file. u64 + crc32,
 * fsynced (with wal.fsync) before the ids it covers are appended. */
static int hwm_write(rl_dstore_t *ds, uint64_t seq)
{
    uint8_t b[12];
    if (ds->hwm_fd < 0 || seq <= ds->hwm)
        return 0;
    put64(b, seq);
    put32(b + 8, (uint32_t)crc32(0L, b, 8));
    if (pwrite(ds->hwm_fd, b, sizeof(b), 0) != (ssize_t)sizeof(b) ||
        (ds->fsync && fdatasync(ds->hwm_fd) != 0))
        return -1;
    ds->hwm = seq;
    return 0;
}

static uint64_t hwm_read(int fd)
{
    uint8_t b[12];
    if (fd < 0 || pread(fd, b, sizeof(b), 0) != (ssize_t)sizeof(b) ||
        (uint32_t)crc32(0L, b, 8) != get32(b + 8))
        return 0;
    return get64(b);
}

static void *persist_main(void *arg)
{
    rl_dstore_t *ds = arg;

    pthread_setname_np(pthread_self(), "rl-dedup"); /* top -H, perf */
    rl_prio_background();
    batch_t *b = calloc(1, sizeof(*b));
    char errstr[256];
    uint64_t idle_ms = 0;

    if (!b) {
        rl_error("dedup: out of memory: the window is not persisted (the WAL keeps everything)");
        return NULL;
    }
    while (!atomic_load(&ds->stop)) {
        uint64_t last;
        long n = persist_read(ds, b, &last);
        int64_t round_start = rl_clock_mono_ms();
        uint64_t now = wall_now();
        if (n < 0) {
            rl_metric_add(ds->m_persist_errors, 1);
            rl_wal_reader_rewind(ds->reader);
            sleep_ms(DS_RETRY_MS);
            continue;
        }
        if (!last) {
            /* Quiet: compact now and then, and notice a Redis that came back. */
            idle_ms += DS_WAIT_MS;
            if (idle_ms >= DS_COMPACT_EVERY_MS) {
                idle_ms = 0;
                rl_dfile_append(ds->file, NULL, 0, now, errstr, sizeof(errstr));
                atomic_store(&ds->file_bytes, rl_dfile_bytes(ds->file));
            }
            if (ds->redis)
                rl_dredis_probe(ds->redis);
            continue;
        }
        /* Confirm first: another instance may be waiting on these ids. At worst (Redis
         * down) the claims expire and the local window still knows the ids. */
        if (ds->redis && n > 0) {
            batch_keys(b, (size_t)n);
            if (!rl_dredis_up(ds->redis) ||
                rl_dredis_confirm(ds->redis, b->keys, b->ttl_ms, (size_t)n) != 0)
                rl_metric_add(ds->m_unconfirmed, (uint64_t)n);
        }
        /* Before the ids can be in the file, say up to which WAL record they may
         * go: the cursor (persisted lazily by the WAL) can lag the file, and start-up
         * needs the larger of the two to forget ids of a torn-away WAL tail. */
        if (n > 0 && hwm_write(ds, last) != 0)
            rl_metric_add(ds->m_persist_errors, 1);
        if (rl_dfile_append(ds->file, b->recs, (size_t)n, now, errstr, sizeof(errstr)) != 0) {
            /* The cursor stays, so the WAL keeps these events (and their ids) until a
             * later round writes them. */
            rl_error("dedup: %s; retrying (the WAL keeps the events meanwhile)", errstr);
            rl_metric_add(ds->m_persist_errors, 1);
            rl_wal_reader_rewind(ds->reader);
            sleep_ms(DS_RETRY_MS);
            continue;
        }
        rl_wal_reader_commit(ds->reader, last);
        atomic_store(&ds->file_bytes, rl_dfile_bytes(ds->file));
        if (n == DS_BATCH) /* behind: no pause until it has caught up */
            continue;
        int64_t spent = rl_clock_mono_ms() - round_start;
        if (spent < DS_ROUND_MS && !atomic_load(&ds->stop))
            sleep_ms((int)(DS_ROUND_MS - spent));
    }
    free(b->text);
    free(b);
    return NULL;
}

/* ------------------------------------------------------------- start-up -- */

static void load_one(void *arg, const rl_dfile_rec_t *rec)
{
    rl_dedup_claim_digest(arg, &rec->dg, rec->t);
}

typedef struct rebuild {
    rl_dstore_t *ds;
    uint64_t now;
    long n;
} rebuild_t;

static void rebuild_one(void *arg, uint64_t seq, const uint8_t *payload, size_t len)
{
    rebuild_t *rb = arg;
    rl_dstore_t *ds = rb->ds;
    rl_dedup_digest_t dg;
    rl_record_t rec;

    if (seq <= ds->cursor0 || rl_record_decode(payload, len, &rec) != 0)
        return;
    uint64_t at = rec.received_ms / 1000;
    if (at + ds->window <= rb->now)
        return; /* its window has passed */
    /* The window's own hasher: the lock is held. */
    char idbuf[512], *owned;
    size_t id_len;
    const char *id = rl_record_dedup_id(&rec, idbuf, sizeof(idbuf), &id_len, &owned);
    if (id && rl_dedup_digest(ds->win, rec.source, rec.source_len, id, id_len, &dg) == 0 &&
        rl_dedup_claim_digest(ds->win, &dg, at) == 1)
        rb->n++;
    free(owned);
}

long rl_dstore_rebuild(rl_dstore_t *ds, char *errstr, size_t errstr_size)
{
    rebuild_t rb = {.ds = ds, .now = wall_now(), .n = 0};
    int rc = 0;

    if (!ds->wal)
        return 0;
    pthread_mutex_lock(&ds->lock);
    rc = rl_wal_scan(ds->wal, ds->cursor0 + 1, rebuild_one, &rb, errstr, errstr_size);
    pthread_mutex_unlock(&ds->lock);
    return rc == 0 ? rb.n : -1;
}

static void render(void *arg)
{
    rl_dstore_t *ds = arg;

    pthread_mutex_lock(&ds->lock);
    rl_metric_set(ds->m_entries, (int64_t)rl_dedup_count(ds->win));
    rl_metric_set(ds->m_evicted, (int64_t)rl_dedup_evicted(ds->win));
    rl_metric_set(ds->m_memory, (int64_t)rl_dedup_memory(ds->win));
    pthread_mutex_unlock(&ds->lock);
    rl_metric_set(ds->m_file_bytes, (int64_t)atomic_load(&ds->file_bytes));
    if (ds->redis)
        rl_metric_set(ds->m_redis_up, rl_dredis_up(ds->redis));
}

static void register_metrics(rl_dstore_t *ds, rl_metrics_t *m)
{
    if (!m)
        return;
    ds->m_entries = rl_metrics_gauge(m, "relay_dedup_entries", "",
                                     "(source, id) pairs remembered for deduplication.");
    /* A counter: the window's eviction count only grows (set at each scrape). */
    ds->m_evicted =
        rl_metrics_counter(m, "relay_dedup_evicted_total", "",
                           "Ids forgotten before their window ended (dedup.max_entries).");
    ds->m_memory = rl_metrics_gauge(m, "relay_dedup_memory_bytes", "",
                                    "Bytes allocated by the in-memory dedup window.");
    ds->m_file_bytes = rl_metrics_gauge(m, "relay_dedup_file_bytes", "",
                                        "Bytes of the dedup window's file (wal.dir/dedup).");
    ds->m_persist_errors = rl_metrics_counter(
        m, "relay_dedup_persist_errors_total", "",
        "Failed reads of the WAL or writes of the dedup file (retried; the WAL keeps the ids).");
    if (ds->redis) {
        ds->m_redis_up = rl_metrics_gauge(m, "relay_dedup_redis_up", "",
                                          "1 while the shared dedup window in Redis answers.");
        ds->m_fallback = rl_metrics_counter(
            m, "relay_dedup_redis_fallback_total", "",
            "Events decided on the local window alone because Redis did not answer.");
        ds->m_contended = rl_metrics_counter(
            m, "relay_dedup_contended_total", "",
            "Events another instance held pending at first look (re-checked before answering).");
        ds->m_pending = rl_metrics_counter(
            m, "relay_dedup_pending_total", "",
            "Events answered 503 because another instance held an unconfirmed claim.");
        ds->m_unconfirmed = rl_metrics_counter(
            m, "relay_dedup_unconfirmed_total", "",
            "Durable events whose claim could not be marked done in Redis (Redis down).");
    }
    ds->metrics = m;
    rl_metrics_on_render(m, render, ds);
}

/* Opens the file, makes the window with its key and loads it. */
static int open_file(rl_dstore_t *ds, const rl_config_t *cfg, char *errstr, size_t errstr_size)
{
    char dir[4096];
    rl_dfile_opts_t fo = {.dir = dir,
                          .window_s = (uint64_t)cfg->dedup.window,
                          .max_entries = (uint64_t)cfg->dedup.max_entries,
                          .segment_records = 0,
                          .fsync = (int)cfg->wal.fsync};
    int64_t t0;

    snprintf(dir, sizeof(dir), "%s/dedup", cfg->wal.dir);
    if (!(ds->file = rl_dfile_open(&fo, errstr, errstr_size)) ||
        !(ds->win = rl_dedup_new_keyed((uint32_t)cfg->dedup.window, (size_t)cfg->dedup.max_entries,
                                       rl_dfile_key(ds->file), errstr, errstr_size)) ||
        !(ds->hasher = rl_dedup_hasher_new(rl_dfile_key(ds->file), errstr, errstr_size)))
        return -1;
    /* The persister records what the WAL made durable. If recovery found the WAL
     * ending before the persister's cursor (a torn tail), the newest ids in the file
     * belong to records that are gone: forget them (at most that many), or the
     * provider's retry of a lost event would be answered as a duplicate. */
    char hpath[4200];
    snprintf(hpath, sizeof(hpath), "%s/hwm", dir);
    ds->hwm_fd = open(hpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ds->fsync = (int)cfg->wal.fsync;
    ds->hwm = hwm_read(ds->hwm_fd);
    uint64_t cur = rl_wal_reader_cursor(ds->reader), kept = rl_wal_recovered_seq(ds->wal);
    if (ds->hwm > cur)
        cur = ds->hwm;
    if (!rl_dfile_fresh(ds->file) && cur > kept) {
        rl_warn("dedup: the WAL ends at %llu but ids up to %llu were recorded: forgetting the "
                "newest %llu",
                (unsigned long long)kept, (unsigned long long)cur,
                (unsigned long long)(cur - kept));
        if (rl_dfile_forget_last(ds->file, cur - kept, errstr, errstr_size) != 0)
            return -1;
    }
    t0 = rl_clock_mono_ms();
    long n = rl_dfile_load(ds->file, wall_now(), load_one, ds->win, errstr, errstr_size);
    if (n < 0)
        return -1;
    /* A new key means the file holds nothing (first start, or its directory was lost):
     * the whole WAL must be read again at rebuild. */
    ds->cursor0 = rl_dfile_fresh(ds->file) ? 0 : rl_wal_reader_cursor(ds->reader);
    atomic_store(&ds->file_bytes, rl_dfile_bytes(ds->file));
    rl_info("dedup: %ld ids remembered from %s (%zu segments, %llu bytes) in %ld ms", n, dir,
            rl_dfile_segments(ds->file), (unsigned long long)rl_dfile_bytes(ds->file),
            (long)(rl_clock_mono_ms() - t0));
    return 0;
}

rl_dstore_t *rl_dstore_new(const rl_config_t *cfg, rl_wal_t *wal, rl_metrics_t *metrics,
                           char *errstr, size_t errstr_size)
{
    rl_dstore_t *ds = calloc(1, sizeof(*ds));
    int ok = 0;

    if (!ds) {
        rl_seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&ds->lock, NULL);
    rl_cond_init(&ds->landed);
    ds->window = (uint64_t)cfg->dedup.window;
    ds->wal = wal;
    ds->hwm_fd = -1;
    ds->reader = wal ? rl_wal_reader(wal, DS_READER) : NULL;
    if (ds->reader) {
        if (open_file(ds, cfg, errstr, errstr_size) != 0)
            goto out;
    } else if (!(ds->win = rl_dedup_new((uint32_t)cfg->dedup.window, (size_t)cfg->dedup.max_entries,
                                        errstr, errstr_size))) {
        goto out;
    }
    if (!strcmp(cfg->dedup.store, "redis")) {
        rl_dredis_opts_t ro = {.url = *cfg->dedup.redis_url ? cfg->dedup.redis_url : cfg->redis.url,
                               .prefix = cfg->dedup.redis_prefix,
                               .timeout_ms = (int)cfg->dedup.redis_timeout_ms,
                               .pending_ttl_ms = (uint64_t)cfg->dedup.pending_ttl * 1000,
                               .pool = (size_t)cfg->http.threads + 1};
        if (!(ds->redis = rl_dredis_new(&ro, errstr, errstr_size)))
            goto out;
        rl_info("dedup: window shared through Redis (keys %s{source}:{id}, timeout %d ms, "
                "pending claims expire after %lld s)",
                cfg->dedup.redis_prefix, ro.timeout_ms, cfg->dedup.pending_ttl);
    }
    register_metrics(ds, metrics);
    if (ds->reader) {
        if (pthread_create(&ds->thread, NULL, persist_main, ds) != 0) {
            rl_seterr(errstr, errstr_size, "cannot start the dedup persister thread");
            goto out;
        }
        ds->started = 1;
    }
    ok = 1;
out:
    if (!ok) {
        rl_dstore_destroy(ds);
        ds = NULL;
    }
    return ds;
}

void rl_dstore_destroy(rl_dstore_t *ds)
{
    if (!ds)
        return;
    rl_metrics_off_render(ds->metrics, render, ds); /* before anything it reads goes */
    if (ds->started) {
        atomic_store(&ds->stop, 1);
        rl_wal_wakeup(ds->wal);
        pthread_join(ds->thread, NULL);
    }
    rl_dfile_close(ds->file);
    if (ds->hwm_fd >= 0)
        close(ds->hwm_fd);
    rl_dedup_hasher_destroy(ds->hasher);
    rl_dredis_destroy(ds->redis);
    rl_dedup_destroy(ds->win);
    free(ds->flight);
    pthread_cond_destroy(&ds->landed);
    pthread_mutex_destroy(&ds->lock);
    free(ds);
}

/* ---------------------------------------------------------------- claim -- */

/* store = local: claims and commit in one step under the lock. */
static int claim_local(rl_dstore_t *ds, const rl_dedup_digest_t *dg, const int *hashed, size_t n,
                       uint64_t now, int *verdict, rl_dstore_commit_fn commit, void *arg)
{
    char *claimed = calloc(n, 1);
    int rc;

    if (!claimed)
        return -1;
    for (size_t i = 0; i < n; i++) {
        /* An id that could not be hashed is taken: better twice than never. */
        int r = hashed[i] ? rl_dedup_claim_digest(ds->win, &dg[i], now) : -1;
        verdict[i] = r == 0 ? RL_DS_DUP : RL_DS_NEW;
        claimed[i] = r == 1;
    }
    rc = commit(arg, verdict, n);
    if (rc != 0)
        for (size_t i = 0; i < n; i++)
            if (claimed[i])
                rl_dedup_release_digest(ds->win, &dg[i]);
    free(claimed);
    return rc;
}

/* Asks Redis about the ids marked ask[i] (keys[i]), re-checking pending ones for a
 * while. Fills remote[i] (RL_DR_*); where Redis cannot answer at the first look,
 * RL_DR_OWN with fell[i] set (decided on the local window alone). */
static void ask_redis(rl_dstore_t *ds, const rl_dredis_key_t *keys, const char *ask, size_t n,
                      int *remote, char *fell)
{
    size_t contended = 0;
    rl_dredis_key_t *sub = malloc(n * sizeof(*sub));
    size_t *where = malloc(n * sizeof(*where));
    int *v = malloc(n * sizeof(*v));
    size_t m = 0, round = 0;

    for (size_t i = 0; i < n; i++)
        remote[i] = ask[i] ? RL_DR_PENDING : RL_DR_DONE;
    if (!sub || !where || !v) {
        for (size_t i = 0; i < n; i++)
            if (ask[i])
                remote[i] = RL_DR_OWN, fell[i] = 1;
        goto out;
    }
    for (;;) {
        m = 0;
        for (size_t i = 0; i < n; i++)
            if (ask[i] && remote[i] == RL_DR_PENDING) {
                where[m] = i;
                sub[m++] = keys[i];
            }
        if (m == 0)
            break;
        if (round > 0) {
            if (round > sizeof(recheck_ms) / sizeof(recheck_ms[0]))
                break; /* still pending: the caller answers 503 */
            sleep_ms(recheck_ms[round - 1]);
        }
        round++;
        if (rl_dredis_claim(ds->redis, sub, m, v) != 0) {
            /* Degraded: the local window decides alone what Redis never answered for.
             * Ids another instance was seen holding stay pending (503): taking them too
             * would publish them twice while that instance may be fine. */
            for (size_t j = 0; round == 1 && j < m; j++)
                remote[where[j]] = RL_DR_OWN, fell[where[j]] = 1;
            break;
        }
        for (size_t j = 0; j < m; j++) {
            remote[where[j]] = v[j];
            contended += round == 1 && v[j] == RL_DR_PENDING;
        }
    }
    rl_metric_add(ds->m_contended, contended);
out:
    free(sub);
    free(where);
    free(v);
}

/* The scratch of one claim_shared call, one entry per id. */
typedef struct shared_claim {
    rl_dredis_key_t *keys; /* the ids asked of Redis */
    int *remote;           /* Redis's answer (RL_DR_...) */
    char *ask;             /* 1: asked of Redis (in flight here meanwhile) */
    char *fell;            /* 1: Redis did not answer; decided on the local window */
    char *claimed;         /* 1: claimed in the local window by this call */
    size_t nfell, npending, nrelease;
} shared_claim_t;

static void shared_claim_free(shared_claim_t *sc)
{
    free(sc->keys);
    free(sc->remote);
    free(sc->ask);
    free(sc->fell);
    free(sc->claimed);
}

/* Under the lock: waits until no other request has one of these ids in
 * flight, decides what the local window knows, and marks the rest in flight
 * and to be asked of Redis. */
static void shared_look_local(rl_dstore_t *ds, shared_claim_t *sc, const char *source,
                              const char *const *ids, const rl_dedup_digest_t *dg,
                              const int *hashed, size_t n, uint64_t now, int *verdict)
{
    /* Nothing of ours is in flight yet, so two requests never wait on each other. */
    for (size_t i = 0; i < n; i++) {
        if (hashed[i] && flight_find(ds, &dg[i]) >= 0) {
            pthread_cond_wait(&ds->landed, &ds->lock);
            i = (size_t)-1; /* look at all of them again */
        }
    }
    for (size_t i = 0; i < n; i++) {
        verdict[i] = RL_DS_NEW;
        if (!hashed[i])
            continue; /* taken, as in claim_local */
        if (rl_dedup_contains(ds->win, &dg[i], now) || flight_find(ds, &dg[i]) >= 0) {
            verdict[i] = RL_DS_DUP; /* known here, or twice in this request */
            continue;
        }
        if (flight_add(ds, &dg[i]) != 0)
            continue; /* out of memory: decided locally afterwards */
        sc->ask[i] = 1;
        sc->keys[i] = (rl_dredis_key_t){
            .source = source, .id = ids[i], .source_len = strlen(source), .id_len = strlen(ids[i])};
    }
}

/* Under the lock, once Redis answered (or did not): the verdicts, and the
 * local window claims that go with them. */
static void shared_decide(rl_dstore_t *ds, shared_claim_t *sc, const rl_dedup_digest_t *dg,
                          const int *hashed, size_t n, uint64_t now, int *verdict)
{
    for (size_t i = 0; i < n; i++) {
        if (!sc->ask[i]) {
            if (hashed[i] && verdict[i] == RL_DS_NEW &&
                rl_dedup_claim_digest(ds->win, &dg[i], now) == 0)
                verdict[i] = RL_DS_DUP;
            sc->claimed[i] = hashed[i] && verdict[i] == RL_DS_NEW;
            continue;
        }
        flight_remove(ds, &dg[i]);
        sc->nfell += (size_t)sc->fell[i];
        if (sc->remote[i] == RL_DR_PENDING) {
            verdict[i] = RL_DS_PENDING;
            sc->npending++;
            continue;
        }
        /* Done elsewhere: remembered here too, so its next retry needs no round trip. */
        int r = rl_dedup_claim_digest(ds->win, &dg[i], now);
        verdict[i] = sc->remote[i] == RL_DR_OWN && r == 1 ? RL_DS_NEW : RL_DS_DUP;
        sc->claimed[i] = verdict[i] == RL_DS_NEW;
    }
    pthread_cond_broadcast(&ds->landed);
}

/* Under the lock, when the commit failed: the local claims are released, and
 * the Redis claims that were made are collected in keys[0..nrelease) to be
 * released once the lock is dropped. */
static void shared_undo(rl_dstore_t *ds, shared_claim_t *sc, const rl_dedup_digest_t *dg, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!sc->claimed[i])
            continue;
        rl_dedup_release_digest(ds->win, &dg[i]);
        if (sc->ask[i] && !sc->fell[i])
            sc->keys[sc->nrelease++] = sc->keys[i];
    }
}

/* store = redis: the local window first, then one pipelined round trip for
 * the ids it does not know, then the commit under the lock. */
static int claim_shared(rl_dstore_t *ds, const char *source, const char *const *ids,
                        const rl_dedup_digest_t *dg, const int *hashed, size_t n, uint64_t now,
                        int *verdict, rl_dstore_commit_fn commit, void *arg)
{
    shared_claim_t sc = {.keys = calloc(n, sizeof(*sc.keys)),
                         .remote = calloc(n, sizeof(*sc.remote)),
                         .ask = calloc(n, 1),
                         .fell = calloc(n, 1),
                         .claimed = calloc(n, 1)};
    int rc = -1;

    if (!sc.keys || !sc.remote || !sc.ask || !sc.fell || !sc.claimed)
        goto out;
    pthread_mutex_lock(&ds->lock);
    shared_look_local(ds, &sc, source, ids, dg, hashed, n, now, verdict);
    pthread_mutex_unlock(&ds->lock);

    ask_redis(ds, sc.keys, sc.ask, n, sc.remote, sc.fell);

    pthread_mutex_lock(&ds->lock);
    shared_decide(ds, &sc, dg, hashed, n, now, verdict);
    rc = commit(arg, verdict, n);
    if (rc != 0)
        shared_undo(ds, &sc, dg, n);
    pthread_mutex_unlock(&ds->lock);
    rl_metric_add(ds->m_fallback, sc.nfell);
    rl_metric_add(ds->m_pending, sc.npending);
    /* Not appended: let the retry through now rather than after pending_ttl. */
    if (sc.nrelease)
        rl_dredis_release(ds->redis, sc.keys, sc.nrelease);
out:
    shared_claim_free(&sc);
    return rc;
}

int rl_dstore_claim(rl_dstore_t *ds, const char *source, const char *const *ids, size_t n,
                    uint64_t now, int *verdict, rl_dstore_commit_fn commit, void *arg)
{
    rl_dedup_digest_t *dg = malloc((n ? n : 1) * sizeof(*dg));
    int *hashed = calloc(n ? n : 1, sizeof(*hashed));
    int rc = -1;

    if (!dg || !hashed)
        goto out;
    pthread_mutex_lock(&ds->lock);
    for (size_t i = 0; i < n; i++)
        hashed[i] =
            rl_dedup_digest(ds->win, source, strlen(source), ids[i], strlen(ids[i]), &dg[i]) == 0;
    if (!ds->redis)
        rc = claim_local(ds, dg, hashed, n, now, verdict, commit, arg);
    pthread_mutex_unlock(&ds->lock);
    if (ds->redis)
        rc = claim_shared(ds, source, ids, dg, hashed, n, now, verdict, commit, arg);
out:
    free(dg);
    free(hashed);
    return rc;
}

void rl_dstore_release(rl_dstore_t *ds, const char *source, const char *const *ids, size_t n)
{
    pthread_mutex_lock(&ds->lock);
    for (size_t i = 0; i < n; i++)
        rl_dedup_release(ds->win, source, ids[i]);
    pthread_mutex_unlock(&ds->lock);
}

const char *rl_dstore_state(const rl_dstore_t *ds)
{
    if (!ds->redis)
        return "local";
    return rl_dredis_up(ds->redis) ? "redis" : "degraded";
}
