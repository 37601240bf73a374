/* wal_record.c -- the WAL's record format (wal.h: u32 len | u32 crc | u64 seq |
 * payload), segment file names, and the sparse index of each segment's records
 * that lag is measured from. */
#include "wal_int.h"

#include "array.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <isa-l/crc.h>

/* The checksum covers the sequence number too, so a record copied to the wrong
 * place or with a damaged header is caught, not only damaged payloads. It is
 * zlib's CRC-32 (the same polynomial, seed and chaining: the unit tests forge
 * records with zlib's crc32), computed by ISA-L, whose carry-less-multiply
 * code runs about 4x faster than zlib's on records this size: recovery of a
 * large WAL was bound by it. */
uint32_t rl_wal_int_rec_crc(const uint8_t *seq8, const uint8_t *payload, size_t len)
{
    return crc32_gzip_refl(crc32_gzip_refl(0, seq8, 8), payload, (uint64_t)len);
}

void rl_wal_int_seg_path(const rl_wal_t *w, uint64_t first_seq, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%020llu.wal", w->dir, (unsigned long long)first_seq);
}

/* Counts one more durable record of `seg` at file offset `off`. */
int rl_wal_int_seg_note(segment_t *seg, uint64_t seq, uint64_t off)
{
    if (seg->count % IDX_EVERY == 0) {
        idx_point_t *v = rl_array_grow(seg->idx, &seg->capidx, seg->nidx + 1, sizeof(*v), 16);
        if (!v)
            return -1;
        seg->idx = v;
        seg->idx[seg->nidx++] = (idx_point_t){seq, off, seg->count};
    }
    seg->count++;
    return 0;
}

int rl_wal_int_seg_push(rl_wal_t *w, uint64_t first_seq, uint64_t size)
{
    segment_t *v = rl_array_grow(w->segs, &w->capsegs, w->nsegs + 1, sizeof(*v), 16);
    if (!v)
        return -1;
    w->segs = v;
    w->segs[w->nsegs++] = (segment_t){.first_seq = first_seq, .size = size};
    return 0;
}

int rl_wal_int_pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = ENOSPC; /* a regular file takes nothing: treat it as full */
            return -1;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}
