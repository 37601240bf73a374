/* wal_spare.c -- the WAL's background thread ("reaper", rl-wal-gc): deletes
 * the segments every reader has passed (handed over by rl_wal_int_gc_segments)
 * and, with wal.preallocate, writes the next segment ahead of time as a spare
 * full of zeros, outside the lock. */
#include "wal_int.h"

#include "array.h"
#include "clock.h"
#include "log.h"
#include "prio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPARE_NAME "next-segment.zeros" /* not *.wal: never taken for a segment */
#define SPARE_RETRY_MS 10000

/* What a preallocated segment is written with, and what its unused end is
 * compared against. */
const uint8_t rl_wal_int_zeros[1 << 20];

void rl_wal_int_spare_path(const rl_wal_t *w, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/" SPARE_NAME, w->dir);
}

/* The lowest cursor: every seq at or below it is published (lock held). */
static uint64_t min_cursor(const rl_wal_t *w)
{
    uint64_t min = w->durable_seq;
    for (size_t i = 0; i < w->nreaders; i++)
        if (w->readers[i].cursor < min)
            min = w->readers[i].cursor;
    return min;
}

/* How many of the oldest segments every reader has passed (the active one never
 * counts), and their bytes (lock held). */
static size_t passed_segments(const rl_wal_t *w, uint64_t *bytes)
{
    uint64_t min = min_cursor(w);
    size_t n = 0;

    *bytes = 0;
    while (n + 1 < w->nsegs && w->segs[n + 1].first_seq - 1 <= min)
        *bytes += w->segs[n++].size;
    return n;
}

void rl_wal_int_retained(const rl_wal_t *w, uint64_t *bytes, uint64_t *segments,
                         uint64_t *first_seq, int64_t *since_ms)
{
    *segments = passed_segments(w, bytes);
    *first_seq = *segments ? w->segs[0].first_seq : 0;
    *since_ms = *segments ? w->segs[0].first_ms : 0;
}

/* Hands the `drop` oldest segments to the reaper (lock held). */
static void drop_segments(rl_wal_t *w, size_t ndrop)
{
    size_t drop = 0;
    while (drop < ndrop) {
        uint64_t *v = rl_array_grow(w->doomed, &w->capdoomed, w->ndoomed + 1, sizeof(*v), 8);
        if (!v) {
            char path[4096]; /* out of memory: unlink it here after all */
            rl_wal_int_seg_path(w, w->segs[drop].first_seq, path, sizeof(path));
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

/* Drops the segments every reader has passed that wal.retention no longer
 * keeps, and hands their files to the reaper (reaper_main). Called with the
 * lock held; the active (last) segment always stays. Should relay stop before
 * the reaper unlinks a file, the next start finds the segment again, behind
 * every cursor, and drops it again (or keeps it, while retention does). */
void rl_wal_int_gc_segments(rl_wal_t *w)
{
    uint64_t kept;
    size_t n = passed_segments(w, &kept), drop = 0;
    int64_t now = rl_clock_wall_ms();

    uint64_t pin = rl_wal_int_range_pin(w);

    while (drop < n && w->segs[drop + 1].first_seq <= pin) {
        const segment_t *s = &w->segs[drop];
        int expired = w->retention_ms == 0 || now - s->last_ms >= w->retention_ms;
        int over = w->retention_bytes && kept > w->retention_bytes;
        if (!expired && !over)
            break;
        kept -= s->size;
        drop++;
    }
    drop_segments(w, drop);
}

int rl_wal_int_make_room(rl_wal_t *w, uint64_t need)
{
    uint64_t kept;
    size_t n = passed_segments(w, &kept), drop = 0;
    uint64_t used = w->bytes + w->inflight_bytes + w->pending.len;

    while (drop < n && used + need > w->max_size) {
        used -= w->segs[drop].size;
        drop++;
    }
    if (drop) {
        rl_metric_add(w->m_gave_way, drop);
        drop_segments(w, drop);
    }
    return used + need <= w->max_size;
}

/* Writes SPARE_NAME: segment_size zero bytes, synced. Background thread, no
 * lock; returns 0, or -1 (the file is removed). */
static int prepare_spare(rl_wal_t *w)
{
    char path[4096];
    int rc = -1, fd;

    rl_wal_int_spare_path(w, path, sizeof(path));
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        goto out;
    for (uint64_t off = 0; off < w->segment_size;) {
        size_t n = w->segment_size - off < sizeof(rl_wal_int_zeros)
                       ? (size_t)(w->segment_size - off)
                       : sizeof(rl_wal_int_zeros);
        if (atomic_load(&w->bg_stop)) {
            errno = ECANCELED;
            goto out;
        }
        if (rl_wal_int_pwrite_all(fd, rl_wal_int_zeros, n, off) != 0)
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
            /* Swap the list out: rl_wal_int_gc_segments goes on filling the other one. */
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
                rl_wal_int_seg_path(w, batch[i], path, sizeof(path));
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

int rl_wal_int_reaper_start(rl_wal_t *w)
{
    if (pthread_create(&w->reaper, NULL, reaper_main, w) != 0)
        return -1;
    w->reaper_started = 1;
    return 0;
}

void rl_wal_int_reaper_stop(rl_wal_t *w)
{
    if (!w->reaper_started)
        return;
    atomic_store(&w->bg_stop, 1);
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->reap_cv);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->reaper, NULL);
}
