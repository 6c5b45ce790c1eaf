/* The in-memory stream table of the compiled core: stream name -> stream id -> the global
 * positions of the stream's events, by version.
 *
 * A stream's positions live in two parts: `base`, a read-only array inside a memory-mapped
 * index checkpoint (streams.idx), and `delta`, a growable array of what was appended since
 * (carved from chunks the table owns). Version v is base[v] when v < base_count, else delta[v - base_count].
 * `pending` is scratch space for one append in progress (events of the stream in the batch
 * not yet committed); it is zero between appends.
 *
 * Name lookups go through two open-addressing hash tables (linear probing, u32 slots holding
 * index + 1, 0 = empty, power-of-two sizes):
 *   - the base table: the slot array inside the mapped checkpoint, used as it is (nothing is
 *     hashed or inserted when a checkpoint is attached), whose values are directory indexes of
 *     the checkpoint (`base_ids` maps them to stream ids when the two differ);
 *   - the memory table: `slots`, holding the ids of the streams that are not in the base
 *     (created since the checkpoint, or every stream when there is none).
 * Every stream id is in exactly one of them. The checkpoint layout (slots, 32-byte directory
 * records, names, positions) is specified in checkpoint.pyx; chl_streams_attach checks it.
 *
 * Ids are dense, 0-based, in order of first appearance (a checkpoint's streams keep their
 * directory order). Not thread-safe: the caller holds the GIL (or its own lock) around every
 * call.
 */
#ifndef CHL_STREAMS_H
#define CHL_STREAMS_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CHL_OK 0
#define CHL_ENOMEM -1
#define CHL_EBADFILE -2

/* One directory record of a checkpoint (little-endian, 32 bytes): u64 hash of the name,
 * u64 count, u64 first (index of the stream's first position in the positions array),
 * u32 name offset (from the start of the names), u32 name bytes. */
#define CHL_DIR_RECORD_BYTES 32
#define CHL_MAX_NAME_BYTES 1024
/* The directory is checked in chunks of this many records, each with its own CRC32C in the
 * chunk table (16 bytes per chunk: u64 first, u32 name offset of its first record, u32 CRC of
 * its records then its names), so that a lazy attach checks only the chunks it reads. */
#define CHL_DIR_CHUNK 1024
#define CHL_CHUNK_RECORD_BYTES 16
/* The slot array is checked in blocks of this many slots, each with its own CRC32C in the
 * slot CRC table (u32 per block), when a probe first reads the block. */
#define CHL_SLOT_BLOCK 16384

typedef struct {
    const char *name;
    uint64_t hash;
    const uint64_t *base; /* may be NULL */
    uint64_t *delta;      /* capacity: 4, then the power of two >= delta_count */
    uint64_t base_count;
    uint64_t delta_count;
    uint64_t pending;
    uint32_t name_len;
    uint32_t reserved;
} chl_stream;

typedef struct chl_arena_chunk chl_arena_chunk;

typedef struct {
    chl_stream *streams;
    uint64_t n_streams;
    uint64_t cap_streams;
    uint32_t *slots;      /* memory table: id + 1, 0 = empty */
    uint64_t n_slots;     /* power of two */
    uint64_t n_in_slots;  /* streams in the memory table */
    chl_arena_chunk *arena;
    chl_arena_chunk *delta_arena; /* the chunks of the delta arrays (chl_streams.c) ... */
    chl_arena_chunk *delta_spare; /* ... and those free for reuse */
    uint64_t delta_events; /* total events held in delta arrays */
    uint64_t delta_streams; /* streams whose delta holds an event (close's estimate) */
    /* The base (a mapped checkpoint; all NULL/0 when there is none). */
    const uint32_t *base_slots;
    uint64_t base_n_slots;
    const unsigned char *base_dir;
    const char *base_names;
    const uint64_t *base_positions;
    uint64_t base_n;
    uint32_t *base_ids;   /* directory index -> stream id; NULL when they are equal */
    uint64_t *filled;     /* lazy attach: bit i set once base entry i is filled; NULL when
                           * every entry is (only filled entries can hold a delta) */
    const unsigned char *base_chunks; /* the checkpoint's chunk table */
    uint64_t *chunk_ok;   /* lazy attach: bit c set once directory chunk c checked; NULL when
                           * every chunk is */
    const unsigned char *base_slot_crcs; /* the checkpoint's slot CRC table */
    uint64_t *block_ok;   /* lazy attach: bit b set once slot block b checked; NULL when all are */
    uint64_t base_through, base_names_bytes;
    int unsound;          /* a lazily checked chunk failed: every answer since may be wrong
                           * (a stream found in it reads as empty); the owner must rebuild */
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
/* chl_streams_intern with the name's hash (chl_hash_bytes) already computed. */
int64_t chl_streams_intern_hashed(chl_streams *t, const char *name, uint32_t len, uint64_t h,
                                  int copy);
/* Intern the stream of each of n events (name i: data[offs[i], offs[i + 1])) into ids[i], and
 * give it its version in vers[i]: the stream's count plus its events earlier in the batch
 * (`pending`, raised by one). Lookups are software-pipelined with prefetches. Returns n, or
 * the index of the event whose intern ran out of memory (the events before it are done and
 * counted in pending). */
size_t chl_streams_intern_batch(chl_streams *t, const int64_t *offs, const char *data, size_t n,
                                int64_t *ids, uint64_t *vers);
/* Commit n events of a batch: clear each stream's pending count and push first + i as the
 * position of event i's next version (prefetching streams and their delta tails ahead).
 * CHL_OK or CHL_ENOMEM. */
int chl_streams_push_batch(chl_streams *t, const int64_t *ids, size_t n, uint64_t first);
/* Fill the entry of a stream of a lazily attached base (see chl_streams_attach). */
void chl_streams_fill(chl_streams *t, uint64_t id);
/* The entry of stream `id`, filled. Every entry returned by find/intern, or read through
 * count/position, is filled; one read straight from `streams[id]` may not be, after a lazy
 * attach (its name is NULL then): iterate with chl_streams_at, or call
 * chl_streams_materialize first. */
/* A cheap key of a short name: for names of up to 16 bytes, (length, a, b) is the name
 * itself (the words overlap), so comparing keys compares names. */
static inline void chl_name_key(const unsigned char *p, uint32_t n, uint64_t *a, uint64_t *b) {
    uint32_t x, y;
    if (n >= 8) { memcpy(a, p, 8); memcpy(b, p + n - 8, 8); return; }
    *b = 0;
    if (n >= 4) { memcpy(&x, p, 4); memcpy(&y, p + n - 4, 4); *a = x | ((uint64_t)y << 32); }
    else if (n) *a = (uint64_t)p[0] | ((uint64_t)p[n / 2] << 8) | ((uint64_t)p[n - 1] << 16);
    else *a = 0;
}

static inline chl_stream *chl_streams_at(chl_streams *t, uint64_t id) {
    chl_stream *s = &t->streams[id];
    if (!s->name) chl_streams_fill(t, id);
    return s;
}
/* Fill every entry (O(streams)); checks every chunk of a lazy attach (see `unsound`). */
void chl_streams_materialize(chl_streams *t);
static inline uint64_t chl_streams_count(const chl_streams *t, uint64_t id) {
    const chl_stream *s = chl_streams_at((chl_streams *)t, id);
    return s->base_count + s->delta_count;
}
static inline uint64_t chl_streams_position(const chl_streams *t, uint64_t id, uint64_t v) {
    const chl_stream *s = chl_streams_at((chl_streams *)t, id);
    return v < s->base_count ? s->base[v] : s->delta[v - s->base_count];
}
/* How many of the stream's first events lie below position `bound` (its positions rise
 * with the version): the visible ones when `bound` is the log's head. */
static inline uint64_t chl_streams_count_below(const chl_streams *t, uint64_t id, uint64_t bound) {
    uint64_t c = chl_streams_count(t, id);
    while (c > 0 && chl_streams_position(t, id, c - 1) >= bound) c--;
    return c;
}
/* Append the position of the stream's next version. */
int chl_streams_push(chl_streams *t, uint64_t id, uint64_t position);
/* Drop every stream, delta and the base: the table is empty again (for a rebuild). The
 * caller unmaps the checkpoint afterwards. */
void chl_streams_clear(chl_streams *t);

/* ---- checkpoints (streams.idx; the layout is specified in checkpoint.pyx) ---- */

/* Slots of the hash table of a checkpoint of n streams: the smallest power of two >= 2n,
 * at least 8. */
uint64_t chl_streams_file_slots(uint64_t n);
/* Attach the body of a checkpoint (the bytes after its 64-byte header, `len` of them, which
 * must stay mapped until chl_streams_clear or the next chl_streams_rebase_snapshot) to an
 * empty table: its streams become ids 0..n-1 in directory order. Checks now: the exact file size, the
 * CRC32C `crc` of slots + chunk table, slot values (at most n, exactly n used), the chunk
 * table (starting at 0, non-decreasing, within `through` and the names). Checks per
 * directory chunk (its CRC; every record: name 1..CHL_MAX_NAME_BYTES bytes, names and
 * positions back to back from the chunk's start to the next one's, count >= 1): all now when
 * `lazy` = 0, which also fills every entry; with `lazy` = 1, open costs O(slots) only: a
 * chunk is checked when a lookup first reads one of its records, an entry filled on first
 * access; a chunk that fails sets `unsound` (its streams read as empty). Lazy is only
 * correct for callers that never read `streams[id]` of an id they did not get from
 * find/intern without chl_streams_at, and that check `unsound` before trusting an answer.
 * Hashes are not recomputed (the CRCs cover them). Returns CHL_OK, CHL_EBADFILE (the table is
 * left empty) or CHL_ENOMEM. */
int chl_streams_attach(chl_streams *t, const unsigned char *body, uint64_t len, uint64_t n,
                       uint64_t names_bytes, uint64_t through, uint32_t crc, int lazy);
/* Streams with events (count >= 1), and the bytes of their names: what a checkpoint holds. */
uint64_t chl_streams_live(chl_streams *t, uint64_t *names_bytes);
/* The directory chunks and slot blocks of the base a fresh open would check to index the
 * events in the deltas (each stream's lookup reads at most one of each): at most two per
 * stream with a delta, at most every one. Close weighs it against rewriting the checkpoint. */
uint64_t chl_streams_tail_pieces(const chl_streams *t);
/* One live stream of a snapshot (chl_streams_snapshot): what a checkpoint built outside the
 * table's lock needs. The pointers stay valid until the table is rebased or cleared: delta
 * arrays are never moved or reused before that (a full one is copied, the old one left where it
 * is), names never move, and the mapped base stays mapped. */
typedef struct {
    const char *name;
    const uint64_t *base;
    const uint64_t *delta;
    uint64_t hash;
    uint64_t base_count;
    uint64_t delta_count;
    uint64_t id;
    uint32_t name_len;
    uint32_t reserved;
} chl_snap_entry;
/* The live streams in id order (fills every entry first), their count in *n and the bytes of
 * their names in *names_bytes: O(streams). NULL when out of memory; free() the result. */
chl_snap_entry *chl_streams_snapshot(chl_streams *t, uint64_t *n, uint64_t *names_bytes);
/* Fill `slots` (n_slots = chl_streams_file_slots(n), zeroed by the caller) with the
 * checkpoint hash table of the snapshot's streams: directory index + 1, in snapshot order. */
void chl_snap_fill_file_slots(const chl_snap_entry *e, uint64_t n, uint32_t *slots,
                              uint64_t n_slots);
/* The checkpoint file built from snapshot `e` (`body` as for attach) against the snapshot:
 * layout, CRCs, every directory record. CHL_OK or CHL_EBADFILE. Reads the file only (any
 * thread: the checkpoint's own, outside the table's lock). */
int chl_snap_check_file(const unsigned char *body, uint64_t len, const chl_snap_entry *e,
                        uint64_t n, uint64_t names_bytes, uint64_t through, uint32_t crc);
/* The checkpoint built from snapshot `e`, checked by chl_snap_check_file, is mapped at `body`:
 * point each stream of the snapshot at it (base = what it had at the snapshot), keep what was
 * appended since in the deltas (moved to a chunk of their own), and drop the old deltas and
 * base. Checks the table against the snapshot first (every stream still there, as it was);
 * returns CHL_OK, CHL_EBADFILE or CHL_ENOMEM (then nothing changed). The previous base may be
 * unmapped after CHL_OK. */
int chl_streams_rebase_snapshot(chl_streams *t, const unsigned char *body, uint64_t len,
                                const chl_snap_entry *e, uint64_t n, uint64_t names_bytes,
                                uint64_t through);
#endif
