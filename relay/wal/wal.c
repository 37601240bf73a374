/* wal.c -- see wal.h for the format and the threading model, wal_int.h for
 * the state and the locking rules. This file: open and close, append and
 * barriers, and the flusher (group commit: write, fsync, completion
 * callbacks, lazy cursor persistence, probing an unwritable disk). The other
 * jobs are in wal_record.c, wal_recover.c, wal_reader.c, wal_waiter.c and
 * wal_spare.c. */
#include "wal_int.h"

#include "array.h"
#include "bytes.h"
#include "clock.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CURSOR_PERSIST_MS 200
#define PROBE_MS 1000    /* while unwritable, how often the flusher tries the disk */
#define PROBE_SIZE 4096  /* what the probe writes (and fsyncs) */
#define ERR_LOG_MS 10000 /* repeated write errors are logged at most this often */
#define GC_EVERY_MS 1000 /* with wal.retention, how often kept segments are looked at */

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

/* Opens segment first_seq as the active one: OPEN_EXISTING, OPEN_CREATE (empty)
 * or OPEN_SPARE (the preallocated spare renamed into place). */
enum { OPEN_EXISTING, OPEN_CREATE, OPEN_SPARE };

static int open_segment(rl_wal_t *w, uint64_t first_seq, int create, char *errstr,
                        size_t errstr_size)
{
    char path[4096], spare[4096];
    rl_wal_int_seg_path(w, first_seq, path, sizeof(path));
    if (create == OPEN_SPARE) {
        rl_wal_int_spare_path(w, spare, sizeof(spare));
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
    rl_wal_int_seg_push(w, first, 0);
}

/* Writes a batch at the end of the active segment (no lock held). Returns 0
 * once it is durable, -1 when it is not: then the segment is cut back to
 * `before`, so that it ends on a record boundary, and the records are lost
 * (their waiters fail, the HTTP side answers 503). */
static int write_batch(rl_wal_t *w, int fd, const batch_t *b, uint64_t before)
{
    uint64_t t0 = rl_clock_mono_us();
    int err = rl_wal_int_pwrite_all(fd, b->buf, b->len, before);
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
    int ok = rl_wal_int_pwrite_all(fd, zeros, sizeof(zeros), size) == 0 && fdatasync(fd) == 0;
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
        if (rl_wal_int_seg_note(act, get64(b->buf + o + 8), before + o) != 0)
            act->count++; /* out of memory: the lag is then measured coarser */
        o += HDR + len;
    }
}

/* Flusher, lock held: sleeps until something is appended, a cursor moves,
 * a publish waiter's deadline comes or the WAL stops, probing an unwritable
 * disk every PROBE_MS meanwhile. */
static void flusher_wait(rl_wal_t *w)
{
    int64_t next_pub = rl_wal_int_settle_published(w);

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
        if (w->retention_ms && now - w->last_gc_ms >= GC_EVERY_MS) {
            rl_wal_int_gc_segments(w); /* kept segments expire with no cursor moving */
            w->last_gc_ms = now;
        }
        rl_cond_wait_ms(&w->flush_cv, &w->lock, wait);
        next_pub = rl_wal_int_settle_published(w);
    }
}

/* Flusher, lock held (dropped while writing and while calling back): one
 * group commit. The pending batch is swapped out, so appenders go on filling
 * a fresh one, written and fsynced, then its appenders are told. */
static void flusher_commit(rl_wal_t *w)
{
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
        segment_t *act = &w->segs[w->nsegs - 1];
        act->last_ms = rl_clock_wall_ms();
        if (!act->first_ms)
            act->first_ms = act->last_ms;
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
}

/* Flusher, lock held: moved cursors are written every CURSOR_PERSIST_MS (and
 * at stop), then the segments every reader is past are deleted. With nothing
 * else to do it sleeps until then, settling publish waiters first. */
static void flusher_cursors(rl_wal_t *w, int64_t *last_persist)
{
    int64_t now = rl_clock_mono_ms();

    if (w->cursors_dirty && (now - *last_persist >= CURSOR_PERSIST_MS || w->stop)) {
        int failed = 0;
        for (size_t i = 0; i < w->nreaders; i++)
            if (w->readers[i].cursor != w->readers[i].persisted)
                failed |= rl_wal_int_persist_cursor(&w->readers[i], w->readers[i].cursor, 0);
        w->cursors_dirty = failed != 0;
        *last_persist = now;
        rl_wal_int_gc_segments(w);
        w->last_gc_ms = now;
    } else if (w->cursors_dirty && !w->pending.len && !w->pending.nw) {
        int64_t next = rl_wal_int_settle_published(w);
        int64_t wait = CURSOR_PERSIST_MS - (rl_clock_mono_ms() - *last_persist);
        if (next != INT64_MAX && next - rl_clock_mono_ms() < wait)
            wait = next - rl_clock_mono_ms();
        if (!w->pending.len && !w->pending.nw && !w->stop)
            rl_cond_wait_ms(&w->flush_cv, &w->lock, wait);
    }
}

static void *flusher_main(void *arg)
{
    rl_wal_t *w = arg;
    int64_t last_persist = 0;

    pthread_setname_np(pthread_self(), "rl-wal-flush"); /* top -H, perf */
    pthread_mutex_lock(&w->lock);
    for (;;) {
        flusher_wait(w);
        if (w->stop && !w->pending.nw && !w->pending.len)
            break;
        flusher_commit(w);
        flusher_cursors(w, &last_persist);
    }
    /* Stopping: whoever still waits for publication is told it did not happen. */
    rl_wal_int_settle_published(w);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

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
    uint64_t kept, nkept, kept_seq;
    int64_t since;
    rl_wal_int_retained(w, &kept, &nkept, &kept_seq, &since);
    rl_metric_set(w->m_retained, (int64_t)kept);
    rl_metric_set_f(w->m_retained_oldest, (double)since / 1000.0);
    for (size_t i = 0; i < w->nreaders; i++) {
        uint64_t ev, by;
        rl_wal_int_lag_locked(w, w->readers[i].cursor, &ev, &by);
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
    w->m_retained = rl_metrics_gauge(
        m, "relay_wal_retained_bytes", "",
        "Bytes of published WAL segments kept for replay (wal.retention, wal.retention_size).");
    w->m_retained_oldest =
        rl_metrics_gauge(m, "relay_wal_retained_oldest_timestamp_seconds", "",
                         "When the oldest segment kept for replay was first written (unix "
                         "seconds; 0: none kept).");
    w->m_gave_way = rl_metrics_counter(
        m, "relay_wal_retained_dropped_total", "",
        "Kept (published) segments deleted before their retention ran out, to make room for "
        "new events under wal.max_size.");
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
    w->retention_ms = (int64_t)o->retention_s * 1000;
    w->retention_bytes = o->retention_bytes;
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
    /* Before anything is read: a second relay on this directory stops here. */
    if (!(w->dirlock = rl_dirlock_take(o->dir, errstr, errstr_size)))
        goto out;
    if ((w->dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rl_seterr(errstr, errstr_size, "%s: %s", o->dir, strerror(errno));
        goto out;
    }
    if (rl_wal_int_load_segments(w, &last_seq, errstr, errstr_size) != 0)
        goto out;
    char spare[4096]; /* a preparation cut short; prepared again in the background */
    rl_wal_int_spare_path(w, spare, sizeof(spare));
    unlink(spare);
    w->recovered_seq = last_seq;

    w->readers = calloc(o->nreaders ? o->nreaders : 1, sizeof(*w->readers));
    if (!w->readers)
        goto out;
    for (size_t i = 0; i < o->nreaders; i++) {
        w->nreaders++;
        if (rl_wal_int_reader_init(w, &w->readers[i], o->readers[i], metrics, errstr,
                                   errstr_size) != 0)
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
            rl_wal_int_seg_push(w, w->next_seq, 0) != 0)
            goto out;
    }
    register_metrics(w, metrics);
    if (rl_wal_int_reaper_start(w) != 0) {
        rl_seterr(errstr, errstr_size, "cannot start the WAL reaper thread");
        goto out;
    }
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
    rl_wal_int_reaper_stop(w); /* after the flusher: its last gc is reaped too */
    for (size_t i = 0; i < w->nreaders; i++)
        rl_wal_int_reader_fini(&w->readers[i], w->started);
    if (w->active_fd >= 0) {
        if (w->fsync)
            fdatasync(w->active_fd);
        close(w->active_fd);
    }
    if (w->dirfd >= 0)
        close(w->dirfd);
    free(w->readers);
    free(w->ranges); /* the range readers themselves are their owners' to close */
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
    rl_dirlock_release(w->dirlock); /* last: nothing of w->dir is used after it */
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
    if (w->bytes + w->inflight_bytes + w->pending.len + need > w->max_size &&
        !rl_wal_int_make_room(w, need)) {
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
        put32(p + 4, rl_wal_int_rec_crc(p + 8, p + HDR, payloads[i].iov_len));
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
    rl_wal_int_retained(w, &st->retained_bytes, &st->retained_segments, &st->retained_first_seq,
                        &st->retained_since_ms);
    st->first_seq = w->nsegs && w->durable_seq ? w->segs[0].first_seq : 0;
    pthread_mutex_unlock(&w->lock);
}
