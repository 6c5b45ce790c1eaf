"""verify(): every frame and record of a store checked against its CRCs, the density of its
positions and versions, and its indexes; a report naming the first problem's segment and
offset (what `store.verify()` and `chronolog verify` return).
"""
import os
import time

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memchr

from chronolog._core.format cimport SEGMENT_HEADER_BYTES, CODEC_NONE
from chronolog._core.codec cimport Decoder, split_record
from chronolog._core.index cimport StreamIndex
from chronolog._core.streams cimport (
    chl_stream, chl_streams_find, chl_streams_intern, chl_streams_push, chl_streams_count,
    chl_streams_count_below, chl_streams_position, chl_streams_materialize)
from chronolog._core.recovery cimport RecoveredLog
from chronolog._core.narrow cimport NarrowView, view_narrow, narrow_disagrees
from chronolog._core.record cimport RecordView, record_problem, view_record
from chronolog._core.utf8 cimport utf8_name
from chronolog._core.segment cimport (
    Segment, FrameInfo, FrameStatus, check_frame, check_frame_at, frame_status_reason,
    later_claim, nonzero_end, FRAME_OK)

from chronolog.errors import CorruptionError

cdef enum:
    TAIL_LOOKS = 10             # looks at a reader's tail that seems damaged, TAIL_LOOK_PAUSE_S apart
TAIL_LOOK_PAUSE_S = 0.05


cdef tuple _reader_tail(Segment seg):
    """(claim, start, used) of the newest segment's bytes past what a reader indexed, as the
    writer's tail rule reads them: `start` where the whole frames there end (appended since
    the reader's last refresh: a writer is working), `used` where the non-zero bytes end, and
    `claim` the highest synced mark a whole frame after `start` records (-1: none). Read
    through a copy, never the mapping: the writer may be cutting a torn tail, and a read of a
    page cut away is SIGBUS. A copy can race the writer (a frame's pages read before it
    wrote them, a later frame's after; appenders that share a group commit finish out of
    order), so a frame that does not check with a whole one after it is looked at again, for
    up to ~0.5 s, before it counts: damage or a power loss stays so, a write in progress ends."""
    cdef int attempt
    cdef uint64_t end = seg.end  # (a refresh in another thread may move it meanwhile)
    # A descriptor of its own: that refresh may also seal the segment (closing its
    # descriptor) while a read here has the GIL released.
    fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for attempt in range(TAIL_LOOKS):
            if attempt:
                time.sleep(TAIL_LOOK_PAUSE_S)
            size = os.fstat(fd).st_size
            tail = os.pread(fd, size - end, end) if size > end else b""
            claim, start, used = _tail_look(seg, end, tail)
            if claim < 0:
                break
    finally:
        os.close(fd)
    return claim, start, used


cdef tuple _tail_look(Segment seg, uint64_t end, bytes tail):
    """One copy of the tail (the bytes from `end`), read by _reader_tail: (claim, start,
    used)."""
    cdef const unsigned char *tp = tail
    cdef uint64_t n = len(tail), start = end, used
    cdef int64_t claim = -1
    cdef FrameInfo fi
    while check_frame_at(tp + (start - end), n - (start - end), start, seg.salt, True,
                         &fi) == FRAME_OK:
        start = fi.end
    used = end + nonzero_end(tp, 0, n)
    if used > start:
        claim = later_claim(tp + (start - end), used - start, start, seg.salt)
    return claim, start, used


def verify(RecoveredLog log):
    """Check every frame and record of every segment (CRCs, density of positions and
    versions) and the indexes against them. Returns a dict report; never raises for
    damage, which it reports with the first problem's segment and offset."""
    log._check_open()
    chl_streams_materialize(log.st)
    if log.st.unsound:
        log._rebuild_indexes()
    cdef StreamIndex fresh = StreamIndex()
    cdef Segment seg
    cdef FrameInfo fi
    cdef RecordView rv
    cdef NarrowView nv
    cdef int64_t bad_rec
    cdef FrameStatus status
    cdef uint64_t position = 0, off, size, frames = 0, nbytes = 0, entry
    cdef uint32_t i
    cdef int rc
    cdef int64_t sid
    problems = []
    notes = []
    cdef Decoder vdec = Decoder(log.dicts)
    # A store that failed (fail-stop) cut what it never acknowledged, but its indexes still
    # count it: the segments are checked against what was acknowledged (head). A large frame
    # another thread is writing right now is indexed already but not in seg.end (inflight).
    cdef uint64_t indexed = log.written - log.inflight
    if log.failed is not None:
        indexed = log.head
        notes.append({"segment": None, "offset": None,
                      "reason": f"this handle stopped accepting writes after an I/O error "
                                f"({log.failed}); checked up to what it acknowledged. Close it "
                                f"and open the store again"})

    def problem(path, offset, reason):
        problems.append({"segment": os.path.basename(path), "offset": offset, "reason": reason})

    for seg in list(log.segments):
        off = SEGMENT_HEADER_BYTES
        size = seg.end
        seg.ensure_mapped(size, 0)
        nbytes += seg.end  # the frames' bytes, as stats() counts them (not the zeros ahead)
        if seg.first_position != position:
            problem(seg.path, 24, f"segment starts at position {seg.first_position}, expected {position}")
            break
        while off < size:
            status = check_frame(seg.map, size, off, seg.salt, True, &fi)
            if status != FRAME_OK:
                problem(seg.path, off, frame_status_reason(status))
                break
            if fi.codec != CODEC_NONE:
                try:
                    vdec.decode_frame(&fi, seg.path)
                except CorruptionError as exc:
                    problem(seg.path, off, exc.reason)
                    break
            if fi.first_position != position:
                problem(seg.path, off, f"frame starts at position {fi.first_position}, expected {position}")
                break
            for i in range(fi.count):
                rc = view_record(&fi, i, True, &rv)
                if rc == 0 and rv.position != position:
                    rc = 4
                if rc:
                    problem(seg.path, off, f"record {i}: " + record_problem(rc, "position out of sequence"))
                    break
                if not (utf8_name(rv.stream, rv.slen) and utf8_name(rv.etype, rv.tlen)):
                    problem(seg.path, off, f"record {i}: its stream name or event type is not "
                            "valid UTF-8 (readers cannot decode it)")
                    break
                if memchr(rv.stream, 0, rv.slen) != NULL:
                    problem(seg.path, off, f"record {i}: its stream name holds a NUL byte, which "
                            "no append writes (read_stream cannot name it)")
                    break
                sid = chl_streams_intern(fresh.t, <const char *>rv.stream, rv.slen, 1)
                if rv.version != chl_streams_count(fresh.t, sid):
                    problem(seg.path, off, f"record {i}: version {rv.version} out of sequence")
                    break
                chl_streams_push(fresh.t, sid, position)
                entry = log.pidx.get(position) if position < indexed else 0
                if position >= indexed or entry != ((<uint64_t>seg.ordinal << 32) | off):
                    problem(seg.path, off, f"position index disagrees at position {position}")
                    break
                position += 1
            if problems:
                break
            if fi.codec != CODEC_NONE:
                bad_rec = split_record(&fi)
                if bad_rec >= 0:
                    problem(seg.path, off, f"record {bad_rec} spans two compressed blocks (a "
                            "block holds whole records: a read by stream cannot decode it)")
                    break
            if fi.narrow:
                rc = view_narrow(&fi, True, &nv)
                if rc:
                    problem(seg.path, off, "narrow region: " + ("CRC32C mismatch" if rc == 2
                                                                else "layout out of bounds"))
                    break
                bad_rec = narrow_disagrees(&fi, &nv)
                if bad_rec == -2:
                    raise MemoryError()
                if bad_rec >= 0:
                    problem(seg.path, off, f"record {bad_rec}: the narrow region names another "
                            "stream or type")
                    break
            frames += 1
            off = fi.end
        if problems:
            break
        size = seg.file_size()
        if size > seg.end:
            if seg is not log.segments[len(log.segments) - 1]:
                problem(seg.path, seg.end, "bytes after the last frame of a sealed segment")
                break
            # The newest segment's tail: a later complete frame means damage; anything
            # else is a torn tail (or, for a reader, a write in progress) that the
            # writer's next open cuts.
            # Zeros at the end (the space a writer in "fsync" mode sizes its segment ahead
            # by) hold no frame: every whole frame ends in its trailer's magic.
            start = seg.end
            if log.readonly:
                claim, start, used = _reader_tail(seg)
                if start > seg.end:
                    notes.append({"segment": seg.name, "offset": seg.end,
                                  "reason": f"{start - seg.end} bytes of whole frames appended "
                                            "after this handle's last refresh (not checked)"})
            else:
                seg.ensure_mapped(size, 0)
                used = nonzero_end(seg.map, seg.end, size)
                claim = later_claim(seg.map + seg.end, used - seg.end, seg.end, seg.salt)
            if claim > <int64_t>start:
                problem(seg.path, start, "a frame that does not check, though a later frame "
                        "records it as synced (damage)")
                break
            if claim >= 0:
                problem(seg.path, start, "a frame that does not check, followed by complete "
                        "frames that were never synced (a power loss); the writer's next open "
                        "cuts them and keeps their bytes in a .torn file")
                break
            if used > start:
                notes.append({"segment": seg.name, "offset": start,
                              "reason": f"incomplete tail of {used - start} bytes (an append "
                                        "in progress, or a torn tail the writer's next open "
                                        "cuts)"})
    cdef uint64_t k, c, v
    cdef const chl_stream *fs
    cdef bint same
    if not problems:
        if position != indexed:
            problems.append({"segment": None, "offset": None,
                             "reason": f"log holds {position} events, the index {indexed}"})
        for k in range(fresh.t.n_streams):
            fs = &fresh.t.streams[k]
            sid = chl_streams_find(log.st, fs.name, fs.name_len)
            c = fs.base_count + fs.delta_count
            # (below `indexed`: not a failed store's unacknowledged events)
            same = sid >= 0 and chl_streams_count_below(log.st, sid, indexed) == c
            v = 0
            while same and v < c:
                same = chl_streams_position(log.st, sid, v) == chl_streams_position(fresh.t, k, v)
                v += 1
            if not same:
                problems.append({"segment": None, "offset": None,
                                 "reason": f"stream index disagrees for {bytes(fs.name[:fs.name_len])!r}"})
                break
    return {"ok": not problems, "events": position, "frames": frames,
            "segments": len(log.segments), "bytes": nbytes, "problems": problems,
            "notes": notes}
