/* procmetrics.h -- the metrics every Prometheus exporter has about its own
 * process, under their usual names (process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds), and
 * relay_build_info{version}. Read from /proc/self at each scrape (a render
 * hook), so they cost nothing between scrapes. */
#ifndef RL_PROCMETRICS_H
#define RL_PROCMETRICS_H

#include <stddef.h>

#include "metrics.h"

typedef struct rl_procmetrics rl_procmetrics_t;

/* Registers the metrics and the render hook in m, which must outlive the
 * returned handle. NULL with errstr set when out of memory. */
rl_procmetrics_t *rl_procmetrics_new(rl_metrics_t *m, const char *version, char *errstr,
                                     size_t errstr_size);

/* Removes the render hook and frees the handle (the metrics stay in m, at
 * their last values). NULL-safe. */
void rl_procmetrics_destroy(rl_procmetrics_t *p);

#endif
