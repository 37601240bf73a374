/* test_wal.c -- the write-ahead log (relay/wal/wal.c), tested against wal.h.
 *
 * Every test gets its own directory (mkdtemp under /tmp), removed afterwards.
 * Nothing here waits for a fixed time: where the WAL does work in the
 * background (group commit, lazy cursor persistence, segment deletion) the test
 * polls for the outcome, with a generous guard that only turns a hang into a
 * failure. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "tmpdir.h"
#include "wal.h"

#define HDR 16 /* u32 len | u32 crc | u64 seq, from wal.h */
#define KiB (1024ULL)
#define MiB (1024ULL * 1024)

static const char *const ONE[] = {"kafka"};
static const char *const TWO[] = {"kafka", "redis"};

/* ---- fixture: one temp dir per test ---------------------------------------- */

static char tmpdir[64];
static char waldir[128];

static void setup(void)
{
    tu_tmpdir_make(tmpdir, sizeof tmpdir, "wal");
    /* A subdirectory that does not exist yet: rl_wal_open must create it. */
    snprintf(waldir, sizeof(waldir), "%s/a/wal", tmpdir);
    rl_log_set_level("error"); /* recovery warnings are expected here */
}

static void teardown(void)
{
    tu_tmpdir_remove(tmpdir);
}

TestSuite(wal, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------ */

static rl_wal_t *wal_open_p(uint64_t segment_size, uint64_t max_size, const char *const *readers,
                            size_t nreaders, rl_metrics_t *m, int preallocate)
{
    char err[256] = "";
    rl_wal_opts_t o = {
        .dir = waldir,
        .segment_size = segment_size,
        .max_size = max_size,
        .fsync = 1,
        .readers = readers,
        .nreaders = nreaders,
        .preallocate = preallocate,
    };
    rl_wal_t *w = rl_wal_open(&o, m, err, sizeof(err));
    cr_assert_not_null(w, "rl_wal_open(%s): %s", waldir, err);
    return w;
}

static rl_wal_t *wal_open_m(uint64_t segment_size, uint64_t max_size, const char *const *readers,
                            size_t nreaders, rl_metrics_t *m)
{
    return wal_open_p(segment_size, max_size, readers, nreaders, m, 0);
}

static rl_wal_t *wal_open(uint64_t segment_size, uint64_t max_size, const char *const *readers,
                          size_t nreaders)
{
    return wal_open_m(segment_size, max_size, readers, nreaders, NULL);
}

/* Deterministic payload bytes for record `key`, so that a test can check what it
 * reads back without keeping copies. */
static void fill(uint8_t *p, size_t len, uint64_t key)
{
    uint64_t x = key * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static uint64_t append1(rl_wal_t *w, const void *data, size_t len)
{
    struct iovec iov = {(void *)data, len};
    uint64_t seq = 0;
    int rc = rl_wal_append_sync(w, &iov, 1, &seq);
    cr_assert_eq(rc, RL_WAL_OK, "append_sync of %zu bytes: %d", len, rc);
    return seq;
}

/* Appends one record of `len` bytes filled from `key`. */
static uint64_t append_key(rl_wal_t *w, uint64_t key, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    cr_assert_not_null(p);
    fill(p, len, key);
    uint64_t seq = append1(w, p, len);
    free(p);
    return seq;
}

static void expect_rec_key(rl_wal_reader_t *r, uint64_t seq, uint64_t key, size_t len)
{
    rl_wal_rec_t rec;
    char err[256] = "";
    /* The timeout only bounds a failure: a durable record returns at once. */
    int rc = rl_wal_reader_next(r, &rec, 10000, err, sizeof(err));
    cr_assert_eq(rc, 1, "reader_next for seq %llu: rc %d (%s)", (unsigned long long)seq, rc, err);
    cr_assert_eq(rec.seq, seq, "expected seq %llu, got %llu", (unsigned long long)seq,
                 (unsigned long long)rec.seq);
    cr_assert_eq(rec.len, len, "seq %llu: len %zu, expected %zu", (unsigned long long)seq, rec.len,
                 len);
    uint8_t *want = malloc(len ? len : 1);
    cr_assert_not_null(want);
    fill(want, len, key);
    cr_assert(len == 0 || memcmp(rec.data, want, len) == 0, "seq %llu: payload differs",
              (unsigned long long)seq);
    free(want);
}

static void expect_rec_str(rl_wal_reader_t *r, uint64_t seq, const char *s)
{
    rl_wal_rec_t rec;
    char err[256] = "";
    int rc = rl_wal_reader_next(r, &rec, 10000, err, sizeof(err));
    cr_assert_eq(rc, 1, "reader_next for seq %llu: rc %d (%s)", (unsigned long long)seq, rc, err);
    cr_assert_eq(rec.seq, seq, "expected seq %llu, got %llu", (unsigned long long)seq,
                 (unsigned long long)rec.seq);
    cr_assert_eq(rec.len, strlen(s));
    cr_assert(memcmp(rec.data, s, rec.len) == 0, "seq %llu: payload '%.*s', expected '%s'",
              (unsigned long long)seq, (int)rec.len, (const char *)rec.data, s);
}

/* Nothing more is durable for this reader (timeout 0: does not wait). */
static void expect_none(rl_wal_reader_t *r)
{
    rl_wal_rec_t rec;
    char err[256] = "";
    int rc = rl_wal_reader_next(r, &rec, 0, err, sizeof(err));
    cr_assert_eq(rc, 0, "expected no record, got rc %d (seq %llu) %s", rc,
                 rc == 1 ? (unsigned long long)rec.seq : 0ULL, err);
}

static rl_wal_reader_t *reader(rl_wal_t *w, const char *name)
{
    rl_wal_reader_t *r = rl_wal_reader(w, name);
    cr_assert_not_null(r, "reader %s", name);
    return r;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The first seqs of the segment files "<first-seq>.wal" in waldir, sorted. */
static size_t list_segments(uint64_t *firsts, size_t max)
{
    DIR *d = opendir(waldir);
    struct dirent *de;
    size_t n = 0;
    cr_assert_not_null(d, "opendir %s", waldir);
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= 4 || strcmp(de->d_name + l - 4, ".wal") != 0)
            continue;
        cr_assert_lt(n, max, "too many segments");
        firsts[n++] = strtoull(de->d_name, NULL, 10);
    }
    closedir(d);
    qsort(firsts, n, sizeof(*firsts), cmp_u64);
    return n;
}

static size_t count_segments(void)
{
    uint64_t v[4096];
    return list_segments(v, 4096);
}

/* Path of the segment whose name is the number `first` (the name may be padded). */
static void segment_path(uint64_t first, char *out, size_t outsz)
{
    DIR *d = opendir(waldir);
    struct dirent *de;
    out[0] = '\0';
    cr_assert_not_null(d);
    while ((de = readdir(d))) {
        char *end;
        unsigned long long v = strtoull(de->d_name, &end, 10);
        if (end != de->d_name && !strcmp(end, ".wal") && v == first)
            snprintf(out, outsz, "%s/%s", waldir, de->d_name);
    }
    closedir(d);
    cr_assert(out[0], "no segment file for %llu", (unsigned long long)first);
}

static void last_segment_path(char *out, size_t outsz)
{
    uint64_t v[4096];
    size_t n = list_segments(v, 4096);
    cr_assert_gt(n, 0, "no segment file in %s", waldir);
    segment_path(v[n - 1], out, outsz);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
    return (uint64_t)st.st_size;
}

static uint64_t segments_bytes(void)
{
    uint64_t v[4096], total = 0;
    size_t n = list_segments(v, 4096);
    for (size_t i = 0; i < n; i++) {
        char p[512];
        segment_path(v[i], p, sizeof(p));
        total += file_size(p);
    }
    return total;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls `cond` until it holds. The 20 s guard is not a performance requirement:
 * it only makes a WAL that never does the work fail instead of hanging. */
#define WAIT_FOR(cond, ...)                                                                        \
    do {                                                                                           \
        int ok_ = 0;                                                                               \
        for (int i_ = 0; i_ < 10000 && !(ok_ = (cond)); i_++)                                      \
            sleep_ms(2);                                                                           \
        cr_assert(ok_, __VA_ARGS__);                                                               \
    } while (0)

typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    int calls, status;
} waiter_t;

#define WAITER_INIT                                                                                \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 99                                 \
    }

static void waiter_cb(void *opaque, int status)
{
    waiter_t *wt = opaque;
    pthread_mutex_lock(&wt->m);
    wt->calls++;
    wt->status = status;
    pthread_cond_broadcast(&wt->c);
    pthread_mutex_unlock(&wt->m);
}

static void waiter_wait(waiter_t *wt)
{
    pthread_mutex_lock(&wt->m);
    while (!wt->calls)
        pthread_cond_wait(&wt->c, &wt->m);
    pthread_mutex_unlock(&wt->m);
}

static void barrier_sync(rl_wal_t *w)
{
    waiter_t wt = WAITER_INIT;
    cr_assert_eq(rl_wal_barrier(w, waiter_cb, &wt), RL_WAL_OK);
    waiter_wait(&wt);
    cr_assert_eq(wt.status, 0);
}

/* White box: a reader's cursor file is "<dir>/<name>.cursor" starting with the
 * cursor as a little-endian u64. The flusher persists cursors lazily and deletes
 * segments right after, under the WAL's lock; waiting for the file and then for a
 * barrier is how a test knows that segment deletion for that cursor has run. */
static uint64_t cursor_file(const char *name)
{
    char path[512];
    uint8_t b[8] = {0};
    snprintf(path, sizeof(path), "%s/%s.cursor", waldir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t k = pread(fd, b, sizeof(b), 0);
    close(fd);
    if (k != (ssize_t)sizeof(b))
        return 0;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static void wait_cursor_persisted(rl_wal_t *w, const char *name, uint64_t seq)
{
    WAIT_FOR(cursor_file(name) == seq, "cursor of %s never persisted as %llu (file says %llu)",
             name, (unsigned long long)seq, (unsigned long long)cursor_file(name));
    barrier_sync(w);
}

static int64_t metric_value(rl_metrics_t *m, const char *name)
{
    size_t len = 0;
    char *text = rl_metrics_render(m, &len);
    char pat[128];
    long long v = -1;
    cr_assert_not_null(text);
    snprintf(pat, sizeof(pat), "\n%s ", name);
    char *p = strstr(text, pat);
    cr_assert_not_null(p, "metric %s not rendered:\n%s", name, text);
    sscanf(p + strlen(pat), "%lld", &v);
    free(text);
    return v;
}

/* ---- append and read back ----------------------------------------------------- */

Test(wal, append_sync_then_read)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");

    cr_expect_null(rl_wal_reader(w, "redis"), "a reader that was not configured");
    cr_expect_eq(rl_wal_durable_seq(w), 0, "empty WAL: no durable seq");
    cr_expect_eq(rl_wal_torn(w), 0);
    cr_expect_eq(rl_wal_writable(w), 1);
    expect_none(r);

    /* One call with three payloads: consecutive seqs, the first returned. */
    struct iovec iov[3] = {{"alpha", 5}, {"", 0}, {"gamma-gamma", 11}};
    uint64_t first = 0;
    cr_assert_eq(rl_wal_append_sync(w, iov, 3, &first), RL_WAL_OK);
    cr_expect_eq(first, 1);
    cr_expect_eq(append1(w, "delta", 5), 4);
    /* A payload larger than the reader's first buffer (256 KiB in wal.c). */
    cr_expect_eq(append_key(w, 77, 700 * KiB + 3), 5);
    cr_expect_eq(rl_wal_durable_seq(w), 5);

    expect_rec_str(r, 1, "alpha");
    expect_rec_str(r, 2, "");
    expect_rec_str(r, 3, "gamma-gamma");
    expect_rec_str(r, 4, "delta");
    expect_rec_key(r, 5, 77, 700 * KiB + 3);
    expect_none(r);

    /* Bytes on disk: one 16-byte header per record plus the payloads. */
    uint64_t want = 5 * HDR + 5 + 0 + 11 + 5 + 700 * KiB + 3;
    cr_expect_eq(rl_wal_bytes(w), want, "rl_wal_bytes %llu, expected %llu",
                 (unsigned long long)rl_wal_bytes(w), (unsigned long long)want);
    cr_expect_eq(segments_bytes(), want);
    rl_wal_close(w);
}

/* The format wal.h documents: "<first-seq>.wal" files of
 * u32 len | u32 crc32(seq, payload) | u64 seq | payload[len] (little endian). */
Test(wal, on_disk_format_matches_header)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    const char *p[3] = {"one", "", "three!"};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(append1(w, p[i], strlen(p[i])), (uint64_t)i + 1);
    rl_wal_close(w);

    uint64_t firsts[8];
    cr_assert_eq(list_segments(firsts, 8), 1);
    cr_expect_eq(firsts[0], 1, "the segment is named after its first record's seq");
    char path[512];
    segment_path(firsts[0], path, sizeof(path));
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    for (int i = 0; i < 3; i++) {
        uint8_t h[HDR], buf[64];
        cr_assert_eq(fread(h, 1, HDR, f), HDR);
        uint32_t len = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
        uint32_t crc = h[4] | h[5] << 8 | h[6] << 16 | (uint32_t)h[7] << 24;
        uint64_t seq = 0;
        for (int b = 15; b >= 8; b--)
            seq = seq << 8 | h[b];
        cr_assert_eq(len, strlen(p[i]));
        cr_assert_eq(seq, (uint64_t)i + 1);
        cr_assert_eq(fread(buf, 1, len, f), len);
        cr_expect(memcmp(buf, p[i], len) == 0);
        uLong c = crc32(0L, h + 8, 8);
        c = crc32(c, buf, len);
        cr_expect_eq((uint32_t)c, crc, "record %d: crc covers seq then payload", i + 1);
    }
    cr_expect_eq(fgetc(f), EOF, "nothing after the last record");
    fclose(f);
}

Test(wal, open_fails_cleanly_on_a_file)
{
    char path[256], err[256] = "";
    snprintf(path, sizeof(path), "%s/not-a-dir", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    rl_wal_opts_t o = {.dir = path,
                       .segment_size = MiB,
                       .max_size = 8 * MiB,
                       .fsync = 1,
                       .readers = ONE,
                       .nreaders = 1};
    cr_expect_null(rl_wal_open(&o, NULL, err, sizeof(err)));
    cr_expect_neq(err[0], '\0', "errstr is set");
}

/* A second WAL on a directory in use stops at open, naming the holder; once
 * the first is closed the directory opens again. */
Test(wal, second_open_of_a_directory_is_refused)
{
    char err[256] = "", pid[32];
    rl_wal_opts_t o = {.dir = waldir,
                       .segment_size = MiB,
                       .max_size = 8 * MiB,
                       .fsync = 1,
                       .readers = ONE,
                       .nreaders = 1};
    rl_wal_t *w = wal_open(MiB, 8 * MiB, ONE, 1);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    cr_expect_null(rl_wal_open(&o, NULL, err, sizeof(err)));
    cr_expect_not_null(strstr(err, pid), "the error names the holder: %s", err);
    rl_wal_close(w);
    w = rl_wal_open(&o, NULL, err, sizeof(err));
    cr_expect_not_null(w, "reopened after close: %s", err);
    rl_wal_close(w);
}

/* ---- group commit ---------------------------------------------------------------- */

#define NTHREADS 8
#define PER_THREAD 150
#define MAXK 3 /* payloads per append: 1..3 */

static atomic_int cb_calls[NTHREADS * PER_THREAD];
static atomic_int cb_bad_status, cb_total;

typedef struct worker {
    rl_wal_t *w;
    int t;
    uint64_t first[PER_THREAD];
    int k[PER_THREAD];
    int rc;
} worker_t;

static void count_cb(void *opaque, int status)
{
    size_t id = (size_t)(uintptr_t)opaque;
    atomic_fetch_add(&cb_calls[id], 1);
    if (status != 0)
        atomic_fetch_add(&cb_bad_status, 1);
    atomic_fetch_add(&cb_total, 1);
}

static void *worker_main(void *arg)
{
    worker_t *wk = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char text[MAXK][48];
        struct iovec iov[MAXK];
        int k = 1 + (i + wk->t) % MAXK;
        for (int j = 0; j < k; j++) {
            snprintf(text[j], sizeof(text[j]), "t=%d i=%d j=%d", wk->t, i, j);
            iov[j] = (struct iovec){text[j], strlen(text[j])};
        }
        wk->k[i] = k;
        uintptr_t id = (uintptr_t)(wk->t * PER_THREAD + i);
        int rc = rl_wal_append(wk->w, iov, (size_t)k, &wk->first[i], count_cb, (void *)id);
        if (rc != RL_WAL_OK) {
            wk->rc = rc;
            return NULL;
        }
    }
    return NULL;
}

Test(wal, concurrent_appends_group_commit)
{
    rl_metrics_t *m = rl_metrics_new(NULL, 0);
    cr_assert_not_null(m);
    rl_wal_t *w = wal_open_m(64 * MiB, 1024 * MiB, ONE, 1, m);
    pthread_t th[NTHREADS];
    static worker_t wk[NTHREADS];

    for (int t = 0; t < NTHREADS; t++) {
        wk[t] = (worker_t){.w = w, .t = t};
        cr_assert_eq(pthread_create(&th[t], NULL, worker_main, &wk[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        cr_assert_eq(wk[t].rc, RL_WAL_OK, "thread %d: append failed %d", t, wk[t].rc);
    }
    const int appends = NTHREADS * PER_THREAD;
    WAIT_FOR(atomic_load(&cb_total) >= appends, "only %d of %d callbacks ran",
             atomic_load(&cb_total), appends);
    barrier_sync(w); /* a late duplicate callback would have run by now */
    for (int i = 0; i < appends; i++)
        cr_assert_eq(atomic_load(&cb_calls[i]), 1, "append %d: callback ran %d times", i,
                     atomic_load(&cb_calls[i]));
    cr_expect_eq(atomic_load(&cb_bad_status), 0, "callbacks with a non-zero status");
    cr_expect_eq(atomic_load(&cb_total), appends);

    /* Every record is readable once, seqs are 1..N without gaps, and each one is
     * the payload its append was told it got. */
    size_t total = 0;
    for (int t = 0; t < NTHREADS; t++)
        for (int i = 0; i < PER_THREAD; i++)
            total += (size_t)wk[t].k[i];
    cr_expect_eq(rl_wal_durable_seq(w), total);
    rl_wal_reader_t *r = reader(w, "kafka");
    char *seen = calloc(total + 1, 1);
    cr_assert_not_null(seen);
    for (size_t n = 1; n <= total; n++) {
        rl_wal_rec_t rec;
        char err[256] = "", text[64];
        int t, i, j;
        cr_assert_eq(rl_wal_reader_next(r, &rec, 10000, err, sizeof(err)), 1, "%s", err);
        cr_assert_eq(rec.seq, n, "seqs are dense: expected %zu, got %llu", n,
                     (unsigned long long)rec.seq);
        snprintf(text, sizeof(text), "%.*s", (int)rec.len, (const char *)rec.data);
        cr_assert_eq(sscanf(text, "t=%d i=%d j=%d", &t, &i, &j), 3, "payload '%s'", text);
        cr_assert(t >= 0 && t < NTHREADS && i >= 0 && i < PER_THREAD && j >= 0 && j < MAXK);
        cr_assert_eq(wk[t].first[i] + (uint64_t)j, rec.seq, "'%s' at seq %llu, append said %llu",
                     text, (unsigned long long)rec.seq,
                     (unsigned long long)(wk[t].first[i] + (uint64_t)j));
        cr_assert(!seen[n]);
        seen[n] = 1;
    }
    expect_none(r);
    free(seen);

    /* One fsync per group: never more than the appends. How many fewer depends on
     * scheduling, so it is only logged. */
    int64_t fsyncs = metric_value(m, "relay_wal_fsyncs_total");
    cr_log_info("group commit: %d appends, %lld fsyncs", appends, (long long)fsyncs);
    cr_expect_geq(fsyncs, 1);
    cr_expect_leq(fsyncs, appends);
    rl_wal_close(w);
    rl_metrics_destroy(m);
}

/* rl_wal_close flushes what is pending and runs its callbacks before returning. */
Test(wal, close_flushes_pending_appends)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    static waiter_t wt[50];
    for (int i = 0; i < 50; i++) {
        char text[32];
        snprintf(text, sizeof(text), "pending-%d", i);
        struct iovec iov = {text, strlen(text)};
        uint64_t seq = 0;
        wt[i] = (waiter_t)WAITER_INIT;
        cr_assert_eq(rl_wal_append(w, &iov, 1, &seq, waiter_cb, &wt[i]), RL_WAL_OK);
        cr_assert_eq(seq, (uint64_t)i + 1);
    }
    rl_wal_close(w);
    for (int i = 0; i < 50; i++) {
        cr_expect_eq(wt[i].calls, 1, "append %d: %d callbacks", i, wt[i].calls);
        cr_expect_eq(wt[i].status, 0);
    }
    w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");
    for (int i = 0; i < 50; i++) {
        char text[32];
        snprintf(text, sizeof(text), "pending-%d", i);
        expect_rec_str(r, (uint64_t)i + 1, text);
    }
    expect_none(r);
    rl_wal_close(w);
}

static atomic_int barrier_appends_done;
static atomic_int barrier_saw = -1;

static void count_append_cb(void *opaque, int status)
{
    (void)opaque, (void)status;
    atomic_fetch_add(&barrier_appends_done, 1);
}

static void barrier_cb(void *opaque, int status)
{
    waiter_t *wt = opaque;
    atomic_store(&barrier_saw, atomic_load(&barrier_appends_done));
    waiter_cb(wt, status);
}

Test(wal, barrier_fires)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);

    /* On an idle WAL it fires too, with status 0. */
    barrier_sync(w);

    /* After appends, it fires once they are durable. */
    for (int i = 0; i < 20; i++) {
        struct iovec iov = {"x", 1};
        uint64_t seq;
        cr_assert_eq(rl_wal_append(w, &iov, 1, &seq, count_append_cb, NULL), RL_WAL_OK);
    }
    waiter_t wt = WAITER_INIT;
    cr_assert_eq(rl_wal_barrier(w, barrier_cb, &wt), RL_WAL_OK);
    waiter_wait(&wt);
    cr_expect_eq(wt.status, 0);
    cr_expect_eq(rl_wal_durable_seq(w), 20, "everything before the barrier is durable");
    cr_expect_eq(atomic_load(&barrier_saw), 20,
                 "the appends' callbacks ran before the barrier's (%d of 20)",
                 atomic_load(&barrier_saw));
    barrier_sync(w);
    cr_expect_eq(wt.calls, 1, "the barrier's callback runs once");
    rl_wal_close(w);
}

/* ---- readers and cursors ------------------------------------------------------- */

Test(wal, reopen_resumes_after_cursor)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");
    for (uint64_t i = 1; i <= 10; i++)
        cr_assert_eq(append_key(w, i, 10 + i), i);
    for (uint64_t i = 1; i <= 10; i++)
        expect_rec_key(r, i, i, 10 + i);
    rl_wal_reader_commit(r, 6);
    cr_expect_eq(rl_wal_reader_cursor(r), 6);
    rl_wal_reader_commit(r, 3); /* cursors only move forward */
    cr_expect_eq(rl_wal_reader_cursor(r), 6);
    rl_wal_close(w);

    /* 7..10 were read but not acknowledged: they come again. */
    w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    r = reader(w, "kafka");
    cr_expect_eq(rl_wal_reader_cursor(r), 6);
    cr_expect_eq(rl_wal_durable_seq(w), 10);
    for (uint64_t i = 7; i <= 10; i++)
        expect_rec_key(r, i, i, 10 + i);
    expect_none(r);
    rl_wal_reader_commit(r, 10);
    /* New appends continue the numbering. */
    cr_expect_eq(append_key(w, 11, 5), 11);
    expect_rec_key(r, 11, 11, 5);
    rl_wal_close(w);

    w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    r = reader(w, "kafka");
    cr_expect_eq(rl_wal_reader_cursor(r), 10);
    expect_rec_key(r, 11, 11, 5);
    expect_none(r);
    rl_wal_close(w);
}

Test(wal, rewind_rereads_from_cursor)
{
    /* Small segments, so that a rewind has to go back across segment files. */
    rl_wal_t *w = wal_open(64 * KiB, 1024 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");
    const size_t len = 3000;
    for (uint64_t i = 1; i <= 100; i++)
        cr_assert_eq(append_key(w, i, len), i);
    cr_assert_gt(count_segments(), 2, "the test needs several segments");

    for (uint64_t i = 1; i <= 5; i++)
        expect_rec_key(r, i, i, len);
    rl_wal_reader_rewind(r); /* nothing committed: from the start */
    for (uint64_t i = 1; i <= 5; i++)
        expect_rec_key(r, i, i, len);
    rl_wal_reader_commit(r, 2);
    rl_wal_reader_rewind(r);
    for (uint64_t i = 3; i <= 90; i++)
        expect_rec_key(r, i, i, len);
    rl_wal_reader_commit(r, 10);
    rl_wal_reader_rewind(r); /* read position is segments past the cursor */
    for (uint64_t i = 11; i <= 100; i++)
        expect_rec_key(r, i, i, len);
    expect_none(r);
    rl_wal_close(w);
}

/* A reader waiting in reader_next gets a record appended meanwhile. The long
 * timeout never elapses when the WAL works. */
static void *late_append(void *arg)
{
    rl_wal_t *w = arg;
    sleep_ms(20);
    struct iovec iov = {"late", 4};
    uint64_t seq;
    rl_wal_append_sync(w, &iov, 1, &seq);
    return NULL;
}

Test(wal, reader_waits_for_new_records)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, late_append, w), 0);
    expect_rec_str(r, 1, "late");
    pthread_join(th, NULL);
    rl_wal_close(w);
}

typedef struct blocked {
    rl_wal_reader_t *r;
    atomic_int done;
    int rc;
} blocked_t;

static void *blocked_reader(void *arg)
{
    blocked_t *b = arg;
    rl_wal_rec_t rec;
    char err[256];
    /* An hour: only rl_wal_wakeup can end this wait in a test. */
    b->rc = rl_wal_reader_next(b->r, &rec, 3600 * 1000, err, sizeof(err));
    atomic_store(&b->done, 1);
    return NULL;
}

/* wal.h: rl_wal_wakeup "wakes a reader blocked in rl_wal_reader_next
 * (shutdown)". The reader must return (0: nothing arrived) instead of sleeping
 * out its timeout. Wakeups repeat because the reader may not be waiting yet. */
Test(wal, wakeup_releases_blocked_reader, .timeout = 30)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    blocked_t b = {.r = reader(w, "kafka")};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, blocked_reader, &b), 0);
    while (!atomic_load(&b.done)) {
        rl_wal_wakeup(w);
        sleep_ms(5);
    }
    pthread_join(th, NULL);
    cr_expect_eq(b.rc, 0);
    rl_wal_close(w);
}

/* One reader far behind the other: it still gets every record, and segments go
 * only once both cursors have passed them. */
Test(wal, two_readers_independent_cursors_and_segment_deletion)
{
    const size_t len = 1000;
    const uint64_t n = 400; /* ~400 KiB: about six 64 KiB segments */
    rl_wal_t *w = wal_open(64 * KiB, 1024 * MiB, TWO, 2);
    rl_wal_reader_t *fast = reader(w, "kafka"), *slow = reader(w, "redis");

    for (uint64_t i = 1; i <= n; i++)
        cr_assert_eq(append_key(w, i, len), i);
    uint64_t firsts[64];
    size_t nsegs = list_segments(firsts, 64);
    cr_assert_geq(nsegs, 4, "the test needs several segments, got %zu", nsegs);
    cr_expect_eq(rl_wal_bytes(w), segments_bytes());

    /* The fast reader takes everything; the slow one has read nothing. */
    for (uint64_t i = 1; i <= n; i++)
        expect_rec_key(fast, i, i, len);
    expect_none(fast);
    rl_wal_reader_commit(fast, n);
    wait_cursor_persisted(w, "kafka", n);
    cr_expect_eq(count_segments(), nsegs, "segments deleted while the slow reader needs them");
    cr_expect_eq(rl_wal_reader_cursor(slow), 0);

    /* The slow reader acknowledges part of the log: only segments entirely at or
     * below its cursor may go (the active one always stays). */
    uint64_t mid = firsts[2] + 5; /* inside the third segment */
    for (uint64_t i = 1; i <= mid; i++)
        expect_rec_key(slow, i, i, len);
    rl_wal_reader_commit(slow, mid);
    WAIT_FOR(count_segments() == nsegs - 2, "expected %zu segments after commit %llu, have %zu",
             nsegs - 2, (unsigned long long)mid, count_segments());
    wait_cursor_persisted(w, "redis", mid);
    uint64_t now[64];
    size_t nnow = list_segments(now, 64);
    cr_assert_eq(nnow, nsegs - 2);
    for (size_t i = 0; i < nnow; i++)
        cr_expect_eq(now[i], firsts[i + 2], "segment %zu", i);
    cr_expect_eq(rl_wal_bytes(w), segments_bytes(), "rl_wal_bytes follows deletions");

    /* The rest is still there for the slow reader, across the deletions. */
    for (uint64_t i = mid + 1; i <= n; i++)
        expect_rec_key(slow, i, i, len);
    expect_none(slow);
    rl_wal_reader_commit(slow, n);
    WAIT_FOR(count_segments() == 1, "all but the active segment go once both passed them (%zu)",
             count_segments());
    cr_expect_eq(rl_wal_bytes(w), segments_bytes());

    /* Both go on with new records. */
    cr_expect_eq(append_key(w, n + 1, 7), n + 1);
    expect_rec_key(fast, n + 1, n + 1, 7);
    expect_rec_key(slow, n + 1, n + 1, 7);
    rl_wal_close(w);
}

/* ---- recovery ------------------------------------------------------------------- */

typedef enum { CUT, GARBAGE, FLIP } damage_kind_t;

typedef struct damage {
    const char *what;
    damage_kind_t kind;
    long arg; /* CUT: bytes cut; GARBAGE: which garbage; FLIP: offset from the last
               * record's start */
    int lost; /* records lost from the end (0 or 1) */
} damage_t;

static void damage_last_segment(const damage_t *d, size_t last_len)
{
    char path[512];
    last_segment_path(path, sizeof(path));
    uint64_t size = file_size(path);
    uint64_t last_start = size - HDR - last_len;

    if (d->kind == CUT) {
        cr_assert_eq(truncate(path, (off_t)(size - (uint64_t)d->arg)), 0);
    } else if (d->kind == GARBAGE) {
        uint8_t g[64];
        size_t gl;
        if (d->arg == 0) { /* zeros, as a file system may leave after a crash */
            memset(g, 0, sizeof(g));
            gl = sizeof(g);
        } else if (d->arg == 1) { /* shorter than a header */
            memset(g, 0xab, 7);
            gl = 7;
        } else { /* a plausible header whose payload does not match its crc */
            memset(g, 0x5a, sizeof(g));
            g[0] = 20, g[1] = g[2] = g[3] = 0; /* len 20 */
            for (int i = 8; i < 16; i++)
                g[i] = 0;
            g[8] = 200; /* seq 200: larger than any */
            gl = HDR + 20;
        }
        FILE *f = fopen(path, "ab");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(g, 1, gl, f), gl);
        fclose(f);
    } else {
        int fd = open(path, O_RDWR);
        uint8_t b;
        cr_assert_geq(fd, 0);
        off_t off = (off_t)(last_start + (uint64_t)d->arg);
        cr_assert_eq(pread(fd, &b, 1, off), 1);
        b ^= 0x10;
        cr_assert_eq(pwrite(fd, &b, 1, off), 1);
        close(fd);
    }
}

static const damage_t damages[] = {
    {"cut 3 bytes off the last payload", CUT, 3, 1},
    {"cut into the last header", CUT, 100 + HDR - 4, 1},
    {"append 64 zero bytes (not damage: preallocated room)", GARBAGE, 0, 0},
    {"append 7 bytes (less than a header)", GARBAGE, 1, 0},
    {"append a header with a wrong crc", GARBAGE, 2, 0},
    {"flip a byte mid-payload of the last record", FLIP, HDR + 50, 1},
    {"flip a byte of the last record's seq", FLIP, 9, 1},
    {"flip a byte of the last record's crc", FLIP, 5, 1},
};

Test(wal, recovery_of_damaged_tail)
{
    const size_t len = 100;
    for (size_t d = 0; d < sizeof(damages) / sizeof(damages[0]); d++) {
        const damage_t *dm = &damages[d];
        teardown();
        setup();
        rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
        for (uint64_t i = 1; i <= 5; i++)
            cr_assert_eq(append_key(w, i, len), i);
        rl_wal_close(w);

        damage_last_segment(dm, len);

        w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
        uint64_t kept = 5 - (uint64_t)dm->lost;
        /* Zeros past the last record are what a preallocated segment holds
         * (wal.preallocate): not damage, and kept for the appends to come. */
        int zeros = dm->kind == GARBAGE && dm->arg == 0;
        cr_expect_eq(rl_wal_torn(w), zeros ? 0 : 1, "%s: torn %llu", dm->what,
                     (unsigned long long)rl_wal_torn(w));
        cr_expect_eq(rl_wal_durable_seq(w), kept, "%s: durable %llu", dm->what,
                     (unsigned long long)rl_wal_durable_seq(w));
        cr_expect_eq(rl_wal_bytes(w), kept * (HDR + len), "%s: only complete records counted",
                     dm->what);
        cr_expect_eq(segments_bytes(), kept * (HDR + len) + (zeros ? 64 : 0),
                     "%s: the file is cut back (zeros: kept)", dm->what);
        rl_wal_reader_t *r = reader(w, "kafka");
        for (uint64_t i = 1; i <= kept; i++)
            expect_rec_key(r, i, i, len);
        expect_none(r);

        /* New appends continue after what was kept and are readable. */
        cr_expect_eq(append_key(w, 1000, 33), kept + 1, "%s", dm->what);
        cr_expect_eq(append_key(w, 1001, 0), kept + 2, "%s", dm->what);
        expect_rec_key(r, kept + 1, 1000, 33);
        expect_rec_key(r, kept + 2, 1001, 0);
        expect_none(r);
        rl_wal_close(w);

        /* And the repaired log opens clean. */
        w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
        cr_expect_eq(rl_wal_torn(w), 0, "%s: the cut is not counted twice", dm->what);
        cr_expect_eq(rl_wal_durable_seq(w), kept + 2);
        rl_wal_close(w);
    }
}

Test(wal, torn_metric_counts_recovery)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    append1(w, "a", 1);
    append1(w, "bb", 2);
    rl_wal_close(w);
    damage_t cut = {"cut", CUT, 1, 1};
    damage_last_segment(&cut, 2);
    rl_metrics_t *m = rl_metrics_new(NULL, 0);
    w = wal_open_m(64 * MiB, 1024 * MiB, ONE, 1, m);
    cr_expect_eq(metric_value(m, "relay_wal_torn_total"), 1);
    rl_wal_close(w);
    rl_metrics_destroy(m);
}

/* A record the WAL accepted must come back after a restart, however large:
 * either the append is refused, or recovery keeps it (and what follows). */
Test(wal, huge_record_is_refused_or_survives_reopen)
{
    const size_t len = 64 * MiB + 1;
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    cr_assert_eq(append1(w, "before", 6), 1);
    uint8_t *big = malloc(len);
    cr_assert_not_null(big);
    memset(big, 'h', len);
    struct iovec iov = {big, len};
    uint64_t seq = 0;
    int rc = rl_wal_append_sync(w, &iov, 1, &seq);
    free(big);
    if (rc != RL_WAL_OK) {
        cr_expect_eq(rc, RL_WAL_ERR);
        cr_expect_eq(append1(w, "after", 5), 2, "a refused append takes no seq");
        rl_wal_close(w);
        return;
    }
    cr_assert_eq(append1(w, "after", 5), 3);
    rl_wal_close(w);
    w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    cr_expect_eq(rl_wal_torn(w), 0, "an acknowledged record was cut as torn at reopen");
    rl_wal_reader_t *r = reader(w, "kafka");
    expect_rec_str(r, 1, "before");
    rl_wal_rec_t rec;
    char err[256] = "";
    cr_assert_eq(rl_wal_reader_next(r, &rec, 10000, err, sizeof(err)), 1, "%s", err);
    cr_expect_eq(rec.seq, 2, "the acknowledged huge record is gone after reopen");
    cr_expect_eq(rec.len, len);
    rl_wal_close(w);
}

/* ---- size cap ------------------------------------------------------------------- */

static void dummy_cb(void *opaque, int status)
{
    (void)status;
    atomic_fetch_add((atomic_int *)opaque, 1);
}

Test(wal, max_size_cap_then_frees_up)
{
    const size_t len = 4000;
    const uint64_t cap = 256 * KiB;
    rl_metrics_t *m = rl_metrics_new(NULL, 0);
    rl_wal_t *w = wal_open_m(64 * KiB, cap, ONE, 1, m);
    rl_wal_reader_t *r = reader(w, "kafka");
    uint64_t last = 0;
    int rc;

    for (uint64_t i = 1;; i++) {
        uint8_t buf[4000];
        fill(buf, len, i);
        struct iovec iov = {buf, len};
        uint64_t seq = 0;
        rc = rl_wal_append_sync(w, &iov, 1, &seq);
        if (rc != RL_WAL_OK)
            break;
        cr_assert_eq(seq, i);
        last = seq;
        cr_assert_lt(i, 1000, "the cap never applied");
    }
    cr_expect_eq(rc, RL_WAL_FULL);
    cr_expect_leq(rl_wal_bytes(w), cap, "bytes %llu over the cap",
                  (unsigned long long)rl_wal_bytes(w));
    cr_expect_gt(rl_wal_bytes(w) + HDR + len, cap, "refused although it fitted");
    cr_expect_eq(rl_wal_durable_seq(w), last, "a refused append appends nothing");

    /* A refused asynchronous append does not call its callback. */
    atomic_int calls = 0;
    uint8_t buf[4000] = {0};
    struct iovec iov = {buf, len};
    uint64_t seq = 0;
    cr_expect_eq(rl_wal_append(w, &iov, 1, &seq, dummy_cb, &calls), RL_WAL_FULL);
    cr_expect_geq(metric_value(m, "relay_wal_full_total"), 2);
    barrier_sync(w);
    cr_expect_eq(atomic_load(&calls), 0);

    /* The sink catches up: its segments are deleted and appends work again. */
    for (uint64_t i = 1; i <= last; i++)
        expect_rec_key(r, i, i, len);
    rl_wal_reader_commit(r, last);
    WAIT_FOR(rl_wal_bytes(w) + HDR + len <= cap, "bytes stay at %llu after the reader caught up",
             (unsigned long long)rl_wal_bytes(w));
    cr_expect_eq(append_key(w, 999, len), last + 1, "no seq was used by refused appends");
    expect_rec_key(r, last + 1, 999, len);
    rl_wal_close(w);
    rl_metrics_destroy(m);
}

/* ---- sequence numbers across restarts ------------------------------------------ */

/* Every segment file gone (deleted after full consumption, or by an operator):
 * new records must still get seqs above the persisted cursor, or they would look
 * acknowledged and never be read. */
Test(wal, seq_above_cursor_after_all_segments_deleted)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");
    for (uint64_t i = 1; i <= 10; i++)
        append_key(w, i, 20);
    for (uint64_t i = 1; i <= 10; i++)
        expect_rec_key(r, i, i, 20);
    rl_wal_reader_commit(r, 10);
    rl_wal_close(w);

    uint64_t firsts[8];
    size_t n = list_segments(firsts, 8);
    for (size_t i = 0; i < n; i++) {
        char p[512];
        segment_path(firsts[i], p, sizeof(p));
        cr_assert_eq(unlink(p), 0);
    }

    w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    r = reader(w, "kafka");
    cr_expect_eq(rl_wal_reader_cursor(r), 10);
    expect_none(r);
    uint64_t seq = append_key(w, 11, 20);
    cr_expect_gt(seq, 10, "new seq %llu is not above the cursor 10", (unsigned long long)seq);
    expect_rec_key(r, seq, 11, 20);
    rl_wal_close(w);
}

/* The same after the WAL deleted consumed segments itself: a write that fills a
 * segment starts a new, empty one, and once the reader passed the full one only
 * the empty one is left. */
Test(wal, seq_above_cursor_after_consumption_and_gc)
{
    const size_t len = 5000;
    rl_wal_t *w = wal_open(4 * KiB, 1024 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");
    for (uint64_t i = 1; i <= 3; i++)
        cr_assert_eq(append_key(w, i, len), i);
    for (uint64_t i = 1; i <= 3; i++)
        expect_rec_key(r, i, i, len);
    rl_wal_reader_commit(r, 3);
    WAIT_FOR(count_segments() == 1, "consumed segments not deleted (%zu)", count_segments());
    rl_wal_close(w);

    w = wal_open(4 * KiB, 1024 * MiB, ONE, 1);
    r = reader(w, "kafka");
    expect_none(r);
    uint64_t seq = append_key(w, 4, 10);
    cr_expect_eq(seq, 4, "new seq %llu after cursor 3", (unsigned long long)seq);
    expect_rec_key(r, seq, 4, 10);
    rl_wal_close(w);
}

/* A sink that has no cursor yet (newly enabled, or its cursor file lost) after
 * every old record was consumed and deleted: the only segment left is the empty
 * "<N>.wal". Seqs must not restart at 1: a segment's records are never below its
 * name (wal.h), and a later segment named below N would make the log fail to
 * open ("sequence numbers go backwards"). */
Test(wal, seq_above_segment_names_without_cursor)
{
    const size_t len = 5000;
    rl_wal_t *w = wal_open(4 * KiB, 1024 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");
    for (uint64_t i = 1; i <= 3; i++)
        cr_assert_eq(append_key(w, i, len), i);
    for (uint64_t i = 1; i <= 3; i++)
        expect_rec_key(r, i, i, len);
    rl_wal_reader_commit(r, 3);
    WAIT_FOR(count_segments() == 1, "consumed segments not deleted (%zu)", count_segments());
    rl_wal_close(w);
    uint64_t firsts[8];
    cr_assert_eq(list_segments(firsts, 8), 1);
    uint64_t floor = firsts[0];
    cr_assert_eq(floor, 4, "the empty active segment is named after the next seq");

    static const char *const OTHER[] = {"redis"};
    w = wal_open(4 * KiB, 1024 * MiB, OTHER, 1);
    r = reader(w, "redis");
    uint64_t seq = append_key(w, 100, len); /* fills the segment: a new one starts */
    cr_expect_geq(seq, floor, "seq %llu restarted below segment %llu", (unsigned long long)seq,
                  (unsigned long long)floor);
    uint64_t seq2 = append_key(w, 101, 10);
    cr_expect_eq(seq2, seq + 1);
    expect_rec_key(r, seq, 100, len);
    expect_rec_key(r, seq2, 101, 10);
    rl_wal_close(w);

    char err[256] = "";
    rl_wal_opts_t o = {.dir = waldir,
                       .segment_size = 4 * KiB,
                       .max_size = 1024 * MiB,
                       .fsync = 1,
                       .readers = OTHER,
                       .nreaders = 1};
    w = rl_wal_open(&o, NULL, err, sizeof(err));
    cr_assert_not_null(w, "the log no longer opens: %s", err);
    r = reader(w, "redis");
    expect_rec_key(r, seq, 100, len);
    expect_rec_key(r, seq2, 101, 10);
    rl_wal_close(w);
}

/* ---- write failures (disk full) ------------------------------------------------ */

/* A write that fails half-way (here: RLIMIT_FSIZE, which fails a write past the
 * limit the way a full disk does) fails its append, is cut back off the segment,
 * and leaves nothing a reader or the next start could mistake for a record. The
 * WAL says it is not writable until the disk takes writes again, finds that out
 * by itself (no append needed), and goes on after a gap in sequence numbers. */
Test(wal, failed_write_is_cut_back_and_the_wal_recovers_by_itself)
{
    enum { LEN = 1000 };
    const rlim_t limit = 40 * KiB;
    struct rlimit old, lim;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN); /* the write then fails with EFBIG instead */

    rl_wal_t *w = wal_open(1 * MiB, 64 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");
    lim = old;
    lim.rlim_cur = limit;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0, "setrlimit: %s", strerror(errno));

    uint8_t buf[LEN];
    uint64_t n = 0, seq = 0;
    int rc = RL_WAL_OK;
    while (n < 1000) {
        struct iovec iov = {buf, LEN};
        fill(buf, LEN, n + 1);
        if ((rc = rl_wal_append_sync(w, &iov, 1, &seq)) != RL_WAL_OK)
            break;
        cr_assert_eq(seq, n + 1);
        n++;
    }
    cr_assert_eq(rc, RL_WAL_ERR, "append past the file size limit: %d, want RL_WAL_ERR", rc);
    cr_assert_gt(n, 0);
    uint64_t durable = n * (HDR + LEN);
    char path[512];
    last_segment_path(path, sizeof(path));
    cr_expect_eq(file_size(path), durable,
                 "segment is %llu bytes after the failed write, want %llu",
                 (unsigned long long)file_size(path), (unsigned long long)durable);
    cr_expect_eq(rl_wal_writable(w), 0, "the WAL says writable after a failed write");
    cr_expect_eq(rl_wal_durable_seq(w), n);

    /* Readers see exactly the durable records. */
    for (uint64_t i = 1; i <= n; i++)
        expect_rec_key(r, i, i, LEN);
    expect_none(r);

    /* Still full: further appends fail, nothing is added. */
    struct iovec iov = {buf, LEN};
    cr_expect_eq(rl_wal_append_sync(w, &iov, 1, &seq), RL_WAL_ERR);
    cr_expect_eq(file_size(path), durable);

    /* Room again: the flusher's probe notices without any append. */
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    WAIT_FOR(rl_wal_writable(w) == 1, "the WAL never noticed that the disk takes writes again");
    fill(buf, LEN, 7777);
    cr_assert_eq(rl_wal_append_sync(w, &iov, 1, &seq), RL_WAL_OK);
    cr_expect_gt(seq, n + 1, "the seqs of failed records must not be reused (got %llu)",
                 (unsigned long long)seq);
    expect_rec_key(r, seq, 7777, LEN);
    cr_expect_eq(file_size(path), durable + HDR + LEN);
    rl_wal_close(w);

    /* The next start finds every durable record and no torn tail. */
    w = wal_open(1 * MiB, 64 * MiB, ONE, 1);
    r = reader(w, "kafka");
    cr_expect_eq(rl_wal_torn(w), 0);
    for (uint64_t i = 1; i <= n; i++)
        expect_rec_key(r, i, i, LEN);
    expect_rec_key(r, seq, 7777, LEN);
    expect_none(r);
    rl_wal_close(w);
}

/* ---- lag ----------------------------------------------------------------------- */

/* Events and bytes behind a cursor are exact, across segments and index points,
 * and after a restart (the index is rebuilt by recovery): the first pass moves
 * the kafka reader's cursor, the second, after a reopen, the redis reader's. */
Test(wal, lag_in_events_and_bytes_is_exact)
{
    enum { N = 1500 };
    static size_t lens[N + 1];
    static const char *const names[] = {"kafka", "redis"};
    rl_metrics_t *m = rl_metrics_new(NULL, 0);
    rl_wal_t *w = wal_open_m(64 * KiB, 64 * MiB, TWO, 2, m);
    uint64_t ev, by;
    rl_wal_reader_lag(reader(w, "kafka"), &ev, &by);
    cr_expect(ev == 0 && by == 0, "empty WAL: lag %llu events %llu bytes", (unsigned long long)ev,
              (unsigned long long)by);
    for (uint64_t i = 1; i <= N; i++) {
        lens[i] = 10 + (i * 37) % 300;
        cr_assert_eq(append_key(w, i, lens[i]), i);
    }
    cr_assert_gt(count_segments(), 3, "the test wants several segments");
    static const uint64_t cursors[] = {0, 1, 2, 255, 256, 257, 511, 700, 1234, N - 1, N};
    for (int pass = 0; pass < 2; pass++) {
        rl_wal_reader_t *r = reader(w, names[pass]);
        char mname[128];
        snprintf(mname, sizeof(mname), "relay_sink_lag_bytes{sink=\"%s\"}", names[pass]);
        for (size_t c = 0; c < sizeof(cursors) / sizeof(cursors[0]); c++) {
            uint64_t cur = cursors[c], want_by = 0;
            for (uint64_t i = cur + 1; i <= N; i++)
                want_by += HDR + lens[i];
            rl_wal_reader_commit(r, cur);
            rl_wal_reader_lag(r, &ev, &by);
            cr_expect_eq(ev, N - cur, "%s cursor %llu: %llu events behind, want %llu", names[pass],
                         (unsigned long long)cur, (unsigned long long)ev,
                         (unsigned long long)(N - cur));
            cr_expect_eq(by, want_by, "%s cursor %llu: %llu bytes behind, want %llu", names[pass],
                         (unsigned long long)cur, (unsigned long long)by,
                         (unsigned long long)want_by);
            cr_expect_eq(rl_wal_reader_caught_up(r), cur == N);
            cr_expect_eq(metric_value(m, mname), (int64_t)want_by);
        }
        if (pass == 0) {
            rl_wal_close(w);
            rl_metrics_destroy(m);
            m = rl_metrics_new(NULL, 0);
            w = wal_open_m(64 * KiB, 64 * MiB, TWO, 2, m);
        }
    }
    rl_wal_close(w);
    rl_metrics_destroy(m);
}

/* ---- publish waiters (ack = publish) ------------------------------------------- */

static int64_t now_plus(int ms)
{
    return rl_clock_mono_ms() + ms;
}

Test(wal, publish_waiter_fires_once_every_cursor_has_passed)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, TWO, 2);
    rl_wal_reader_t *k = reader(w, "kafka"), *rd = reader(w, "redis");
    for (int i = 1; i <= 5; i++)
        append_key(w, (uint64_t)i, 10);
    waiter_t wt = WAITER_INIT;
    cr_assert_eq(rl_wal_await_published(w, 5, now_plus(60000), waiter_cb, &wt), RL_WAL_OK);
    rl_wal_reader_commit(k, 5);
    rl_wal_reader_commit(rd, 4);
    barrier_sync(w); /* the flusher has seen those commits */
    barrier_sync(w);
    pthread_mutex_lock(&wt.m);
    cr_expect_eq(wt.calls, 0, "published before every sink acknowledged it");
    pthread_mutex_unlock(&wt.m);
    rl_wal_reader_commit(rd, 5);
    waiter_wait(&wt);
    cr_expect_eq(wt.status, 0);

    /* Already published: fires at once (from the flusher). */
    waiter_t now = WAITER_INIT;
    cr_assert_eq(rl_wal_await_published(w, 3, now_plus(60000), waiter_cb, &now), RL_WAL_OK);
    waiter_wait(&now);
    cr_expect_eq(now.status, 0);
    rl_wal_close(w);
    cr_expect_eq(wt.calls, 1, "a waiter was called %d times", wt.calls);
}

Test(wal, publish_waiter_times_out_or_is_cancelled)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    append_key(w, 1, 10);
    waiter_t late = WAITER_INIT, cancelled = WAITER_INIT, closing = WAITER_INIT;
    cr_assert_eq(rl_wal_await_published(w, 1, now_plus(50), waiter_cb, &late), RL_WAL_OK);
    waiter_wait(&late);
    cr_expect_eq(late.status, RL_WAL_TIMEOUT);

    cr_assert_eq(rl_wal_await_published(w, 1, now_plus(600000), waiter_cb, &cancelled), RL_WAL_OK);
    rl_wal_cancel_published(w);
    waiter_wait(&cancelled);
    cr_expect_eq(cancelled.status, RL_WAL_ERR);
    cr_expect_eq(rl_wal_await_published(w, 1, now_plus(600000), waiter_cb, &closing), RL_WAL_ERR,
                 "a waiter was taken after rl_wal_cancel_published");
    rl_wal_close(w);
    cr_expect_eq(closing.calls, 0);

    /* Close answers whoever still waits. */
    w = wal_open(64 * MiB, 1024 * MiB, ONE, 1);
    waiter_t at_close = WAITER_INIT;
    cr_assert_eq(rl_wal_await_published(w, 99, now_plus(600000), waiter_cb, &at_close), RL_WAL_OK);
    rl_wal_close(w);
    cr_expect_eq(at_close.calls, 1);
    cr_expect_eq(at_close.status, RL_WAL_ERR);
}

Test(wal, publish_without_readers_is_immediate)
{
    rl_wal_t *w = wal_open(64 * MiB, 1024 * MiB, NULL, 0);
    append_key(w, 1, 10);
    waiter_t wt = WAITER_INIT;
    cr_assert_eq(rl_wal_await_published(w, 1, now_plus(600000), waiter_cb, &wt), RL_WAL_OK);
    waiter_wait(&wt);
    cr_expect_eq(wt.status, 0);
    rl_wal_close(w);
}

/* The stats say full from a refused append until segments are freed. */
Test(wal, stats_report_full_and_fill)
{
    rl_wal_t *w = wal_open(64 * KiB, 1 * MiB, ONE, 1);
    rl_wal_reader_t *r = reader(w, "kafka");
    rl_wal_stats_t st;
    uint8_t buf[8000];
    struct iovec iov = {buf, sizeof(buf)};
    uint64_t seq = 0, last = 0;
    int rc;
    while ((rc = rl_wal_append_sync(w, &iov, 1, &seq)) == RL_WAL_OK)
        last = seq;
    cr_assert_eq(rc, RL_WAL_FULL);
    rl_wal_stats(w, &st);
    cr_expect_eq(st.full, 1);
    cr_expect_eq(st.writable, 1, "a full WAL is still writable (the disk is fine)");
    cr_expect_leq(st.bytes, st.max_bytes);
    cr_expect_gt(st.bytes + sizeof(buf) + HDR, st.max_bytes);
    rl_wal_reader_commit(r, last);
    WAIT_FOR((rl_wal_stats(w, &st), !st.full), "still full after the reader passed everything");
    cr_expect_eq(rl_wal_append_sync(w, &iov, 1, &seq), RL_WAL_OK);
    rl_wal_close(w);
}

/* ---- recovery reads in chunks; scans start where asked ---------------------------- */

/* Records straddling recovery's read chunks (4 MiB), one larger than a chunk:
 * all kept after a reopen; a flipped byte in a record past the first chunk
 * cuts the log there, and only there. */
Test(wal, recovery_reads_across_chunk_boundaries)
{
    const size_t small = 7001, big = 5 * MiB + 3;
    rl_wal_t *w = wal_open(256 * MiB, 1024 * MiB, ONE, 1);
    uint64_t n = 0;
    for (; n < 700; n++)
        cr_assert_eq(append_key(w, n + 1, small + n % 13), n + 1);
    cr_assert_eq(append_key(w, 9999, big), ++n);
    for (uint64_t i = 0; i < 300; i++, n++)
        cr_assert_eq(append_key(w, n + 1, small + n % 13), n + 1);
    rl_wal_close(w);

    w = wal_open(256 * MiB, 1024 * MiB, ONE, 1);
    cr_expect_eq(rl_wal_torn(w), 0);
    cr_expect_eq(rl_wal_durable_seq(w), n);
    rl_wal_reader_t *r = reader(w, "kafka");
    for (uint64_t i = 1; i <= n; i++) {
        if (i == 701)
            expect_rec_key(r, i, 9999, big);
        else
            expect_rec_key(r, i, i, small + (i - 1) % 13);
    }
    expect_none(r);
    rl_wal_close(w);

    /* Flip a payload byte of record 850 (well past 4 MiB and the big record). */
    uint64_t off = 0;
    for (uint64_t i = 1; i < 850; i++)
        off += HDR + (i == 701 ? big : small + (i - 1) % 13);
    char path[512];
    last_segment_path(path, sizeof(path));
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, (off_t)(off + HDR + 10)), 1);
    b ^= 0x40;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)(off + HDR + 10)), 1);
    close(fd);
    w = wal_open(256 * MiB, 1024 * MiB, ONE, 1);
    cr_expect_eq(rl_wal_torn(w), 1);
    cr_expect_eq(rl_wal_durable_seq(w), 849, "kept up to the damaged record: %llu",
                 (unsigned long long)rl_wal_durable_seq(w));
    cr_expect_eq(segments_bytes(), off);
    rl_wal_close(w);
}

typedef struct scan_seen {
    uint64_t first, last, n;
    int in_order;
} scan_seen_t;

static void scan_note(void *arg, uint64_t seq, const uint8_t *payload, size_t len)
{
    scan_seen_t *s = arg;
    (void)payload, (void)len;
    if (!s->n)
        s->first = seq;
    else if (seq != s->last + 1)
        s->in_order = 0;
    s->last = seq;
    s->n++;
}

/* rl_wal_scan from any seq: exactly the records from there to the end, across
 * segments, whatever segment from_seq falls in. */
Test(wal, scan_starts_at_from_seq)
{
    rl_wal_t *w = wal_open(64 * KiB, 1024 * MiB, ONE, 1);
    for (uint64_t i = 1; i <= 400; i++)
        append_key(w, i, 1000);
    uint64_t firsts[64];
    cr_assert_gt(list_segments(firsts, 64), 3, "several segments");
    const uint64_t from[] = {0, 1, 2, 63, 64, 65, 200, 399, 400, 401, 10000};
    for (size_t k = 0; k < sizeof(from) / sizeof(from[0]); k++) {
        scan_seen_t s = {0, 0, 0, 1};
        char err[256] = "";
        cr_assert_eq(rl_wal_scan(w, from[k], scan_note, &s, err, sizeof(err)), 0, "%s", err);
        uint64_t start = from[k] ? from[k] : 1;
        uint64_t want = start > 400 ? 0 : 400 - start + 1;
        cr_expect_eq(s.n, want, "from %llu: %llu records", (unsigned long long)from[k],
                     (unsigned long long)s.n);
        if (want) {
            cr_expect_eq(s.first, start, "from %llu", (unsigned long long)from[k]);
            cr_expect_eq(s.last, 400);
            cr_expect(s.in_order);
        }
    }
    rl_wal_close(w);
}

/* ---- preallocation (wal.preallocate) ------------------------------------------- */

static rl_wal_t *wal_open_prealloc(uint64_t segment_size, const char *const *readers,
                                   size_t nreaders)
{
    return wal_open_p(segment_size, 1024 * MiB, readers, nreaders, NULL, 1);
}

static uint64_t spare_size(void)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/next-segment.zeros", waldir);
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The next segment is written full of zeros in the background and renamed into
 * place at the roll: segments are segment_size on disk from their first record,
 * while the WAL counts only what its records take; every record reads back, and
 * a reopen finds no damage in the zeros and appends where the records end. */
Test(wal, preallocated_segments_roll_recover_and_append)
{
    const uint64_t seg = 64 * 1024;
    const size_t len = 1000;
    rl_wal_t *w = wal_open_prealloc(seg, ONE, 1);
    WAIT_FOR(spare_size() == seg, "the spare is prepared (%llu bytes)",
             (unsigned long long)spare_size());

    uint64_t n = 0;
    while (count_segments() < 3) { /* two rolls, each taking a spare */
        cr_assert_eq(append_key(w, n + 1, len), n + 1);
        n++;
        if (count_segments() >= 2)
            WAIT_FOR(spare_size() == seg, "a new spare after the roll");
    }
    uint64_t firsts[8];
    size_t ns = list_segments(firsts, 8);
    char p[512];
    segment_path(firsts[ns - 1], p, sizeof(p));
    cr_expect_eq(file_size(p), seg, "the new active segment is preallocated");
    cr_expect_eq(rl_wal_bytes(w), n * (HDR + len), "the WAL counts records, not zeros");

    rl_wal_reader_t *r = reader(w, "kafka");
    for (uint64_t i = 1; i <= n; i++)
        expect_rec_key(r, i, i, len);
    expect_none(r);
    rl_wal_close(w);

    w = wal_open_prealloc(seg, ONE, 1);
    cr_expect_eq(rl_wal_torn(w), 0, "the zeros of the active segment are not damage");
    cr_expect_eq(rl_wal_durable_seq(w), n);
    cr_expect_eq(rl_wal_bytes(w), n * (HDR + len));
    cr_expect_eq(append_key(w, 5000, 77), n + 1, "appends go on after the last record");
    r = reader(w, "kafka");
    for (uint64_t i = 1; i <= n; i++)
        expect_rec_key(r, i, i, len);
    expect_rec_key(r, n + 1, 5000, 77);
    expect_none(r);
    rl_wal_close(w);
    cr_expect_eq(spare_size() == 0 || spare_size() == seg, 1, "a spare is whole or absent");
}

/* A torn record inside a preallocated segment (non-zero bytes, then zeros) is
 * still damage: cut off and counted, and the log reopens clean. */
Test(wal, torn_record_before_preallocated_zeros_is_cut)
{
    const uint64_t seg = 64 * 1024;
    rl_wal_t *w = wal_open_prealloc(seg, ONE, 1);
    WAIT_FOR(spare_size() == seg, "the spare is prepared");
    uint64_t n = 0;
    while (count_segments() < 2) {
        cr_assert_eq(append_key(w, n + 1, 1000), n + 1);
        n++;
    }
    cr_assert_eq(append_key(w, n + 1, 100), n + 1); /* into the preallocated segment */
    n++;
    rl_wal_close(w);

    uint64_t firsts[8];
    size_t ns = list_segments(firsts, 8);
    char p[512];
    segment_path(firsts[ns - 1], p, sizeof(p));
    cr_assert_eq(file_size(p), seg);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t hdr[HDR] = {50, 0, 0, 0, 1, 2, 3, 4}; /* len 50, a crc that cannot match */
    hdr[8] = 0xff;                                /* a seq larger than any */
    uint64_t end = HDR + 100;                     /* the segment holds one record of 100 bytes */
    if (firsts[ns - 1] != n)                      /* or the roll left more in it */
        end = (n - firsts[ns - 1] + 1) * (HDR + 100);
    cr_assert_eq(pwrite(fd, hdr, sizeof(hdr), (off_t)end), (ssize_t)sizeof(hdr));
    close(fd);

    w = wal_open_prealloc(seg, ONE, 1);
    cr_expect_eq(rl_wal_torn(w), 1, "the torn record is counted");
    cr_expect_eq(rl_wal_durable_seq(w), n);
    cr_expect_eq(file_size(p), end, "cut back to the last whole record");
    rl_wal_close(w);
    w = wal_open_prealloc(seg, ONE, 1);
    cr_expect_eq(rl_wal_torn(w), 0);
    rl_wal_close(w);
}

/* When the spare cannot be written (here: RLIMIT_FSIZE below a segment, as a
 * full disk would), the WAL works on with segments that grow as written. */
Test(wal, preallocation_failure_falls_back_to_growing_segments)
{
    struct rlimit old, lim;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN); /* the write then fails with EFBIG instead */
    lim = old;
    lim.rlim_cur = 48 * 1024; /* below the 64 KiB spare, above what is appended */
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0, "setrlimit: %s", strerror(errno));

    rl_wal_t *w = wal_open_prealloc(64 * 1024, ONE, 1);
    for (uint64_t i = 1; i <= 20; i++)
        cr_assert_eq(append_key(w, i, 1000), i, "append %llu", (unsigned long long)i);
    sleep_ms(200);
    cr_expect_eq(spare_size(), 0, "a failed spare is removed");
    rl_wal_reader_t *r = reader(w, "kafka");
    for (uint64_t i = 1; i <= 20; i++)
        expect_rec_key(r, i, i, 1000);
    expect_none(r);
    rl_wal_close(w);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);

    w = wal_open_prealloc(64 * 1024, ONE, 1);
    cr_expect_eq(rl_wal_torn(w), 0);
    cr_expect_eq(rl_wal_durable_seq(w), 20);
    rl_wal_close(w);
}

/* ---- retention (wal.retention, wal.retention_size) ------------------------------ */

static rl_wal_t *wal_open_r(uint64_t segment_size, uint64_t max_size, uint64_t retention_s,
                            uint64_t retention_bytes, rl_metrics_t *m)
{
    char err[256] = "";
    rl_wal_opts_t o = {.dir = waldir,
                       .segment_size = segment_size,
                       .max_size = max_size,
                       .fsync = 0,
                       .readers = ONE,
                       .nreaders = 1,
                       .retention_s = retention_s,
                       .retention_bytes = retention_bytes};
    rl_wal_t *w = rl_wal_open(&o, m, err, sizeof(err));
    cr_assert_not_null(w, "rl_wal_open(%s): %s", waldir, err);
    return w;
}

static void count_scan(void *arg, uint64_t seq, const uint8_t *payload, size_t len)
{
    (void)seq, (void)payload, (void)len;
    (*(uint64_t *)arg)++;
}

/* Appends n records of len bytes (keys from..from+n-1); returns the last seq. */
static uint64_t append_n(rl_wal_t *w, uint64_t from, uint64_t n, size_t len)
{
    uint64_t last = 0;
    for (uint64_t i = 0; i < n; i++)
        last = append_key(w, from + i, len);
    return last;
}

/* Published segments stay, with their records, for as long as retention says;
 * with retention 0 they go at once (what the WAL always did). */
Test(wal, retention_keeps_published_segments)
{
    rl_wal_stats_t st;

    for (int keep = 0; keep < 2; keep++) {
        rl_wal_t *w = wal_open_r(64 * KiB, 64 * MiB, keep ? 3600 : 0, 0, NULL);
        rl_wal_reader_t *r = reader(w, "kafka");
        uint64_t last = append_n(w, 1, 100, 4000); /* about 7 segments */
        rl_wal_stats(w, &st);
        cr_assert_geq(st.segments, 6);
        cr_expect_eq(st.retained_bytes, 0, "nothing is published yet");
        uint64_t segs = st.segments;
        rl_wal_reader_commit(r, last);
        if (!keep) {
            WAIT_FOR((rl_wal_stats(w, &st), st.segments == 1), "segments stay at %llu",
                     (unsigned long long)st.segments);
            cr_expect_eq(st.retained_bytes, 0);
        } else {
            sleep_ms(600); /* several cursor persists and looks at the segments */
            rl_wal_stats(w, &st);
            cr_expect_eq(st.segments, segs, "a kept segment was deleted");
            cr_expect_geq(st.retained_bytes, (segs - 1) * 64 * KiB);
            cr_expect_eq(st.retained_first_seq, 1);
            cr_expect(st.retained_since_ms > 0 && st.retained_since_ms <= rl_clock_wall_ms());
            /* What is kept can still be scanned from its first seq. */
            uint64_t seen = 0;
            char err[256];
            cr_expect_eq(rl_wal_scan(w, 1, count_scan, &seen, err, sizeof(err)), 0, "%s", err);
            cr_expect_eq(seen, last);
        }
        rl_wal_close(w);
        tu_tmpdir_remove(waldir);
    }
}

/* Kept segments give way to new events: a WAL full of published data takes every
 * append (no RL_WAL_FULL), deleting the oldest kept segments first. */
Test(wal, retained_segments_give_way_to_new_events)
{
    rl_metrics_t *m = rl_metrics_new(NULL, 0);
    rl_wal_t *w = wal_open_r(64 * KiB, 256 * KiB, 3600, 0, m);
    rl_wal_reader_t *r = reader(w, "kafka");
    rl_wal_stats_t st;
    uint64_t last = 0;

    for (uint64_t i = 1; i <= 600; i++) { /* about nine times the cap */
        last = append_key(w, i, 4000);    /* fails the test on RL_WAL_FULL */
        rl_wal_reader_commit(r, last);    /* the sink keeps up */
        cr_assert_leq(rl_wal_bytes(w), 256 * KiB);
    }
    rl_wal_stats(w, &st);
    cr_expect_gt(st.retained_first_seq, 1, "the oldest were dropped");
    cr_expect_gt(metric_value(m, "relay_wal_retained_dropped_total"), 0);
    cr_expect_eq(metric_value(m, "relay_wal_full_total"), 0);
    /* Unpublished records never give way: with the sink stopped, the cap applies. */
    int rc = RL_WAL_OK;
    uint64_t i;
    for (i = 0; i < 1000 && rc == RL_WAL_OK; i++) {
        uint8_t buf[4000];
        fill(buf, sizeof(buf), 10000 + i);
        struct iovec iov = {buf, sizeof(buf)};
        uint64_t seq;
        rc = rl_wal_append_sync(w, &iov, 1, &seq);
    }
    cr_expect_eq(rc, RL_WAL_FULL, "unpublished data was dropped to make room");
    rl_wal_reader_rewind(r); /* nothing was read: from the cursor on */
    expect_rec_key(r, last + 1, 10000, 4000);
    rl_wal_close(w);
    rl_metrics_destroy(m);
}

/* retention_size caps what is kept; time expires it; both survive a restart. */
Test(wal, retention_by_size_and_time_and_across_a_restart)
{
    rl_metrics_t *m = rl_metrics_new(NULL, 0);
    rl_wal_t *w = wal_open_r(64 * KiB, 64 * MiB, 3600, 200 * KiB, m);
    rl_wal_reader_t *r = reader(w, "kafka");
    rl_wal_stats_t st;
    uint64_t last = append_n(w, 1, 150, 4000);

    rl_wal_reader_commit(r, last);
    WAIT_FOR((rl_wal_stats(w, &st), st.retained_bytes <= 200 * KiB), "kept %llu bytes",
             (unsigned long long)st.retained_bytes);
    cr_expect_gt(st.retained_bytes, 100 * KiB, "more was dropped than the cap asks");
    cr_expect_gt(metric_value(m, "relay_wal_retained_bytes"), 100 * KiB);
    rl_wal_close(w);
    rl_metrics_destroy(m);

    /* After a restart the kept segments are still kept (their times from the files),
     * then expire once retention is shorter than their age. */
    w = wal_open_r(64 * KiB, 64 * MiB, 3600, 0, NULL);
    rl_wal_stats(w, &st);
    cr_expect_gt(st.retained_bytes, 100 * KiB, "a restart dropped kept segments");
    cr_expect_gt(st.retained_since_ms, 0);
    rl_wal_close(w);
    w = wal_open_r(64 * KiB, 64 * MiB, 1, 0, NULL);
    WAIT_FOR((rl_wal_stats(w, &st), st.retained_bytes == 0), "kept %llu bytes past retention",
             (unsigned long long)st.retained_bytes);
    cr_expect_eq(st.segments, 1);
    rl_wal_close(w);
}

/* ---- range readers (replay) ------------------------------------------------------ */

static int even_seqs(void *arg, uint64_t seq, const uint8_t *payload, size_t len)
{
    (void)payload, (void)len;
    (*(uint64_t *)arg)++;
    return seq % 2 == 0;
}

/* A range reader gives the records of its range its filter takes, with the
 * same bytes, then nothing (also not what is appended after it opened); it is
 * done once its last record taken is acknowledged. */
Test(wal, range_reader_reads_a_filtered_range_and_ends)
{
    rl_wal_t *w = wal_open_r(16 * KiB, 64 * MiB, 3600, 0, NULL);
    rl_wal_reader_t *main_r = reader(w, "kafka");
    uint64_t last = append_n(w, 1, 40, 1000), looked = 0;
    char err[256] = "";
    rl_wal_range_progress_t p;

    cr_assert_eq(last, 40);
    rl_wal_reader_commit(main_r, last);
    rl_wal_reader_t *r = rl_wal_range_open(w, 3, 12, even_seqs, &looked, err, sizeof(err));
    cr_assert_not_null(r, "%s", err);
    append_n(w, 41, 5, 1000); /* after the range: never read by it */
    for (uint64_t seq = 4; seq <= 12; seq += 2)
        expect_rec_key(r, seq, seq, 1000);
    expect_none(r);
    expect_none(r); /* and again: it stays at its end */
    rl_wal_range_progress(r, &p);
    cr_expect_eq(p.from, 3);
    cr_expect_eq(p.until, 12);
    cr_expect_eq(p.matched, 5);
    cr_expect_eq(p.done, 0, "done before its records were acknowledged");
    cr_expect_eq(looked, 10, "the filter saw %llu records of 3..12", (unsigned long long)looked);
    cr_expect(!rl_wal_reader_caught_up(r));

    /* A sink's failure: rewind reads the unacknowledged records again, each
     * counted once. */
    rl_wal_reader_commit(r, 6);
    rl_wal_reader_rewind(r);
    for (uint64_t seq = 8; seq <= 12; seq += 2)
        expect_rec_key(r, seq, seq, 1000);
    expect_none(r);
    rl_wal_reader_commit(r, 12);
    rl_wal_range_progress(r, &p);
    cr_expect_eq(p.matched, 5);
    cr_expect_eq(p.committed, 12);
    cr_expect_eq(p.done, 1);
    cr_expect_eq(p.gap, 0);
    cr_expect(rl_wal_reader_caught_up(r));
    cr_expect_eq(rl_wal_reader_cursor(main_r), 40, "the range moved the WAL's own cursor");
    rl_wal_range_close(r);

    /* A range past everything durable ends at what is durable. */
    r = rl_wal_range_open(w, 44, UINT64_MAX, NULL, NULL, err, sizeof(err));
    cr_assert_not_null(r, "%s", err);
    expect_rec_key(r, 44, 44, 1000);
    expect_rec_key(r, 45, 45, 1000);
    expect_none(r);
    rl_wal_range_progress(r, &p);
    cr_expect_eq(p.until, 45);
    rl_wal_range_close(r);
    rl_wal_range_close(NULL);
    rl_wal_close(w);
}

/* wal.retention = 0 deletes published segments at once, but not those an open
 * range reader has still to read; and rl_wal_seq_since finds where a time
 * starts. */
Test(wal, range_reader_holds_off_retention)
{
    rl_wal_t *w = wal_open_r(16 * KiB, 64 * MiB, 0, 0, NULL);
    rl_wal_reader_t *main_r = reader(w, "kafka");
    char err[256] = "";
    rl_wal_stats_t st;
    rl_wal_range_progress_t p;

    int64_t before = rl_clock_wall_ms();
    uint64_t last = append_n(w, 1, 60, 1000);
    cr_expect_eq(rl_wal_seq_since(w, before - 1000), 1);
    cr_expect_eq(rl_wal_seq_since(w, rl_clock_wall_ms() + 60000), last + 1);
    rl_wal_reader_t *r = rl_wal_range_open(w, 1, last, NULL, NULL, err, sizeof(err));
    cr_assert_not_null(r, "%s", err);
    rl_wal_reader_commit(main_r, last);
    barrier_sync(w);
    sleep_ms(1200); /* the flusher's idle gc has run at least once */
    rl_wal_stats(w, &st);
    cr_expect_eq(st.first_seq, 1, "a segment the range had to read was deleted");
    for (uint64_t seq = 1; seq <= last; seq++)
        expect_rec_key(r, seq, seq, 1000);
    rl_wal_reader_commit(r, last);
    rl_wal_range_progress(r, &p);
    cr_expect_eq(p.done, 1);
    cr_expect_eq(p.gap, 0);
    rl_wal_range_close(r);
    WAIT_FOR((rl_wal_stats(w, &st), st.segments == 1), "%llu segments kept after the range",
             (unsigned long long)st.segments);
    rl_wal_close(w);
}
