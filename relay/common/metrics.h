/* metrics.h -- a small registry of counters and gauges rendered in the
 * Prometheus text format. Modules register what they count at start-up and then
 * update it lock-free from any thread. */
#ifndef RL_METRICS_H
#define RL_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct rl_metrics rl_metrics_t;

/* The counter every limit on hostile input counts its hits in, labelled
 * limit="<the config key of the limit>" (plus source="..." where one is known). */
#define RL_LIMIT_HITS "relay_limit_hits_total"
#define RL_LIMIT_HITS_HELP "Requests or connections refused by a limit, by its config key."
typedef struct rl_metric rl_metric_t;

rl_metrics_t *rl_metrics_new(char *errstr, size_t errstr_size);
void rl_metrics_destroy(rl_metrics_t *m); /* NULL-safe; frees every metric */

/* Registers a counter (or gauge) `name{labels}`; `labels` is the inside of the
 * braces, e.g. "source=\"timely\",code=\"200\"", or "" for none. Strings are
 * copied. The returned metric is owned by `m` and lives as long as it. Returns
 * NULL on out-of-memory; the update functions accept NULL and do nothing, so a
 * failed registration costs a metric, never a crash. The same name and labels
 * registered again (a replay's second sink instance) give the first metric. */
rl_metric_t *rl_metrics_counter(rl_metrics_t *m, const char *name, const char *labels,
                                const char *help);
rl_metric_t *rl_metrics_gauge(rl_metrics_t *m, const char *name, const char *labels,
                              const char *help);

/* A gauge whose value is a real number (a ratio), set with rl_metric_set_f. */
rl_metric_t *rl_metrics_gauge_f(rl_metrics_t *m, const char *name, const char *labels,
                                const char *help);

/* A counter whose value is a real number (seconds of CPU), set with
 * rl_metric_set_f from a source that only grows. */
rl_metric_t *rl_metrics_counter_f(rl_metrics_t *m, const char *name, const char *labels,
                                  const char *help);

/* A histogram of durations, rendered in seconds with fixed buckets from 250 us
 * to 30 s (`name_bucket{le=...}`, `name_sum`, `name_count`); fed with
 * rl_metric_observe_us. */
rl_metric_t *rl_metrics_histogram(rl_metrics_t *m, const char *name, const char *labels,
                                  const char *help);
void rl_metric_observe_us(rl_metric_t *h, uint64_t us);

void rl_metric_add(rl_metric_t *c, uint64_t n);
void rl_metric_set(rl_metric_t *g, int64_t v);
int64_t rl_metric_get(const rl_metric_t *c);
void rl_metric_set_f(rl_metric_t *g, double v);

/* Called (in registration order) before every render, to refresh gauges that
 * are cheaper to compute on demand (WAL bytes, sink lag). fn(arg) runs on the
 * rendering thread under the registry's lock, so it must not call back into
 * the registry.
 *
 * Lifetime: the registry keeps `arg` and calls it at every render until the
 * hook is unregistered with rl_metrics_off_render. The owner of `arg` must
 * unregister the hook before it frees `arg`: in its destroy function, and on
 * every failure path of its constructor after the registration. */
void rl_metrics_on_render(rl_metrics_t *m, void (*fn)(void *arg), void *arg);

/* Unregisters the hook (fn, arg) (every registration of that pair). Once this
 * returns no render runs it: a render in progress finishes first. NULL-safe (m
 * NULL does nothing), and unregistering a hook that is not registered is a
 * no-op. Not from inside a hook. */
void rl_metrics_off_render(rl_metrics_t *m, void (*fn)(void *arg), void *arg);

/* The exposition text; malloc'd, the caller frees it. NULL on out-of-memory. */
char *rl_metrics_render(rl_metrics_t *m, size_t *len);

#endif
