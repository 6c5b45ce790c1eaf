# What an append is made of (batch.pyx): its arguments checked, its columns seen as raw
# pointers, and the passes that size and encode a batch frame's body. The append path
# (log.pyx) cimports these; the column helpers are inline, on the encoder's hot path.
from libc.stdint cimport int64_t, uint32_t, uint64_t
from chronolog._core.fileio cimport chl_wpipe
from chronolog._core.narrow cimport NarrowPlan

cdef enum:
    # expected_version codes (chronolog.ANY, NO_STREAM, STREAM_EXISTS; a version is >= 0)
    ANY = -2
    NO_STREAM = -1
    STREAM_EXISTS = -4
    NOGIL_BATCH = 2048   # encode batches at least this long with the GIL released
    # Frames at least WPIPE_MIN_BYTES long (uncompressed) are written while being encoded, in
    # chunks of WPIPE_CHUNK_BYTES (csrc/chl_wpipe.h; docs/design.md "Pipelined writes").
    WPIPE_MIN_BYTES = 512 * 1024
    WPIPE_CHUNK_BYTES = 256 * 1024


cdef struct ColView:
    # A column as raw pointers: value i is data[offsets[i]:offsets[i + 1]]; offsets NULL
    # means an absent column (every value empty).
    const int64_t *offsets
    const char *data


cdef class ArrowColumn:
    cdef const int64_t *offsets
    cdef const char *data
    cdef object keep


cdef bytes stream_utf8(object stream)
cdef bytes payload_bytes(object value, str what, Py_ssize_t i)
cdef bytes event_id16(object value, Py_ssize_t i)
cdef tuple packed_column(list values)
cdef int size_batch(const ColView *cols, const unsigned char *idp, const unsigned char *idvalid,
                    int64_t id_offset, Py_ssize_t n, size_t max_event, size_t *body,
                    Py_ssize_t *bad) noexcept nogil
cdef uint32_t encode_batch(unsigned char *bp, size_t body, const ColView *cols,
                           const unsigned char *idp, const unsigned char *idvalid, int64_t id_offset,
                           Py_ssize_t n, uint64_t first, const uint64_t *vers,
                           int64_t timestamp, const NarrowPlan *plan, size_t narrow,
                           const int64_t *sids, chl_wpipe *w) noexcept nogil


cdef inline bint expectation_holds(int64_t expected, uint64_t count) noexcept nogil:
    """Whether a stream of `count` events meets an expected_version code."""
    if expected == ANY:
        return True
    if expected == NO_STREAM:
        return count == 0
    if expected == STREAM_EXISTS:
        return count > 0
    return count > 0 and <int64_t>(count - 1) == expected


cdef inline ColView col_view(ArrowColumn c) noexcept:
    cdef ColView v
    v.offsets = NULL if c is None else c.offsets
    v.data = NULL if c is None else c.data
    return v


cdef inline uint64_t col_len(const ColView *c, Py_ssize_t i) noexcept nogil:
    return 0 if c.offsets == NULL else <uint64_t>(c.offsets[i + 1] - c.offsets[i])


cdef inline const char *col_ptr(const ColView *c, Py_ssize_t i) noexcept nogil:
    return NULL if c.offsets == NULL else c.data + c.offsets[i]


cdef inline bint id_present(const unsigned char *idp, const unsigned char *idvalid,
                            int64_t id_offset, Py_ssize_t i) noexcept nogil:
    return idp != NULL and (idvalid == NULL or
                            (idvalid[(id_offset + i) >> 3] >> ((id_offset + i) & 7)) & 1)
