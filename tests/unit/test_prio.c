/* test_prio.c -- background thread priority (relay/common/prio.c), against prio.h: the
 * calling thread, and only it, ends up RL_PRIO_BACKGROUND_NICE levels lower. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "prio.h"

static int nice_of(id_t tid)
{
    errno = 0;
    int v = getpriority(PRIO_PROCESS, tid);
    cr_assert_eq(errno, 0, "getpriority: %d", errno);
    return v;
}

typedef struct seen {
    int before, after, child; /* nice values seen by the thread */
} seen_t;

static void *child_main(void *arg)
{
    int *v = arg;
    *v = nice_of((id_t)syscall(SYS_gettid));
    return NULL;
}

static void *bg_main(void *arg)
{
    seen_t *s = arg;
    id_t tid = (id_t)syscall(SYS_gettid);
    pthread_t t;
    s->before = nice_of(tid);
    rl_prio_background();
    s->after = nice_of(tid);
    /* A thread it starts (librdkafka's, say) inherits the lowered priority. */
    pthread_create(&t, NULL, child_main, &s->child);
    pthread_join(t, NULL);
    return NULL;
}

Test(prio, lowers_only_the_calling_thread)
{
    id_t me = (id_t)syscall(SYS_gettid);
    int mine = nice_of(me);
    seen_t s = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, bg_main, &s), 0);
    pthread_join(t, NULL);
    int want = mine + RL_PRIO_BACKGROUND_NICE > 19 ? 19 : mine + RL_PRIO_BACKGROUND_NICE;
    cr_expect_eq(s.before, mine, "a new thread starts at its creator's nice value");
    cr_expect_eq(s.after, want, "after rl_prio_background: %d, expected %d", s.after, want);
    cr_expect_eq(s.child, want, "its own threads inherit it");
    cr_expect_eq(nice_of(me), mine, "the caller of pthread_create is untouched");
}
