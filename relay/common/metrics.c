/* metrics.c -- registration takes a lock (start-up only); updates are relaxed
 * atomics, because a scrape needs no ordering with the hot path. */
#include "metrics.h"

#include "array.h"
#include "err.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Histogram buckets (upper bounds, microseconds): fine below 5 ms, where ack
 * latency should live, coarse up to the 30 s a request may wait. */
static const uint64_t hist_le_us[] = {250,     500,     1000,     2500,    5000,   10000,
                                      25000,   50000,   100000,   250000,  500000, 1000000,
                                      2500000, 5000000, 10000000, 30000000};
#define HIST_N (sizeof(hist_le_us) / sizeof(hist_le_us[0]))

struct rl_metric {
    char *name, *labels, *help;
    int gauge;
    int real;                 /* v holds the bits of a double (rl_metric_set_f) */
    _Atomic int64_t v;        /* a histogram: its count */
    _Atomic uint64_t *bucket; /* a histogram: observations per bucket (not cumulative),
                               * HIST_N + 1 of them, the last one past every bound */
    _Atomic uint64_t sum_us;
};

typedef struct hook {
    void (*fn)(void *);
    void *arg;
} hook_t;

struct rl_metrics {
    pthread_mutex_t lock;
    rl_metric_t **v;
    size_t n, cap;
    hook_t *hooks;
    size_t nhooks, caphooks;
};

rl_metrics_t *rl_metrics_new(char *errstr, size_t errstr_size)
{
    rl_metrics_t *m = calloc(1, sizeof(*m));
    if (!m) {
        rl_seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void rl_metrics_destroy(rl_metrics_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i]->name);
        free(m->v[i]->labels);
        free(m->v[i]->help);
        free((void *)m->v[i]->bucket);
        free(m->v[i]);
    }
    free(m->v);
    free(m->hooks);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static rl_metric_t *reg(rl_metrics_t *m, const char *name, const char *labels, const char *help,
                        int gauge, int real, int hist)
{
    rl_metric_t *c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    if (hist && !(c->bucket = calloc(HIST_N + 1, sizeof(*c->bucket))))
        goto fail;
    c->name = strdup(name);
    c->labels = strdup(labels ? labels : "");
    c->help = strdup(help);
    c->gauge = gauge;
    c->real = real;
    if (!c->name || !c->labels || !c->help)
        goto fail;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++) /* registered before (a second replay): the same one */
        if (!strcmp(m->v[i]->name, c->name) && !strcmp(m->v[i]->labels, c->labels)) {
            rl_metric_t *old = m->v[i];
            pthread_mutex_unlock(&m->lock);
            free(c->name);
            free(c->labels);
            free(c->help);
            free((void *)c->bucket);
            free(c);
            return old;
        }
    rl_metric_t **v = rl_array_grow(m->v, &m->cap, m->n + 1, sizeof(*v), 64);
    if (!v) {
        pthread_mutex_unlock(&m->lock);
        goto fail;
    }
    m->v = v;
    m->v[m->n++] = c;
    pthread_mutex_unlock(&m->lock);
    return c;
fail:
    if (c) {
        free(c->name);
        free(c->labels);
        free(c->help);
        free((void *)c->bucket);
        free(c);
    }
    return NULL;
}

rl_metric_t *rl_metrics_counter(rl_metrics_t *m, const char *name, const char *labels,
                                const char *help)
{
    return reg(m, name, labels, help, 0, 0, 0);
}

rl_metric_t *rl_metrics_gauge(rl_metrics_t *m, const char *name, const char *labels,
                              const char *help)
{
    return reg(m, name, labels, help, 1, 0, 0);
}

rl_metric_t *rl_metrics_gauge_f(rl_metrics_t *m, const char *name, const char *labels,
                                const char *help)
{
    return reg(m, name, labels, help, 1, 1, 0);
}

rl_metric_t *rl_metrics_counter_f(rl_metrics_t *m, const char *name, const char *labels,
                                  const char *help)
{
    return reg(m, name, labels, help, 0, 1, 0);
}

rl_metric_t *rl_metrics_histogram(rl_metrics_t *m, const char *name, const char *labels,
                                  const char *help)
{
    return reg(m, name, labels, help, 0, 0, 1);
}

void rl_metric_observe_us(rl_metric_t *h, uint64_t us)
{
    if (!h || !h->bucket)
        return;
    size_t i = 0;
    while (i < HIST_N && us > hist_le_us[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->v, 1, memory_order_relaxed);
}

void rl_metric_add(rl_metric_t *c, uint64_t n)
{
    if (c)
        atomic_fetch_add_explicit(&c->v, (int64_t)n, memory_order_relaxed);
}

void rl_metric_set(rl_metric_t *g, int64_t v)
{
    if (g)
        atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

int64_t rl_metric_get(const rl_metric_t *c)
{
    return c ? atomic_load_explicit(&((rl_metric_t *)c)->v, memory_order_relaxed) : 0;
}

void rl_metric_set_f(rl_metric_t *g, double v)
{
    int64_t bits;
    memcpy(&bits, &v, sizeof(bits)); /* a double in the same atomic slot */
    rl_metric_set(g, bits);
}

void rl_metrics_on_render(rl_metrics_t *m, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&m->lock);
    hook_t *h = rl_array_grow(m->hooks, &m->caphooks, m->nhooks + 1, sizeof(*h), 8);
    if (h) {
        m->hooks = h;
        h[m->nhooks++] = (hook_t){fn, arg};
    }
    pthread_mutex_unlock(&m->lock);
}

void rl_metrics_off_render(rl_metrics_t *m, void (*fn)(void *arg), void *arg)
{
    if (!m)
        return;
    /* Under the lock a render holds while it runs the hooks: once this
     * returns, none of them is running or will run. */
    pthread_mutex_lock(&m->lock);
    size_t keep = 0;
    for (size_t i = 0; i < m->nhooks; i++)
        if (m->hooks[i].fn != fn || m->hooks[i].arg != arg)
            m->hooks[keep++] = m->hooks[i];
    m->nhooks = keep;
    pthread_mutex_unlock(&m->lock);
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    for (int tries = 0; tries < 2 && !b->oom; tries++) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        char *p = rl_array_grow(b->p, &b->cap, b->len + (size_t)n + 1, 1, 0);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
    }
}

/* Writes the sample value of c and the end of its line. */
static void sb_value(sbuf_t *b, const rl_metric_t *c)
{
    int64_t bits = rl_metric_get(c);
    if (c->real) {
        /* 15 significant digits: a start time in seconds since the epoch
         * keeps its fraction, and 0.1 still prints as 0.1. */
        double d;
        memcpy(&d, &bits, sizeof(d));
        sb_printf(b, "%.15g\n", d);
    } else {
        sb_printf(b, "%lld\n", (long long)bits);
    }
}

/* HELP text escapes '\\' and newline (the text format's rule). */
static void sb_help(sbuf_t *b, const char *help)
{
    for (const char *p = help; *p; p++) {
        size_t n = strcspn(p, "\\\n");
        sb_printf(b, "%.*s", (int)n, p);
        p += n;
        if (!*p)
            break;
        sb_printf(b, "%s", *p == '\n' ? "\\n" : "\\\\");
    }
}

/* A histogram's series: cumulative buckets, sum (seconds) and count. The count
 * is read last and never smaller than the buckets' total, as scrapers expect;
 * an observation landing mid-render shows up in the next scrape's buckets. */
static void sb_histogram(sbuf_t *b, const rl_metric_t *h)
{
    const char *sep = h->labels[0] ? "," : "";
    uint64_t cum = 0;
    for (size_t k = 0; k <= HIST_N; k++) {
        cum += atomic_load_explicit(&h->bucket[k], memory_order_relaxed);
        if (k < HIST_N)
            sb_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", h->name, h->labels, sep,
                      (double)hist_le_us[k] / 1e6, (unsigned long long)cum);
    }
    uint64_t sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    uint64_t n = (uint64_t)rl_metric_get(h);
    if (n < cum)
        n = cum;
    sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", h->name, h->labels, sep,
              (unsigned long long)n);
    sb_printf(b, "%s_sum%s%s%s %.6f\n", h->name, h->labels[0] ? "{" : "", h->labels,
              h->labels[0] ? "}" : "", (double)sum / 1e6);
    sb_printf(b, "%s_count%s%s%s %llu\n", h->name, h->labels[0] ? "{" : "", h->labels,
              h->labels[0] ? "}" : "", (unsigned long long)n);
}

char *rl_metrics_render(rl_metrics_t *m, size_t *len)
{
    sbuf_t b = {malloc(8192), 0, 8192, 0};
    if (!b.p)
        return NULL;
    b.p[0] = '\0';
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nhooks; i++)
        m->hooks[i].fn(m->hooks[i].arg);
    /* Series of one name are printed together under one HELP/TYPE, as the
     * format asks, whatever order they were registered in. */
    for (size_t i = 0; i < m->n; i++) {
        int first = 1;
        for (size_t j = 0; j < i && first; j++)
            if (!strcmp(m->v[j]->name, m->v[i]->name))
                first = 0;
        if (!first)
            continue;
        sb_printf(&b, "# HELP %s ", m->v[i]->name);
        sb_help(&b, m->v[i]->help);
        sb_printf(&b, "\n# TYPE %s %s\n", m->v[i]->name,
                  m->v[i]->bucket  ? "histogram"
                  : m->v[i]->gauge ? "gauge"
                                   : "counter");
        for (size_t j = i; j < m->n; j++) {
            rl_metric_t *c = m->v[j];
            if (strcmp(c->name, m->v[i]->name) != 0)
                continue;
            if (c->bucket) {
                sb_histogram(&b, c);
                continue;
            }
            if (c->labels[0])
                sb_printf(&b, "%s{%s} ", c->name, c->labels);
            else
                sb_printf(&b, "%s ", c->name);
            sb_value(&b, c);
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
