/* prio.c -- see prio.h. Linux keeps a nice value per thread, and a thread
 * starts with its creator's: librdkafka's threads are lowered through its
 * on_thread_start interceptor (sink_kafka.c), ours at their start. */
#include "prio.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void rl_prio_background(void)
{
    id_t tid = (id_t)syscall(SYS_gettid);
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, tid); /* -1 is a valid nice value: check errno */
    if (errno == 0)
        (void)setpriority(PRIO_PROCESS, tid, cur + RL_PRIO_BACKGROUND_NICE);
}
