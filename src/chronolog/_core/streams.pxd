"""The C stream table's contract (csrc/chl_streams.h): stream name -> id -> positions by
version, in memory and in its checkpoint file; every module that uses it cimports it here."""
from libc.stdint cimport int64_t, uint32_t, uint64_t

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
        uint64_t delta_streams
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
    uint64_t chl_streams_tail_pieces(const chl_streams *t) nogil
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
