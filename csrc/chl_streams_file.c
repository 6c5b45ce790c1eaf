/* The stream table's checkpoint file (index/streams.idx, docs/format.md): its layout,
 * attaching a mapped one as the table's base (whole or lazily, each slot block and directory
 * chunk checked at its first use), the snapshot a checkpoint is built from, the check of a
 * written file against it, and the rebase onto it. The table in memory is chl_streams.c. */
#define _GNU_SOURCE
#include "chl_streams_impl.h"
#include "chl_crc32c.h"
#include <stdlib.h>
#include <string.h>

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
CHL_HIDDEN int chl_slots_sound(const uint32_t *slots, uint64_t n_slots, uint64_t n) {
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
CHL_HIDDEN int chl_block_check(chl_streams *t, uint64_t b) {
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
CHL_HIDDEN int chl_chunk_check(chl_streams *t, uint64_t c) {
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

uint64_t chl_streams_tail_pieces(const chl_streams *t) {
    uint64_t pieces = (t->base_n + CHL_DIR_CHUNK - 1) / CHL_DIR_CHUNK
                      + (t->base_n_slots + CHL_SLOT_BLOCK - 1) / CHL_SLOT_BLOCK;
    return t->delta_streams * 2 < pieces ? t->delta_streams * 2 : pieces;
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
    uint64_t events = 0, touched = 0;
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
        touched += since != 0;
    }
    t->delta_events = events;
    t->delta_streams = touched;
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
