/* wal_waiter.c -- ack = publish: waiters for every reader's cursor to reach a
 * sequence number, settled by the flusher (published, timed out, cancelled). */
#include "wal_int.h"

#include "array.h"
#include "clock.h"

#include <stdlib.h>

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
int64_t rl_wal_int_settle_published(rl_wal_t *w)
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
