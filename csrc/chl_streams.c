/* The in-memory stream table: see chl_streams.h. Its checkpoint file (layout, attach,
 * checks, snapshot, rebase) is chl_streams_file.c; what both share is chl_streams_impl.h. */
#define _GNU_SOURCE /* mremap, MADV_HUGEPAGE, MAP_ANONYMOUS under -std=c11 */
#include "chl_streams_impl.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHL_ARENA_CHUNK_BYTES (64 * 1024)
#define CHL_DELTA_CHUNK_BYTES ((size_t)1 << 20)
/* Stream arrays of at least this many bytes are anonymous mappings (pages cost nothing until
 * touched; transparent huge pages asked for where available), in multiples of it. */
#define CHL_REGION_BYTES ((uint64_t)2 << 20)

/* a[0, n) == b[0, n): names of 4 to 32 bytes (most stream names) in overlapping word loads
 * from each side, where a memcmp call cost ~20 instructions per lookup; others by memcmp. */
static inline int chl_same_name(const char *a, const char *b, uint32_t n) {
    const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
    if (n >= 8 && n <= 16) return chl_ld64(p) == chl_ld64(q) && chl_ld64(p + n - 8) == chl_ld64(q + n - 8);
    if (n > 16 && n <= 32)
        return chl_ld64(p) == chl_ld64(q) && chl_ld64(p + 8) == chl_ld64(q + 8)
            && chl_ld64(p + n - 16) == chl_ld64(q + n - 16) && chl_ld64(p + n - 8) == chl_ld64(q + n - 8);
    if (n >= 4 && n < 8) return chl_ld32(p) == chl_ld32(q) && chl_ld32(p + n - 4) == chl_ld32(q + n - 4);
    return memcmp(a, b, n) == 0;
}

uint64_t chl_hash_bytes(const char *p, size_t n) {
    /* Eight bytes at a time: each word is mixed in by one multiply and a shift (a chain of
     * about 6 cycles per word, against 4 per byte for FNV-1a), the tail word overlaps the
     * last full one, names under 8 bytes are assembled from 4/2/1-byte loads, and the
     * murmur3 fmix64 finaliser avalanches the result.
     * Part of the streams.idx format (each directory record holds it): do not change it
     * without changing the file's magic. */
    const unsigned char *u = (const unsigned char *)p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull), w;
    size_t i = 0;
    if (n >= 8) {
        for (; i + 8 <= n; i += 8) {
            w = chl_ld64(u + i);
            h = (h ^ w) * 0xbf58476d1ce4e5b9ull; h ^= h >> 31;
        }
        if (i < n) {
            w = chl_ld64(u + n - 8);
            h = (h ^ w) * 0x94d049bb133111ebull; h ^= h >> 29;
        }
    } else if (n) {
        if (n >= 4) w = (uint64_t)chl_ld32(u) | ((uint64_t)chl_ld32(u + n - 4) << 32);
        else w = (uint64_t)u[0] | ((uint64_t)u[n / 2] << 8) | ((uint64_t)u[n - 1] << 16);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull; h ^= h >> 31;
    }
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull; h ^= h >> 33;
    return h;
}

/* ---------------------------------------------------------------- the stream array */

static int chl_is_region(uint64_t cap) { return cap * sizeof(chl_stream) >= CHL_REGION_BYTES; }

static uint64_t chl_round_cap(uint64_t cap) {
    if (chl_is_region(cap)) {
        uint64_t unit = CHL_REGION_BYTES / sizeof(chl_stream);
        cap = (cap + unit - 1) / unit * unit;
    }
    return cap;
}

CHL_HIDDEN void chl_entries_free(chl_stream *p, uint64_t cap) {
    if (!p) return;
    if (chl_is_region(cap)) munmap(p, cap * sizeof(chl_stream));
    else free(p);
}

/* A zeroed array; `huge`: it is about to be filled whole (huge pages fault far less). */
static chl_stream *chl_entries_alloc(uint64_t cap, int huge) {
    if (!chl_is_region(cap)) return calloc(cap, sizeof(chl_stream));
    void *p = mmap(NULL, cap * sizeof(chl_stream), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    if (huge) madvise(p, cap * sizeof(chl_stream), MADV_HUGEPAGE); /* advice only */
#else
    (void)huge;
#endif
    return p;
}

/* Resize t->streams to hold `cap` entries (cap >= n_streams); its contents are kept. */
CHL_HIDDEN int chl_entries_resize(chl_streams *t, uint64_t cap, int huge) {
    cap = chl_round_cap(cap);
    if (cap > SIZE_MAX / sizeof(chl_stream)) return CHL_ENOMEM;
    chl_stream *p;
    if (t->streams && !chl_is_region(t->cap_streams) && !chl_is_region(cap)) {
        p = realloc(t->streams, cap * sizeof(chl_stream));
        if (!p) return CHL_ENOMEM;
    }
#ifdef MREMAP_MAYMOVE
    else if (t->streams && chl_is_region(t->cap_streams) && chl_is_region(cap)) {
        void *q = mremap(t->streams, t->cap_streams * sizeof(chl_stream),
                         cap * sizeof(chl_stream), MREMAP_MAYMOVE);
        if (q == MAP_FAILED) return CHL_ENOMEM;
        p = q;
    }
#endif
    else {
        p = chl_entries_alloc(cap, huge);
        if (!p) return CHL_ENOMEM;
        if (t->n_streams) memcpy(p, t->streams, t->n_streams * sizeof(chl_stream));
        chl_entries_free(t->streams, t->cap_streams);
    }
    t->streams = p;
    t->cap_streams = cap;
    return CHL_OK;
}

/* ---------------------------------------------------------------- arena, memory table */

static char *chl_arena_copy(chl_streams *t, const char *src, size_t n) {
    chl_arena_chunk *c = t->arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHL_ARENA_CHUNK_BYTES ? n : CHL_ARENA_CHUNK_BYTES;
        c = malloc(sizeof(chl_arena_chunk) + cap);
        if (!c) return NULL;
        c->next = t->arena; c->used = 0; c->cap = cap;
        t->arena = c;
    }
    char *dst = c->data + c->used;
    if (n) memcpy(dst, src, n);
    c->used += n;
    return dst;
}

static void chl_free_chunks(chl_arena_chunk *c) {
    while (c) { chl_arena_chunk *n = c->next; free(c); c = n; }
}

static void chl_free_arena(chl_streams *t) {
    chl_free_chunks(t->arena);
    t->arena = NULL;
}

chl_streams *chl_streams_new(void) {
    chl_streams *t = calloc(1, sizeof(chl_streams));
    if (!t) return NULL;
    t->n_slots = CHL_MEM_SLOTS_MIN;
    t->slots = calloc(t->n_slots, sizeof(uint32_t));
    if (!t->slots) { free(t); return NULL; }
    return t;
}

/* Delta arrays are carved from chunks of their own (CHL_DELTA_CHUNK_BYTES, or one array
 * when it is larger), not malloc'd one by one: a stream's array doubles when full (4, 8, 16,
 * ... entries), and a realloc per doubling was a tenth of append_batch's time (60,000 of
 * them per 1M reference events, most moving the array). Growing copies the array into a new
 * one twice its size and leaves the old one where it is, so the chunks hold at most twice
 * the live arrays; nothing is freed one by one. A rebase drops every delta: the chunks are
 * kept for reuse (`delta_spare`); clear and free give them back. */
static uint64_t *chl_delta_alloc(chl_streams *t, uint64_t entries) {
    size_t n = (size_t)entries * sizeof(uint64_t);
    chl_arena_chunk *c = t->delta_arena;
    if (!c || c->cap - c->used < n) {
        c = t->delta_spare;
        if (c && c->cap >= n) {
            t->delta_spare = c->next;
        } else {
            size_t cap = n > CHL_DELTA_CHUNK_BYTES ? n : CHL_DELTA_CHUNK_BYTES;
            c = malloc(sizeof(chl_arena_chunk) + cap);
            if (!c) return NULL;
            c->cap = cap;
        }
        c->used = 0;
        c->next = t->delta_arena;
        t->delta_arena = c;
    }
    uint64_t *d = (uint64_t *)(void *)(c->data + c->used);
    c->used += n;
    return d;
}

/* Every delta is dropped (the streams no longer point into the chunks): keep the chunks for
 * the arrays to come. */
CHL_HIDDEN void chl_delta_reuse(chl_streams *t) {
    while (t->delta_arena) {
        chl_arena_chunk *c = t->delta_arena;
        t->delta_arena = c->next;
        c->next = t->delta_spare;
        t->delta_spare = c;
    }
}

/* Free every stream's delta (the streams must not be read for them afterwards). */
static void chl_free_deltas(chl_streams *t) {
    chl_free_chunks(t->delta_arena);
    chl_free_chunks(t->delta_spare);
    t->delta_arena = t->delta_spare = NULL;
}

/* Forget which entries, chunks and slot blocks a lazy attach has filled and checked: every
 * one of them is (materialized), or the base is gone. */
static void chl_drop_lazy(chl_streams *t) {
    free(t->filled);
    t->filled = NULL;
    free(t->chunk_ok);
    t->chunk_ok = NULL;
    free(t->block_ok);
    t->block_ok = NULL;
}

static void chl_detach_base(chl_streams *t) {
    t->base_slots = NULL;
    t->base_n_slots = 0;
    t->base_dir = NULL;
    t->base_names = NULL;
    t->base_positions = NULL;
    t->base_n = 0;
    free(t->base_ids);
    t->base_ids = NULL;
    chl_drop_lazy(t);
    t->base_slot_crcs = NULL;
    t->base_chunks = NULL;
    t->base_through = t->base_names_bytes = 0;
    t->unsound = 0;
}

void chl_streams_free(chl_streams *t) {
    if (!t) return;
    chl_free_deltas(t);
    free(t->filled);
    free(t->chunk_ok);
    free(t->block_ok);
    chl_entries_free(t->streams, t->cap_streams);
    free(t->slots);
    free(t->base_ids);
    chl_free_arena(t);
    free(t);
}

/* The base table: id of `name` (hash h), or -1. Slot values were checked by attach/rebase
 * (at most base_n, and an empty slot exists), so the probe ends and stays in bounds. */
static inline int64_t chl_base_find(const chl_streams *t, const char *name, uint32_t len, uint64_t h) {
    const uint32_t *slots = t->base_slots;
    if (!slots) return -1;
    uint64_t mask = t->base_n_slots - 1, i = h & mask;
    for (uint64_t probes = 0;; probes++) {
        /* A block is checked (CRC, values at most n) before its slots are read; a probe
         * longer than the table means a table with no empty slot: unsound. */
        if (probes > mask || !chl_block_ok((chl_streams *)t, i / CHL_SLOT_BLOCK)) {
            ((chl_streams *)t)->unsound = 1;
            return -1;
        }
        uint32_t v = slots[i];
        if (v == 0) return -1;
        /* Only a checked record is compared: a damaged one must not hide its stream. */
        if (!chl_chunk_ok((chl_streams *)t, (uint64_t)(v - 1) / CHL_DIR_CHUNK)) return -1;
        const unsigned char *d = t->base_dir + (uint64_t)(v - 1) * CHL_DIR_RECORD_BYTES;
        if (chl_ld64(d) == h && chl_ld32(d + 28) == len
                && chl_same_name(t->base_names + chl_ld32(d + 24), name, len))
            return (int64_t)(t->base_ids ? t->base_ids[v - 1] : v - 1);
        i = (i + 1) & mask;
    }
}

/* The memory table: id of `name` (hash h), or -1 with *slot_out the empty slot that ends
 * its probe. */
static inline int64_t chl_mem_find(const chl_streams *t, const char *name, uint32_t len, uint64_t h,
                            uint64_t *slot_out) {
    uint64_t mask = t->n_slots - 1, i = h & mask;
    for (;;) {
        uint32_t v = t->slots[i];
        if (v == 0) { *slot_out = i; return -1; }
        const chl_stream *s = &t->streams[v - 1];
        if (s->hash == h && s->name_len == len && chl_same_name(s->name, name, len)) {
            *slot_out = i;
            return (int64_t)(v - 1);
        }
        i = (i + 1) & mask;
    }
}

int64_t chl_streams_find(const chl_streams *t, const char *name, uint32_t len) {
    uint64_t h = chl_hash_bytes(name, len), slot;
    int64_t id = chl_base_find(t, name, len, h);
    if (id >= 0) {
        chl_streams_at((chl_streams *)t, (uint64_t)id);
        return id;
    }
    return chl_mem_find(t, name, len, h, &slot);
}

void chl_streams_fill(chl_streams *t, uint64_t id) {
    /* Only the entries of an attached base are ever unfilled, and only until the table's
     * first rebase: their ids are their directory indexes (checked by attach). */
    if (id >= t->base_n || t->base_ids) return;
    if (t->filled) t->filled[id >> 6] |= (uint64_t)1 << (id & 63);
    chl_stream *s = &t->streams[id];
    if (!chl_chunk_check(t, id / CHL_DIR_CHUNK)) {
        /* An unsound chunk: an empty stream (the owner sees `unsound` and rebuilds). */
        memset(s, 0, sizeof(*s));
        s->name = "";
        return;
    }
    const unsigned char *d = t->base_dir + id * CHL_DIR_RECORD_BYTES;
    s->name = t->base_names + chl_ld32(d + 24);
    s->hash = chl_ld64(d);
    s->base = t->base_positions + chl_ld64(d + 16);
    s->delta = NULL;
    s->base_count = chl_ld64(d + 8);
    s->delta_count = 0;
    s->pending = 0;
    s->name_len = chl_ld32(d + 28);
    s->reserved = 0;
}

void chl_streams_materialize(chl_streams *t) {
    for (uint64_t id = 0; id < t->base_n && id < t->n_streams; id++) chl_streams_at(t, id);
    if (t->block_ok && !t->unsound) {
        /* Every slot block, and the whole table's count (exactly n used). */
        uint64_t n_blocks = (t->base_n_slots + CHL_SLOT_BLOCK - 1) / CHL_SLOT_BLOCK;
        for (uint64_t b = 0; b < n_blocks; b++) chl_block_check(t, b);
        if (!t->unsound && !chl_slots_sound(t->base_slots, t->base_n_slots, t->base_n))
            t->unsound = 1;
    }
    if (t->unsound) return;  /* keep the bitmaps: the owner rebuilds */
    chl_drop_lazy(t);
}

/* A memory table of n slots (a power of two) holding the streams of t's table `old`. */
static uint32_t *chl_mem_rehash(const chl_streams *t, const uint32_t *old, uint64_t old_n,
                                uint64_t n) {
    uint32_t *slots = calloc(n, sizeof(uint32_t));
    if (!slots) return NULL;
    for (uint64_t k = 0; k < old_n; k++) {
        uint32_t v = old[k];
        if (!v) continue;
        uint64_t i = t->streams[v - 1].hash & (n - 1);
        while (slots[i]) i = (i + 1) & (n - 1);
        slots[i] = v;
    }
    return slots;
}

int64_t chl_streams_intern(chl_streams *t, const char *name, uint32_t len, int copy) {
    return chl_streams_intern_hashed(t, name, len, chl_hash_bytes(name, len), copy);
}

int64_t chl_streams_intern_hashed(chl_streams *t, const char *name, uint32_t len, uint64_t h,
                                  int copy) {
    uint64_t slot;
    int64_t id = chl_base_find(t, name, len, h);
    if (id >= 0) {
        chl_streams_at(t, (uint64_t)id);
        return id;
    }
    id = chl_mem_find(t, name, len, h, &slot);
    if (id >= 0) return id;
    if (t->n_streams >= 0xFFFFFFFEull) return CHL_ENOMEM;
    if ((t->n_in_slots + 1) * 2 > t->n_slots) {
        uint32_t *slots = chl_mem_rehash(t, t->slots, t->n_slots, t->n_slots * 2);
        if (!slots) return CHL_ENOMEM;
        free(t->slots);
        t->slots = slots;
        t->n_slots *= 2;
        chl_mem_find(t, name, len, h, &slot);
    }
    if (t->n_streams == t->cap_streams
            && chl_entries_resize(t, t->cap_streams ? t->cap_streams * 2 : 256, 0) != CHL_OK)
        return CHL_ENOMEM;
    const char *stored = name;
    if (copy) {
        stored = chl_arena_copy(t, name, len);
        if (!stored) return CHL_ENOMEM;
    }
    chl_stream *s = &t->streams[t->n_streams];
    memset(s, 0, sizeof(*s));
    s->name = stored;
    s->name_len = len;
    s->hash = h;
    t->slots[slot] = (uint32_t)(t->n_streams + 1);
    t->n_in_slots++;
    return (int64_t)t->n_streams++;
}

/* The batch versions below run each lookup as a short software pipeline over the events
 * (like read_stream's prefetch pipeline): the hash of event i and a prefetch of its slot in
 * the memory table, the slot's stream entry CHL_BATCH_STEP events later, the stream's name
 * another step later, and the lookup itself CHL_BATCH_DEPTH events after the hash, when each
 * of those lines has had time to arrive. Prefetches are only hints: a table that grows on the
 * way (a new stream) is still probed exactly by chl_streams_intern. */
#define CHL_BATCH_STEP 4
#define CHL_BATCH_DEPTH (3 * CHL_BATCH_STEP)
#define CHL_BATCH_RING 16 /* a power of two > CHL_BATCH_DEPTH */

static inline void chl_prefetch_entry(const chl_streams *t, uint64_t h, int what) {
    uint32_t v = t->slots[h & (t->n_slots - 1)];
    if (!v || v - 1 >= t->n_streams) return;
    const chl_stream *s = &t->streams[v - 1];
    if (what == 0) __builtin_prefetch(s);
    else if (s->name) __builtin_prefetch(s->name);
}

size_t chl_streams_intern_batch(chl_streams *t, const int64_t *offs, const char *data, size_t n,
                                int64_t *ids, uint64_t *vers) {
    uint64_t ring[CHL_BATCH_RING];
    for (size_t k = 0; k < n + CHL_BATCH_DEPTH; k++) {
        if (k < n) {
            uint64_t h = chl_hash_bytes(data + offs[k], (size_t)(offs[k + 1] - offs[k]));
            ring[k & (CHL_BATCH_RING - 1)] = h;
            __builtin_prefetch(&t->slots[h & (t->n_slots - 1)]);
        }
        if (k >= CHL_BATCH_STEP && k - CHL_BATCH_STEP < n)
            chl_prefetch_entry(t, ring[(k - CHL_BATCH_STEP) & (CHL_BATCH_RING - 1)], 0);
        if (k >= 2 * CHL_BATCH_STEP && k - 2 * CHL_BATCH_STEP < n)
            chl_prefetch_entry(t, ring[(k - 2 * CHL_BATCH_STEP) & (CHL_BATCH_RING - 1)], 1);
        if (k < CHL_BATCH_DEPTH) continue;
        size_t i = k - CHL_BATCH_DEPTH;
        int64_t id = chl_streams_intern_hashed(t, data + offs[i], (uint32_t)(offs[i + 1] - offs[i]),
                                               ring[i & (CHL_BATCH_RING - 1)], 1);
        if (id < 0) return i;
        chl_stream *s = &t->streams[id];
        ids[i] = id;
        vers[i] = s->base_count + s->delta_count + s->pending;
        s->pending++;
    }
    return n;
}

int chl_streams_push_batch(chl_streams *t, const int64_t *ids, size_t n, uint64_t first) {
    for (size_t i = 0; i < n; i++) {
        if (i + 8 < n) {
            const chl_stream *f = &t->streams[ids[i + 8]];
            if (f->delta) __builtin_prefetch(&f->delta[f->delta_count], 1);
        }
        if (i + 16 < n) __builtin_prefetch(&t->streams[ids[i + 16]], 1);
        t->streams[ids[i]].pending = 0;
        if (chl_streams_push(t, (uint64_t)ids[i], first + i) != CHL_OK) {
            for (; i < n; i++) t->streams[ids[i]].pending = 0;
            return CHL_ENOMEM;
        }
    }
    return CHL_OK;
}

int chl_streams_push(chl_streams *t, uint64_t id, uint64_t position) {
    chl_stream *s = &t->streams[id];
    uint64_t n = s->delta_count;
    /* Capacity is implied by the count: 4, then doubling (full at every power of two). */
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
        uint64_t *d = chl_delta_alloc(t, n ? n * 2 : 4);
        if (!d) return CHL_ENOMEM;
        if (n) memcpy(d, s->delta, n * sizeof(uint64_t));
        else t->delta_streams++;
        s->delta = d;
    }
    s->delta[s->delta_count++] = position;
    t->delta_events++;
    return CHL_OK;
}

void chl_streams_clear(chl_streams *t) {
    chl_free_deltas(t);
    t->n_streams = 0;
    t->delta_events = 0;
    t->delta_streams = 0;
    memset(t->slots, 0, t->n_slots * sizeof(uint32_t));
    t->n_in_slots = 0;
    chl_detach_base(t);
    chl_free_arena(t);
}
