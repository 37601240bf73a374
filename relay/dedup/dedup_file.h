/* dedup_file.h -- the dedup window on disk, so that it survives a restart or a crash
 * after the WAL segments holding the original events were deleted.
 *
 * A directory (relay uses <wal.dir>/dedup) holds:
 *   key               the digest key: RL_DEDUP_KEY_LEN bytes + u32 crc32. Digests are keyed
 *                     (dedup.h), so records are only usable with the key they were made
 *                     with: a lost or damaged key starts an empty file under a new one.
 *   <20 digits>.dd    segments: the 8-byte magic "RLDEDUP1", then 24-byte records
 *                     digest[16] | u32 time (unix seconds, LE) | u32 crc32(first 20 bytes)
 *
 * Records are only ever appended; a new segment starts at each open, after
 * segment_records records and after window/8 seconds. Compaction drops whole closed
 * segments, oldest first: one whose newest record is out of the window, or one whose ids
 * the window would have forgotten anyway because the segments after it hold max_entries
 * records. So the disk holds about one record per remembered id plus one segment.
 *
 * The caller decides when records must be durable: rl_dfile_append returns once they are
 * written and (with fsync) fdatasync'ed, and a new segment's directory entry is fsynced
 * before its first record counts.
 *
 * Not thread-safe: one thread uses a handle (relay: the dedup persister, after start-up). */
#ifndef RL_DEDUP_FILE_H
#define RL_DEDUP_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "dedup.h"

#define RL_DFILE_REC_SIZE 24 /* bytes per record on disk */
#define RL_DFILE_HDR_SIZE 8  /* bytes of the magic at the start of a segment */

typedef struct rl_dfile rl_dfile_t;

typedef struct rl_dfile_rec {
    rl_dedup_digest_t dg;
    uint32_t t; /* when the event was received, unix seconds */
} rl_dfile_rec_t;

typedef struct rl_dfile_opts {
    const char *dir;          /* created if missing (one level) */
    uint64_t window_s;        /* > 0 */
    uint64_t max_entries;     /* > 0 */
    uint64_t segment_records; /* roll after this many records; 0: max_entries / 8, at least 1024 */
    int fsync;                /* 0: write() only (survives a crash of relay, not of the OS) */
} rl_dfile_opts_t;

/* Opens `o->dir`, reading or creating the key; opts are copied. NULL with errstr. */
rl_dfile_t *rl_dfile_open(const rl_dfile_opts_t *o, char *errstr, size_t errstr_size);
void rl_dfile_close(rl_dfile_t *f); /* NULL-safe */

/* The digest key (RL_DEDUP_KEY_LEN bytes), valid while f is open. */
const unsigned char *rl_dfile_key(const rl_dfile_t *f);
/* 1 when open made a new key: no record from before is on disk. */
int rl_dfile_fresh(const rl_dfile_t *f);

/* Drops the newest n records (whole segments, then a cut), before load: the ids of
 * WAL records that recovery found torn away, which must not be remembered. Dropping
 * more than exactly those is safe (a retry is published again, same id); keeping
 * them would answer a retry of a lost event as a duplicate. 0, or -1 (errstr). */
int rl_dfile_forget_last(rl_dfile_t *f, uint64_t n, char *errstr, size_t errstr_size);

/* Calls fn for every record still in the window at `now` (unix seconds), oldest segment
 * first, in the order written. A damaged or torn tail is cut off (logged). Call once,
 * before the first append. Returns the number of records passed to fn, or -1 (errstr). */
typedef void (*rl_dfile_load_fn)(void *arg, const rl_dfile_rec_t *rec);
long rl_dfile_load(rl_dfile_t *f, uint64_t now, rl_dfile_load_fn fn, void *arg, char *errstr,
                   size_t errstr_size);

/* Appends n records, durable when it returns 0, then drops segments compaction allows at
 * `now`. -1 (errstr) when they could not be written: nothing of them counts, and the
 * next append starts a new segment. */
int rl_dfile_append(rl_dfile_t *f, const rl_dfile_rec_t *recs, size_t n, uint64_t now, char *errstr,
                    size_t errstr_size);

uint64_t rl_dfile_bytes(const rl_dfile_t *f);   /* bytes in segments (headers included) */
uint64_t rl_dfile_records(const rl_dfile_t *f); /* records in segments */
size_t rl_dfile_segments(const rl_dfile_t *f);  /* segment files */

#endif
