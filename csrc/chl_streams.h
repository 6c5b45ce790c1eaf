/* The in-memory stream table of the compiled core: stream name -> stream id -> the global
 * positions of the stream's events, by version.
 *
 * A stream's positions live in two parts: `base`, a read-only array inside a memory-mapped
 * index checkpoint (streams.idx), and `delta`, a malloc'd growable array of what was appended
 * since. Version v is base[v] when v < base_count, else delta[v - base_count].
 * `pending` is scratch space for one append in progress (events of the stream in the batch
 * not yet committed); it is zero between appends.
 *
 * Ids are dense, 0-based, in order of first appearance. Not thread-safe: the caller holds the
 * GIL (or its own lock) around every call.
 */
#ifndef CHL_STREAMS_H
#define CHL_STREAMS_H
#include <stddef.h>
#include <stdint.h>

#define CHL_OK 0
#define CHL_ENOMEM -1

typedef struct {
    const char *name;
    uint64_t hash;
    const uint64_t *base; /* may be NULL */
    uint64_t *delta;
    uint64_t base_count;
    uint64_t delta_count;
    uint64_t delta_cap;
    uint64_t pending;
    uint32_t name_len;
    uint32_t reserved;
} chl_stream;

typedef struct chl_arena_chunk chl_arena_chunk;

typedef struct {
    chl_stream *streams;
    uint64_t n_streams;
    uint64_t cap_streams;
    uint32_t *slots; /* id + 1, 0 = empty */
    uint64_t n_slots; /* power of two */
    chl_arena_chunk *arena;
    uint64_t delta_events; /* total events held in delta arrays */
} chl_streams;

uint64_t chl_hash_bytes(const char *p, size_t n);

chl_streams *chl_streams_new(void);
void chl_streams_free(chl_streams *t);
/* Id of `name`, or -1 when it is not in the table. */
int64_t chl_streams_find(const chl_streams *t, const char *name, uint32_t len);
/* Id of `name`, inserting it (with no events) when missing; `copy` = 0 keeps the pointer
 * (the bytes must outlive the table, e.g. inside a mapping), 1 copies into the arena.
 * Returns -1 when out of memory. */
int64_t chl_streams_intern(chl_streams *t, const char *name, uint32_t len, int copy);
static inline uint64_t chl_streams_count(const chl_streams *t, uint64_t id) {
    return t->streams[id].base_count + t->streams[id].delta_count;
}
static inline uint64_t chl_streams_position(const chl_streams *t, uint64_t id, uint64_t v) {
    const chl_stream *s = &t->streams[id];
    return v < s->base_count ? s->base[v] : s->delta[v - s->base_count];
}
/* Append the position of the stream's next version. */
int chl_streams_push(chl_streams *t, uint64_t id, uint64_t position);
/* Drop every delta array and every stream that has no base events (for a rebuild). */
void chl_streams_clear(chl_streams *t);
#endif
