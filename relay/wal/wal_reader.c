/* wal_reader.c -- the WAL's readers: cursor files, reading durable records,
 * rewinding, lag in events and bytes (from each segment's sparse index), and
 * rl_wal_scan (a private reader with no cursor). */
#include "wal_int.h"

#include "array.h"
#include "bytes.h"
#include "clock.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

int rl_wal_int_reader_init(rl_wal_t *w, rl_wal_reader_t *r, const char *name, rl_metrics_t *m,
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
    if (pread(r->cursor_fd, b, sizeof(b), 0) == (ssize_t)sizeof(b))
        rl_wal_int_cursor_parse(b, &r->cursor);
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

int rl_wal_int_cursor_parse(const uint8_t b[12], uint64_t *seq)
{
    if ((uint32_t)crc32(0L, b, 8) != get32(b + 8))
        return -1;
    *seq = get64(b);
    return 0;
}

/* Returns 0, or -1 when the cursor could not be written (it stays dirty). */
int rl_wal_int_persist_cursor(rl_wal_reader_t *r, uint64_t v, int sync)
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

void rl_wal_int_reader_fini(rl_wal_reader_t *r, int persist)
{
    if (r->cursor_fd >= 0 && persist)
        rl_wal_int_persist_cursor(r, r->cursor, 1);
    if (r->cursor_fd >= 0)
        close(r->cursor_fd);
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    free(r->name);
}

/* Durable records after `cursor`, and their bytes on disk (lock held). The
 * first of them is found from the nearest index point of its segment by
 * reading at most IDX_EVERY headers: this runs per scrape, not per event. */
void rl_wal_int_lag_locked(rl_wal_t *w, uint64_t cursor, uint64_t *events, uint64_t *bytes)
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
        rl_wal_int_seg_path(w, seg->first_seq, path, sizeof(path));
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

    if (!found) {     /* deleted under us: everything in it was acknowledged */
        if (r->range) /* ... by the WAL's readers; a replay had not read it yet */
            atomic_store(&r->gap, 1);
        reader_close_file(r);
        return 1;
    }
    if (r->fd < 0) {
        char path[4096];
        rl_wal_int_seg_path(w, r->seg_first, path, sizeof(path));
        if ((r->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
            if (errno == ENOENT) { /* deleted between the lookup and the open */
                if (r->range)
                    atomic_store(&r->gap, 1);
                return 1;
            }
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
        rl_wal_int_seg_path(w, r->seg_first, path, sizeof(path));
        if ((r->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 && errno != ENOENT) {
            rl_seterr(errstr, errstr_size, "%s: %s", path, strerror(errno));
            return -1;
        }
        return 1;
    }
    return 0;
}

/* A range reader that has read to its end: every seq up to `until` counts
 * as read (a seq whose write failed has no record), then it waits out the
 * timeout (or a wakeup, or close) and returns 0, so that its sink's loop does
 * not spin. */
static int range_idle(rl_wal_reader_t *r, int timeout_ms)
{
    rl_wal_t *w = r->w;
    int64_t deadline = rl_clock_mono_ms() + timeout_ms;

    if (atomic_load(&r->read_hw) < r->until)
        atomic_store(&r->read_hw, r->until);

    pthread_mutex_lock(&w->lock);
    uint64_t wakeups = w->wakeups;
    while (!w->stop && w->wakeups == wakeups)
        if (rl_cond_wait_until(&w->read_cv, &w->lock, deadline) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* A range reader's record seq: 1 when its filter takes it. Each record is
 * counted once, however often a rewind has it read again. */
static int range_take(rl_wal_reader_t *r, uint64_t seq, const uint8_t *payload, size_t len)
{
    int fresh = seq > atomic_load(&r->read_hw);
    if (fresh)
        atomic_store(&r->read_hw, seq);
    if (r->filter && !r->filter(r->farg, seq, payload, len))
        return 0;
    if (fresh) {
        atomic_fetch_add(&r->matched, 1);
        atomic_store(&r->last_match, seq);
    }
    return 1;
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
            if (seq < r->want) {
                r->bpos += HDR + len;
                continue;
            }
            if (r->range && seq > r->until) /* the end: left unread */
                return range_idle(r, timeout_ms);
            r->bpos += HDR + len;
            r->want = seq + 1;
            if (r->range && !range_take(r, seq, p + HDR, len))
                continue;
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
        if (r->range && r->want > r->until) /* read to the end of the WAL */
            return range_idle(r, timeout_ms);
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
        if (!r->range) { /* a range reader's cursor is in memory only */
            w->cursors_dirty = 1;
            pthread_cond_signal(&w->flush_cv);
        }
    }
    pthread_mutex_unlock(&w->lock);
}

static int range_done(rl_wal_reader_t *r, uint64_t cursor)
{
    return atomic_load(&r->read_hw) >= r->until && cursor >= atomic_load(&r->last_match);
}

void rl_wal_reader_lag(rl_wal_reader_t *r, uint64_t *events, uint64_t *bytes)
{
    pthread_mutex_lock(&r->w->lock);
    if (!r->range) {
        rl_wal_int_lag_locked(r->w, r->cursor, events, bytes);
    } else { /* the records of the range left to read or acknowledge */
        *events = range_done(r, r->cursor) || r->cursor >= r->until ? 0 : r->until - r->cursor;
        *bytes = 0;
    }
    pthread_mutex_unlock(&r->w->lock);
}

int rl_wal_reader_caught_up(rl_wal_reader_t *r)
{
    uint64_t events, bytes;
    if (r->range)
        return range_done(r, rl_wal_reader_cursor(r));
    rl_wal_reader_lag(r, &events, &bytes);
    return events == 0;
}

rl_wal_reader_t *rl_wal_range_open(rl_wal_t *w, uint64_t from_seq, uint64_t until_seq,
                                   rl_wal_filter_fn filter, void *arg, char *errstr,
                                   size_t errstr_size)
{
    rl_wal_reader_t *r = calloc(1, sizeof(*r)), **v = NULL;

    if (!r)
        goto oom;
    r->w = w;
    r->fd = r->cursor_fd = -1;
    r->range = 1;
    r->filter = filter;
    r->farg = arg;
    if (from_seq == 0)
        from_seq = 1;
    r->want = r->from = from_seq;
    r->cursor = from_seq - 1;
    atomic_store(&r->read_hw, from_seq - 1);
    pthread_mutex_lock(&w->lock);
    r->until = until_seq < w->durable_seq ? until_seq : w->durable_seq;
    v = rl_array_grow(w->ranges, &w->capranges, w->nranges + 1, sizeof(*v), 4);
    if (v) {
        w->ranges = v;
        w->ranges[w->nranges++] = r;
    }
    pthread_mutex_unlock(&w->lock);
    if (!v)
        goto oom;
    return r;
oom:
    free(r);
    rl_seterr(errstr, errstr_size, "out of memory");
    return NULL;
}

void rl_wal_range_close(rl_wal_reader_t *r)
{
    if (!r)
        return;
    rl_wal_t *w = r->w;
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->nranges; i++)
        if (w->ranges[i] == r) {
            w->ranges[i] = w->ranges[--w->nranges];
            break;
        }
    rl_wal_int_gc_segments(w); /* what only this range still held */
    pthread_mutex_unlock(&w->lock);
    rl_wal_int_reader_fini(r, 0);
    free(r);
}

void rl_wal_range_progress(rl_wal_reader_t *r, rl_wal_range_progress_t *p)
{
    uint64_t cursor = rl_wal_reader_cursor(r);
    p->from = r->from;
    p->until = r->until;
    p->read_seq = atomic_load(&r->read_hw);
    p->matched = atomic_load(&r->matched);
    p->committed = cursor;
    p->done = range_done(r, cursor);
    p->gap = atomic_load(&r->gap);
}

uint64_t rl_wal_int_range_pin(const rl_wal_t *w)
{
    uint64_t pin = UINT64_MAX;
    for (size_t i = 0; i < w->nranges; i++)
        if (w->ranges[i]->cursor + 1 < pin)
            pin = w->ranges[i]->cursor + 1;
    return pin;
}

uint64_t rl_wal_seq_since(rl_wal_t *w, int64_t since_ms)
{
    pthread_mutex_lock(&w->lock);
    uint64_t seq = w->durable_seq + 1;
    for (size_t i = 0; i < w->nsegs; i++)
        if (w->segs[i].last_ms >= since_ms || w->segs[i].last_ms == 0) {
            seq = w->segs[i].first_seq;
            break;
        }
    pthread_mutex_unlock(&w->lock);
    return seq;
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
