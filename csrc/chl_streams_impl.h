/* What the stream table's two files share, and nothing else includes: chl_streams.c (the
 * table in memory) and chl_streams_file.c (its checkpoint file). Functions declared here are
 * hidden: internal to the extension module they are compiled into. */
#ifndef CHL_STREAMS_IMPL_H
#define CHL_STREAMS_IMPL_H
#include "chl_streams.h"
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "chronolog's index files are read in place: a little-endian host is assumed"
#endif

#if defined(__GNUC__)
#define CHL_HIDDEN __attribute__((visibility("hidden")))
#else
#define CHL_HIDDEN
#endif

#define CHL_MEM_SLOTS_MIN 1024

struct chl_arena_chunk {
    chl_arena_chunk *next;
    size_t used, cap;
    char data[];
};

static inline uint64_t chl_ld64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t chl_ld32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* chl_streams_file.c: directory chunk c / slot block b of the attached base checked (at its
 * first use when attached lazily), else `unsound` set; slots[0, n_slots) all at most n. */
CHL_HIDDEN int chl_chunk_check(chl_streams *t, uint64_t c);
CHL_HIDDEN int chl_block_check(chl_streams *t, uint64_t b);
CHL_HIDDEN int chl_slots_sound(const uint32_t *slots, uint64_t n_slots, uint64_t n);
/* Their common case inline: the chunk or block is checked already (or there is no lazy base). */
static inline int chl_chunk_ok(chl_streams *t, uint64_t c) {
    return !t->chunk_ok || (t->chunk_ok[c >> 6] >> (c & 63) & 1) || chl_chunk_check(t, c);
}
static inline int chl_block_ok(chl_streams *t, uint64_t b) {
    return !t->block_ok || (t->block_ok[b >> 6] >> (b & 63) & 1) || chl_block_check(t, b);
}

/* chl_streams.c: the stream entries' array (resized keeping its contents; freed), and the
 * delta arrays' chunks kept for reuse once no stream points into them. */
CHL_HIDDEN int chl_entries_resize(chl_streams *t, uint64_t cap, int huge);
CHL_HIDDEN void chl_entries_free(chl_stream *p, uint64_t cap);
CHL_HIDDEN void chl_delta_reuse(chl_streams *t);

#endif
