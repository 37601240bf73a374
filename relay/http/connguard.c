/* connguard.c -- see connguard.h.
 *
 * One mutex guards the counts, the per-address table and the list of tracked
 * connections; the deadline thread holds it while it shuts sockets down, and
 * rl_connguard_close takes it before the server closes the descriptor, so the
 * thread never touches a descriptor number that was closed and reused.
 *
 * Reservations: the server asks rl_connguard_admit before it sets a connection
 * up, and may still fail afterwards (out of memory) without telling us. The
 * same thread calls admit and then open for one connection, so the reservation
 * waits in a thread-local slot: open takes it over, and the thread's next admit
 * releases one that was never opened. */
#include "connguard.h"

#include "clock.h"
#include "err.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBUCKETS 1024

typedef struct ipkey {
    uint8_t b[16]; /* IPv4 as IPv4-mapped IPv6, so both spellings of one client are one key */
} ipkey_t;

typedef struct ipent {
    ipkey_t key;
    size_t count;
    struct ipent *next;
} ipent_t;

struct rl_conn {
    int fd;
    ipkey_t key;
    uint64_t start_ms; /* when the current request's clock started */
    int received;      /* the request is in: no deadline */
    int cut;           /* shut down by the deadline thread (counted once) */
    struct rl_conn *prev, *next;
};

struct rl_connguard {
    rl_connguard_opts_t o;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    pthread_t thread;
    int stop, started;
    size_t total;          /* admitted connections (reserved or open) */
    ipent_t *ip[NBUCKETS]; /* per-address counts */
    rl_conn_t *conns;      /* open connections */
    rl_metric_t *m_total, *m_per_ip, *m_timeout, *m_open;
};

static _Thread_local struct {
    rl_connguard_t *g;
    ipkey_t key;
} pending;

static void key_of(const struct sockaddr *a, socklen_t len, ipkey_t *k)
{
    memset(k, 0, sizeof(*k));
    if (a && a->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        k->b[10] = k->b[11] = 0xff;
        memcpy(k->b + 12, &((const struct sockaddr_in *)a)->sin_addr, 4);
    } else if (a && a->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        memcpy(k->b, &((const struct sockaddr_in6 *)a)->sin6_addr, 16);
    } /* anything else (a UNIX socket) shares the all-zero key */
}

static size_t bucket(const ipkey_t *k)
{
    uint32_t h = 2166136261u; /* FNV-1a: addresses are not chosen to collide much */
    for (int i = 0; i < 16; i++)
        h = (h ^ k->b[i]) * 16777619u;
    return h % NBUCKETS;
}

static ipent_t **find(rl_connguard_t *g, const ipkey_t *k)
{
    ipent_t **e = &g->ip[bucket(k)];
    while (*e && memcmp(&(*e)->key, k, sizeof(*k)) != 0)
        e = &(*e)->next;
    return e;
}

/* Takes a place for address k; the lock is held. 0, or -1 when a limit refuses
 * (or out of memory: refusing is the safe answer then). */
static int reserve(rl_connguard_t *g, const ipkey_t *k)
{
    if (g->total >= g->o.max_total) {
        rl_metric_add(g->m_total, 1);
        return -1;
    }
    ipent_t **e = find(g, k);
    if (*e && (*e)->count >= g->o.max_per_ip) {
        rl_metric_add(g->m_per_ip, 1);
        return -1;
    }
    if (!*e) {
        if (!(*e = calloc(1, sizeof(**e))))
            return -1;
        (*e)->key = *k;
    }
    (*e)->count++;
    g->total++;
    return 0;
}

static void release(rl_connguard_t *g, const ipkey_t *k)
{
    ipent_t **e = find(g, k);
    if (!*e)
        return;
    if (--(*e)->count == 0) {
        ipent_t *dead = *e;
        *e = dead->next;
        free(dead);
    }
    if (g->total > 0)
        g->total--;
}

/* Shuts down every connection whose request has been arriving for longer than
 * the deadline. */
static void *deadline_main(void *arg)
{
    rl_connguard_t *g = arg;

    pthread_setname_np(pthread_self(), "rl-connguard"); /* top -H, perf */
    pthread_mutex_lock(&g->lock);
    while (!g->stop) {
        rl_cond_wait_ms(&g->cv, &g->lock, g->o.tick_ms);
        uint64_t now = (uint64_t)rl_clock_mono_ms();
        for (rl_conn_t *c = g->conns; c; c = c->next) {
            if (c->received || c->cut || now - c->start_ms < (uint64_t)g->o.request_timeout_ms)
                continue;
            /* Counted before the cut: whoever sees the socket end sees the hit. */
            rl_metric_add(g->m_timeout, 1);
            c->cut = 1;
            shutdown(c->fd, SHUT_RDWR);
        }
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

rl_connguard_t *rl_connguard_new(const rl_connguard_opts_t *o, rl_metrics_t *metrics, char *errstr,
                                 size_t errstr_size)
{
    rl_connguard_t *g = calloc(1, sizeof(*g));
    int ok = 0;

    if (!g) {
        rl_seterr(errstr, errstr_size, "out of memory");
        goto out;
    }
    g->o = *o;
    if (g->o.tick_ms <= 0)
        g->o.tick_ms = 200;
    pthread_mutex_init(&g->lock, NULL);
    rl_cond_init(&g->cv);
    if (metrics) {
        g->m_total = rl_metrics_counter(metrics, RL_LIMIT_HITS, "limit=\"max_connections\"",
                                        RL_LIMIT_HITS_HELP);
        g->m_per_ip = rl_metrics_counter(metrics, RL_LIMIT_HITS, "limit=\"max_connections_per_ip\"",
                                         RL_LIMIT_HITS_HELP);
        g->m_timeout = rl_metrics_counter(metrics, RL_LIMIT_HITS, "limit=\"request_timeout\"",
                                          RL_LIMIT_HITS_HELP);
        g->m_open =
            rl_metrics_gauge(metrics, "relay_http_connections", "", "Client connections open now.");
    }
    if (pthread_create(&g->thread, NULL, deadline_main, g) != 0) {
        rl_seterr(errstr, errstr_size, "cannot start the connection deadline thread");
        goto out;
    }
    g->started = 1;
    ok = 1;
out:
    if (!ok) {
        rl_connguard_destroy(g);
        g = NULL;
    }
    return g;
}

void rl_connguard_destroy(rl_connguard_t *g)
{
    if (!g)
        return;
    if (g->started) {
        pthread_mutex_lock(&g->lock);
        g->stop = 1;
        pthread_cond_signal(&g->cv);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->thread, NULL);
    }
    /* Only this thread's slot can be reached; the server's threads, whose slots
     * may still name g, have ended with the server. */
    if (pending.g == g)
        pending.g = NULL;
    for (size_t i = 0; i < NBUCKETS; i++) {
        while (g->ip[i]) {
            ipent_t *e = g->ip[i];
            g->ip[i] = e->next;
            free(e);
        }
    }
    while (g->conns) { /* only if the server did not close them: free, do not touch */
        rl_conn_t *c = g->conns;
        g->conns = c->next;
        free(c);
    }
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

int rl_connguard_admit(rl_connguard_t *g, const struct sockaddr *addr, socklen_t addrlen)
{
    ipkey_t k;
    int ok;

    key_of(addr, addrlen, &k);
    pthread_mutex_lock(&g->lock);
    if (pending.g == g) /* the previous admit of this thread was never opened */
        release(g, &pending.key);
    pending.g = NULL;
    ok = reserve(g, &k) == 0;
    if (ok) {
        pending.g = g;
        pending.key = k;
    }
    pthread_mutex_unlock(&g->lock);
    return ok;
}

rl_conn_t *rl_connguard_open(rl_connguard_t *g, int fd, const struct sockaddr *addr,
                             socklen_t addrlen)
{
    rl_conn_t *c = calloc(1, sizeof(*c));
    ipkey_t k;

    key_of(addr, addrlen, &k);
    pthread_mutex_lock(&g->lock);
    int reserved = pending.g == g && !memcmp(&pending.key, &k, sizeof(k));
    if (reserved)
        pending.g = NULL;
    if (!c) {
        if (reserved)
            release(g, &k);
        goto out;
    }
    /* Not admitted through us (no reservation): count it all the same, so
     * that close has something to release. */
    if (!reserved) {
        ipent_t **e = find(g, &k);
        if (!*e && (*e = calloc(1, sizeof(**e))))
            (*e)->key = k;
        if (!*e) {
            free(c);
            c = NULL;
            goto out;
        }
        (*e)->count++;
        g->total++;
    }
    c->fd = fd;
    c->key = k;
    c->start_ms = (uint64_t)rl_clock_mono_ms();
    c->next = g->conns;
    if (g->conns)
        g->conns->prev = c;
    g->conns = c;
    rl_metric_set(g->m_open, (int64_t)g->total);
out:
    pthread_mutex_unlock(&g->lock);
    return c;
}

void rl_connguard_close(rl_connguard_t *g, rl_conn_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    release(g, &c->key);
    rl_metric_set(g->m_open, (int64_t)g->total);
    pthread_mutex_unlock(&g->lock);
    free(c);
}

void rl_connguard_received(rl_connguard_t *g, rl_conn_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->lock);
    c->received = 1;
    pthread_mutex_unlock(&g->lock);
}

void rl_connguard_done(rl_connguard_t *g, rl_conn_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&g->lock);
    c->start_ms = (uint64_t)rl_clock_mono_ms();
    c->received = 0;
    pthread_mutex_unlock(&g->lock);
}

size_t rl_connguard_count(rl_connguard_t *g)
{
    pthread_mutex_lock(&g->lock);
    size_t n = g->total;
    pthread_mutex_unlock(&g->lock);
    return n;
}
