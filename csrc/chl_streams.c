/* The in-memory stream table: see chl_streams.h. */
#include "chl_streams.h"
#include <stdlib.h>
#include <string.h>

#define CHL_ARENA_CHUNK_BYTES (64 * 1024)

struct chl_arena_chunk {
    chl_arena_chunk *next;
    size_t used, cap;
    char data[];
};

uint64_t chl_hash_bytes(const char *p, size_t n) {
    /* FNV-1a with a final avalanche (murmur3 fmix64): names are short, this is enough. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)p[i]; h *= 1099511628211ull; }
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull; h ^= h >> 33;
    return h;
}

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

chl_streams *chl_streams_new(void) {
    chl_streams *t = calloc(1, sizeof(chl_streams));
    if (!t) return NULL;
    t->n_slots = 1024;
    t->slots = calloc(t->n_slots, sizeof(uint32_t));
    if (!t->slots) { free(t); return NULL; }
    return t;
}

static void chl_free_arena(chl_streams *t) {
    while (t->arena) { chl_arena_chunk *n = t->arena->next; free(t->arena); t->arena = n; }
}

void chl_streams_free(chl_streams *t) {
    if (!t) return;
    for (uint64_t i = 0; i < t->n_streams; i++) free(t->streams[i].delta);
    free(t->streams);
    free(t->slots);
    chl_free_arena(t);
    free(t);
}

static int64_t chl_slot_of(const chl_streams *t, const char *name, uint32_t len, uint64_t h,
                           uint64_t *slot_out) {
    uint64_t mask = t->n_slots - 1, i = h & mask;
    for (;;) {
        uint32_t v = t->slots[i];
        if (v == 0) { *slot_out = i; return -1; }
        const chl_stream *s = &t->streams[v - 1];
        if (s->hash == h && s->name_len == len && memcmp(s->name, name, len) == 0) {
            *slot_out = i;
            return (int64_t)(v - 1);
        }
        i = (i + 1) & mask;
    }
}

int64_t chl_streams_find(const chl_streams *t, const char *name, uint32_t len) {
    uint64_t slot;
    return chl_slot_of(t, name, len, chl_hash_bytes(name, len), &slot);
}

static int chl_grow_slots(chl_streams *t) {
    uint64_t n = t->n_slots * 2;
    uint32_t *slots = calloc(n, sizeof(uint32_t));
    if (!slots) return CHL_ENOMEM;
    for (uint64_t id = 0; id < t->n_streams; id++) {
        uint64_t i = t->streams[id].hash & (n - 1);
        while (slots[i]) i = (i + 1) & (n - 1);
        slots[i] = (uint32_t)(id + 1);
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n;
    return CHL_OK;
}

int64_t chl_streams_intern(chl_streams *t, const char *name, uint32_t len, int copy) {
    uint64_t h = chl_hash_bytes(name, len), slot;
    int64_t id = chl_slot_of(t, name, len, h, &slot);
    if (id >= 0) return id;
    if (t->n_streams >= 0xFFFFFFFEull) return CHL_ENOMEM;
    if ((t->n_streams + 1) * 2 > t->n_slots) {
        if (chl_grow_slots(t) != CHL_OK) return CHL_ENOMEM;
        chl_slot_of(t, name, len, h, &slot);
    }
    if (t->n_streams == t->cap_streams) {
        uint64_t cap = t->cap_streams ? t->cap_streams * 2 : 256;
        chl_stream *s = realloc(t->streams, cap * sizeof(chl_stream));
        if (!s) return CHL_ENOMEM;
        t->streams = s;
        t->cap_streams = cap;
    }
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
    return (int64_t)t->n_streams++;
}

int chl_streams_push(chl_streams *t, uint64_t id, uint64_t position) {
    chl_stream *s = &t->streams[id];
    if (s->delta_count == s->delta_cap) {
        uint64_t cap = s->delta_cap ? s->delta_cap * 2 : 4;
        uint64_t *d = realloc(s->delta, cap * sizeof(uint64_t));
        if (!d) return CHL_ENOMEM;
        s->delta = d;
        s->delta_cap = cap;
    }
    s->delta[s->delta_count++] = position;
    t->delta_events++;
    return CHL_OK;
}

void chl_streams_clear(chl_streams *t) {
    for (uint64_t i = 0; i < t->n_streams; i++) free(t->streams[i].delta);
    t->n_streams = 0;
    t->delta_events = 0;
    memset(t->slots, 0, t->n_slots * sizeof(uint32_t));
    chl_free_arena(t);
}
