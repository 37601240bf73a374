/* dirlock.h -- one process per directory: an exclusive lock on DIR/.lock, as
 * Kafka's log directories have. The WAL takes it before it reads or writes
 * anything, so a second relay started on the same wal.dir stops at start-up
 * naming the holder instead of appending beside the first.
 *
 * The lock is flock(2) on an open file: the kernel drops it when the holder
 * exits, even by SIGKILL, so a crash never leaves a stale lock behind (the
 * file stays, the lock does not). It holds between containers sharing a volume
 * on one host; it is not a lock across hosts (NFS). */
#ifndef RL_DIRLOCK_H
#define RL_DIRLOCK_H

#include <stddef.h>

typedef struct rl_dirlock rl_dirlock_t;

/* Locks dir (which must exist), creating dir/.lock, and writes this process's
 * pid into it. Returns the lock, or NULL with errstr set: when another process
 * holds it, errstr names the directory and that process's pid. */
rl_dirlock_t *rl_dirlock_take(const char *dir, char *errstr, size_t errstr_size);

/* Releases and frees the lock (the file stays). NULL-safe. */
void rl_dirlock_release(rl_dirlock_t *l);

#endif
