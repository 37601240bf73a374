/* wal.h -- the write-ahead log: relay's decoupling point between receipt and
 * publication.
 *
 * Append-only segment files "<first-seq>.wal" in one directory. A record is
 *   u32 len | u32 crc32(seq, payload) | u64 seq | payload[len]
 * Appends go to an in-memory buffer; one flusher thread writes and fsyncs it, so
 * every request waiting at that moment shares one fsync (group commit), and calls
 * each append's completion callback once its records are durable.
 *
 * Each sink reads through its own reader with its own persisted cursor (the last
 * sequence number it has acknowledged), so one slow sink never holds another
 * back. A segment is deleted once every reader's cursor has passed it. On open,
 * every segment is checked record by record; a torn tail is cut off and counted.
 *
 * The cursors are also what "published" means: an ack = publish request waits
 * (rl_wal_await_published) until every reader's cursor has reached its events.
 *
 * A write or fsync that fails (disk full, I/O error) fails the requests of its
 * batch and is cut back off the segment, which then still ends on a record
 * boundary; readers never see past what is durable. While the disk refuses
 * writes the flusher probes it about once a second, so that the WAL (and
 * /readyz) recovers by itself when space returns. */
#ifndef RL_WAL_H
#define RL_WAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "metrics.h"

typedef struct rl_wal rl_wal_t;
typedef struct rl_wal_reader rl_wal_reader_t;

typedef struct rl_wal_opts {
    const char *dir;
    uint64_t segment_size; /* roll to a new segment past this many bytes */
    uint64_t max_size;     /* appends beyond this many bytes on disk fail with RL_WAL_FULL */
    int fsync;             /* 0: write() only (durable across a crash of relay, not of the OS) */
    const char *const *readers; /* reader names (one per sink); cursors persist per name */
    size_t nreaders;
    int preallocate; /* 1: the next segment is written full of zeros in the background */
    /* Retention of published data: a segment every reader has passed is kept
     * retention_s seconds after its last write (0: deleted at once), and while
     * the published segments kept hold at most retention_bytes (0: no cap of
     * its own). Kept segments always give way to new events: an append that
     * would pass max_size deletes them, oldest first, before it is refused. */
    uint64_t retention_s, retention_bytes;
} rl_wal_opts_t;

enum { RL_WAL_OK = 0, RL_WAL_ERR = -1, RL_WAL_FULL = -2, RL_WAL_TIMEOUT = -3 };

/* Called from the flusher thread once the records are durable (status 0) or could
 * not be written (status -1: the records are gone, the caller must not answer
 * 2xx). Must not block and must not call rl_wal_append. */
typedef void (*rl_wal_done_cb)(void *opaque, int status);

/* Opens (creating `dir` if needed) and recovers the log, starts the flusher.
 * `metrics` may be NULL. Returns NULL with errstr on failure. */
rl_wal_t *rl_wal_open(const rl_wal_opts_t *opts, rl_metrics_t *metrics, char *errstr,
                      size_t errstr_size);
/* Flushes what is pending (callbacks run), persists cursors, stops the flusher,
 * frees everything including readers. NULL-safe. */
void rl_wal_close(rl_wal_t *w);

/* Appends `n` payloads (copied) as consecutive records. Returns RL_WAL_OK and the
 * first record's sequence number in *first_seq, then calls cb exactly once;
 * or RL_WAL_FULL (the cap would be passed) / RL_WAL_ERR without appending
 * anything and without calling cb. */
/* *first_seq is written under the WAL's lock before the flusher can see the records,
 * so it may point into the state cb frees; the caller must not touch that state once
 * this returns RL_WAL_OK (cb may already have run). */
int rl_wal_append(rl_wal_t *w, const struct iovec *payloads, size_t n, uint64_t *first_seq,
                  rl_wal_done_cb cb, void *opaque);
/* Calls cb once everything appended before this call is durable: status 0; or
 * -1 when some record that was not yet durable at this call failed to be written
 * (a retry must not be answered 200 for an original that was lost). */
int rl_wal_barrier(rl_wal_t *w, rl_wal_done_cb cb, void *opaque);

/* Calls cb once every reader's cursor is at or past `seq` (status 0: every sink
 * acknowledged it), once the monotonic clock (rl_clock_mono_ms) passes
 * deadline_ms (RL_WAL_TIMEOUT),
 * or at rl_wal_cancel_published / close (RL_WAL_ERR). Always from the flusher
 * thread, never from inside this call. With no readers it is published at
 * once. Returns RL_WAL_OK, or RL_WAL_ERR (closing, cancelled, out of memory)
 * without calling cb. */
int rl_wal_await_published(rl_wal_t *w, uint64_t seq, int64_t deadline_ms, rl_wal_done_cb cb,
                           void *opaque);
/* Shutdown: fails every publish waiter now and refuses new ones. */
void rl_wal_cancel_published(rl_wal_t *w);

/* Blocking helpers over append/barrier (tests and tools). */
int rl_wal_append_sync(rl_wal_t *w, const struct iovec *payloads, size_t n, uint64_t *first_seq);

uint64_t rl_wal_bytes(rl_wal_t *w);       /* bytes on disk in segments */
uint64_t rl_wal_durable_seq(rl_wal_t *w); /* last durable sequence number, 0 if none */
uint64_t rl_wal_torn(rl_wal_t *w);        /* records dropped by recovery */
int rl_wal_writable(rl_wal_t *w);         /* 0 after a write error until the next success */
/* The last sequence number recovery found on disk at open (0 if none), before
 * cursors were taken into account. A reader whose persisted cursor is beyond it
 * acknowledged records that are gone (a torn tail): state derived from them, such
 * as the dedup file's ids, must be forgotten. */
uint64_t rl_wal_recovered_seq(rl_wal_t *w);
uint64_t rl_wal_last_seq(rl_wal_t *w); /* last appended sequence number (maybe not durable) */

typedef struct rl_wal_stats {
    uint64_t bytes, max_bytes; /* on disk, and the cap */
    uint64_t segments, durable_seq;
    int writable; /* 0 after a failed write until a write or the disk probe succeeds */
    int full;     /* 1 after an append was refused for the cap, until segments are freed */
    /* Retention: the segments every reader has passed and that are still kept. */
    uint64_t retained_bytes, retained_segments;
    uint64_t retained_first_seq; /* the oldest seq kept (0: nothing kept) */
    int64_t retained_since_ms;   /* when the oldest kept segment was first written (unix ms) */
    uint64_t first_seq;          /* the oldest seq on disk (0: none) */
} rl_wal_stats_t;
void rl_wal_stats(rl_wal_t *w, rl_wal_stats_t *st);

/* The reader named `name` (one of opts->readers), owned by the WAL; NULL if unknown.
 * A reader is used by one thread at a time. */
rl_wal_reader_t *rl_wal_reader(rl_wal_t *w, const char *name);

typedef struct rl_wal_rec {
    uint64_t seq;
    const uint8_t *data; /* valid until the next rl_wal_reader_next/rewind on this reader */
    size_t len;
} rl_wal_rec_t;

/* Next durable record after the read position. Returns 1 with *rec, 0 when none
 * arrived within timeout_ms, -1 on an I/O error (errstr set). */
int rl_wal_reader_next(rl_wal_reader_t *r, rl_wal_rec_t *rec, int timeout_ms, char *errstr,
                       size_t errstr_size);
/* Moves the read position back to just after the committed cursor: what was read
 * but not acknowledged is read again (after a sink failure). */
void rl_wal_reader_rewind(rl_wal_reader_t *r);
/* Acknowledges everything up to and including `seq`. Cursors only move forward;
 * they are persisted by the flusher (lazily) and at close. */
void rl_wal_reader_commit(rl_wal_reader_t *r, uint64_t seq);
uint64_t rl_wal_reader_cursor(rl_wal_reader_t *r);
/* Durable records after the committed cursor and their bytes on disk: how far
 * the sink is behind. Any thread. */
void rl_wal_reader_lag(rl_wal_reader_t *r, uint64_t *events, uint64_t *bytes);
/* 1 when the sink has acknowledged every durable record. */
int rl_wal_reader_caught_up(rl_wal_reader_t *r);
/* Calls fn for every durable record kept whose seq is >= from_seq (0 or 1: all),
 * oldest first (start-up: rebuilding state such as the dedup window). The payload
 * is valid only during the call. Returns 0, or -1 on an I/O error (errstr set). */
typedef void (*rl_wal_scan_fn)(void *arg, uint64_t seq, const uint8_t *payload, size_t len);
int rl_wal_scan(rl_wal_t *w, uint64_t from_seq, rl_wal_scan_fn fn, void *arg, char *errstr,
                size_t errstr_size);

/* ---- Range readers (replay) ----------------------------------------------
 * A reader over the durable records from_seq..until_seq that a filter takes,
 * used with the reader functions above (next, rewind, commit, cursor, lag,
 * caught_up) by a second instance of a sink. It has no cursor file and is not
 * one of the WAL's readers: it holds nothing back but wal.retention, which
 * keeps the segments it has still to read (an append that needs their room
 * still deletes them: the progress then says `gap`). next returns 0 once it
 * has read past until_seq, after waiting out its timeout, so that a sink's
 * loop does not spin. */
typedef int (*rl_wal_filter_fn)(void *arg, uint64_t seq, const uint8_t *payload, size_t len);
/* filter may be NULL (every record); it runs on the reader's thread and arg
 * must outlive the reader. Returns a reader the caller closes, or NULL with
 * errstr (out of memory). */
rl_wal_reader_t *rl_wal_range_open(rl_wal_t *w, uint64_t from_seq, uint64_t until_seq,
                                   rl_wal_filter_fn filter, void *arg, char *errstr,
                                   size_t errstr_size);
/* Closes it (before rl_wal_close). No other thread may be using it. NULL-safe. */
void rl_wal_range_close(rl_wal_reader_t *r);
typedef struct rl_wal_range_progress {
    uint64_t from, until; /* the range */
    uint64_t read_seq;    /* the highest seq read */
    uint64_t matched;     /* records the filter took */
    uint64_t committed;   /* the reader's cursor: acknowledged up to there */
    int done;             /* read to the end, and every record taken acknowledged */
    int gap;              /* a segment of the range was deleted before it was read */
} rl_wal_range_progress_t;
/* Any thread. */
void rl_wal_range_progress(rl_wal_reader_t *r, rl_wal_range_progress_t *p);
/* The first seq of the oldest segment holding a record written at or after
 * since_ms (unix ms): where a replay "since" starts reading (records before
 * since_ms in that segment are for its filter to skip). durable_seq + 1 when
 * none. */
uint64_t rl_wal_seq_since(rl_wal_t *w, int64_t since_ms);

/* Wakes a reader blocked in rl_wal_reader_next (shutdown). */
void rl_wal_wakeup(rl_wal_t *w);

#endif
