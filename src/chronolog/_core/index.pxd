from libc.stdint cimport int64_t, uint32_t, uint64_t
from chronolog._core.fileio cimport FileIO

cdef extern from "chl_streams.h":
    enum:
        CHL_OK
        CHL_ENOMEM
        CHL_EBADFILE
        CHL_DIR_CHUNK
        CHL_CHUNK_RECORD_BYTES
        CHL_SLOT_BLOCK
    ctypedef struct chl_stream:
        const char *name
        uint64_t hash
        const uint64_t *base
        uint64_t *delta
        uint64_t base_count
        uint64_t delta_count
        uint64_t pending
        uint32_t name_len
    ctypedef struct chl_streams:
        chl_stream *streams
        uint64_t n_streams
        uint64_t delta_events
        int unsound
    chl_streams *chl_streams_new() nogil
    void chl_streams_free(chl_streams *t) nogil
    int64_t chl_streams_find(const chl_streams *t, const char *name, uint32_t len) nogil
    int64_t chl_streams_intern(chl_streams *t, const char *name, uint32_t len, int copy) nogil
    uint64_t chl_streams_count(const chl_streams *t, uint64_t id) nogil
    void chl_name_key(const unsigned char *p, uint32_t n, uint64_t *a, uint64_t *b) nogil
    uint64_t chl_streams_position(const chl_streams *t, uint64_t id, uint64_t v) nogil
    uint64_t chl_streams_count_below(const chl_streams *t, uint64_t id, uint64_t bound) nogil
    int chl_streams_push(chl_streams *t, uint64_t id, uint64_t position) nogil
    size_t chl_streams_intern_batch(chl_streams *t, const int64_t *offs, const char *data,
                                    size_t n, int64_t *ids, uint64_t *vers) nogil
    int chl_streams_push_batch(chl_streams *t, const int64_t *ids, size_t n, uint64_t first) nogil
    void chl_streams_clear(chl_streams *t) nogil
    uint64_t chl_streams_file_slots(uint64_t n) nogil
    int chl_streams_attach(chl_streams *t, const unsigned char *body, uint64_t len, uint64_t n,
                           uint64_t names_bytes, uint64_t through, uint32_t crc, int lazy) nogil
    chl_stream *chl_streams_at(chl_streams *t, uint64_t id) nogil
    void chl_streams_materialize(chl_streams *t) nogil
    uint64_t chl_streams_live(chl_streams *t, uint64_t *names_bytes) nogil
    ctypedef struct chl_snap_entry:
        const char *name
        const uint64_t *base
        const uint64_t *delta
        uint64_t hash
        uint64_t base_count
        uint64_t delta_count
        uint64_t id
        uint32_t name_len
    chl_snap_entry *chl_streams_snapshot(chl_streams *t, uint64_t *n, uint64_t *names_bytes) nogil
    void chl_snap_fill_file_slots(const chl_snap_entry *e, uint64_t n, uint32_t *slots,
                                  uint64_t n_slots) nogil
    int chl_snap_check_file(const unsigned char *body, uint64_t len, const chl_snap_entry *e,
                            uint64_t n, uint64_t names_bytes, uint64_t through,
                            uint32_t crc) nogil
    int chl_streams_rebase_snapshot(chl_streams *t, const unsigned char *body, uint64_t len,
                                    const chl_snap_entry *e, uint64_t n, uint64_t names_bytes,
                                    uint64_t through) nogil

cdef class CheckpointJob:
    cdef FileIO io
    cdef readonly uint64_t through
    cdef str p_path
    cdef bytes p_header
    cdef unsigned char *p_entries
    cdef uint64_t p_bytes
    cdef uint64_t p_offset
    cdef bint p_in_place
    cdef str s_path
    cdef bytes s_store_id
    cdef chl_snap_entry *s_snap       # the live streams to write (owned: freed at dealloc)
    cdef uint64_t s_n
    cdef uint64_t s_names_bytes
    cdef uint64_t s_through
    cdef uint32_t s_anchor
    cdef const void *s_drop_map       # the base's mapping, whose pages the copy drops
    cdef uint64_t s_drop_len
    cdef void *s_map                  # once written: the file, mapped and checked (owned)
    cdef uint64_t s_map_len
    cdef void *s_unmap                # a mapping the index retired, unmapped by `run`
    cdef uint64_t s_unmap_len
    cdef object s_owner               # the StreamIndex of the snapshot (kept alive)
    cdef int _map_streams(self, bytes hdr, uint32_t crc) except -1
    cdef public bint done
    cdef public object error
    cdef public object thread
    cdef int _write_positions(self) except -1
    cdef int _write_streams(self) except -1

cdef class PositionIndex:
    cdef const uint64_t *base
    cdef uint64_t base_count
    cdef uint64_t *delta
    cdef uint64_t delta_count
    cdef uint64_t delta_cap
    cdef void *map
    cdef uint64_t map_len
    cdef uint32_t *roff
    cdef uint64_t roff_cap
    cdef uint64_t count(self) noexcept
    cdef uint64_t get(self, uint64_t position) noexcept
    cdef uint32_t roff_at(self, uint64_t position) noexcept
    cdef int _grow_roff(self, uint64_t need) except -1
    cdef int set_roff(self, uint64_t first, const unsigned char *table, uint64_t n,
                      uint64_t body_at) except -1
    cdef void set_one_roff(self, uint64_t position, uint32_t value) noexcept
    cdef const uint64_t *slot(self, uint64_t position) noexcept
    cdef int push_n(self, uint64_t entry, uint64_t n) except -1
    cdef void clear(self) noexcept
    cdef uint64_t load(self, str path, bytes store_id) except? 0xFFFFFFFFFFFFFFFF
    cdef int image(self, CheckpointJob job, str path, bytes store_id) except -1
    cdef int adopt(self, CheckpointJob job) except -1

cdef class StreamIndex:
    cdef chl_streams *t
    cdef void *map
    cdef uint64_t map_len
    cdef void *retired                # the previous base's mapping, for the next job to unmap
    cdef uint64_t retired_len
    cdef uint64_t base_through
    cdef uint32_t anchor
    cdef bint lazy
    cdef void clear(self) noexcept
    cdef uint64_t load(self, str path, bytes store_id) except? 0xFFFFFFFFFFFFFFFF
    cdef int snapshot(self, CheckpointJob job, str path, bytes store_id, uint64_t through,
                      uint32_t anchor) except -1
    cdef int adopt(self, CheckpointJob job) except -1
