/* wal.c -- see wal.h for the format and the threading model.
 *
 * Locking: one mutex guards the segment list, sequence numbers, the pending
 * batch and the readers' committed cursors. File I/O happens outside it: the
 * flusher writes the batch it swapped out, readers pread what is durable. */
#include "wal.h"

#include "array.h"
#include "bytes.h"
#include "clock.h"
#include "log.h"
#include "prio.h"
#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <isa-l/crc.h>
#include <zlib.h>

#define HDR 16u                         /* u32 len, u32 crc, u64 seq */
#define SPARE_NAME "next-segment.zeros" /* not *.wal: never taken for a segment */
#define SPARE_RETRY_MS 10000
#define MAX_REC (64u * 1024 * 1024) /* sanity bound when scanning */
#define CURSOR_PERSIST_MS 200
#define SCAN_CHUNK (4u << 20) /* recovery reads segments this much at a time */
#define IDX_EVERY 256         /* records between two points of a segment's sparse index */
#define PROBE_MS 1000         /* while unwritable, how often the flusher tries the disk */
#define PROBE_SIZE 4096       /* what the probe writes (and fsyncs) */
#define ERR_LOG_MS 10000      /* repeated write errors are logged at most this often */

/* Where one record of a segment starts: lag in bytes and events is measured
 * from the first record a reader has not acknowledged, found from the nearest
 * point below it by reading a few headers. */
typedef struct idx_point {
    uint64_t seq, off, ord; /* its seq, file offset and ordinal in the segment */
} idx_point_t;

typedef struct segment {
    uint64_t first_seq; /* lower bound of its records' seqs; also its file name */
    uint64_t size;      /* durable bytes */
    uint64_t count;     /* durable records */
    idx_point_t *idx;   /* every IDX_EVERY-th record, by seq (owned) */
    size_t nidx, capidx;
} segment_t;

/* An ack = publish request waiting for every reader's cursor to reach seq. */
typedef struct pub_waiter {
    uint64_t seq;
    int64_t deadline_ms; /* CLOCK_MONOTONIC */
    rl_wal_done_cb cb;
    void *opaque;
} pub_waiter_t;

typedef struct waiter {
    rl_wal_done_cb cb;
    void *opaque;
    /* Barriers only: the first seq that was not durable when the barrier was
     * set. If any record from there on failed, what the barrier vouches for may
     * be among them, so the barrier fails too. 0 for appends. */
    uint64_t floor;
} waiter_t;

typedef struct batch {
    uint8_t *buf;
    size_t len, cap;
    waiter_t *w;
    size_t nw, capw;
    uint64_t first_seq, last_seq; /* 0 when it holds no record */
} batch_t;

struct rl_wal_reader {
    rl_wal_t *w;
    char *name;
    int cursor_fd;
    uint64_t cursor;    /* committed: every seq <= cursor is acknowledged (lock) */
    uint64_t persisted; /* value last written to the cursor file (flusher) */
    rl_metric_t *m_cursor, *m_lag, *m_lag_bytes;
    /* Read position, touched only by the reader's own thread. */
    int fd;
    uint64_t seg_first; /* segment being read */
    uint64_t file_pos;  /* next file offset to read into buf */
    uint64_t want;      /* skip records below this seq */
    uint8_t *buf;
    size_t blen, bpos, bcap;
};

struct rl_wal {
    char *dir;
    uint64_t segment_size, max_size;
    int fsync, dirfd, active_fd;

    pthread_mutex_t lock;
    pthread_cond_t flush_cv, read_cv, reap_cv;
    pthread_t flusher, reaper;
    int stop, started, writable, reaper_started;
    /* Segments every reader has passed, to be unlinked by the reaper thread:
     * unlinking a 64 MiB segment takes ext4 about 30 ms, which under the lock
     * (or in the flusher) stalled every append and commit that long. */
    uint64_t *doomed;
    size_t ndoomed, capdoomed;
    /* wal.preallocate: the reaper also writes the next segment ahead of time,
     * full of zeros and synced, as SPARE_NAME; a roll renames it into place. A
     * sync of a write inside such a file has no file size or block allocation
     * to record, so ext4 flushes the data alone instead of committing its
     * journal, which is shared with every other file on the disk (Kafka's
     * logs): measured under load, fdatasync p99.9 went from 2.3-19 ms to
     * 1.4-2.3 ms and its CPU time halved. */
    int prealloc;
    int spare_ready;        /* SPARE_NAME is whole and synced (lock) */
    int64_t spare_retry_ms; /* after a failed preparation, not before (lock) */
    int spare_warned;       /* the last preparation failed and said so (reaper only) */
    atomic_int bg_stop;     /* rl_wal_close: abandon a preparation */
    int full;               /* an append was refused for the cap and nothing was freed since */

    batch_t pending, flushing;
    uint64_t next_seq, durable_seq, torn;
    uint64_t last_failed_seq; /* highest seq of a batch whose write failed */
    uint64_t recovered_seq;   /* last record (or segment name - 1) found at open */
    uint64_t bytes;           /* durable bytes on disk */
    uint64_t inflight_bytes;  /* in the batch being written */
    segment_t *segs;
    size_t nsegs, capsegs;
    rl_wal_reader_t *readers;
    size_t nreaders;
    int cursors_dirty;
    uint64_t wakeups; /* rl_wal_wakeup calls: a waiting reader returns when it changes */

    pub_waiter_t *pubw; /* ack = publish waiters, in no particular order */
    size_t npubw, cappubw;
    int pub_cancelled; /* rl_wal_cancel_published: fail them all, take no more */

    /* Flusher-only: rate limit of the write-error log, time of the last probe. */
    int64_t last_err_log_ms, last_probe_ms;
    uint64_t errs_unlogged;

    rl_metric_t *m_bytes, *m_segments, *m_durable, *m_fsyncs, *m_errors, *m_torn, *m_full, *m_max,
        *m_fill, *m_writable, *m_isfull, *m_torn_bytes, *m_commit;
    uint64_t torn_bytes;
    rl_metrics_t *metrics; /* render_hook is registered there; rl_wal_close unregisters it */
};

/* What a preallocated segment is written with, and what its unused end is
 * compared against. */
static const uint8_t zeros[1 << 20];

/* The checksum covers the sequence number too, so a record copied to the wrong
 * place or with a damaged header is caught, not only damaged payloads. It is
 * zlib's CRC-32 (the same polynomial, seed and chaining: the unit tests forge
 * records with zlib's crc32), computed by ISA-L, whose carry-less-multiply
 * code runs about 4x faster than zlib's on records this size: recovery of a
 * large WAL was bound by it. */
static uint32_t rec_crc(const uint8_t *seq8, const uint8_t *payload, size_t len)
{
    return crc32_gzip_refl(crc32_gzip_refl(0, seq8, 8), payload, (uint64_t)len);
}

static void seg_path(const rl_wal_t *w, uint64_t first_seq, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%020llu.wal", w->dir, (unsigned long long)first_seq);
}

static int batch_reserve(batch_t *b, size_t more)
{
    uint8_t *p = rl_array_grow(b->buf, &b->cap, b->len + more, 1, 64 * 1024);
    if (!p)
        return -1;
    b->buf = p;
    return 0;
}

static int batch_add_waiter(batch_t *b, rl_wal_done_cb cb, void *opaque, uint64_t floor)
{
    waiter_t *v = rl_array_grow(b->w, &b->capw, b->nw + 1, sizeof(*v), 64);
    if (!v)
        return -1;
    b->w = v;
    b->w[b->nw++] = (waiter_t){cb, opaque, floor};
    return 0;
}

/* Counts one more durable record of `seg` at file offset `off`. */
static int seg_note_record(segment_t *seg, uint64_t seq, uint64_t off)
{
    if (seg->count % IDX_EVERY == 0) {
        idx_point_t *v = rl_array_grow(seg->idx, &seg->capidx, seg->nidx + 1, sizeof(*v), 16);
        if (!v)
            return -1;
        seg->idx = v;
        seg->idx[seg->nidx++] = (idx_point_t){seq, off, seg->count};
    }
    seg->count++;
    return 0;
}

/* ---- recovery ---------------------------------------------------------- */

/* Reads a segment record by record, indexing them into seg. *valid is the
 * length of its longest valid prefix, *last_seq the last record's seq there (0
 * if none). The file is read in large chunks, not a header and a payload per
 * record: recovery of a WAL holding a million events is then bound by the CRCs,
 * not by two million system calls. */
static int scan_segment(const char *path, segment_t *seg, uint64_t *valid, uint64_t *last_seq,
                        uint64_t *file_size)
{
    int rc = -1, fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = SCAN_CHUNK, have = 0, at = 0; /* buf[at..have) is file[pos..) */
    uint8_t *buf = malloc(cap);
    uint64_t pos = 0, prev = 0;
    struct stat st;

    *valid = *last_seq = 0;
    if (fd < 0 || !buf || fstat(fd, &st) != 0)
        goto out;
    *file_size = (uint64_t)st.st_size;
    while (pos + HDR <= *file_size) {
        if (have - at < HDR || have - at < HDR + (size_t)get32(buf + at)) {
            /* Not all of the next record is in the buffer: move what is to the
             * front and read on (growing the buffer for a record larger than it). */
            size_t need = HDR;
            if (have - at >= HDR) {
                uint32_t len = get32(buf + at);
                if (len > MAX_REC)
                    break;
                need = HDR + len;
            }
            memmove(buf, buf + at, have - at);
            have -= at;
            at = 0;
            uint8_t *nb = rl_array_grow(buf, &cap, need, 1, 0);
            if (!nb)
                goto out;
            buf = nb;
            ssize_t k = 0;
            while (have < need && (k = pread(fd, buf + have, cap - have, (off_t)(pos + have))) > 0)
                have += (size_t)k;
            if (k < 0)
                goto out;
            if (have < need)
                break; /* the file ends inside this record */
        }
        const uint8_t *hdr = buf + at;
        uint32_t len = get32(hdr);
        uint64_t seq = get64(hdr + 8);
        if (len > MAX_REC || pos + HDR + len > *file_size || seq <= prev)
            break;
        if (rec_crc(hdr + 8, hdr + HDR, len) != get32(hdr + 4))
            break;
        if (seg_note_record(seg, seq, pos) != 0)
            goto out;
        prev = seq;
        pos += HDR + len;
        at += HDR + len;
    }
    *valid = pos;
    *last_seq = prev;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

static int cmp_seg(const void *a, const void *b)
{
    const segment_t *x = a, *y = b;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

static int seg_push(rl_wal_t *w, uint64_t first_seq, uint64_t size)
{
    segment_t *v = rl_array_grow(w->segs, &w->capsegs, w->nsegs + 1, sizeof(*v), 16);
    if (!v)
        return -1;
    w->segs = v;
    w->segs[w->nsegs++] = (segment_t){.first_seq = first_seq, .size = size};
    return 0;
}

/* 1 when path's bytes [from, to) are all zero: the unused end of a
 * preallocated segment (wal.preallocate), which is not damage. */
static int zero_tail(const char *path, uint64_t from, uint64_t to)
{
    const size_t chunk = 64 * 1024;
    uint8_t *buf = malloc(chunk);
    int fd = open(path, O_RDONLY | O_CLOEXEC), zero = buf && fd >= 0;

    while (zero && from < to) {
        size_t n = to - from < chunk ? (size_t)(to - from) : chunk;
        ssize_t k = pread(fd, buf, n, (off_t)from);
        zero = k > 0 && memcmp(buf, zeros, (size_t)k) == 0;
        from += k > 0 ? (uint64_t)k : 0;
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return zero;
}

static int load_segments(rl_wal_t *w, uint64_t *last_seq, char *errstr, size_t errstr_size)
{
    DIR *d = opendir(w->dir);
    struct dirent *de;
    int rc = -1;

    *last_seq = 0;
    if (!d) {
        rl_seterr(errstr, errstr_size, "%s: %s", w->dir, strerror(errno));
        goto out;
    }
    while ((de = readdir(d))) {
        char *end;
        unsigned long long first = strtoull(de->d_name, &end, 10);
        if (end == de->d_name || strcmp(end, ".wal") != 0)
            continue;
        if (seg_push(w, first, 0) != 0)
            goto out;
    }
    if (w->nsegs) /* segs is NULL in an empty directory: qsort(NULL, 0) is undefined */
        qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_seg);
    for (size_t i = 0; i < w->nsegs; i++) {
        char path[4096];
        uint64_t valid, last, fsize = 0;
        seg_path(w, w->segs[i].first_seq, path, sizeof(path));
        if (scan_segment(path, &w->segs[i], &valid, &last, &fsize) != 0) {
            rl_seterr(errstr, errstr_size, "%s: cannot read: %s", path, strerror(errno));
            goto out;
        }
        if (last && last < *last_seq) {
            rl_seterr(errstr, errstr_size, "%s: sequence numbers go backwards", path);
            goto out;
        }
        if (valid < fsize && zero_tail(path, valid, fsize)) {
            /* Preallocated and not used up: appends go on at `valid`. */
        } else if (valid < fsize) {
            /* A torn tail (crash mid-write) in the last segment is expected; in
             * an older one it is damage. Either way only the valid prefix can be
             * trusted, and it is all that was ever acknowledged. */
            rl_log(i + 1 == w->nsegs ? RL_LOG_WARN : RL_LOG_ERROR,
                   "wal: %s: dropping %llu bytes of torn or damaged records after offset %llu",
                   path, (unsigned long long)(fsize - valid), (unsigned long long)valid);
            if (truncate(path, (off_t)valid) != 0) {
                rl_seterr(errstr, errstr_size, "%s: truncate: %s", path, strerror(errno));
                goto out;
            }
            w->torn++;
            w->torn_bytes += fsize - valid;
        }
        w->segs[i].size = valid;
        w->bytes += valid;
        if (last)
            *last_seq = last;
        /* A segment's records are never below its name, even when it is empty
         * (a fresh active segment after the older ones were deleted): new seqs
         * must not restart below it. */
        if (w->segs[i].first_seq && w->segs[i].first_seq - 1 > *last_seq)
            *last_seq = w->segs[i].first_seq - 1;
    }
    rc = 0;
out:
    if (d)
        closedir(d);
    return rc;
}

static void spare_path(const rl_wal_t *w, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/" SPARE_NAME, w->dir);
}

/* Opens segment first_seq as the active one: OPEN_EXISTING, OPEN_CREATE (empty)
 * or OPEN_SPARE (the preallocated spare renamed into place). */
enum { OPEN_EXISTING, OPEN_CREATE, OPEN_SPARE };

static int open_segment(rl_wal_t *w, uint64_t first_seq, int create, char *errstr,
                        size_t errstr_size)
{
    char path[4096], spare[4096];
    seg_path(w, first_seq, path, sizeof(path));
    if (create == OPEN_SPARE) {
        spare_path(w, spare, sizeof(spare));
        if (rename(spare, path) != 0) {
            rl_seterr(errstr, errstr_size, "%s: rename: %s", spare, strerror(errno));
            return -1;
        }
    }
    /* No O_APPEND: the flusher writes at the durable size with pwrite, so that
     * a write that failed half-way is overwritten by the next one even if it
     * could not be cut off (Linux pwrite ignores the offset under O_APPEND). */
    int fd =
        open(path, O_WRONLY | O_CLOEXEC | (create == OPEN_CREATE ? O_CREAT | O_EXCL : 0), 0644);
    if (fd < 0) {
        rl_seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* The new file's directory entry must be durable too, or a crash could lose
     * a whole acknowledged segment. */
    if (create && w->fsync && fsync(w->dirfd) != 0) {
        rl_seterr(errstr, errstr_size, "%s: fsync: %s", w->dir, strerror(errno));
        /* An empty file left behind would be read at the next start as a
         * segment named above records that went on into the older one, and
         * readers positioned on it would skip those records. */
        unlink(path);
        close(fd);
        return -1;
    }
    if (w->active_fd >= 0)
        close(w->active_fd);
    w->active_fd = fd;
    return 0;
}

/* ---- cursors ------------------------------------------------------------ */

static int reader_init(rl_wal_t *w, rl_wal_reader_t *r, const char *name, rl_metrics_t *m,
                       char *errstr, size_t errstr_size)
{
    char path[4096], labels[128];
    uint8_t b[12];

    r->w = w;
    r->fd = -1;
    r->name = strdup(name);
    snprintf(path, sizeof(path), "%s/%s.cursor", w->dir, name);
    r->cursor_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (!r->name || r->cursor_fd < 0) {
        rl_seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* u64 seq + u32 crc; an unreadable cursor means "replay all that is kept":
     * duplicates with the same id are allowed, losses are not. */
    if (pread(r->cursor_fd, b, sizeof(b), 0) == (ssize_t)sizeof(b) &&
        (uint32_t)crc32(0L, b, 8) == get32(b + 8))
        r->cursor = get64(b);
    r->persisted = r->cursor;
    r->want = r->cursor + 1;
    snprintf(labels, sizeof(labels), "sink=\"%s\"", name);
    if (m) {
        r->m_cursor = rl_metrics_gauge(m, "relay_wal_cursor", labels,
                                       "Last WAL sequence number acknowledged by the sink.");
        r->m_lag = rl_metrics_gauge(m, "relay_sink_lag_events", labels,
                                    "Durable events the sink has not acknowledged yet.");
        r->m_lag_bytes =
            rl_metrics_gauge(m, "relay_sink_lag_bytes", labels,
                             "WAL bytes the sink has not acknowledged yet (compare with "
                             "relay_wal_max_bytes: the room left before relay answers 503).");
    }
    return 0;
}

/* Returns 0, or -1 when the cursor could not be written (it stays dirty). */
static int persist_cursor(rl_wal_reader_t *r, uint64_t v, int sync)
{
    uint8_t b[12];
    put64(b, v);
    put32(b + 8, (uint32_t)crc32(0L, b, 8));
    if (pwrite(r->cursor_fd, b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return -1;
    r->persisted = v;
    if (sync)
        fdatasync(r->cursor_fd);
    return 0;
}

/* Drops segments every reader has passed from the WAL and hands their files to
 * the reaper (reaper_main). Called with the lock held; the active (last) segment
 * always stays. Should relay stop before the reaper unlinks a file, the next
 * start finds the segment again, behind every cursor, and drops it again. */
static void gc_segments(rl_wal_t *w)
{
    uint64_t min = w->durable_seq;
    for (size_t i = 0; i < w->nreaders; i++)
        if (w->readers[i].cursor < min)
            min = w->readers[i].cursor;
    size_t drop = 0;
    while (drop + 1 < w->nsegs && w->segs[drop + 1].first_seq - 1 <= min) {
        uint64_t *v = rl_array_grow(w->doomed, &w->capdoomed, w->ndoomed + 1, sizeof(*v), 8);
        if (!v) {
            char path[4096]; /* out of memory: unlink it here after all */
            seg_path(w, w->segs[drop].first_seq, path, sizeof(path));
            if (unlink(path) != 0 && errno != ENOENT) {
                rl_warn("wal: cannot delete %s: %s", path, strerror(errno));
                break;
            }
        } else {
            w->doomed = v;
            w->doomed[w->ndoomed++] = w->segs[drop].first_seq;
        }
        w->bytes -= w->segs[drop].size;
        free(w->segs[drop].idx);
        drop++;
    }
    if (drop) {
        memmove(w->segs, w->segs + drop, (w->nsegs - drop) * sizeof(*w->segs));
        w->nsegs -= drop;
        w->full = 0; /* room again, perhaps: the next append will tell */
        pthread_cond_signal(&w->reap_cv);
    }
}

/* ---- the flusher -------------------------------------------------------- */

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = ENOSPC; /* a regular file takes nothing: treat it as full */
            return -1;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Writes SPARE_NAME: segment_size zero bytes, synced. Background thread, no
 * lock; returns 0, or -1 (the file is removed). */
static int prepare_spare(rl_wal_t *w)
{
    char path[4096];
    int rc = -1, fd;

    spare_path(w, path, sizeof(path));
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        goto out;
    for (uint64_t off = 0; off < w->segment_size;) {
        size_t n =
            w->segment_size - off < sizeof(zeros) ? (size_t)(w->segment_size - off) : sizeof(zeros);
        if (atomic_load(&w->bg_stop)) {
            errno = ECANCELED;
            goto out;
        }
        if (pwrite_all(fd, zeros, n, off) != 0)
            goto out;
        /* Written back a MiB at a time: 64 MiB of dirty pages at once would
         * hold the disk, and the commits waiting on it, for a moment. */
        if (w->fsync)
            sync_file_range(fd, (off_t)off, (off_t)n,
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER);
        off += n;
    }
    if (w->fsync && fsync(fd) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0) {
        int saved = errno;
        if (saved != ECANCELED && !w->spare_warned) /* once, not at every retry */
            rl_warn("wal: cannot preallocate the next segment (%s): %s; segments grow as "
                    "written until it works (retried every %d s)",
                    path, strerror(saved), SPARE_RETRY_MS / 1000);
        w->spare_warned = saved != ECANCELED;
        unlink(path);
    } else if (w->spare_warned) {
        rl_info("wal: preallocating segments again");
        w->spare_warned = 0;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* The WAL's background thread ("reaper"): unlinks doomed segments and, with
 * wal.preallocate, prepares the spare, outside the lock. On stop, it finishes
 * the unlinks first. */
static void *reaper_main(void *arg)
{
    rl_wal_t *w = arg;
    uint64_t *batch = NULL;
    size_t cap = 0;

    pthread_setname_np(pthread_self(), "rl-wal-gc"); /* top -H, perf */
    rl_prio_background();
    pthread_mutex_lock(&w->lock);
    for (;;) {
        int64_t now = rl_clock_mono_ms();
        int want_spare = w->prealloc && !w->spare_ready && now >= w->spare_retry_ms;
        if (!w->ndoomed && !want_spare && !w->stop) {
            if (w->prealloc && !w->spare_ready) /* a retry is due later */
                rl_cond_wait_until(&w->reap_cv, &w->lock, w->spare_retry_ms);
            else {
                pthread_cond_wait(&w->reap_cv, &w->lock);
            }
            continue;
        }
        if (w->ndoomed) {
            /* Swap the list out: gc_segments goes on filling the other one. */
            uint64_t *v = w->doomed;
            size_t n = w->ndoomed, c = w->capdoomed;
            w->doomed = batch;
            w->capdoomed = cap;
            w->ndoomed = 0;
            batch = v;
            cap = c;
            pthread_mutex_unlock(&w->lock);
            for (size_t i = 0; i < n; i++) {
                char path[4096];
                seg_path(w, batch[i], path, sizeof(path));
                if (unlink(path) != 0 && errno != ENOENT)
                    rl_warn("wal: cannot delete %s: %s (it is deleted at the next start)", path,
                            strerror(errno));
            }
            pthread_mutex_lock(&w->lock);
            continue;
        }
        if (w->stop)
            break;
        pthread_mutex_unlock(&w->lock);
        int rc = prepare_spare(w);
        pthread_mutex_lock(&w->lock);
        if (rc == 0)
            w->spare_ready = 1;
        else
            w->spare_retry_ms = rl_clock_mono_ms() + SPARE_RETRY_MS;
    }
    pthread_mutex_unlock(&w->lock);
    free(batch);
    return NULL;
}

static void roll_if_full(rl_wal_t *w)
{
    char errstr[256];
    segment_t *act = &w->segs[w->nsegs - 1];
    if (act->size < w->segment_size)
        return;
    uint64_t first = w->pending.first_seq ? w->pending.first_seq : w->next_seq;
    int spare = w->spare_ready;
    if (spare) {
        w->spare_ready = 0;
        pthread_cond_signal(&w->reap_cv); /* prepare the next one */
        if (open_segment(w, first, OPEN_SPARE, errstr, sizeof(errstr)) != 0) {
            rl_warn("wal: cannot use the preallocated segment: %s", errstr);
            spare = 0;
        }
    }
    if (!spare && open_segment(w, first, OPEN_CREATE, errstr, sizeof(errstr)) != 0) {
        rl_error("wal: cannot start a new segment: %s", errstr); /* keep appending */
        return;
    }
    seg_push(w, first, 0);
}

/* Writes a batch at the end of the active segment (no lock held). Returns 0
 * once it is durable, -1 when it is not: then the segment is cut back to
 * `before`, so that it ends on a record boundary, and the records are lost
 * (their waiters fail, the HTTP side answers 503). */
static int write_batch(rl_wal_t *w, int fd, const batch_t *b, uint64_t before)
{
    uint64_t t0 = rl_clock_mono_us();
    int err = pwrite_all(fd, b->buf, b->len, before);
    if (!err && w->fsync) {
        err = fdatasync(fd);
        rl_metric_add(w->m_fsyncs, 1);
    }
    if (!err) {
        rl_metric_observe_us(w->m_commit, rl_clock_mono_us() - t0);
        return 0;
    }
    int saved = errno;
    rl_metric_add(w->m_errors, 1);
    /* Cut off what may have been partly written. Should that fail too, the
     * garbage past `before` is still harmless: readers never read past the
     * durable size, the next batch is written over it at the same offset, and
     * recovery drops whatever does not check out. */
    int cut = ftruncate(fd, (off_t)before);
    int64_t now = rl_clock_mono_ms();
    if (!w->last_err_log_ms || now - w->last_err_log_ms >= ERR_LOG_MS) {
        rl_error("wal: write failed: %s; %zu waiting requests are answered 503%s%s "
                 "(%llu more failures since the last message)",
                 strerror(saved), b->nw, cut ? "; cannot cut back the segment: " : "",
                 cut ? strerror(errno) : "", (unsigned long long)w->errs_unlogged);
        w->last_err_log_ms = now;
        w->errs_unlogged = 0;
    } else {
        w->errs_unlogged++;
    }
    return -1;
}

/* After a failed write, nothing tells the WAL that the disk has room again
 * until a request tries, and a load balancer that trusts /readyz sends none:
 * so the flusher itself now and then grows the active segment by a few KiB
 * past its durable end (the file that must grow, under the same limits), syncs
 * and cuts it back. Flusher thread, no lock: nobody else writes the segment and
 * readers never read past the durable size. Should relay die in between,
 * recovery drops the zeros as a torn tail. */
static int probe_disk(int fd, uint64_t size)
{
    static const uint8_t zeros[PROBE_SIZE];
    int ok = pwrite_all(fd, zeros, sizeof(zeros), size) == 0 && fdatasync(fd) == 0;
    if (ftruncate(fd, (off_t)size) != 0)
        ok = 0;
    return ok;
}

/* Adds the records of a batch written at `before` to the active segment's
 * count and index (lock held). */
static void note_batch(rl_wal_t *w, const batch_t *b, uint64_t before)
{
    segment_t *act = &w->segs[w->nsegs - 1];
    for (size_t o = 0; o + HDR <= b->len;) {
        uint32_t len = get32(b->buf + o);
        if (seg_note_record(act, get64(b->buf + o + 8), before + o) != 0)
            act->count++; /* out of memory: the lag is then measured coarser */
        o += HDR + len;
    }
}

static uint64_t min_cursor(const rl_wal_t *w)
{
    uint64_t min = UINT64_MAX;
    for (size_t i = 0; i < w->nreaders; i++)
        if (w->readers[i].cursor < min)
            min = w->readers[i].cursor;
    return min;
}

/* Takes the publish waiters that are settled (published, timed out or
 * cancelled) out of the list into *out (malloc'd; lock held). *next_ms gets the
 * nearest deadline of those left, or INT64_MAX. Returns how many were taken. */
static size_t take_settled(rl_wal_t *w, pub_waiter_t **out, int **status, int64_t *next_ms)
{
    uint64_t min = min_cursor(w);
    int64_t now = rl_clock_mono_ms();
    size_t n = 0, keep = 0, settled = 0;

    *out = NULL;
    *status = NULL;
    *next_ms = INT64_MAX;
    for (size_t i = 0; i < w->npubw; i++) {
        const pub_waiter_t *p = &w->pubw[i];
        if (p->seq <= min || w->pub_cancelled || w->stop || now >= p->deadline_ms)
            settled++;
        else if (p->deadline_ms < *next_ms)
            *next_ms = p->deadline_ms;
    }
    if (!settled)
        return 0;
    *next_ms = INT64_MAX;
    *out = malloc(settled * sizeof(**out));
    *status = malloc(settled * sizeof(**status));
    if (!*out || !*status) {
        free(*out);
        free(*status);
        *out = NULL;
        *status = NULL;
        *next_ms = now + 10; /* try again shortly */
        return 0;
    }
    for (size_t i = 0; i < w->npubw; i++) {
        pub_waiter_t *p = &w->pubw[i];
        int st = 1;
        if (p->seq <= min)
            st = 0;
        else if (w->pub_cancelled || w->stop)
            st = RL_WAL_ERR;
        else if (now >= p->deadline_ms)
            st = RL_WAL_TIMEOUT;
        if (st != 1) {
            (*out)[n] = *p;
            (*status)[n++] = st;
        } else {
            w->pubw[keep++] = *p;
            if (p->deadline_ms < *next_ms)
                *next_ms = p->deadline_ms;
        }
    }
    w->npubw = keep;
    return n;
}

/* Settles publish waiters: takes them under the lock, calls them without it.
 * Returns the nearest deadline left (INT64_MAX when none). Lock held on entry
 * and on return. */
static int64_t settle_published(rl_wal_t *w)
{
    pub_waiter_t *done;
    int *status;
    int64_t next;
    size_t n = take_settled(w, &done, &status, &next);
    if (n) {
        pthread_mutex_unlock(&w->lock);
        for (size_t i = 0; i < n; i++)
            done[i].cb(done[i].opaque, status[i]);
        pthread_mutex_lock(&w->lock);
    }
    free(done);
    free(status);
    return next;
}

static void *flusher_main(void *arg)
{
    rl_wal_t *w = arg;

    pthread_setname_np(pthread_self(), "rl-wal-flush"); /* top -H, perf */
    int64_t last_persist = 0;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        /* Idle: sleep until something is appended, a cursor moves, a publish
         * waiter's deadline comes, or it is time to probe an unwritable disk. */
        int64_t next_pub = settle_published(w);
        while (!w->pending.nw && !w->pending.len && !w->stop && !w->cursors_dirty) {
            int64_t now = rl_clock_mono_ms(), wait = 1000;
            if (next_pub != INT64_MAX && next_pub - now < wait)
                wait = next_pub - now > 0 ? next_pub - now : 0;
            if (!w->writable && now - w->last_probe_ms >= PROBE_MS) {
                int fd = w->active_fd;
                uint64_t size = w->segs[w->nsegs - 1].size;
                w->last_probe_ms = now;
                pthread_mutex_unlock(&w->lock);
                int ok = probe_disk(fd, size);
                pthread_mutex_lock(&w->lock);
                if (ok && !w->writable) {
                    rl_info("wal: %s is writable again", w->dir);
                    w->writable = 1;
                }
                continue;
            }
            rl_cond_wait_ms(&w->flush_cv, &w->lock, wait);
            next_pub = settle_published(w);
        }
        if (w->stop && !w->pending.nw && !w->pending.len)
            break;

        /* Swap the pending batch out; appenders go on filling a fresh one. */
        batch_t b = w->pending;
        w->pending = w->flushing;
        w->pending.len = w->pending.nw = 0;
        w->pending.first_seq = w->pending.last_seq = 0;
        w->flushing = b;
        w->inflight_bytes = b.len;
        uint64_t before = w->segs[w->nsegs - 1].size;
        int fd = w->active_fd, status = 0;
        pthread_mutex_unlock(&w->lock);

        if (b.len)
            status = write_batch(w, fd, &b, before);

        pthread_mutex_lock(&w->lock);
        w->inflight_bytes = 0;
        if (b.len) /* a batch of barriers alone says nothing about the disk */
            w->writable = status == 0;
        if (status != 0) /* the first probe one PROBE_MS after the failure, not at once */
            w->last_probe_ms = rl_clock_mono_ms();
        if (status != 0 && b.last_seq > w->last_failed_seq)
            w->last_failed_seq = b.last_seq;
        uint64_t last_failed = w->last_failed_seq;
        if (status == 0 && b.len) {
            note_batch(w, &b, before);
            w->segs[w->nsegs - 1].size += b.len;
            w->bytes += b.len;
            w->durable_seq = b.last_seq;
            w->full = 0;
            roll_if_full(w);
            pthread_cond_broadcast(&w->read_cv);
        }
        pthread_mutex_unlock(&w->lock);
        for (size_t i = 0; i < b.nw; i++) {
            int st = status;
            if (b.w[i].floor && last_failed >= b.w[i].floor)
                st = -1;
            b.w[i].cb(b.w[i].opaque, st);
        }
        pthread_mutex_lock(&w->lock);

        int64_t now = rl_clock_mono_ms();
        if (w->cursors_dirty && (now - last_persist >= CURSOR_PERSIST_MS || w->stop)) {
            int failed = 0;
            for (size_t i = 0; i < w->nreaders; i++)
                if (w->readers[i].cursor != w->readers[i].persisted)
                    failed |= persist_cursor(&w->readers[i], w->readers[i].cursor, 0);
            w->cursors_dirty = failed != 0;
            last_persist = now;
            gc_segments(w);
        } else if (w->cursors_dirty && !w->pending.len && !w->pending.nw) {
            /* Nothing else to do: sleep until it is time to persist, settling
             * publish waiters (whom the cursors just moved) first. */
            int64_t next = settle_published(w);
            int64_t wait = CURSOR_PERSIST_MS - (rl_clock_mono_ms() - last_persist);
            if (next != INT64_MAX && next - rl_clock_mono_ms() < wait)
                wait = next - rl_clock_mono_ms();
            if (!w->pending.len && !w->pending.nw && !w->stop)
                rl_cond_wait_ms(&w->flush_cv, &w->lock, wait);
        }
    }
    /* Stopping: whoever still waits for publication is told it did not happen. */
    settle_published(w);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- lag ----------------------------------------------------------------- */

/* Durable records after `cursor`, and their bytes on disk (lock held). The
 * first of them is found from the nearest index point of its segment by
 * reading at most IDX_EVERY headers: this runs per scrape, not per event. */
static void lag_locked(rl_wal_t *w, uint64_t cursor, uint64_t *events, uint64_t *bytes)
{
    size_t i = 0;
    *events = *bytes = 0;
    if (cursor >= w->durable_seq || !w->nsegs)
        return;
    for (size_t j = 0; j < w->nsegs; j++)
        if (w->segs[j].first_seq <= cursor + 1)
            i = j;
    const segment_t *seg = &w->segs[i];
    uint64_t off = 0, ord = 0;
    for (size_t k = 0; k < seg->nidx && seg->idx[k].seq <= cursor; k++) {
        off = seg->idx[k].off;
        ord = seg->idx[k].ord;
    }
    if (off < seg->size) {
        char path[4096];
        seg_path(w, seg->first_seq, path, sizeof(path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint8_t hdr[HDR];
        while (fd >= 0 && off + HDR <= seg->size &&
               pread(fd, hdr, HDR, (off_t)off) == (ssize_t)HDR && get64(hdr + 8) <= cursor) {
            off += HDR + get32(hdr);
            ord++;
        }
        if (fd >= 0)
            close(fd);
    }
    if (off < seg->size) {
        *bytes = seg->size - off;
        *events = seg->count > ord ? seg->count - ord : 0;
    }
    for (size_t j = i + 1; j < w->nsegs; j++) {
        *bytes += w->segs[j].size;
        *events += w->segs[j].count;
    }
}

/* ---- public ------------------------------------------------------------- */

static void render_hook(void *arg)
{
    rl_wal_t *w = arg;
    pthread_mutex_lock(&w->lock);
    rl_metric_set(w->m_bytes, (int64_t)w->bytes);
    rl_metric_set(w->m_segments, (int64_t)w->nsegs);
    rl_metric_set(w->m_durable, (int64_t)w->durable_seq);
    rl_metric_set_f(w->m_fill, w->max_size ? (double)w->bytes / (double)w->max_size : 0);
    rl_metric_set(w->m_writable, w->writable);
    rl_metric_set(w->m_isfull, w->full);
    for (size_t i = 0; i < w->nreaders; i++) {
        uint64_t ev, by;
        lag_locked(w, w->readers[i].cursor, &ev, &by);
        rl_metric_set(w->readers[i].m_cursor, (int64_t)w->readers[i].cursor);
        rl_metric_set(w->readers[i].m_lag, (int64_t)ev);
        rl_metric_set(w->readers[i].m_lag_bytes, (int64_t)by);
    }
    pthread_mutex_unlock(&w->lock);
}

static void register_metrics(rl_wal_t *w, rl_metrics_t *m)
{
    if (!m)
        return;
    w->m_bytes = rl_metrics_gauge(m, "relay_wal_bytes", "", "Bytes of WAL segments on disk.");
    w->m_max = rl_metrics_gauge(m, "relay_wal_max_bytes", "", "The WAL's size cap (wal.max_size).");
    w->m_segments = rl_metrics_gauge(m, "relay_wal_segments", "", "WAL segment files on disk.");
    w->m_durable =
        rl_metrics_gauge(m, "relay_wal_durable_seq", "", "Last durable WAL sequence number.");
    w->m_fsyncs =
        rl_metrics_counter(m, "relay_wal_fsyncs_total", "", "Group commits (fsyncs) of the WAL.");
    w->m_commit = rl_metrics_histogram(m, "relay_wal_commit_seconds", "",
                                       "Duration of one group commit: the write and its fsync.");
    w->m_errors = rl_metrics_counter(m, "relay_wal_write_errors_total", "",
                                     "Failed WAL writes or fsyncs (requests answered 503).");
    w->m_torn = rl_metrics_counter(m, "relay_wal_torn_total", "",
                                   "Torn or damaged WAL tails cut off at start-up.");
    w->m_full = rl_metrics_counter(m, "relay_wal_full_total", "",
                                   "Appends refused because the WAL reached wal.max_size.");
    w->m_fill =
        rl_metrics_gauge_f(m, "relay_wal_fill_ratio", "",
                           "relay_wal_bytes / relay_wal_max_bytes: at 1 relay answers 503.");
    w->m_writable = rl_metrics_gauge(m, "relay_wal_writable", "",
                                     "0 after a failed WAL write (disk full, I/O error) until a "
                                     "write succeeds again.");
    w->m_isfull =
        rl_metrics_gauge(m, "relay_wal_full", "", "1 while appends are refused for wal.max_size.");
    w->m_torn_bytes = rl_metrics_counter(m, "relay_wal_torn_bytes_total", "",
                                         "Bytes of torn or damaged WAL tails cut off at start-up.");
    rl_metric_set(w->m_max, (int64_t)w->max_size);
    rl_metric_add(w->m_torn, w->torn);
    rl_metric_add(w->m_torn_bytes, w->torn_bytes);
    rl_metrics_on_render(m, render_hook, w);
    w->metrics = m;
}

rl_wal_t *rl_wal_open(const rl_wal_opts_t *o, rl_metrics_t *metrics, char *errstr,
                      size_t errstr_size)
{
    rl_wal_t *w = calloc(1, sizeof(*w));
    uint64_t last_seq = 0;
    int ok = 0;

    if (!w) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    w->dir = strdup(o->dir);
    w->segment_size = o->segment_size;
    w->max_size = o->max_size;
    w->fsync = o->fsync;
    w->prealloc = o->preallocate;
    w->active_fd = w->dirfd = -1;
    w->writable = 1;
    pthread_mutex_init(&w->lock, NULL);
    rl_cond_init(&w->flush_cv);
    rl_cond_init(&w->read_cv);
    rl_cond_init(&w->reap_cv);

    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s", o->dir);
    for (char *p = cmd + 1; *p; p++) { /* mkdir -p */
        if (*p == '/') {
            *p = '\0';
            mkdir(cmd, 0755);
            *p = '/';
        }
    }
    if (mkdir(cmd, 0755) != 0 && errno != EEXIST) {
        rl_seterr(errstr, errstr_size, "%s: %s", o->dir, strerror(errno));
        goto out;
    }
    if ((w->dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rl_seterr(errstr, errstr_size, "%s: %s", o->dir, strerror(errno));
        goto out;
    }
    if (load_segments(w, &last_seq, errstr, errstr_size) != 0)
        goto out;
    char spare[4096]; /* a preparation cut short; prepared again in the background */
    spare_path(w, spare, sizeof(spare));
    unlink(spare);
    w->recovered_seq = last_seq;

    w->readers = calloc(o->nreaders ? o->nreaders : 1, sizeof(*w->readers));
    if (!w->readers)
        goto out;
    for (size_t i = 0; i < o->nreaders; i++) {
        w->nreaders++;
        if (reader_init(w, &w->readers[i], o->readers[i], metrics, errstr, errstr_size) != 0)
            goto out;
        /* Sequence numbers must keep growing past every cursor even when all
         * segments were deleted, or new records would look acknowledged. */
        if (w->readers[i].cursor > last_seq)
            last_seq = w->readers[i].cursor;
    }
    w->next_seq = last_seq + 1;
    w->durable_seq = last_seq;

    if (w->nsegs && w->segs[w->nsegs - 1].size < w->segment_size) {
        if (open_segment(w, w->segs[w->nsegs - 1].first_seq, OPEN_EXISTING, errstr, errstr_size) !=
            0)
            goto out;
    } else {
        if (open_segment(w, w->next_seq, OPEN_CREATE, errstr, errstr_size) != 0 ||
            seg_push(w, w->next_seq, 0) != 0)
            goto out;
    }
    register_metrics(w, metrics);
    if (pthread_create(&w->reaper, NULL, reaper_main, w) != 0) {
        rl_seterr(errstr, errstr_size, "cannot start the WAL reaper thread");
        goto out;
    }
    w->reaper_started = 1;
    if (pthread_create(&w->flusher, NULL, flusher_main, w) != 0) {
        rl_seterr(errstr, errstr_size, "cannot start the WAL flusher thread");
        goto out;
    }
    w->started = 1;
    rl_info("wal: %s: %zu segment(s), %llu bytes, next seq %llu%s", w->dir, w->nsegs,
            (unsigned long long)w->bytes, (unsigned long long)w->next_seq,
            w->torn ? ", torn tail dropped" : "");
    ok = 1;
out:
    if (!ok && w) {
        rl_wal_close(w);
        w = NULL;
    }
    return w;
}

void rl_wal_close(rl_wal_t *w)
{
    if (!w)
        return;
    /* First: a scrape must not run render_hook on a WAL being taken apart (and
     * rl_wal_open's failure path frees w through here). */
    rl_metrics_off_render(w->metrics, render_hook, w);
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_broadcast(&w->flush_cv);
        pthread_cond_broadcast(&w->read_cv);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->flusher, NULL);
    }
    if (w->reaper_started) { /* after the flusher: its last gc is reaped too */
        atomic_store(&w->bg_stop, 1);
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_signal(&w->reap_cv);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->reaper, NULL);
    }
    for (size_t i = 0; i < w->nreaders; i++) {
        rl_wal_reader_t *r = &w->readers[i];
        if (r->cursor_fd >= 0 && w->started)
            persist_cursor(r, r->cursor, 1);
        if (r->cursor_fd >= 0)
            close(r->cursor_fd);
        if (r->fd >= 0)
            close(r->fd);
        free(r->buf);
        free(r->name);
    }
    if (w->active_fd >= 0) {
        if (w->fsync)
            fdatasync(w->active_fd);
        close(w->active_fd);
    }
    if (w->dirfd >= 0)
        close(w->dirfd);
    free(w->readers);
    for (size_t i = 0; i < w->nsegs; i++)
        free(w->segs[i].idx);
    free(w->segs);
    free(w->pubw);
    free(w->pending.buf);
    free(w->pending.w);
    free(w->flushing.buf);
    free(w->flushing.w);
    free(w->dir);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->flush_cv);
    pthread_cond_destroy(&w->read_cv);
    pthread_cond_destroy(&w->reap_cv);
    free(w->doomed);
    free(w);
}

int rl_wal_append(rl_wal_t *w, const struct iovec *payloads, size_t n, uint64_t *first_seq,
                  rl_wal_done_cb cb, void *opaque)
{
    size_t need = 0;
    int rc = RL_WAL_ERR;

    for (size_t i = 0; i < n; i++) {
        /* Recovery treats a longer record as damage and cuts it off with all
         * that follows, so it must never be acknowledged. */
        if (payloads[i].iov_len > MAX_REC)
            return RL_WAL_ERR;
        need += HDR + payloads[i].iov_len;
    }
    pthread_mutex_lock(&w->lock);
    if (w->stop)
        goto out;
    if (w->bytes + w->inflight_bytes + w->pending.len + need > w->max_size) {
        rl_metric_add(w->m_full, 1);
        w->full = 1;
        rc = RL_WAL_FULL;
        goto out;
    }
    if (batch_reserve(&w->pending, need) != 0 || batch_add_waiter(&w->pending, cb, opaque, 0) != 0)
        goto out;
    *first_seq = w->next_seq;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = w->pending.buf + w->pending.len;
        uint64_t seq = w->next_seq++;
        put32(p, (uint32_t)payloads[i].iov_len);
        put64(p + 8, seq);
        memcpy(p + HDR, payloads[i].iov_base, payloads[i].iov_len);
        put32(p + 4, rec_crc(p + 8, p + HDR, payloads[i].iov_len));
        w->pending.len += HDR + payloads[i].iov_len;
        if (!w->pending.first_seq)
            w->pending.first_seq = seq;
        w->pending.last_seq = seq;
    }
    pthread_cond_signal(&w->flush_cv);
    rc = RL_WAL_OK;
out:
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int rl_wal_barrier(rl_wal_t *w, rl_wal_done_cb cb, void *opaque)
{
    int rc = RL_WAL_ERR;
    pthread_mutex_lock(&w->lock);
    if (!w->stop && batch_add_waiter(&w->pending, cb, opaque, w->durable_seq + 1) == 0) {
        pthread_cond_signal(&w->flush_cv);
        rc = RL_WAL_OK;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

typedef struct sync_wait {
    pthread_mutex_t m;
    pthread_cond_t c;
    int done, status;
} sync_wait_t;

static void sync_done(void *opaque, int status)
{
    sync_wait_t *s = opaque;
    pthread_mutex_lock(&s->m);
    s->done = 1;
    s->status = status;
    pthread_cond_signal(&s->c);
    pthread_mutex_unlock(&s->m);
}

int rl_wal_append_sync(rl_wal_t *w, const struct iovec *payloads, size_t n, uint64_t *first_seq)
{
    sync_wait_t s = {.m = PTHREAD_MUTEX_INITIALIZER};
    int rc;

    rl_cond_init(&s.c);
    rc = rl_wal_append(w, payloads, n, first_seq, sync_done, &s);
    if (rc == RL_WAL_OK) {
        pthread_mutex_lock(&s.m);
        while (!s.done)
            pthread_cond_wait(&s.c, &s.m);
        pthread_mutex_unlock(&s.m);
        rc = s.status == 0 ? RL_WAL_OK : RL_WAL_ERR;
    }
    pthread_cond_destroy(&s.c);
    return rc;
}

#define LOCKED_GET(expr)                                                                           \
    do {                                                                                           \
        pthread_mutex_lock(&w->lock);                                                              \
        uint64_t v_ = (expr);                                                                      \
        pthread_mutex_unlock(&w->lock);                                                            \
        return v_;                                                                                 \
    } while (0)

uint64_t rl_wal_bytes(rl_wal_t *w)
{
    LOCKED_GET(w->bytes);
}

uint64_t rl_wal_durable_seq(rl_wal_t *w)
{
    LOCKED_GET(w->durable_seq);
}

uint64_t rl_wal_torn(rl_wal_t *w)
{
    LOCKED_GET(w->torn);
}

int rl_wal_writable(rl_wal_t *w)
{
    LOCKED_GET((uint64_t)w->writable);
}

uint64_t rl_wal_recovered_seq(rl_wal_t *w)
{
    LOCKED_GET(w->recovered_seq);
}

uint64_t rl_wal_last_seq(rl_wal_t *w)
{
    LOCKED_GET(w->next_seq - 1);
}

void rl_wal_stats(rl_wal_t *w, rl_wal_stats_t *st)
{
    pthread_mutex_lock(&w->lock);
    st->bytes = w->bytes;
    st->max_bytes = w->max_size;
    st->segments = w->nsegs;
    st->durable_seq = w->durable_seq;
    st->writable = w->writable;
    st->full = w->full;
    pthread_mutex_unlock(&w->lock);
}

int rl_wal_await_published(rl_wal_t *w, uint64_t seq, int64_t deadline_ms, rl_wal_done_cb cb,
                           void *opaque)
{
    int rc = RL_WAL_ERR;
    pthread_mutex_lock(&w->lock);
    if (w->stop || w->pub_cancelled)
        goto out;
    pub_waiter_t *v = rl_array_grow(w->pubw, &w->cappubw, w->npubw + 1, sizeof(*v), 64);
    if (!v)
        goto out;
    w->pubw = v;
    w->pubw[w->npubw++] = (pub_waiter_t){seq, deadline_ms, cb, opaque};
    pthread_cond_signal(&w->flush_cv); /* it may be published already, or have no time */
    rc = RL_WAL_OK;
out:
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void rl_wal_cancel_published(rl_wal_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->pub_cancelled = 1;
    pthread_cond_signal(&w->flush_cv);
    pthread_mutex_unlock(&w->lock);
}

rl_wal_reader_t *rl_wal_reader(rl_wal_t *w, const char *name)
{
    for (size_t i = 0; i < w->nreaders; i++)
        if (!strcmp(w->readers[i].name, name))
            return &w->readers[i];
    return NULL;
}

void rl_wal_wakeup(rl_wal_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->wakeups++;
    pthread_cond_broadcast(&w->read_cv);
    pthread_mutex_unlock(&w->lock);
}

static void reader_close_file(rl_wal_reader_t *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->blen = r->bpos = 0;
    r->file_pos = 0;
}

/* Makes more durable bytes available in r->buf. Returns 1 when progress was
 * made, 0 when nothing is durable beyond the read position, -1 on error. */
static int reader_fill(rl_wal_reader_t *r, char *errstr, size_t errstr_size)
{
    rl_wal_t *w = r->w;
    uint64_t limit = 0, next_first = 0;
    size_t i;
    int found = 0;

    pthread_mutex_lock(&w->lock);
    if (r->fd < 0) {
        /* Position on the last segment whose first seq is <= want. */
        if (w->nsegs == 0) {
            pthread_mutex_unlock(&w->lock);
            return 0;
        }
        size_t pick = 0;
        for (i = 0; i < w->nsegs; i++)
            if (w->segs[i].first_seq <= r->want)
                pick = i;
        r->seg_first = w->segs[pick].first_seq;
    }
    for (i = 0; i < w->nsegs; i++) {
        if (w->segs[i].first_seq == r->seg_first) {
            found = 1;
            limit = w->segs[i].size;
            next_first = i + 1 < w->nsegs ? w->segs[i + 1].first_seq : 0;
            break;
        }
    }
    pthread_mutex_unlock(&w->lock);

    if (!found) { /* deleted under us: everything in it was acknowledged */
        reader_close_file(r);
        return 1;
    }
    if (r->fd < 0) {
        char path[4096];
        seg_path(w, r->seg_first, path, sizeof(path));
        if ((r->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
            if (errno == ENOENT)
                return 1; /* deleted between the lookup and the open */
            rl_seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
            return -1;
        }
        r->file_pos = 0;
        r->blen = r->bpos = 0;
    }
    if (r->file_pos < limit) {
        if (r->bpos > 0) { /* keep the unread tail at the front */
            memmove(r->buf, r->buf + r->bpos, r->blen - r->bpos);
            r->blen -= r->bpos;
            r->bpos = 0;
        }
        uint8_t *nb = rl_array_grow(r->buf, &r->bcap, r->blen + 1, 1, 256 * 1024);
        if (!nb) {
            rl_seterr(errstr, errstr_size, "out of memory");
            return -1;
        }
        r->buf = nb;
        size_t want = r->bcap - r->blen;
        if (want > limit - r->file_pos)
            want = (size_t)(limit - r->file_pos);
        ssize_t k = pread(r->fd, r->buf + r->blen, want, (off_t)r->file_pos);
        if (k <= 0) {
            rl_seterr(errstr, errstr_size, "wal read: %s", k < 0 ? strerror(errno) : "short file");
            return -1;
        }
        r->blen += (size_t)k;
        r->file_pos += (uint64_t)k;
        return 1;
    }
    if (r->bpos == r->blen && next_first) { /* segment done: go on to the next */
        reader_close_file(r);
        r->seg_first = next_first;
        char path[4096];
        seg_path(w, r->seg_first, path, sizeof(path));
        if ((r->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 && errno != ENOENT) {
            rl_seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
            return -1;
        }
        return 1;
    }
    return 0;
}

int rl_wal_reader_next(rl_wal_reader_t *r, rl_wal_rec_t *rec, int timeout_ms, char *errstr,
                       size_t errstr_size)
{
    int64_t deadline = 0;
    int have_deadline = 0; /* read the clock only once there is nothing to return:
                            * a sink catching up calls this per record */

    for (;;) {
        while (r->blen - r->bpos >= HDR) {
            const uint8_t *p = r->buf + r->bpos;
            uint32_t len = get32(p);
            if (r->blen - r->bpos < HDR + len)
                break;
            uint64_t seq = get64(p + 8);
            r->bpos += HDR + len;
            if (seq < r->want)
                continue;
            r->want = seq + 1;
            rec->seq = seq;
            rec->data = p + HDR;
            rec->len = len;
            return 1;
        }
        int k = reader_fill(r, errstr, errstr_size);
        if (k < 0)
            return -1;
        if (k > 0)
            continue;
        /* Nothing durable beyond us: wait for the flusher, then look again. */
        if (!have_deadline) {
            deadline = rl_clock_mono_ms() + timeout_ms;
            have_deadline = 1;
        }
        rl_wal_t *w = r->w;
        pthread_mutex_lock(&w->lock);
        int rc = w->stop ? ETIMEDOUT : 0;
        uint64_t durable = w->durable_seq, wakeups = w->wakeups;
        if (!rc && durable < r->want)
            rc = rl_cond_wait_until(&w->read_cv, &w->lock, deadline);
        int woken = w->wakeups != wakeups;
        pthread_mutex_unlock(&w->lock);
        if (rc == ETIMEDOUT || woken)
            return 0;
        if (durable >= r->want) {
            /* Data is durable but fill found none: the segment rolled, or our
             * buffer is stale; loop once more, but honour the deadline. */
            if (rl_clock_mono_ms() >= deadline)
                return 0;
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
    }
}

void rl_wal_reader_rewind(rl_wal_reader_t *r)
{
    pthread_mutex_lock(&r->w->lock);
    r->want = r->cursor + 1;
    pthread_mutex_unlock(&r->w->lock);
    reader_close_file(r);
}

void rl_wal_reader_commit(rl_wal_reader_t *r, uint64_t seq)
{
    rl_wal_t *w = r->w;
    pthread_mutex_lock(&w->lock);
    if (seq > r->cursor) {
        r->cursor = seq;
        w->cursors_dirty = 1;
        pthread_cond_signal(&w->flush_cv);
    }
    pthread_mutex_unlock(&w->lock);
}

void rl_wal_reader_lag(rl_wal_reader_t *r, uint64_t *events, uint64_t *bytes)
{
    pthread_mutex_lock(&r->w->lock);
    lag_locked(r->w, r->cursor, events, bytes);
    pthread_mutex_unlock(&r->w->lock);
}

int rl_wal_reader_caught_up(rl_wal_reader_t *r)
{
    uint64_t events, bytes;
    rl_wal_reader_lag(r, &events, &bytes);
    return events == 0;
}

uint64_t rl_wal_reader_cursor(rl_wal_reader_t *r)
{
    pthread_mutex_lock(&r->w->lock);
    uint64_t v = r->cursor;
    pthread_mutex_unlock(&r->w->lock);
    return v;
}

int rl_wal_scan(rl_wal_t *w, uint64_t from_seq, rl_wal_scan_fn fn, void *arg, char *errstr,
                size_t errstr_size)
{
    /* A private reader with no cursor file, positioned like a reader whose cursor
     * is from_seq - 1: segments wholly before from_seq are never opened. */
    rl_wal_reader_t r = {0};
    rl_wal_rec_t rec;
    int k, rc = 0;

    r.w = w;
    r.fd = r.cursor_fd = -1;
    r.want = from_seq;
    r.cursor = from_seq ? from_seq - 1 : 0;
    while ((k = rl_wal_reader_next(&r, &rec, 0, errstr, errstr_size)) > 0)
        fn(arg, rec.seq, rec.data, rec.len);
    if (k < 0)
        rc = -1;
    reader_close_file(&r);
    free(r.buf);
    return rc;
}
