# The narrow region of a batch frame (layout: format.pxd; why: docs/scan.md "Narrow
# scans"): the writer's plan and encoding, and the checked view a scan reads. Inline, shared by
# the append path, verify and scans.
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memcmp, memset
from chronolog._core.format cimport (
    NARROW_HEADER_BYTES, NARROW_MAX_TYPES, MAX_STREAM_NAME_BYTES, ld16, ld32, st16, st32,
    chl_crc32c)
from chronolog._core.segment cimport FrameInfo
from chronolog._core.streams cimport chl_name_key
from chronolog._core.record cimport RecordView, view_record

cdef enum:
    NARROW_TYPE_SLOTS = 1024          # the plan's type hash (a power of two > 4 * 255)


cdef struct NarrowPlan:
    # Writer scratch, reused from append to append (zeroed at first; free with narrow_free).
    uint64_t *stamp                   # per stream id: gen << 32 | its index in this frame
    size_t stamp_cap
    uint32_t gen
    uint32_t *first                   # per frame stream: its first event
    uint8_t *tix                      # per event: its type's index in this frame
    size_t cap
    uint32_t tfirst[256]              # per frame type: its first event
    uint32_t streams
    uint32_t types
    uint32_t width
    uint64_t names


cdef inline void narrow_free(NarrowPlan *pl) noexcept nogil:
    free(pl.stamp)
    free(pl.first)
    free(pl.tix)
    memset(pl, 0, sizeof(NarrowPlan))


cdef inline int narrow_reserve(NarrowPlan *pl, size_t n, size_t n_streams) noexcept nogil:
    # Room for n events over stream ids < n_streams; -1 out of memory.
    cdef void *a
    cdef size_t cap
    if n_streams > pl.stamp_cap:
        cap = n_streams * 2 if n_streams > 1024 else 2048
        a = realloc(pl.stamp, cap * 8)
        if a == NULL:
            return -1
        pl.stamp = <uint64_t *>a
        memset(pl.stamp + pl.stamp_cap, 0, (cap - pl.stamp_cap) * 8)
        pl.stamp_cap = cap
    if n > pl.cap:
        a = realloc(pl.first, n * 4)
        if a == NULL:
            return -1
        pl.first = <uint32_t *>a
        a = realloc(pl.tix, n)
        if a == NULL:
            return -1
        pl.tix = <uint8_t *>a
        pl.cap = n
    return 0


cdef inline size_t narrow_plan(NarrowPlan *pl, const int64_t *soff, const char *sdat,
                               const int64_t *toff, const char *tdat, const int64_t *sids,
                               size_t n) noexcept nogil:
    # Number the streams and types of n events in order of first appearance; return the
    # region's bytes, or 0 when the events have more than NARROW_MAX_TYPES types (no region).
    # Needs narrow_reserve(pl, n, 1 + the largest stream id) first.
    cdef int16_t slots[NARROW_TYPE_SLOTS]
    cdef uint64_t ka[256]    # per frame type: its name key (chl_name_key) and length; a name
    cdef uint64_t kb[256]    # of at most 16 bytes equals another exactly when these do
    cdef uint64_t kl[256]
    cdef size_t i, h
    cdef uint64_t a, b, tl, mark
    cdef int64_t sid
    cdef int16_t j
    cdef const char *tp
    memset(slots, 0xFF, sizeof(slots))
    pl.gen += 1
    if pl.gen == 0:  # wrapped: forget every stamp
        memset(pl.stamp, 0, pl.stamp_cap * 8)
        pl.gen = 1
    mark = <uint64_t>pl.gen << 32
    pl.streams = 0
    pl.types = 0
    pl.names = 0
    for i in range(n):
        sid = sids[i]
        if (pl.stamp[sid] >> 32) != pl.gen:
            pl.stamp[sid] = mark | pl.streams
            pl.first[pl.streams] = <uint32_t>i
            pl.streams += 1
            pl.names += <uint64_t>(soff[i + 1] - soff[i])
        tp = tdat + toff[i]
        tl = <uint64_t>(toff[i + 1] - toff[i])
        chl_name_key(<const unsigned char *>tp, <uint32_t>tl, &a, &b)
        h = ((a ^ (b * 31) ^ tl) * <uint64_t>0x9e3779b97f4a7c15) >> 54
        while True:
            j = slots[h]
            if j < 0:
                if pl.types == NARROW_MAX_TYPES:
                    return 0
                slots[h] = <int16_t>pl.types
                ka[pl.types] = a
                kb[pl.types] = b
                kl[pl.types] = tl
                pl.tfirst[pl.types] = <uint32_t>i
                pl.tix[i] = <uint8_t>pl.types
                pl.types += 1
                pl.names += tl
                break
            if kl[j] == tl and ka[j] == a and kb[j] == b \
                    and (tl <= 16 or memcmp(tdat + toff[pl.tfirst[j]], tp, tl) == 0):
                pl.tix[i] = <uint8_t>j
                break
            h = (h + 1) & (NARROW_TYPE_SLOTS - 1)
    pl.width = 2 if pl.streams <= 65536 else 4
    cdef uint64_t used = NARROW_HEADER_BYTES + <uint64_t>n * (pl.width + 1) \
        + 2 * <uint64_t>pl.streams + pl.types + pl.names
    return <size_t>((used + 7) & ~(<uint64_t>7))


cdef inline void narrow_encode(const NarrowPlan *pl, unsigned char *dst, size_t bytes,
                               const int64_t *soff, const char *sdat, const int64_t *toff,
                               const char *tdat, const int64_t *sids, size_t n) noexcept nogil:
    # Write the region narrow_plan sized (`bytes`) at dst.
    cdef unsigned char *p = dst + NARROW_HEADER_BYTES
    cdef size_t i
    cdef uint64_t len_
    st32(dst, pl.streams)
    st16(dst + 4, <uint16_t>pl.types)
    dst[6] = <uint8_t>pl.width
    dst[7] = 0
    st32(dst + 8, <uint32_t>pl.names)
    if pl.width == 2:
        for i in range(n):
            st16(p + 2 * i, <uint16_t>pl.stamp[sids[i]])
    else:
        for i in range(n):
            st32(p + 4 * i, <uint32_t>pl.stamp[sids[i]])
    p += n * pl.width
    memcpy(p, pl.tix, n)
    p += n
    for i in range(pl.streams):
        st16(p + 2 * i, <uint16_t>(soff[pl.first[i] + 1] - soff[pl.first[i]]))
    p += 2 * <size_t>pl.streams
    for i in range(pl.types):
        p[i] = <uint8_t>(toff[pl.tfirst[i] + 1] - toff[pl.tfirst[i]])
    p += pl.types
    for i in range(pl.streams):
        len_ = <uint64_t>(soff[pl.first[i] + 1] - soff[pl.first[i]])
        memcpy(p, sdat + soff[pl.first[i]], len_)
        p += len_
    for i in range(pl.types):
        len_ = <uint64_t>(toff[pl.tfirst[i] + 1] - toff[pl.tfirst[i]])
        memcpy(p, tdat + toff[pl.tfirst[i]], len_)
        p += len_
    memset(p, 0, bytes - <size_t>(p - dst))
    st32(dst + 12, chl_crc32c(dst + NARROW_HEADER_BYTES, bytes - NARROW_HEADER_BYTES))


cdef struct NarrowView:
    # The narrow region of a frame (layout: format.pxd), checked by view_narrow.
    uint32_t streams                  # S
    uint32_t types                    # T
    uint32_t width                    # of a stream index: 2 or 4
    const unsigned char *stream_ix    # [count] x width
    const unsigned char *type_ix      # [count] u8
    const unsigned char *slens        # [S] u16
    const unsigned char *tlens        # [T] u8
    const unsigned char *names        # S stream names, then T type names


cdef inline int view_narrow(const FrameInfo *fi, bint check_crc, NarrowView *nv) noexcept nogil:
    # Check the narrow region of a decoded frame that has one: its extent, its CRC (when
    # asked) and that its name lengths add up. Index values are checked where they are used
    # (< streams, < types). 0 when sound, else 1 (layout) or 2 (CRC).
    cdef const unsigned char *r = fi.body
    cdef uint64_t R = fi.narrow, count = fi.count
    if R < NARROW_HEADER_BYTES:
        return 1
    nv.streams = ld32(r)
    nv.types = ld16(r + 4)
    nv.width = r[6]
    cdef uint64_t names_bytes = ld32(r + 8)
    if nv.streams == 0 or nv.streams > count or nv.types == 0 or nv.types > 255 \
            or nv.types > count or r[7] != 0 or not (nv.width == 2 or nv.width == 4) \
            or (nv.width == 2 and nv.streams > 65536):
        return 1
    cdef uint64_t used = NARROW_HEADER_BYTES + count * (nv.width + 1) + 2 * <uint64_t>nv.streams \
        + nv.types + names_bytes
    if used > R or R - used >= 8:
        return 1
    if check_crc and chl_crc32c(r + NARROW_HEADER_BYTES, R - NARROW_HEADER_BYTES) != ld32(r + 12):
        return 2
    nv.stream_ix = r + NARROW_HEADER_BYTES
    nv.type_ix = nv.stream_ix + count * nv.width
    nv.slens = nv.type_ix + count
    nv.tlens = nv.slens + 2 * <uint64_t>nv.streams
    nv.names = nv.tlens + nv.types
    cdef uint64_t total = 0, i, n
    for i in range(nv.streams):
        n = ld16(nv.slens + 2 * i)
        if n == 0 or n > MAX_STREAM_NAME_BYTES:
            return 1
        total += n
    for i in range(nv.types):
        if nv.tlens[i] == 0:
            return 1
        total += nv.tlens[i]
    if total != names_bytes:
        return 1
    return 0


cdef inline uint32_t narrow_stream_ix(const NarrowView *nv, uint64_t i) noexcept nogil:
    if nv.width == 2:
        return ld16(nv.stream_ix + 2 * i)
    return ld32(nv.stream_ix + 4 * i)


cdef inline void narrow_offsets(const NarrowView *nv, uint32_t *s_at, uint32_t *t_at) noexcept nogil:
    # Where each name starts in nv.names: s_at[0..S] for the streams, t_at[0..T] for the types
    # (the last entry of each is where the next name would start).
    cdef uint32_t i, at = 0
    for i in range(nv.streams):
        s_at[i] = at
        at += ld16(nv.slens + 2 * <uint64_t>i)
    s_at[nv.streams] = at
    for i in range(nv.types):
        t_at[i] = at
        at += nv.tlens[i]
    t_at[nv.types] = at


cdef inline int64_t narrow_disagrees(const FrameInfo *fi, const NarrowView *nv) noexcept nogil:
    # Compare a checked region with the frame's records: -1 when every record's stream and
    # type are the region's, -2 out of memory, else the first record that differs.
    cdef uint32_t *s_at = <uint32_t *>malloc(4 * (<size_t>nv.streams + 1))
    cdef uint32_t t_at[256]
    cdef RecordView rv
    cdef uint64_t i
    cdef uint32_t si, ti
    cdef int64_t bad = -1
    if s_at == NULL:
        return -2
    narrow_offsets(nv, s_at, t_at)
    for i in range(fi.count):
        si = narrow_stream_ix(nv, i)
        ti = nv.type_ix[i]
        if view_record(fi, <uint32_t>i, False, &rv) != 0 or si >= nv.streams or ti >= nv.types \
                or s_at[si + 1] - s_at[si] != rv.slen or t_at[ti + 1] - t_at[ti] != rv.tlen \
                or memcmp(nv.names + s_at[si], rv.stream, rv.slen) != 0 \
                or memcmp(nv.names + t_at[ti], rv.etype, rv.tlen) != 0:
            bad = <int64_t>i
            break
    free(s_at)
    return bad
