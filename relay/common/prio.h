/* prio.h -- the scheduling priority of relay's background threads.
 *
 * An acknowledgement waits for the HTTP workers and the WAL flusher; a sink or
 * the dedup persister only has to keep up on average, since the WAL buffers
 * whatever they have not done yet. On a machine whose cores are shared (with
 * Kafka and Redis, say) the background threads therefore run a few nice levels
 * below the rest: when a request and a publication both want a core, the
 * request gets it sooner (what `make bench` measured: docs/performance.md).
 * Nice only weighs CPU shares (+5 is about a third of the weight of
 * 0), it never starves a thread. */
#ifndef RL_PRIO_H
#define RL_PRIO_H

#define RL_PRIO_BACKGROUND_NICE 5 /* added to the process's nice value */

/* Lowers the calling thread's priority to the background level. Raising one's
 * own nice value needs no privilege; a failure (seccomp, say) is ignored. */
void rl_prio_background(void);

#endif
