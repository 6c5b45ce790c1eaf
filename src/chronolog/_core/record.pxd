# Records and frames in memory: encode one record, seal a frame, view a record of a checked
# frame. Layouts: format.pxd. Inline so the append path, recovery and scans share one codec.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from chronolog._core.format cimport (
    FRAME_HEADER_BYTES, RECORD_HEADER_BYTES, EVENT_ID_BYTES, FRAME_MAGIC, TRAILER_MAGIC,
    CODEC_NONE, RECORD_HAS_ID, FRAME_HAS_NARROW, MAX_STREAM_NAME_BYTES, ld16, ld32, ld64, st16,
    st32, st64, chl_crc32c, chl_crc32c_3)
from chronolog._core.segment cimport FrameInfo


cdef inline size_t record_bytes(size_t slen, size_t tlen, size_t mlen, size_t dlen,
                                bint has_id) noexcept nogil:
    return RECORD_HEADER_BYTES + (EVENT_ID_BYTES if has_id else 0) + slen + tlen + mlen + dlen


cdef inline size_t put_record(unsigned char *dst, const char *stream, size_t slen,
                              const char *etype, size_t tlen, const unsigned char *eid,
                              const char *meta, size_t mlen, const char *data, size_t dlen,
                              uint64_t position, uint64_t version, int64_t ts) noexcept nogil:
    # Write one record at `dst`; return its length.
    cdef size_t n = put_record_raw(dst, stream, slen, etype, tlen, eid, meta, mlen, data, dlen,
                                   position, version, ts)
    st32(dst + 4, chl_crc32c(dst + 8, n - 8))
    return n


cdef inline size_t put_record_raw(unsigned char *dst, const char *stream, size_t slen,
                                  const char *etype, size_t tlen, const unsigned char *eid,
                                  const char *meta, size_t mlen, const char *data, size_t dlen,
                                  uint64_t position, uint64_t version, int64_t ts) noexcept nogil:
    # put_record without its CRC (bytes 4..8 left for the caller: seal_records).
    cdef unsigned char *p = dst + RECORD_HEADER_BYTES
    cdef size_t n
    if eid != NULL:
        memcpy(p, eid, EVENT_ID_BYTES)
        p += EVENT_ID_BYTES
    memcpy(p, stream, slen); p += slen
    memcpy(p, etype, tlen); p += tlen
    if mlen:
        memcpy(p, meta, mlen); p += mlen
    if dlen:
        memcpy(p, data, dlen); p += dlen
    n = <size_t>(p - dst)
    st32(dst, <uint32_t>n)
    st16(dst + 8, <uint16_t>slen)
    dst[10] = <uint8_t>tlen
    dst[11] = RECORD_HAS_ID if eid != NULL else 0
    st32(dst + 12, <uint32_t>mlen)
    st64(dst + 16, position)
    st64(dst + 24, version)
    st64(dst + 32, <uint64_t>ts)
    st32(dst + 40, <uint32_t>dlen)
    st32(dst + 44, 0)
    return n


cdef inline void seal_records(unsigned char *base, const size_t *offs, const size_t *lens,
                              int k) noexcept nogil:
    # Store the CRC of k (1..3) records written by put_record_raw at base + offs[j]: three at
    # once when k == 3 (chl_crc32c_3: three chains side by side).
    cdef uint32_t out[3]
    cdef int j
    if k == 3:
        chl_crc32c_3(base + offs[0] + 8, lens[0] - 8, base + offs[1] + 8, lens[1] - 8,
                     base + offs[2] + 8, lens[2] - 8, out)
        for j in range(3):
            st32(base + offs[j] + 4, out[j])
    else:
        for j in range(k):
            st32(base + offs[j] + 4, chl_crc32c(base + offs[j] + 8, lens[j] - 8))


cdef inline void seal_frame(unsigned char *frame, size_t stored_bytes, size_t raw_bytes,
                            uint16_t codec, uint32_t dict_id, uint64_t salt,
                            uint64_t first_position, uint32_t count,
                            uint32_t synced_mark, uint32_t narrow) noexcept nogil:
    # Fill the header and trailer around a body already written at frame + 56; `narrow`: the
    # bytes of the narrow region the body starts with (0: none).
    seal_frame_crc(frame, stored_bytes, raw_bytes, codec, dict_id, salt, first_position, count,
                   synced_mark, narrow, chl_crc32c(frame + FRAME_HEADER_BYTES, stored_bytes))


cdef inline void seal_frame_crc(unsigned char *frame, size_t stored_bytes, size_t raw_bytes,
                                uint16_t codec, uint32_t dict_id, uint64_t salt,
                                uint64_t first_position, uint32_t count, uint32_t synced_mark,
                                uint32_t narrow, uint32_t body_crc) noexcept nogil:
    # seal_frame with the body's CRC32C already computed (the pipelined encoder's, chunk by chunk).
    st32(frame, FRAME_MAGIC)
    st32(frame + 4, <uint32_t>stored_bytes)
    st64(frame + 8, salt)
    st64(frame + 16, first_position)
    st32(frame + 24, count)
    st16(frame + 28, codec)
    st16(frame + 30, FRAME_HAS_NARROW if narrow else 0)
    st32(frame + 32, <uint32_t>raw_bytes)
    st32(frame + 36, dict_id)
    st32(frame + 40, synced_mark)
    st32(frame + 44, narrow)
    st32(frame + 48, body_crc)
    st32(frame + 52, chl_crc32c(frame, 52))
    cdef unsigned char *t = frame + FRAME_HEADER_BYTES + stored_bytes
    st32(t, <uint32_t>stored_bytes)
    st32(t + 4, TRAILER_MAGIC)


cdef struct RecordView:
    const unsigned char *rec
    uint32_t rec_len
    uint32_t slen
    uint32_t tlen
    uint32_t mlen
    uint32_t dlen
    uint64_t position
    uint64_t version
    int64_t timestamp
    const unsigned char *eid
    const unsigned char *stream
    const unsigned char *etype
    const unsigned char *meta
    const unsigned char *data


cdef inline str record_problem(int rc, str other):
    """What a problem code of view_record/view_record_at means (`other`: a code of the
    caller's own, such as a record holding another position)."""
    if rc == 1:
        return "record offset or length out of bounds"
    if rc == 2:
        return "record fields do not add up to its length"
    if rc == 3:
        return "record CRC32C mismatch"
    return other


cdef inline int view_record(const FrameInfo *fi, uint32_t i, bint check_crc,
                            RecordView *rv) noexcept nogil:
    # Locate record i of a checked, decoded frame; 0 when sound, else a problem code
    # (1 bounds, 2 fields, 3 CRC).
    cdef uint64_t table = <uint64_t>fi.raw_bytes - 4 * <uint64_t>fi.count
    return view_record_at(fi.body, ld32(fi.body + table + 4 * <uint64_t>i), table, check_crc, rv)


cdef inline int view_record_at(const unsigned char *base, uint64_t off, uint64_t limit,
                               bint check_crc, RecordView *rv) noexcept nogil:
    # The record at `off` of a region whose first `limit` bytes hold records.
    if off + RECORD_HEADER_BYTES > limit:
        return 1
    cdef const unsigned char *r = base + off
    cdef uint64_t n = ld32(r)
    if n < RECORD_HEADER_BYTES or off + n > limit:
        return 1
    rv.slen = ld16(r + 8)
    rv.tlen = r[10]
    rv.mlen = ld32(r + 12)
    rv.dlen = ld32(r + 40)
    cdef bint has_id = (r[11] & RECORD_HAS_ID) != 0
    if record_bytes(rv.slen, rv.tlen, rv.mlen, rv.dlen, has_id) != n or rv.slen == 0 \
            or rv.slen > MAX_STREAM_NAME_BYTES or rv.tlen == 0 or (r[11] & ~RECORD_HAS_ID) != 0:
        return 2
    if check_crc and chl_crc32c(r + 8, n - 8) != ld32(r + 4):
        return 3
    rv.rec = r
    rv.rec_len = <uint32_t>n
    rv.position = ld64(r + 16)
    rv.version = ld64(r + 24)
    rv.timestamp = <int64_t>ld64(r + 32)
    cdef const unsigned char *p = r + RECORD_HEADER_BYTES
    if has_id:
        rv.eid = p
        p += EVENT_ID_BYTES
    else:
        rv.eid = NULL
    rv.stream = p; p += rv.slen
    rv.etype = p; p += rv.tlen
    rv.meta = p; p += rv.mlen
    rv.data = p
    return 0
