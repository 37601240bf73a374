/* wal_int.h -- the WAL's private state, shared by its files (wal.c, wal_record.c,
 * wal_recover.c, wal_reader.c, wal_waiter.c, wal_spare.c; waltool.c reads the
 * record format from here) and by nothing else: other modules use wal.h. Names shared between these
 * files start with rl_wal_int_; everything else in them is static.
 *
 * Locking. One mutex, rl_wal_t.lock (not recursive), and three condition
 * variables on it (all made by rl_cond_init: monotonic).
 *
 *   w->lock guards: the segment list (segs, nsegs and each segment's size,
 *     count and index), next_seq, durable_seq, last_failed_seq, bytes,
 *     inflight_bytes, full, writable, stop, the pending batch, every reader's
 *     committed cursor and cursors_dirty, wakeups, the publish waiters (pubw,
 *     pub_cancelled), the doomed list, spare_ready, spare_retry_ms, active_fd
 *     and last_probe_ms. torn, torn_bytes and recovered_seq are set at open
 *     and read under it.
 *   No lock, one thread: the flushing batch, persisted, last_err_log_ms and
 *     errs_unlogged (the flusher); spare_warned (the reaper); a reader's read
 *     position (fd, seg_first, file_pos, want, buf: the reader's own thread;
 *     want is also set under the lock by rewind, on that same thread).
 *   Atomic: bg_stop. Fixed after rl_wal_open: dir, the options, dirfd, the
 *     readers array, their names and cursor files, the metrics.
 *
 *   flush_cv wakes the flusher (append, barrier, commit, await, cancel,
 *     close); read_cv wakes readers (new durable records, rl_wal_wakeup,
 *     close); reap_cv wakes the reaper (segments doomed, spare taken, close).
 *
 * Who takes the lock. Every public function (wal.h) takes it itself, so none
 * may be called with it held. rl_wal_int_gc_segments, rl_wal_int_lag_locked
 * and rl_wal_int_seg_push/_seg_note (after open) must be called with it held;
 * rl_wal_int_settle_published is called with it held and returns with it held,
 * but drops it while it runs the callbacks. The flusher and the reaper hold it
 * except around file I/O and callbacks: no completion or publish callback is
 * ever run with it held, and the WAL takes no other module's lock while it
 * holds its own (the metrics registry's lock is taken before it, by
 * render_hook). The exception to "no I/O under the lock" is the lazy cursor
 * write (rl_wal_int_persist_cursor without sync: a 12-byte pwrite), which
 * the flusher does with the lock held. rl_wal_int_load_segments and
 * rl_wal_int_reader_init run in rl_wal_open before any thread starts. */
#ifndef RL_WAL_INT_H
#define RL_WAL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dirlock.h"
#include "wal.h"

#define HDR 16u                     /* u32 len, u32 crc, u64 seq */
#define MAX_REC (64u * 1024 * 1024) /* sanity bound when scanning */
#define IDX_EVERY 256               /* records between two points of a segment's sparse index */

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
    /* Wall-clock ms of its first and last durable write (0: none yet), for
     * wal.retention; from file times after a restart. */
    int64_t first_ms, last_ms;
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
    /* A range reader (rl_wal_range_open): no cursor file, no metrics, its
     * cursor in memory only and not among the WAL's readers (it holds back
     * no deletion but wal.retention's, and no publish waiter). Records past
     * `until` end it; those `filter` refuses are skipped. Set at open: range,
     * until, filter, farg. The reader's thread writes the atomics, any thread
     * reads them (rl_wal_range_progress). */
    int range;
    uint64_t from, until;
    rl_wal_filter_fn filter;
    void *farg;
    _Atomic uint64_t read_hw;    /* highest seq read so far; `until` once at the end */
    _Atomic uint64_t matched;    /* records the filter took, each counted once */
    _Atomic uint64_t last_match; /* the highest of them */
    _Atomic int gap;             /* a segment was deleted before it was read */
};

struct rl_wal {
    char *dir;
    rl_dirlock_t *dirlock; /* DIR/.lock, held from open to close */
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
     * logs). The figures: docs/performance.md, "The price of wal.preallocate". */
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
    /* Open range readers (replay): wal.retention keeps what they have still to
     * read (a full WAL does not: new events come first). */
    rl_wal_reader_t **ranges;
    size_t nranges, capranges;

    pub_waiter_t *pubw; /* ack = publish waiters, in no particular order */
    size_t npubw, cappubw;
    int pub_cancelled; /* rl_wal_cancel_published: fail them all, take no more */

    /* Flusher-only: rate limit of the write-error log, time of the last probe. */
    int64_t last_err_log_ms, last_probe_ms;
    uint64_t errs_unlogged;

    rl_metric_t *m_bytes, *m_segments, *m_durable, *m_fsyncs, *m_errors, *m_torn, *m_full, *m_max,
        *m_fill, *m_writable, *m_isfull, *m_torn_bytes, *m_commit;
    rl_metric_t *m_retained, *m_retained_oldest, *m_gave_way;
    /* wal.retention: segments every reader has passed are kept this long (ms)
     * and up to this many bytes (0: no cap but max_size), then deleted; they
     * are deleted sooner, oldest first, whenever an append needs their room. */
    int64_t retention_ms;
    uint64_t retention_bytes;
    int64_t last_gc_ms; /* the flusher's last look at expired segments (mono ms) */
    uint64_t torn_bytes;
    rl_metrics_t *metrics; /* render_hook is registered there; rl_wal_close unregisters it */
};

/* ---- wal_record.c: the record format, segment files, the segment index --- */

/* The record's checksum: over its 8 sequence-number bytes, then the payload. */
uint32_t rl_wal_int_rec_crc(const uint8_t *seq8, const uint8_t *payload, size_t len);
/* "<dir>/<first_seq in 20 digits>.wal" */
void rl_wal_int_seg_path(const rl_wal_t *w, uint64_t first_seq, char *out, size_t outsz);
/* Appends segment first_seq of `size` bytes to the list. Returns 0 or -1 (out
 * of memory). */
int rl_wal_int_seg_push(rl_wal_t *w, uint64_t first_seq, uint64_t size);
/* Counts one more durable record of seg at file offset off (its index gets a
 * point every IDX_EVERY records). Returns 0 or -1 (out of memory: the count
 * is not moved). */
int rl_wal_int_seg_note(segment_t *seg, uint64_t seq, uint64_t off);
/* pwrite of all n bytes at off, retried on EINTR; a write of 0 bytes is
 * ENOSPC. Returns 0 or -1 with errno. */
int rl_wal_int_pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off);

/* ---- wal_recover.c: recovery at open ------------------------------------ */

/* Finds, scans and indexes every segment of w->dir, cuts torn tails off. *last_seq
 * is the last sequence number on disk (or below a segment's name). Returns 0,
 * or -1 with errstr. */
int rl_wal_int_load_segments(rl_wal_t *w, uint64_t *last_seq, char *errstr, size_t errstr_size);

/* ---- wal_reader.c: readers, cursor files, lag --------------------------- */

/* Opens reader `name`'s cursor file and reads its cursor, registers its
 * metrics (m may be NULL). Returns 0, or -1 with errstr. */
int rl_wal_int_reader_init(rl_wal_t *w, rl_wal_reader_t *r, const char *name, rl_metrics_t *m,
                           char *errstr, size_t errstr_size);
/* Closes a reader's files and frees it (not r itself); with persist, writes
 * and syncs its cursor first. */
void rl_wal_int_reader_fini(rl_wal_reader_t *r, int persist);
/* A cursor file's 12 bytes: 0 and its seq in *seq, or -1 when its checksum
 * does not match (also read by waltool.c). */
int rl_wal_int_cursor_parse(const uint8_t b[12], uint64_t *seq);
/* Writes v to the cursor file (fdatasync with sync). Returns 0, or -1 when it
 * could not be written (the cursor stays dirty). */
int rl_wal_int_persist_cursor(rl_wal_reader_t *r, uint64_t v, int sync);
/* The lowest seq an open range reader has still to read (UINT64_MAX: none;
 * lock held). */
uint64_t rl_wal_int_range_pin(const rl_wal_t *w);
/* Durable records after cursor and their bytes on disk (lock held). */
void rl_wal_int_lag_locked(rl_wal_t *w, uint64_t cursor, uint64_t *events, uint64_t *bytes);

/* ---- wal_waiter.c: ack = publish waiters -------------------------------- */

/* Runs the callbacks of the publish waiters that are settled (published, timed
 * out, cancelled or closing). Lock held on entry and on return, dropped around
 * the callbacks. Returns the nearest deadline of those left (INT64_MAX: none). */
int64_t rl_wal_int_settle_published(rl_wal_t *w);

/* ---- wal_spare.c: the background thread: spare segment, deleting segments - */

/* What a preallocated segment is written with, and what recovery compares
 * the unused end of one against. */
extern const uint8_t rl_wal_int_zeros[1 << 20];
/* "<dir>/" SPARE_NAME */
void rl_wal_int_spare_path(const rl_wal_t *w, char *out, size_t outsz);
/* Drops the segments every reader has passed that retention no longer keeps
 * and hands their files to the reaper (lock held). */
void rl_wal_int_gc_segments(rl_wal_t *w);
/* An append of `need` bytes would pass max_size: drops passed segments kept by
 * retention, oldest first, until it fits. 1 when it fits now (lock held). */
int rl_wal_int_make_room(rl_wal_t *w, uint64_t need);
/* What retention keeps now (lock held): see rl_wal_stats_t. */
void rl_wal_int_retained(const rl_wal_t *w, uint64_t *bytes, uint64_t *segments,
                         uint64_t *first_seq, int64_t *since_ms);
/* Starts the reaper thread. Returns 0 or -1. */
int rl_wal_int_reaper_start(rl_wal_t *w);
/* Stops it (after its pending unlinks) and joins it; nothing if it never
 * started. Call after the flusher has stopped. */
void rl_wal_int_reaper_stop(rl_wal_t *w);

#endif
