/* The in-memory stream table: see chl_streams.h. */
#define _GNU_SOURCE /* mremap, MADV_HUGEPAGE, MAP_ANONYMOUS under -std=c11 */
#include "chl_streams.h"
#include "chl_crc32c.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "chronolog's index files are read in place: a little-endian host is assumed"
#endif

#define CHL_ARENA_CHUNK_BYTES (64 * 1024)
#define CHL_DELTA_CHUNK_BYTES ((size_t)1 << 20)
/* Stream arrays of at least this many bytes are anonymous mappings (pages cost nothing until
 * touched; transparent huge pages asked for where available), in multiples of it. */
#define CHL_REGION_BYTES ((uint64_t)2 << 20)
#define CHL_MEM_SLOTS_MIN 1024
/* Records checked and copied per step of chl_streams_attach, between CRC steps: the chunk
 * read by the CRC is still in cache when the records are copied. */
#define CHL_ATTACH_CHUNK 1024

static int chl_chunk_check(chl_streams *t, uint64_t c);
static int chl_block_check(chl_streams *t, uint64_t b);
/* Their common case inline: the chunk or block is checked already (or there is no lazy base). */
static inline int chl_chunk_ok(chl_streams *t, uint64_t c) {
    return !t->chunk_ok || (t->chunk_ok[c >> 6] >> (c & 63) & 1) || chl_chunk_check(t, c);
}
static inline int chl_block_ok(chl_streams *t, uint64_t b) {
    return !t->block_ok || (t->block_ok[b >> 6] >> (b & 63) & 1) || chl_block_check(t, b);
}
static int chl_slots_sound(const uint32_t *slots, uint64_t n_slots, uint64_t n);

struct chl_arena_chunk {
    chl_arena_chunk *next;
    size_t used, cap;
    char data[];
};

static inline uint64_t chl_ld64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t chl_ld32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

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

static void chl_entries_free(chl_stream *p, uint64_t cap) {
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
static int chl_entries_resize(chl_streams *t, uint64_t cap, int huge) {
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
static void chl_delta_reuse(chl_streams *t) {
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
    memset(t->slots, 0, t->n_slots * sizeof(uint32_t));
    t->n_in_slots = 0;
    chl_detach_base(t);
    chl_free_arena(t);
}

/* ---------------------------------------------------------------- checkpoints */

uint64_t chl_streams_file_slots(uint64_t n) {
    uint64_t s = 8;
    while (s < 2 * n) s <<= 1;
    return s;
}

/* Offsets inside a checkpoint body of n streams; 0 when the sizes do not add up to len. */
typedef struct {
    uint64_t n_slots, slot_crcs, n_blocks, chunks, n_chunks, dir, names, positions;
} chl_layout;

static int chl_layout_of(uint64_t len, uint64_t n, uint64_t names_bytes, uint64_t through,
                         chl_layout *l) {
    /* Each term is bounded by len first, so nothing below overflows. */
    if (n > 0xFFFFFFFEull || n > len / CHL_DIR_RECORD_BYTES || names_bytes > len
            || through > len / 8)
        return 0;
    l->n_slots = chl_streams_file_slots(n);
    if (l->n_slots > len / 4) return 0;
    l->n_chunks = (n + CHL_DIR_CHUNK - 1) / CHL_DIR_CHUNK;
    l->n_blocks = (l->n_slots + CHL_SLOT_BLOCK - 1) / CHL_SLOT_BLOCK;
    l->slot_crcs = l->n_slots * 4;
    l->chunks = l->slot_crcs + ((l->n_blocks * 4 + 7) & ~(uint64_t)7);
    l->dir = l->chunks + l->n_chunks * CHL_CHUNK_RECORD_BYTES;
    l->names = l->dir + n * CHL_DIR_RECORD_BYTES;
    l->positions = (l->names + names_bytes + 7) & ~(uint64_t)7;
    return l->positions <= len && (len - l->positions) / 8 == through
           && (len - l->positions) % 8 == 0;
}

/* Count the used slots of a block and raise *max to its largest value (32-bit counters: the
 * compiler vectorises the loop). */
static void chl_slots_tally(const uint32_t *slots, uint64_t k, uint64_t *used, uint32_t *max) {
    uint32_t u = 0, m = 0;
    for (uint64_t j = 0; j < k; j++) {
        uint32_t v = slots[j];
        u += v != 0;
        m = v > m ? v : m;
    }
    *used += u;
    *max = m > *max ? m : *max;
}

/* The slot values: all at most n, exactly n of them used. */
static int chl_slots_sound(const uint32_t *slots, uint64_t n_slots, uint64_t n) {
    uint64_t used = 0;
    uint32_t max = 0;
    chl_slots_tally(slots, n_slots, &used, &max);
    return used == n && max <= n;
}

/* Point the table's base at the parts of a checkpoint body of layout `l` (attach, rebase). */
static void chl_set_base(chl_streams *t, const unsigned char *body, const chl_layout *l,
                         uint64_t n, uint64_t through, uint64_t names_bytes) {
    t->base_slots = (const uint32_t *)body;
    t->base_n_slots = l->n_slots;
    t->base_slot_crcs = body + l->slot_crcs;
    t->base_chunks = body + l->chunks;
    t->base_dir = body + l->dir;
    t->base_names = (const char *)body + l->names;
    t->base_positions = (const uint64_t *)(body + l->positions);
    t->base_n = n;
    t->base_through = through;
    t->base_names_bytes = names_bytes;
}

/* Slot block b of the attached base: checked (its CRC, every value at most n), or `unsound`
 * set. */
static int chl_block_check(chl_streams *t, uint64_t b) {
    if (!t->block_ok || (t->block_ok[b >> 6] >> (b & 63) & 1)) return 1;
    if (t->unsound) return 0;
    uint64_t i0 = b * CHL_SLOT_BLOCK;
    uint64_t k = t->base_n_slots - i0 < CHL_SLOT_BLOCK ? t->base_n_slots - i0 : CHL_SLOT_BLOCK;
    uint64_t used = 0;
    uint32_t max = 0;
    chl_slots_tally(t->base_slots + i0, k, &used, &max);
    if (max > t->base_n
            || chl_crc32c_extend(0, t->base_slots + i0, k * 4) != chl_ld32(t->base_slot_crcs + b * 4)) {
        t->unsound = 1;
        return 0;
    }
    t->block_ok[b >> 6] |= (uint64_t)1 << (b & 63);
    return 1;
}

/* Directory chunk c of the attached base: checked (its CRC, its records back to back from
 * its chunk table entry to the next one's, each within the file), or `unsound` set. */
static int chl_chunk_check(chl_streams *t, uint64_t c) {
    if (!t->chunk_ok || (t->chunk_ok[c >> 6] >> (c & 63) & 1)) return 1;
    if (t->unsound) return 0;
    uint64_t n = t->base_n, n_chunks = (n + CHL_DIR_CHUNK - 1) / CHL_DIR_CHUNK;
    uint64_t i0 = c * CHL_DIR_CHUNK, i1 = n - i0 < CHL_DIR_CHUNK ? n : i0 + CHL_DIR_CHUNK;
    const unsigned char *ce = t->base_chunks + c * CHL_CHUNK_RECORD_BYTES;
    uint64_t total = chl_ld64(ce), name_total = chl_ld32(ce + 8), name0 = name_total;
    uint64_t end_total = t->base_through, end_names = t->base_names_bytes;
    if (c + 1 < n_chunks) {
        end_total = chl_ld64(ce + CHL_CHUNK_RECORD_BYTES);
        end_names = chl_ld32(ce + CHL_CHUNK_RECORD_BYTES + 8);
    }
    for (uint64_t i = i0; i < i1; i++) {
        const unsigned char *d = t->base_dir + i * CHL_DIR_RECORD_BYTES;
        uint64_t count = chl_ld64(d + 8), first = chl_ld64(d + 16);
        uint32_t name_off = chl_ld32(d + 24), name_len = chl_ld32(d + 28);
        /* Back to back in directory order: each record's offsets are the running sums. */
        if (first != total || name_off != name_total || count == 0
                || count > end_total - total || name_len == 0
                || name_len > CHL_MAX_NAME_BYTES || name_len > end_names - name_total)
            goto bad;
        total += count;
        name_total += name_len;
    }
    if (total != end_total || name_total != end_names) goto bad;
    uint32_t crc = chl_crc32c_extend(0, t->base_dir + i0 * CHL_DIR_RECORD_BYTES,
                                     (i1 - i0) * CHL_DIR_RECORD_BYTES);
    crc = chl_crc32c_extend(crc, t->base_names + name0, name_total - name0);
    if (crc != chl_ld32(ce + 12)) goto bad;
    t->chunk_ok[c >> 6] |= (uint64_t)1 << (c & 63);
    return 1;
bad:
    t->unsound = 1;
    return 0;
}

int chl_streams_attach(chl_streams *t, const unsigned char *body, uint64_t len, uint64_t n,
                       uint64_t names_bytes, uint64_t through, uint32_t crc, int lazy) {
    chl_layout l;
    if (t->n_streams || t->base_slots || !chl_layout_of(len, n, names_bytes, through, &l))
        return CHL_EBADFILE;
    const unsigned char *chunks = body + l.chunks;
    /* Checked now: the slot CRC table and the chunk table (a few bytes per thousand streams);
     * the slots and the directory per block and chunk, on first use (or all now unless lazy). */
    if (chl_crc32c_extend(0, body + l.slot_crcs, l.dir - l.slot_crcs) != crc)
        return CHL_EBADFILE;
    /* The chunk table: from (0, 0), non-decreasing, within the positions and the names (so
     * each chunk's checks are bounded by its neighbours). */
    uint64_t prev_first = 0, prev_names = 0;
    for (uint64_t c = 0; c < l.n_chunks; c++) {
        uint64_t first = chl_ld64(chunks + c * CHL_CHUNK_RECORD_BYTES);
        uint64_t name_off = chl_ld32(chunks + c * CHL_CHUNK_RECORD_BYTES + 8);
        if ((c == 0 && (first || name_off)) || first < prev_first || first > through
                || name_off < prev_names || name_off > names_bytes)
            return CHL_EBADFILE;
        prev_first = first;
        prev_names = name_off;
    }
    /* A fresh zeroed array (lazy: entries are filled on first access), sized with room to
     * grow: untouched pages of a mapping cost nothing. */
    chl_entries_free(t->streams, t->cap_streams);
    t->streams = NULL;
    t->cap_streams = 0;
    if (chl_entries_resize(t, n + n / 2 + 256, !lazy) != CHL_OK) return CHL_ENOMEM;
    uint64_t *filled = calloc((n + 63) / 64 + 1, sizeof(uint64_t));
    uint64_t *chunk_ok = calloc((l.n_chunks + 63) / 64 + 1, sizeof(uint64_t));
    uint64_t *block_ok = calloc((l.n_blocks + 63) / 64 + 1, sizeof(uint64_t));
    if (!filled || !chunk_ok || !block_ok) {
        free(filled); free(chunk_ok); free(block_ok);
        return CHL_ENOMEM;
    }
    t->n_streams = n;
    chl_set_base(t, body, &l, n, through, names_bytes);
    t->base_ids = NULL;
    t->filled = filled;
    t->chunk_ok = chunk_ok;
    t->block_ok = block_ok;
    t->unsound = 0;
    if (!lazy) {
        chl_streams_materialize(t);
        if (t->unsound) {
            chl_streams_clear(t);
            return CHL_EBADFILE;
        }
    }
    return CHL_OK;
}

uint64_t chl_streams_live(chl_streams *t, uint64_t *names_bytes) {
    uint64_t n = 0, b = 0;
    chl_streams_materialize(t);
    for (uint64_t i = 0; i < t->n_streams; i++) {
        const chl_stream *s = &t->streams[i];
        if (s->base_count + s->delta_count) { n++; b += s->name_len; }
    }
    if (names_bytes) *names_bytes = b;
    return n;
}

chl_snap_entry *chl_streams_snapshot(chl_streams *t, uint64_t *n_out, uint64_t *names_bytes) {
    uint64_t n = chl_streams_live(t, names_bytes), j = 0;
    chl_snap_entry *e = malloc((n ? n : 1) * sizeof(chl_snap_entry));
    if (!e) return NULL;
    for (uint64_t id = 0; id < t->n_streams; id++) {
        const chl_stream *s = &t->streams[id];
        if (!(s->base_count + s->delta_count)) continue;
        e[j].name = s->name;
        e[j].base = s->base;
        e[j].delta = s->delta;
        e[j].hash = s->hash;
        e[j].base_count = s->base_count;
        e[j].delta_count = s->delta_count;
        e[j].id = id;
        e[j].name_len = s->name_len;
        e[j].reserved = 0;
        j++;
    }
    *n_out = n;
    return e;
}

void chl_snap_fill_file_slots(const chl_snap_entry *e, uint64_t n, uint32_t *slots,
                              uint64_t n_slots) {
    uint64_t mask = n_slots - 1;
    for (uint64_t f = 0; f < n; f++) {
        uint64_t i = e[f].hash & mask;
        while (slots[i]) i = (i + 1) & mask;
        slots[i] = (uint32_t)(f + 1);
    }
}

/* Entries of a delta array of `count` positions (chl_streams_push's rule: 4, then doubling). */
static uint64_t chl_delta_cap(uint64_t count) {
    uint64_t c = 4;
    while (c < count) c <<= 1;
    return c;
}

int chl_snap_check_file(const unsigned char *body, uint64_t len, const chl_snap_entry *e,
                        uint64_t n, uint64_t names_bytes, uint64_t through, uint32_t crc) {
    chl_layout l;
    if (!chl_layout_of(len, n, names_bytes, through, &l)
            || chl_crc32c(body + l.slot_crcs, l.dir - l.slot_crcs) != crc
            || !chl_slots_sound((const uint32_t *)body, l.n_slots, n))
        return CHL_EBADFILE;
    for (uint64_t b = 0; b < l.n_blocks; b++) {
        uint64_t i0 = b * CHL_SLOT_BLOCK;
        uint64_t k = l.n_slots - i0 < CHL_SLOT_BLOCK ? l.n_slots - i0 : CHL_SLOT_BLOCK;
        if (chl_crc32c_extend(0, body + i0 * 4, k * 4) != chl_ld32(body + l.slot_crcs + b * 4))
            return CHL_EBADFILE;
    }
    const unsigned char *dir = body + l.dir;
    const unsigned char *chunks = body + l.chunks;
    uint64_t total = 0, name_total = 0;
    for (uint64_t f = 0; f < n; f++) {
        const unsigned char *d = dir + f * CHL_DIR_RECORD_BYTES;
        const unsigned char *ce = chunks + (f / CHL_DIR_CHUNK) * CHL_CHUNK_RECORD_BYTES;
        uint64_t count = e[f].base_count + e[f].delta_count;
        if ((f && e[f].id <= e[f - 1].id) || !count
                || chl_ld64(d) != e[f].hash || chl_ld64(d + 8) != count || chl_ld64(d + 16) != total
                || chl_ld32(d + 24) != name_total || chl_ld32(d + 28) != e[f].name_len
                || (f % CHL_DIR_CHUNK == 0 && (chl_ld64(ce) != total || chl_ld32(ce + 8) != name_total)))
            return CHL_EBADFILE;
        total += count;
        name_total += e[f].name_len;
    }
    if (total != through || name_total != names_bytes) return CHL_EBADFILE;
    for (uint64_t c = 0; c < l.n_chunks; c++) {
        const unsigned char *ce = chunks + c * CHL_CHUNK_RECORD_BYTES;
        uint64_t i0 = c * CHL_DIR_CHUNK, i1 = n - i0 < CHL_DIR_CHUNK ? n : i0 + CHL_DIR_CHUNK;
        uint64_t name0 = chl_ld32(ce + 8);
        uint64_t name1 = c + 1 < l.n_chunks ? chl_ld32(ce + CHL_CHUNK_RECORD_BYTES + 8) : names_bytes;
        if (name1 < name0 || name1 > names_bytes) return CHL_EBADFILE;
        uint32_t cc = chl_crc32c_extend(0, dir + i0 * CHL_DIR_RECORD_BYTES,
                                        (i1 - i0) * CHL_DIR_RECORD_BYTES);
        cc = chl_crc32c_extend(cc, (const char *)body + l.names + name0, name1 - name0);
        if (cc != chl_ld32(ce + 12)) return CHL_EBADFILE;
    }
    return CHL_OK;
}

int chl_streams_rebase_snapshot(chl_streams *t, const unsigned char *body, uint64_t len,
                                const chl_snap_entry *e, uint64_t n, uint64_t names_bytes,
                                uint64_t through) {
    chl_layout l;
    chl_streams_materialize(t);  /* (it is: the snapshot filled every entry) */
    if (t->unsound || !chl_layout_of(len, n, names_bytes, through, &l)) return CHL_EBADFILE;
    /* The table against the snapshot (the file was checked against it by chl_snap_check_file):
     * every stream still there, on the same base, with at least its delta of then. */
    int identity = 1;
    for (uint64_t f = 0; f < n; f++) {
        if (e[f].id >= t->n_streams) return CHL_EBADFILE;
        const chl_stream *s = &t->streams[e[f].id];
        if (s->hash != e[f].hash || s->name_len != e[f].name_len || s->base != e[f].base
                || s->base_count != e[f].base_count || s->delta_count < e[f].delta_count)
            return CHL_EBADFILE;
        identity &= f == e[f].id;
    }
    const unsigned char *dir = body + l.dir;
    /* Everything that can fail first: the id map, the memory table of the streams the file
     * does not hold (no events at the snapshot, or created since), and one chunk for what
     * the streams appended since the snapshot (their deltas move out of the old chunks). */
    uint64_t outside = t->n_streams - n, rest = 0;
    for (uint64_t id = 0, f = 0; id < t->n_streams; id++) {
        const chl_stream *s = &t->streams[id];
        uint64_t since = s->delta_count;
        if (f < n && e[f].id == id) since -= e[f++].delta_count;
        if (since) rest += chl_delta_cap(since);
    }
    uint32_t *ids = NULL;
    if (!identity) {
        ids = malloc((n ? n : 1) * sizeof(uint32_t));
        if (!ids) return CHL_ENOMEM;
    }
    uint64_t n_mem = CHL_MEM_SLOTS_MIN;
    while ((outside + 1) * 2 > n_mem) n_mem <<= 1;
    uint32_t *mem = calloc(n_mem, sizeof(uint32_t));
    chl_arena_chunk *kept = NULL;
    if (rest) {
        kept = malloc(sizeof(chl_arena_chunk) + rest * sizeof(uint64_t));
        if (kept) { kept->cap = rest * sizeof(uint64_t); kept->used = 0; kept->next = NULL; }
    }
    if (!mem || (rest && !kept)) { free(ids); free(mem); free(kept); return CHL_ENOMEM; }
    const char *names = (const char *)body + l.names;
    const uint64_t *positions = (const uint64_t *)(body + l.positions);
    uint64_t events = 0;
    for (uint64_t id = 0, f = 0; id < t->n_streams; id++) {
        chl_stream *s = &t->streams[id];
        uint64_t keep_from = 0;
        if (f < n && e[f].id == id) {
            const unsigned char *d = dir + f * CHL_DIR_RECORD_BYTES;
            s->name = names + chl_ld32(d + 24);
            s->base = positions + chl_ld64(d + 16);
            s->base_count = e[f].base_count + e[f].delta_count;
            keep_from = e[f].delta_count;
            if (ids) ids[f] = (uint32_t)id;
            f++;
        } else {
            uint64_t i = s->hash & (n_mem - 1);
            while (mem[i]) i = (i + 1) & (n_mem - 1);
            mem[i] = (uint32_t)(id + 1);
        }
        uint64_t since = s->delta_count - keep_from;
        uint64_t *d = NULL;
        if (since) {
            d = (uint64_t *)(void *)(kept->data + kept->used);
            kept->used += chl_delta_cap(since) * sizeof(uint64_t);
            memcpy(d, s->delta + keep_from, since * sizeof(uint64_t));
        }
        s->delta = d;
        s->delta_count = since;
        events += since;
    }
    t->delta_events = events;
    chl_delta_reuse(t);
    /* `kept` is full now (its arrays fill it exactly): later arrays come from the spare
     * chunks or new ones. */
    if (kept) t->delta_arena = kept;
    free(t->slots);
    t->slots = mem;
    t->n_slots = n_mem;
    t->n_in_slots = outside;
    free(t->base_ids);
    t->base_ids = ids;
    chl_set_base(t, body, &l, n, through, names_bytes);
    return CHL_OK;
}
