/* procmetrics.c -- see procmetrics.h. Linux only: /proc/self/stat (proc(5))
 * and /proc/self/fd. */
#include "procmetrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"

struct rl_procmetrics {
    rl_metrics_t *m;
    rl_metric_t *cpu, *rss, *vsize, *fds, *max_fds, *start;
    double boot_time; /* seconds since the epoch, see boot_time() */
};

/* Seconds since the epoch at which the machine booted, 0 if unknown: the
 * wall clock now less /proc/uptime. /proc/stat's btime is not used: it is
 * fixed when the kernel boots and is off by however far the wall clock has
 * been stepped since (seen on VMs whose clock is set after boot). */
static double boot_time(void)
{
    FILE *f = fopen("/proc/uptime", "r");
    double up = 0;
    int ok;

    if (!f)
        return 0;
    ok = fscanf(f, "%lf", &up) == 1;
    fclose(f);
    return ok ? (double)rl_clock_wall_ms() / 1000.0 - up : 0;
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    long n = 0;

    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", "..", and the descriptor of the listing itself */
}

static void refresh(void *arg)
{
    rl_procmetrics_t *p = arg;
    char buf[1024];
    unsigned long utime, stime, vsize;
    unsigned long long starttime;
    long rss, ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

    if (f)
        fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) is in parentheses and may hold spaces: the
     * fields are counted from the last ')'. utime and stime are fields 14 and
     * 15, starttime 22, vsize 23, rss 24. */
    char *q = strrchr(buf, ')');
    if (q && ticks > 0 &&
        sscanf(q + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
               "%llu %lu %ld",
               &utime, &stime, &starttime, &vsize, &rss) == 5) {
        rl_metric_set_f(p->cpu, (double)(utime + stime) / (double)ticks);
        rl_metric_set(p->rss, (int64_t)rss * page);
        rl_metric_set(p->vsize, (int64_t)vsize);
        if (p->boot_time > 0)
            rl_metric_set_f(p->start, p->boot_time + (double)starttime / (double)ticks);
    }
    long fds = open_fds();
    if (fds >= 0)
        rl_metric_set(p->fds, fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        rl_metric_set(p->max_fds, rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur);
}

rl_procmetrics_t *rl_procmetrics_new(rl_metrics_t *m, const char *version, char *errstr,
                                     size_t errstr_size)
{
    rl_procmetrics_t *p = calloc(1, sizeof(*p));
    char labels[128];

    if (!p)
        goto oom;
    p->m = m;
    p->boot_time = boot_time();
    snprintf(labels, sizeof(labels), "version=\"%s\"", version);
    rl_metric_set(rl_metrics_gauge(m, "relay_build_info", labels,
                                   "Always 1; the version of the running binary as a label."),
                  1);
    p->cpu = rl_metrics_counter_f(m, "process_cpu_seconds_total", "",
                                  "User and system CPU time spent, in seconds.");
    p->rss =
        rl_metrics_gauge(m, "process_resident_memory_bytes", "", "Resident memory size, in bytes.");
    p->vsize =
        rl_metrics_gauge(m, "process_virtual_memory_bytes", "", "Virtual memory size, in bytes.");
    p->fds = rl_metrics_gauge(m, "process_open_fds", "", "Open file descriptors.");
    p->max_fds = rl_metrics_gauge(m, "process_max_fds", "",
                                  "The limit on open file descriptors (RLIMIT_NOFILE).");
    p->start = rl_metrics_gauge_f(m, "process_start_time_seconds", "",
                                  "When the process started, in seconds since the Unix epoch.");
    if (!p->cpu || !p->rss || !p->vsize || !p->fds || !p->max_fds || !p->start)
        goto oom;
    rl_metrics_on_render(m, refresh, p);
    return p;
oom:
    rl_seterr(errstr, errstr_size, "out of memory");
    free(p);
    return NULL;
}

void rl_procmetrics_destroy(rl_procmetrics_t *p)
{
    if (!p)
        return;
    rl_metrics_off_render(p->m, refresh, p);
    free(p);
}
