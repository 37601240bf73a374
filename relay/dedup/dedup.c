/* dedup.c -- in-memory window of recently seen (source, id) pairs.
 *
 * Layout, for n remembered ids:
 *
 *   nodes[]  a slab of 24-byte nodes {digest, time, prev, next}. Live nodes form one
 *            doubly linked list in claim order (head = oldest). Times never decrease
 *            along the list, so expiry and eviction both pop the head, and release()
 *            unlinks from the middle in O(1) without leaving a hole that would take
 *            room from the bound. Free nodes are chained through `next`.
 *   index[]  open addressing table of 8-byte slots {node position, 32-bit digest tag},
 *            at least 3/2 of the slab capacity (load <= 2/3), linear probing with
 *            backward-shift deletion, so there are no tombstones to clean up.
 *
 * A node keeps 96 bits of the 128-bit digest (the tag is the first 32 of them):
 * with a million ids remembered, a new id matches one of them by chance with a
 * probability of 10^6 / 2^96, about 10^-23. Its time is 32 bits of unix
 * seconds, compared modulo 2^32: every live node is younger than the window
 * (at most 2^31 - 1 seconds), so the difference is exact.
 *
 * Both grow up to max_entries, so a quiet window does not reserve memory for
 * max_entries up front, and without a pause: the slab by adding chunks (never
 * copied), the index by doubling and moving the old one over a few slots per
 * claim (dd_move). At a full table that is 24 + 12..15 bytes per id (37.6 at
 * 1,000,000; it was 48.8 with 32-byte nodes and an index at most half full). The
 * fuller index costs longer probe runs: a new id's claim on a full 1M table took
 * about 170 ns instead of 140 (quiet machine, one sitting). An index grown by
 * quarters is being moved over more often, so a move takes 64 slots per claim:
 * while the window grows from 100k to 1.5M ids it holds 39.0 bytes per id on
 * average (42.4 at 16 slots per claim). A u32-only index would save 4 more bytes
 * per id but costs a node cache miss per probe. */
#include "dedup.h"

#include "err.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DD_NIL UINT32_MAX         /* no node: end of a list, free list */
#define DD_INITIAL_CAP 256        /* nodes allocated up front (8.6 KB with its index) */
#define DD_MAX_WINDOW 0x7fffffffu /* seconds: node times are compared modulo 2^32 */
/* The slab is allocated in chunks of DD_CHUNK nodes (96 KiB): growing it never
 * copies it. Realloc'ing a 32 MiB slab took 50 ms at a million ids (page faults
 * on the new copy, in a VM), all of it with every HTTP thread waiting. Below one
 * chunk, the first chunk doubles as it fills. */
#define DD_CHUNK_BITS 12
#define DD_CHUNK ((size_t)1 << DD_CHUNK_BITS)

typedef struct dd_node {
    uint32_t k[3]; /* 96 bits of the digest: k[0] is the tag (dd_key) */
    uint32_t t;    /* claim time mod 2^32; never older than the previous node's */
    uint32_t prev; /* older neighbour, DD_NIL at the head */
    uint32_t next; /* newer neighbour, DD_NIL at the tail; free list link when free */
} dd_node;

struct rl_dedup_hasher {
    EVP_MD_CTX *ctx; /* reused: one allocation per hasher, not per digest */
    EVP_MD *md;
    unsigned char key[RL_DEDUP_KEY_LEN];
};

struct rl_dedup {
    uint64_t window;
    uint64_t now;        /* latest `now` seen: a clock step back must not expire early */
    size_t max;          /* hard bound on live nodes */
    size_t cap;          /* nodes allocated, <= max */
    size_t used;         /* nodes[0..used) were handed out at least once */
    size_t live;         /* nodes on the list */
    uint32_t head, tail; /* oldest and newest live node */
    uint32_t free;       /* free list of released/expired/evicted nodes */
    dd_node **chunks;    /* the slab: (max + DD_CHUNK - 1) / DD_CHUNK pointers */
    uint64_t *index;
    size_t size; /* slots of index */
    /* While the index grows, the previous one is moved into the new one a few
     * slots per claim (as Redis's dict rehashes), instead of all at once: at a
     * million ids that took over 100 ms, all of it with every HTTP thread
     * waiting on the window. Each id is in exactly one of the two: a moved slot
     * becomes DD_GONE, which lookups step over, so probe runs stay intact. */
    uint64_t *old; /* NULL when no move is under way */
    size_t old_size;
    size_t moved; /* old[0..moved) have been moved */
    uint64_t evicted, expired;
    rl_dedup_hasher_t *hasher;
};

static dd_node *dd_at(const rl_dedup_t *d, uint32_t pos)
{
    return &d->chunks[pos >> DD_CHUNK_BITS][pos & (DD_CHUNK - 1)];
}

/* What a node keeps of a digest. */
typedef struct dd_key {
    uint32_t k[3];
} dd_key;

static dd_key dd_key_of(const rl_dedup_digest_t *dg)
{
    dd_key key = {{(uint32_t)dg->k[0], (uint32_t)(dg->k[0] >> 32), (uint32_t)dg->k[1]}};
    return key;
}

static dd_key dd_node_key(const dd_node *n)
{
    dd_key key = {{n->k[0], n->k[1], n->k[2]}};
    return key;
}

/* Seconds since node n was claimed, at the window's latest `now`. */
static uint64_t dd_age(const rl_dedup_t *d, const dd_node *n)
{
    return (uint32_t)((uint32_t)d->now - n->t);
}

/* ---------------------------------------------------------------- digest -- */

rl_dedup_hasher_t *rl_dedup_hasher_new(const unsigned char *key, char *errstr, size_t errstr_size)
{
    rl_dedup_hasher_t *h = calloc(1, sizeof(*h));

    if (!h || !(h->md = EVP_MD_fetch(NULL, "SHA256", NULL)) || !(h->ctx = EVP_MD_CTX_new())) {
        if (errstr && errstr_size > 0)
            rl_seterr(errstr, errstr_size, "cannot set up SHA-256");
        rl_dedup_hasher_destroy(h);
        return NULL;
    }
    memcpy(h->key, key, sizeof(h->key));
    return h;
}

void rl_dedup_hasher_destroy(rl_dedup_hasher_t *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
    OPENSSL_cleanse(h->key, sizeof(h->key));
    free(h);
}

int rl_dedup_hash(rl_dedup_hasher_t *h, const char *source, size_t source_len, const char *id,
                  size_t id_len, rl_dedup_digest_t *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    /* The '\0' after source keeps ("ab","c") apart from ("a","bc"). */
    if (EVP_DigestInit_ex(h->ctx, h->md, NULL) != 1 ||
        EVP_DigestUpdate(h->ctx, h->key, sizeof(h->key)) != 1 ||
        EVP_DigestUpdate(h->ctx, source, source_len) != 1 || EVP_DigestUpdate(h->ctx, "", 1) != 1 ||
        EVP_DigestUpdate(h->ctx, id, id_len) != 1 || EVP_DigestFinal_ex(h->ctx, md, &mdlen) != 1 ||
        mdlen < sizeof(out->k))
        return -1;
    memcpy(out->k, md, sizeof(out->k));
    return 0;
}

/* ----------------------------------------------------------------- index -- */

/* An index slot packs the node position + 1 (low 32 bits; 0 is an empty slot, so
 * a new index is calloc'd: its pages are zeroed lazily by the kernel as slots
 * are first used, not all at once) with the first 32 bits of its digest, the tag. In a big table
 * every node touched is a cache miss: the tag settles almost every mismatch without touching the
 * node, and gives an entry's home slot during deletion. */
#define DD_EMPTY 0
#define DD_GONE UINT32_MAX /* in the old index only: moved or forgotten (no node is 2^32-2) */
#define DD_MOVE_STEP 64    /* old slots moved per claim */

static uint64_t dd_pack(uint32_t tag, uint32_t pos)
{
    return (uint64_t)tag << 32 | (pos + 1);
}

static uint32_t dd_pos(uint64_t slot)
{
    return (uint32_t)slot - 1;
}

static uint32_t dd_tag(uint64_t slot)
{
    return (uint32_t)(slot >> 32);
}

/* The home slot of `tag` in a table of `size` slots (any size, below 2^32):
 * the tag scaled by multiplication, not masked, so that an index need not be a
 * power of two. The digest is keyed and uniform, so the tag is as good as any
 * hash. */
static size_t dd_home(uint32_t tag, size_t size)
{
    return (size_t)(((uint64_t)tag * size) >> 32);
}

/* The slot after i, wrapping at the end. */
static size_t dd_step(size_t i, size_t size)
{
    return i + 1 == size ? 0 : i + 1;
}

/* How many slots j lies after i, wrapping. */
static size_t dd_dist(size_t i, size_t j, size_t size)
{
    return j >= i ? j - i : j + size - i;
}

/* Where an id is in the index: a slot of d->index, or of d->old while it is
 * being moved. */
typedef struct dd_loc {
    uint64_t *slot; /* NULL: not found */
    int in_old;
} dd_loc;

/* The slot holding the node with key k in the table `index` (size slots), or
 * NULL. Terminates because the load is at most 2/3. */
static uint64_t *dd_probe(const rl_dedup_t *d, uint64_t *index, size_t size, dd_key k)
{
    uint32_t tag = k.k[0];
    size_t i = dd_home(tag, size);

    for (;;) {
        uint64_t slot = index[i];
        if (slot == DD_EMPTY)
            return NULL;
        if (slot != DD_GONE && dd_tag(slot) == tag) {
            const dd_node *n = dd_at(d, dd_pos(slot));
            if (n->k[1] == k.k[1] && n->k[2] == k.k[2])
                return &index[i];
        }
        i = dd_step(i, size);
    }
}

static dd_loc dd_find(const rl_dedup_t *d, dd_key k)
{
    dd_loc l = {dd_probe(d, d->index, d->size, k), 0};

    if (!l.slot && d->old) {
        l.slot = dd_probe(d, d->old, d->old_size, k);
        l.in_old = 1;
    }
    return l;
}

/* Empties slot i of the current index and shifts later members of its probe run
 * back, so lookups never need tombstones there: an entry moves into the hole when
 * the hole lies on its probe path (its distance from home is at least the hole's
 * distance behind it). */
static void dd_index_delete(rl_dedup_t *d, size_t i)
{
    size_t j = i;

    for (;;) {
        j = dd_step(j, d->size);
        uint64_t slot = d->index[j];
        if (slot == DD_EMPTY)
            break;
        size_t home = dd_home(dd_tag(slot), d->size);
        if (dd_dist(home, j, d->size) >= dd_dist(i, j, d->size)) {
            d->index[i] = slot;
            i = j;
        }
    }
    d->index[i] = DD_EMPTY;
}

/* Removes what loc found. In the old index the slot becomes DD_GONE: moving
 * entries back there would carry some behind the move's cursor, unmoved. */
static void dd_loc_delete(rl_dedup_t *d, dd_loc l)
{
    if (l.in_old)
        *l.slot = DD_GONE;
    else
        dd_index_delete(d, (size_t)(l.slot - d->index));
}

static void dd_index_put(rl_dedup_t *d, uint64_t packed)
{
    size_t i = dd_home(dd_tag(packed), d->size);

    while (d->index[i] != DD_EMPTY)
        i = dd_step(i, d->size);
    d->index[i] = packed;
}

static void dd_index_insert(rl_dedup_t *d, uint32_t pos)
{
    dd_index_put(d, dd_pack(dd_at(d, pos)->k[0], pos));
}

/* Moves up to `n` slots of the old index into the current one; frees the old
 * index once all are moved. */
static void dd_move(rl_dedup_t *d, size_t n)
{
    while (d->old && n--) {
        uint64_t slot = d->old[d->moved];
        if (slot != DD_EMPTY && slot != DD_GONE) {
            dd_index_put(d, slot);
            d->old[d->moved] = DD_GONE;
        }
        if (++d->moved == d->old_size) {
            free(d->old);
            d->old = NULL;
            d->old_size = 0;
            d->moved = 0;
        }
    }
}

/* The index size for a slab of `cap` nodes, given the current one: unchanged
 * while it keeps the load at or under 2/3, else at least 5/4 of the current
 * one (so that indexes are not rebuilt for every chunk) and of cap * 3/2. */
static size_t dd_index_size(size_t cap, size_t cur)
{
    size_t need = cap + cap / 2 + 1, n;

    if (need < 8)
        need = 8;
    if (cur >= need)
        return cur;
    n = cur + cur / 4;
    return n > need ? n : need;
}

/* Allocates an index of `size` slots, all empty. */
static uint64_t *dd_index_alloc(size_t size)
{
    return calloc(size, sizeof(uint64_t)); /* every slot DD_EMPTY */
}

/* Installs `index` (from dd_index_alloc) of `size` slots, empty; the current
 * one becomes the old one, moved over by later claims. A move still under way
 * is finished first (rare: a move takes size / 64 claims, about a tenth of
 * those that fill the new capacity). */
static void dd_index_replace(rl_dedup_t *d, uint64_t *index, size_t size)
{
    dd_move(d, SIZE_MAX);
    d->old = d->index;
    d->old_size = d->size;
    d->moved = 0;
    d->index = index;
    d->size = size;
}

/* ------------------------------------------------------------------ list -- */

static void dd_unlink(rl_dedup_t *d, uint32_t pos)
{
    dd_node *n = dd_at(d, pos);

    if (n->prev != DD_NIL)
        dd_at(d, n->prev)->next = n->next;
    else
        d->head = n->next;
    if (n->next != DD_NIL)
        dd_at(d, n->next)->prev = n->prev;
    else
        d->tail = n->prev;
}

static void dd_append(rl_dedup_t *d, uint32_t pos)
{
    dd_node *n = dd_at(d, pos);

    n->prev = d->tail;
    n->next = DD_NIL;
    if (d->tail != DD_NIL)
        dd_at(d, d->tail)->next = pos;
    else
        d->head = pos;
    d->tail = pos;
}

/* Forgets live node `pos`, found at `l`: out of index and list, onto the free list. */
static void dd_forget(rl_dedup_t *d, uint32_t pos, dd_loc l)
{
    dd_loc_delete(d, l);
    dd_unlink(d, pos);
    dd_at(d, pos)->next = d->free;
    d->free = pos;
    d->live--;
}

/* ------------------------------------------------------------ allocation -- */

/* Grows the slab (doubling its first chunk, then a chunk at a time, up to max)
 * and doubles the index when the slab outgrows it. Everything is allocated
 * before anything changes, so on failure the structure is intact at its current
 * size. */
static int dd_grow(rl_dedup_t *d)
{
    size_t cap = d->cap < DD_CHUNK ? d->cap * 2 : d->cap + DD_CHUNK;
    if (cap > DD_CHUNK && d->cap < DD_CHUNK)
        cap = DD_CHUNK;
    if (cap > d->max)
        cap = d->max;
    size_t isize = dd_index_size(cap, d->size), c = (cap - 1) >> DD_CHUNK_BITS;
    uint64_t *index = NULL;
    dd_node *chunk;

    if (isize != d->size && !(index = dd_index_alloc(isize)))
        return -1;
    /* Either the first chunk grows, or the next chunk is new (cap - d->cap nodes). */
    if (c == 0)
        chunk = realloc(d->chunks[0], cap * sizeof(*chunk));
    else
        chunk = malloc((cap - d->cap) * sizeof(*chunk));
    if (!chunk) {
        free(index);
        return -1;
    }
    d->chunks[c] = chunk;
    d->cap = cap;
    if (index)
        dd_index_replace(d, index, isize);
    return 0;
}

/* A free node position. Reuses freed nodes first, then fresh ones, then grows; when
 * the bound is reached (or memory ran out) the oldest id is forgotten to make room. */
static uint32_t dd_alloc(rl_dedup_t *d)
{
    uint32_t pos;

    if (d->free != DD_NIL) {
        pos = d->free;
        d->free = dd_at(d, pos)->next;
        return pos;
    }
    if (d->used == d->cap && d->cap < d->max)
        (void)dd_grow(d); /* on failure, fall through to eviction at the current cap */
    if (d->used < d->cap)
        return (uint32_t)d->used++;

    /* Full: every handed-out node is live, so the list is not empty. */
    pos = d->head;
    dd_forget(d, pos, dd_find(d, dd_node_key(dd_at(d, pos))));
    d->evicted++;
    d->free = dd_at(d, pos)->next; /* pop it back off the free list */
    return pos;
}

/* Drops ids whose window passed, oldest first; stops at the first one still inside.
 * all: every id's window passed (`now` moved on by a window or more at once, when
 * ages modulo 2^32 could wrap). */
static void dd_expire(rl_dedup_t *d, int all)
{
    while (d->head != DD_NIL && (all || dd_age(d, dd_at(d, d->head)) >= d->window)) {
        uint32_t pos = d->head;
        dd_forget(d, pos, dd_find(d, dd_node_key(dd_at(d, pos))));
        d->expired++;
    }
}

/* ------------------------------------------------------------------- API -- */

rl_dedup_t *rl_dedup_new_keyed(uint32_t window_s, size_t max_entries, const unsigned char *key,
                               char *errstr, size_t errstr_size)
{
    rl_dedup_t *d = NULL;
    const char *err = NULL;
    char herr[128];

    if (window_s == 0 || window_s > DD_MAX_WINDOW) {
        err = "dedup window must be between 1 and 2^31 - 1 seconds";
        goto fail;
    }
    if (max_entries == 0 || max_entries > RL_DEDUP_MAX_ENTRIES ||
        max_entries > SIZE_MAX / 2 / sizeof(dd_node)) {
        err = "dedup max_entries must be between 1 and 2^30";
        goto fail;
    }
    if (!(d = calloc(1, sizeof(*d)))) {
        err = "out of memory";
        goto fail;
    }
    d->window = window_s;
    d->max = max_entries;
    d->cap = max_entries < DD_INITIAL_CAP ? max_entries : DD_INITIAL_CAP;
    d->head = d->tail = d->free = DD_NIL;
    d->size = dd_index_size(d->cap, 0);
    if (!(d->chunks = calloc((max_entries + DD_CHUNK - 1) / DD_CHUNK, sizeof(*d->chunks))) ||
        !(d->chunks[0] = malloc(d->cap * sizeof(dd_node))) ||
        !(d->index = dd_index_alloc(d->size))) {
        err = "out of memory";
        goto fail;
    }
    if (!(d->hasher = rl_dedup_hasher_new(key, herr, sizeof(herr)))) {
        err = herr;
        goto fail;
    }
    return d;

fail:
    if (errstr && errstr_size > 0)
        rl_seterr(errstr, errstr_size, "%s", err);
    rl_dedup_destroy(d);
    return NULL;
}

rl_dedup_t *rl_dedup_new(uint32_t window_s, size_t max_entries, char *errstr, size_t errstr_size)
{
    unsigned char key[RL_DEDUP_KEY_LEN];
    rl_dedup_t *d = NULL;

    if (RAND_bytes(key, sizeof(key)) != 1) {
        if (errstr && errstr_size > 0)
            rl_seterr(errstr, errstr_size, "cannot get random bytes for the dedup key");
    } else {
        d = rl_dedup_new_keyed(window_s, max_entries, key, errstr, errstr_size);
    }
    OPENSSL_cleanse(key, sizeof(key));
    return d;
}

void rl_dedup_destroy(rl_dedup_t *d)
{
    if (!d)
        return;
    rl_dedup_hasher_destroy(d->hasher);
    if (d->chunks)
        for (size_t c = 0; c < (d->max + DD_CHUNK - 1) / DD_CHUNK; c++)
            free(d->chunks[c]);
    free(d->chunks);
    free(d->index);
    free(d->old);
    free(d);
}

int rl_dedup_digest(rl_dedup_t *d, const char *source, size_t source_len, const char *id,
                    size_t id_len, rl_dedup_digest_t *out)
{
    if (!d || !source || !id)
        return -1;
    return rl_dedup_hash(d->hasher, source, source_len, id, id_len, out);
}

/* rl_dedup_digest of NUL-terminated strings. */
static int dd_digest_str(rl_dedup_t *d, const char *source, const char *id, rl_dedup_digest_t *out)
{
    if (!source || !id)
        return -1;
    return rl_dedup_digest(d, source, strlen(source), id, strlen(id), out);
}

int rl_dedup_claim_digest(rl_dedup_t *d, const rl_dedup_digest_t *dg, uint64_t now)
{
    uint32_t pos;
    int all = 0;
    dd_key key;

    if (!d || !dg)
        return -1;
    key = dd_key_of(dg);
    if (now > d->now) {
        all = now - d->now >= d->window;
        d->now = now;
    }
    dd_expire(d, all);
    if (dd_find(d, key).slot)
        return 0;

    /* Allocation may evict or rebuild the index, so the slot is looked up again. */
    pos = dd_alloc(d);
    memcpy(dd_at(d, pos)->k, key.k, sizeof(key.k));
    dd_at(d, pos)->t = (uint32_t)d->now;
    dd_append(d, pos);
    dd_index_insert(d, pos);
    d->live++;
    dd_move(d, DD_MOVE_STEP);
    return 1;
}

int rl_dedup_claim(rl_dedup_t *d, const char *source, const char *id, uint64_t now)
{
    rl_dedup_digest_t dg;

    if (dd_digest_str(d, source, id, &dg) != 0)
        return -1;
    return rl_dedup_claim_digest(d, &dg, now);
}

void rl_dedup_release_digest(rl_dedup_t *d, const rl_dedup_digest_t *dg)
{
    dd_loc l;

    if (!d || !dg)
        return;
    if ((l = dd_find(d, dd_key_of(dg))).slot)
        dd_forget(d, dd_pos(*l.slot), l);
}

void rl_dedup_release(rl_dedup_t *d, const char *source, const char *id)
{
    rl_dedup_digest_t dg;

    if (dd_digest_str(d, source, id, &dg) == 0)
        rl_dedup_release_digest(d, &dg);
}

int rl_dedup_contains(const rl_dedup_t *d, const rl_dedup_digest_t *dg, uint64_t now)
{
    dd_loc l;

    if (!d || !dg || !(l = dd_find(d, dd_key_of(dg))).slot)
        return 0;
    if (now < d->now)
        now = d->now; /* as rl_dedup_claim would take it */
    if (now - d->now >= d->window)
        return 0;
    return now - d->now + dd_age(d, dd_at(d, dd_pos(*l.slot))) < d->window;
}

size_t rl_dedup_count(const rl_dedup_t *d)
{
    return d ? d->live : 0;
}

uint64_t rl_dedup_evicted(const rl_dedup_t *d)
{
    return d ? d->evicted : 0;
}

uint64_t rl_dedup_expired(const rl_dedup_t *d)
{
    return d ? d->expired : 0;
}

size_t rl_dedup_memory(const rl_dedup_t *d)
{
    /* OpenSSL's digest context (a few hundred bytes, fixed) is not counted. */
    return d ? sizeof(*d) + (d->max + DD_CHUNK - 1) / DD_CHUNK * sizeof(*d->chunks) +
                   d->cap * sizeof(dd_node) + d->size * sizeof(*d->index) +
                   (d->old ? d->old_size * sizeof(*d->old) : 0)
             : 0;
}
