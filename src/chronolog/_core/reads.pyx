"""Reads of a Log: the checked lookup of one position (view_position, also what the append
path's idempotent retries read), reads by position (in order or reversed) and by stream (a
prefetching pipeline), the stream listing, and the RecordedEvents they return. A read that
finds the indexes in doubt has them rebuilt (RecoveredLog._rebuild_indexes) and reads again.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcmp

from chronolog._core.format cimport (
    FRAME_HEADER_BYTES, FRAME_OVERHEAD_BYTES, RECORD_HEADER_BYTES, FRAME_MAGIC, CODEC_NONE, CODEC_ZSTD,
    ld16, ld32, ld64)
from chronolog._core.batch cimport stream_utf8
from chronolog._core.codec cimport Decoder
from chronolog._core.events cimport RecordedEvent
from chronolog._core.streams cimport (
    chl_stream, chl_streams_find, chl_streams_count, chl_streams_position, chl_streams_at,
    chl_streams_materialize)
from chronolog._core.recovery cimport RecoveredLog
from chronolog._core.record cimport RecordView, record_problem, view_record, view_record_at
from chronolog._core.segment cimport (
    Segment, FrameInfo, FrameStatus, check_frame, frame_status_reason, FRAME_OK)

from chronolog.errors import CorruptionError

cdef extern from *:
    void __builtin_prefetch(const void *addr) nogil

cdef enum:
    PIPE_STAGES = 5      # read_stream's prefetch pipeline (_collect_stream): its stages,
    PIPE_STEP = 4        # the events between two stages,
    PIPE_DEPTH = 20      # how far ahead the first stage runs (PIPE_STEP * PIPE_STAGES),
    PIPE_RING = 32       # and its ring of per-event slots (a power of two > PIPE_DEPTH)


cdef struct PipeSlot:
    uint64_t p                      # the event's position
    const unsigned char *h          # its frame header, offset table entry and record, or NULL
    const unsigned char *t
    const unsigned char *r
    const unsigned char *end        # the end of the frame's segment
    uint64_t rlim                   # bytes from r that the record may span


cdef bint view_position(RecoveredLog log, uint64_t position, FrameInfo *fi, RecordView *rv,
                        bint strict, Decoder dec) except -1:
    """Random read: find the record at `position` (< written) with the fewest cache
    misses. Checked: the frame's magic, extent and range (bounds), the record's CRC32C and
    position, so what is returned is exactly what was written. The frame's own CRCs and
    trailer are checked by sequential reads (_view_seq), scans and verify(). A compressed
    frame decodes only the block holding the record (with `dec`).
    A problem raises CorruptionError when strict, else returns False."""
    cdef uint32_t ro = log.pidx.roff_at(position)
    cdef Segment seg
    if ro != 0:
        # The record's offset is known: read it without the position entry, the frame
        # header and the offset table. Its bounds (the segment's end), CRC and position
        # make it exactly what was written; anything else takes the checked path below.
        seg = log._segment_of(position)
        if seg.map_len < seg.end:
            seg.ensure_mapped(seg.end, 0)
        if view_record_at(seg.map, ro - 1, seg.end, True, rv) == 0 and rv.position == position:
            return True
    cdef uint64_t e = log.pidx.get(position)
    cdef uint64_t ordinal = e >> 32, off = e & 0xFFFFFFFF
    if ordinal >= <uint64_t>len(log.segments):
        if strict:
            raise CorruptionError(log.path, None, f"position index names a missing segment for position {position}")
        return False
    seg = log.segments[ordinal]
    cdef const unsigned char *h
    cdef const unsigned char *block
    cdef uint64_t in_block = 0, limit = 0
    cdef int rc = 0
    cdef str reason = None
    if seg.map_len < seg.end:
        seg.ensure_mapped(seg.end, 0)
    if fi.stored == NULL or fi.offset != off or fi.end > seg.end \
            or <uint64_t>(fi.stored - seg.map) != off + FRAME_HEADER_BYTES:
        h = seg.map + off
        fi.stored = NULL
        fi.body = NULL
        if off + FRAME_OVERHEAD_BYTES > seg.end or ld32(h) != FRAME_MAGIC:
            reason = "no frame where the position index points"
        else:
            fi.offset = off
            fi.first_position = ld64(h + 16)
            fi.count = ld32(h + 24)
            fi.codec = ld16(h + 28)
            fi.body_bytes = ld32(h + 4)
            fi.raw_bytes = ld32(h + 32)
            fi.dict_id = ld32(h + 36)
            fi.end = off + FRAME_OVERHEAD_BYTES + fi.body_bytes
            if fi.end > seg.end or fi.count == 0 or <uint64_t>fi.count * 4 > fi.body_bytes \
                    or (fi.codec == CODEC_NONE and fi.raw_bytes != fi.body_bytes):
                reason = "frame extends past the end of its segment"
            elif fi.codec != CODEC_NONE and fi.codec != CODEC_ZSTD:
                reason = "frame uses an unknown codec"
            else:
                fi.stored = h + FRAME_HEADER_BYTES
                fi.body = fi.stored if fi.codec == CODEC_NONE else NULL
    if reason is None and not (fi.first_position <= position < fi.first_position + fi.count):
        reason = f"frame does not hold position {position}"
    if reason is None:
        if fi.codec == CODEC_NONE:
            rc = view_record(fi, <uint32_t>(position - fi.first_position), True, rv)
        else:
            try:
                block = dec.record_block(fi, <uint32_t>(position - fi.first_position),
                                         seg.path, &in_block, &limit)
                rc = view_record_at(block, in_block, limit, True, rv)
            except CorruptionError as exc:
                reason = exc.reason
        if rc == 0 and reason is None and rv.position != position:
            rc = 4
        if rc:
            reason = f"record of position {position}: " + record_problem(rc, "record holds another position")
    if reason is None:
        if fi.codec == CODEC_NONE:
            log.pidx.set_one_roff(position, <uint32_t>(rv.rec - seg.map) + 1)
        return True
    fi.stored = NULL
    fi.body = NULL
    if strict:
        raise CorruptionError(seg.path, off, reason)
    return False


cdef bint _view_seq(RecoveredLog log, uint64_t position, FrameInfo *fi, RecordView *rv,
                    Decoder dec) except -1:
    """Sequential read: check each frame whole once (header CRC, trailer, body CRC32C;
    a compressed frame is decoded whole with `dec`), then view its records without
    per-record CRCs. Raises CorruptionError."""
    cdef uint64_t e = log.pidx.get(position)
    cdef uint64_t ordinal = e >> 32, off = e & 0xFFFFFFFF
    if ordinal >= <uint64_t>len(log.segments):
        raise CorruptionError(log.path, None, f"position index names a missing segment for position {position}")
    cdef Segment seg = log.segments[ordinal]
    cdef FrameStatus status
    cdef int rc
    cdef bint whole = False
    if seg.map_len < seg.end:
        seg.ensure_mapped(seg.end, 0)
    if fi.body == NULL or fi.stored == NULL or fi.offset != off or fi.end > seg.end \
            or <uint64_t>(fi.stored - seg.map) != off + FRAME_HEADER_BYTES:
        fi.stored = NULL
        fi.body = NULL
        # A frame this handle checked whole last (the previous read_all chunk's) is checked
        # again without its body CRC: chunk by chunk, a frame of a million events was
        # CRC-checked (or decoded) whole 245 times.
        whole = seg.map + off != log.seq_checked
        status = check_frame(seg.map, seg.end, off, seg.salt, whole, fi)
        if status != FRAME_OK:
            fi.stored = NULL
            fi.body = NULL
            raise CorruptionError(seg.path, off, frame_status_reason(status))
        if not (fi.first_position <= position < fi.first_position + fi.count):
            fi.stored = NULL
            fi.body = NULL
            raise CorruptionError(seg.path, off, f"frame does not hold position {position}")
        if fi.codec != CODEC_NONE:
            try:
                dec.decode_frame_seq(fi, seg.path)
            except BaseException:
                fi.stored = NULL
                fi.body = NULL
                raise
        if whole:
            log.seq_checked = seg.map + off
            log.seq_checks += 1
    rc = view_record(fi, <uint32_t>(position - fi.first_position), fi.codec != CODEC_NONE, rv)
    if rc == 0 and rv.position != position:
        rc = 4
    if rc:
        fi.stored = NULL
        fi.body = NULL
        raise CorruptionError(seg.path, off, f"record of position {position}: " +
                              record_problem(rc, "record holds another position"))
    return True


cdef str _type_str(RecoveredLog log, const unsigned char *p, uint32_t n):
    """Event type names repeat: decode each distinct one once (a short linear cache)."""
    cdef Py_ssize_t i, k = len(log._types)
    cdef bytes key
    for i in range(0, k, 2):
        key = <bytes>log._types[i]
        if PyBytes_GET_SIZE(key) == n and memcmp(PyBytes_AS_STRING(key), p, n) == 0:
            return <str>log._types[i + 1]
    cdef str t = PyUnicode_DecodeUTF8(<const char *>p, n, "strict")
    if k < 128:
        log._types.append(PyBytes_FromStringAndSize(<const char *>p, n))
        log._types.append(t)
    return t


cdef RecordedEvent _event(RecoveredLog log, RecordView *rv, str stream):
    cdef RecordedEvent ev = RecordedEvent.__new__(RecordedEvent)
    ev.position = rv.position
    ev.version = rv.version
    ev.timestamp = rv.timestamp
    try:
        ev.stream = stream if stream is not None else PyUnicode_DecodeUTF8(<const char *>rv.stream, rv.slen, "strict")
        ev.type = _type_str(log, rv.etype, rv.tlen)
    except UnicodeDecodeError as exc:
        # A record whose CRC checks but whose names are not UTF-8 (written by a core before
        # append_batch checked Arrow names): damage to the reader, as verify() reports it.
        raise CorruptionError(log.path, None, f"the event at position {rv.position} has a "
                              f"stream name or event type that is not valid UTF-8 ({exc.reason}); "
                              "`chronolog verify` names its segment and offset") from None
    ev.metadata = PyBytes_FromStringAndSize(<const char *>rv.meta, rv.mlen) if rv.mlen else b""
    ev.data = PyBytes_FromStringAndSize(<const char *>rv.data, rv.dlen)
    ev._id = PyBytes_FromStringAndSize(<const char *>rv.eid, 16) if rv.eid != NULL else None
    return ev


cdef int64_t _visible_count(RecoveredLog log, int64_t sid) except -1:
    """How many of the stream's events are visible (position < head). A position past
    the log means a damaged stream index: CorruptionError (the caller rebuilds)."""
    if sid < 0:
        return 0
    cdef uint64_t c = chl_streams_count(log.st, sid), p
    while c > 0:
        p = chl_streams_position(log.st, sid, c - 1)
        if p >= log.written:
            raise CorruptionError(log.path, None, "stream index points past the log")
        if p < log.head:
            break
        c -= 1
    return <int64_t>c


def read_positions(RecoveredLog log, uint64_t start, uint64_t stop, bint backwards=False):
    """RecordedEvents of positions [start, stop) (clipped to head), in order or reversed."""
    log._check_open()
    try:
        return _read_positions(log, start, stop, backwards)
    except CorruptionError:
        if not log._rebuild_indexes():
            raise
        return _read_positions(log, start, stop, backwards)


cdef list _read_positions(RecoveredLog log, uint64_t start, uint64_t stop, bint backwards):
    if stop > log.head:
        stop = log.head
    cdef list out = []
    cdef FrameInfo fi
    cdef RecordView rv
    cdef uint64_t p
    fi.stored = NULL
    fi.body = NULL
    if start >= stop:
        return out
    cdef Decoder dec = log._decoder()
    try:
        if backwards:
            p = stop
            while p > start:
                p -= 1
                _view_seq(log, p, &fi, &rv, dec)
                out.append(_event(log, &rv, None))
        else:
            for p in range(start, stop):
                _view_seq(log, p, &fi, &rv, dec)
                out.append(_event(log, &rv, None))
    finally:
        log._give_back(dec)
    return out


def stream_count(RecoveredLog log, stream):
    """The number of visible events in `stream` (0 when it does not exist)."""
    log._check_open()
    cdef bytes s = stream_utf8(stream)
    cdef int64_t c
    try:
        c = _visible_count(log, chl_streams_find(log.st, PyBytes_AS_STRING(s), len(s)))
        log._unsound()
        return c
    except CorruptionError:
        if not log._rebuild_indexes():
            raise
        return _visible_count(log, chl_streams_find(log.st, PyBytes_AS_STRING(s), len(s)))


def read_stream(RecoveredLog log, stream, uint64_t lo, uint64_t hi, bint backwards, uint64_t limit):
    """RecordedEvents of `stream` with lo <= version < hi (clipped), at most `limit`,
    ascending or (backwards) descending."""
    log._check_open()
    cdef bytes s = stream_utf8(stream)
    try:
        return _read_stream(log, stream, s, lo, hi, backwards, limit)
    except CorruptionError:
        if not log._rebuild_indexes():
            raise
        return _read_stream(log, stream, s, lo, hi, backwards, limit)


cdef list _read_stream(RecoveredLog log, str stream, bytes s, uint64_t lo, uint64_t hi, bint backwards,
                       uint64_t limit):
    cdef int64_t sid = chl_streams_find(log.st, PyBytes_AS_STRING(s), len(s))
    cdef list out = []
    cdef uint64_t count = <uint64_t>_visible_count(log, sid)
    log._unsound()
    if hi > count:
        hi = count
    if lo >= hi or limit == 0:
        return out
    cdef FrameInfo fi
    cdef RecordView rv
    cdef uint64_t v
    cdef int64_t step = -1 if backwards else 1
    fi.stored = NULL
    fi.body = NULL
    v = hi - 1 if backwards else lo
    cdef Decoder dec = log._decoder()
    try:
        _collect_stream(log, stream, s, sid, lo, hi, v, step, limit, &fi, &rv, dec, out)
    finally:
        log._give_back(dec)
    return out


cdef int _collect_stream(RecoveredLog log, str stream, bytes s, int64_t sid, uint64_t lo, uint64_t hi,
                         uint64_t v, int64_t step, uint64_t limit, FrameInfo *fi,
                         RecordView *rv, Decoder dec, list out) except -1:
    # A stream's events lie in different frames: reading one waits on about five cache
    # misses in a row (position index entry, frame header, offset table entry, record
    # header, the rest of the record). A software pipeline hides them: stage k of event
    # j + PIPE_DEPTH - PIPE_STEP * k runs while event j is read, and loads what the stage before
    # prefetched PIPE_STEP events earlier (_pipe_stage); the read itself finds the whole
    # record cached PIPE_STEP events after the last stage.
    cdef uint64_t n = (v - lo + 1) if step < 0 else (hi - v)
    cdef uint64_t j, p, vj
    cdef int64_t k
    cdef PipeSlot ring[PIPE_RING]
    if n > limit:
        n = limit
    for j in range(n + PIPE_DEPTH):
        # Stage k works on event j - PIPE_STEP * k; the last ones first (they load what
        # earlier iterations prefetched); event j - PIPE_DEPTH is read below.
        for k in range(PIPE_STAGES - 1, -1, -1):
            if j >= PIPE_STEP * <uint64_t>k and j - PIPE_STEP * <uint64_t>k < n:
                _pipe_stage(log, sid, v, step, j - PIPE_STEP * <uint64_t>k, <int>k, ring)
        if j < PIPE_DEPTH:
            continue
        vj = v + step * <int64_t>(j - PIPE_DEPTH)
        p = chl_streams_position(log.st, sid, vj)
        if p >= log.written:
            raise CorruptionError(log.path, None, f"stream index points past the log at "
                                  f"{stream!r} version {vj}")
        view_position(log, p, fi, rv, True, dec)
        if rv.version != vj or rv.slen != len(s) or memcmp(rv.stream, PyBytes_AS_STRING(s), rv.slen) != 0:
            raise CorruptionError(log.path, None, f"stream index disagrees with the log at "
                                  f"{stream!r} version {vj}")
        out.append(_event(log, rv, stream))
    return 0


cdef void _pipe_stage(RecoveredLog log, int64_t sid, uint64_t v, int64_t step, uint64_t i, int stage,
                      PipeSlot *ring) noexcept:
    """Stage `stage` (0..PIPE_STAGES-1) of the read of the i-th event from version v: load
    what the previous stage prefetched, prefetch what the next one loads. Only a hint:
    any doubt about an address (bounds) ends the event's pipeline; nothing read here is
    trusted (_view checks everything again)."""
    cdef PipeSlot *q = &ring[i % PIPE_RING]
    cdef uint64_t p, e, ordinal, off, first, count, raw, nrec, x
    cdef Segment seg
    cdef chl_stream *cs
    cdef uint32_t ro
    if stage == 0:    # the stream's position of the event; its position index entry
        q.h = q.t = q.r = NULL
        p = chl_streams_position(log.st, sid, v + step * <int64_t>i)
        q.p = p
        if p < log.written:
            if p < log.pidx.roff_cap:
                __builtin_prefetch(log.pidx.roff + p)
            if p < log.pidx.base_count:  # from the checkpoint: its record offset may be unknown
                __builtin_prefetch(log.pidx.slot(p))
        # ... and the stream's positions a cache line ahead (a wrapped version misses both)
        cs = chl_streams_at(log.st, sid)
        x = v + step * <int64_t>(i + 8)
        if x < cs.base_count:
            __builtin_prefetch(cs.base + x)
        elif x - cs.base_count < cs.delta_count:
            __builtin_prefetch(cs.delta + (x - cs.base_count))
    elif stage == 1:  # the entry; the frame header
        if q.p >= log.written:
            return
        ro = log.pidx.roff_at(q.p)
        if ro != 0:
            # Record offset known: straight to the record (stages 2 and 3 idle).
            seg = log._segment_of(q.p)
            if seg.map != NULL and <uint64_t>ro - 1 + RECORD_HEADER_BYTES <= seg.end \
                    and seg.end <= seg.map_len:
                q.r = seg.map + ro - 1
                q.rlim = seg.end - (ro - 1)
                __builtin_prefetch(q.r)
                __builtin_prefetch(q.r + RECORD_HEADER_BYTES - 1)
            return
        e = log.pidx.get(q.p)
        ordinal = e >> 32
        off = e & 0xFFFFFFFF
        if ordinal < <uint64_t>len(log.segments):
            seg = <Segment>log.segments[ordinal]
            if seg.map != NULL and off + FRAME_OVERHEAD_BYTES <= seg.end and seg.end <= seg.map_len:
                q.h = seg.map + off
                q.end = seg.map + seg.end
                __builtin_prefetch(q.h)
                __builtin_prefetch(q.h + 39)  # the last field _view reads (dict id)
    elif stage == 2:  # the header; the offset table entry (codec 0 frames)
        if q.h == NULL or ld16(q.h + 28) != CODEC_NONE:
            return
        first = ld64(q.h + 16)
        count = ld32(q.h + 24)
        raw = ld32(q.h + 32)
        if count and q.p >= first and q.p - first < count and 4 * count <= raw \
                and <uint64_t>(q.end - q.h) >= FRAME_OVERHEAD_BYTES + raw:
            q.t = q.h + FRAME_HEADER_BYTES + raw - 4 * count + 4 * (q.p - first)
            __builtin_prefetch(q.t)
    elif stage == 3:  # the table entry; the record's header
        if q.t == NULL:
            return
        raw = ld32(q.h + 32)
        off = ld32(q.t)
        if off + RECORD_HEADER_BYTES <= raw:
            q.r = q.h + FRAME_HEADER_BYTES + off
            q.rlim = raw - off
            __builtin_prefetch(q.r)
            __builtin_prefetch(q.r + RECORD_HEADER_BYTES - 1)
    else:             # the record's length; the rest of the record (its CRC reads it all)
        if q.r == NULL:
            return
        nrec = ld32(q.r)
        if nrec <= q.rlim:
            x = 64
            while x < nrec:
                __builtin_prefetch(q.r + x)
                x += 64
            if nrec > 64:
                __builtin_prefetch(q.r + nrec - 1)


def streams(RecoveredLog log, str prefix=""):
    """Names of the streams that hold visible events, in order of first appearance."""
    log._check_open()
    try:
        return _streams(log, prefix)
    except CorruptionError:
        if not log._rebuild_indexes():
            raise
        return _streams(log, prefix)


cdef list _streams(RecoveredLog log, str prefix):
    cdef bytes pre = prefix.encode("utf-8", "surrogatepass")
    cdef Py_ssize_t plen = len(pre)
    cdef uint64_t i
    cdef chl_stream *s
    cdef uint64_t first
    cdef list out = []
    for i in range(log.st.n_streams):
        s = chl_streams_at(log.st, i)
        if s.base_count + s.delta_count and s.name_len >= plen \
                and memcmp(s.name, PyBytes_AS_STRING(pre), plen) == 0:
            first = chl_streams_position(log.st, i, 0)
            if first >= log.written:
                raise CorruptionError(log.path, None, "stream index points past the log")
            if first < log.head:
                try:
                    out.append((first, PyUnicode_DecodeUTF8(s.name, s.name_len, "strict")))
                except UnicodeDecodeError as exc:
                    raise CorruptionError(log.path, None, f"the stream of the event at position "
                                          f"{first} has a name that is not valid UTF-8 "
                                          f"({exc.reason}); `chronolog verify` names its segment "
                                          "and offset") from None
    log._unsound()
    # Order of first appearance in the log (not of stream ids, which a refused batch
    # may have handed out): the same after any rebuild.
    out.sort()
    return [name for _, name in out]


def stream_total(RecoveredLog log):
    """How many streams hold visible events (as `streams` lists them): a stream whose first
    event lies past head (written, not yet synced in "fsync" mode, or cut by a fail-stop)
    does not count."""
    cdef uint64_t i, n = 0
    log._check_open()
    chl_streams_materialize(log.st)
    if log.st.unsound:
        log._rebuild_indexes()
    cdef bint all_visible = log.head >= log.written
    for i in range(log.st.n_streams):
        if chl_streams_count(log.st, i) and (
                all_visible or chl_streams_position(log.st, i, 0) < log.head):
            n += 1
    return n


def segment_info(RecoveredLog log):
    """(name, first position, bytes) of every segment."""
    return [(s.name, s.first_position, s.end) for s in log.segments]
