/* test_procmetrics.c -- the process metrics (procmetrics.h) follow the process:
 * open descriptors counted exactly, CPU seconds grow with work done, memory and
 * the start time are plausible, and the build info names the version. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "procmetrics.h"

/* The value of the series `name ` (no labels) in a render of m. */
static double value(rl_metrics_t *m, const char *name)
{
    size_t len;
    char *text = rl_metrics_render(m, &len), pat[128];

    cr_assert_not_null(text);
    snprintf(pat, sizeof(pat), "\n%s ", name);
    char *at = strstr(text, pat);
    cr_assert_not_null(at, "%s missing from:\n%s", name, text);
    double v = strtod(at + strlen(pat), NULL);
    free(text);
    return v;
}

Test(procmetrics, values_follow_the_process)
{
    char err[128];
    rl_metrics_t *m = rl_metrics_new(err, sizeof(err));
    cr_assert_not_null(m);
    rl_procmetrics_t *p = rl_procmetrics_new(m, "9.9.9-test", err, sizeof(err));
    cr_assert_not_null(p, "%s", err);

    double fds0 = value(m, "process_open_fds");
    int fd[10];
    for (int i = 0; i < 10; i++)
        cr_assert_geq(fd[i] = open("/dev/null", O_RDONLY), 0);
    cr_assert_eq(value(m, "process_open_fds"), fds0 + 10);
    for (int i = 0; i < 10; i++)
        close(fd[i]);
    cr_assert_eq(value(m, "process_open_fds"), fds0);

    double cpu0 = value(m, "process_cpu_seconds_total");
    struct timespec t0, t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    volatile unsigned long x = 0;
    do {
        for (int i = 0; i < 1000000; i++)
            x += (unsigned long)i;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 300);
    double cpu1 = value(m, "process_cpu_seconds_total");
    cr_assert_geq(cpu1 - cpu0, 0.2, "300 ms of work, counted %.3f s", cpu1 - cpu0);

    cr_assert_gt(value(m, "process_resident_memory_bytes"), 1024 * 1024);
    cr_assert_gt(value(m, "process_virtual_memory_bytes"),
                 value(m, "process_resident_memory_bytes"));
    cr_assert_gt(value(m, "process_max_fds"), fds0);
    double start = value(m, "process_start_time_seconds"), now = (double)time(NULL);
    cr_assert(start > now - 3600 && start <= now + 1, "start %.0f now %.0f", start, now);

    size_t len;
    char *text = rl_metrics_render(m, &len);
    cr_assert_not_null(strstr(text, "relay_build_info{version=\"9.9.9-test\"} 1\n"), "%s", text);
    cr_assert_not_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"), "%s", text);
    free(text);
    rl_procmetrics_destroy(p);
    rl_procmetrics_destroy(NULL);
    rl_metrics_destroy(m);
}
