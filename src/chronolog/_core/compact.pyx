"""The compression tools of a store: rewriting its sealed segments with another codec
(compact_sealed, offline), the records a zstd dictionary is trained on, switching the
dictionary of new frames, and the stored vs decoded bytes of every frame.
"""
import os

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport realloc
from libc.string cimport memcpy

from chronolog._core.format cimport (
    SEGMENT_HEADER_BYTES, FRAME_HEADER_BYTES, FRAME_OVERHEAD_BYTES, FRAME_MAGIC, CODEC_NONE,
    CODEC_ZSTD, ld32, st32)
from chronolog._core.codec cimport Compressor, Decoder
from chronolog._core.log cimport Log
from chronolog._core.reads cimport view_position
from chronolog._core.record cimport RecordView, seal_frame
from chronolog._core.segment cimport (
    Segment, FrameInfo, FrameStatus, check_frame, frame_status_reason, FRAME_OK)
from chronolog._core.segment import encode_segment_header
from chronolog._core.verify import verify

from chronolog.errors import ChronologError, CorruptionError, InvalidArgumentError, StoreFailedError


def compact_sealed(Log log, Compressor target):
    """Rewrite every sealed segment with `target` (None: uncompressed), offline.

    Pass 0 verifies the whole log (nothing is rewritten if anything is wrong); pass 1
    drops the index checkpoints (they name frame offsets that change); pass 2, per
    segment, writes `<name>.compact` (same first position, records byte for byte, a new
    salt), fsyncs it and renames it over the segment, then fsyncs the directory. A crash
    leaves each segment old or new, never neither; the next open rebuilds the indexes.
    The Log must be closed afterwards (its mappings describe the old files).
    Returns (segments rewritten, bytes before, bytes after)."""
    log._check_writable()
    import time
    cdef Segment seg
    cdef FrameInfo fi
    cdef FrameStatus status
    cdef uint64_t off, before = 0, after = 0, salt, woff
    cdef size_t stored, cap, body
    cdef uint32_t k, drop
    cdef int fd
    cdef unsigned char *fb
    cdef unsigned char *z
    cdef Decoder dec = log._decoder()
    rewritten = 0
    # Pass 0: verify everything first (every frame and record CRC, density): compaction
    # re-seals frames with fresh CRCs, so it must never carry damage over, and it rewrites
    # nothing at all when anything is wrong.
    report = verify(log)
    if not report["ok"]:
        first = report["problems"][0]
        log._give_back(dec)
        raise CorruptionError(os.path.join(log.path, first["segment"] or ""), first["offset"],
                              first["reason"] + "; compact rewrote nothing")
    with log._lock:
        log._checkpoint_join()
        # Pass 1: the checkpoints go first, so no stale offsets can outlive a crash.
        for name in ("positions.idx", "streams.idx"):
            try:
                log.io.unlink(os.path.join(log.path, "index", name))
            except FileNotFoundError:
                pass
        log.io.fsync_dir(os.path.join(log.path, "index"))
        log.checkpoint_through = 0xFFFFFFFFFFFFFFFF  # never checkpoint from this handle
        # Pass 2: segment by segment.
        for seg in log.segments[:len(log.segments) - 1]:
            seg.ensure_mapped(seg.end, 0)
            tmp = seg.path + ".compact"
            salt = int.from_bytes(os.urandom(8), "little")
            hdr = encode_segment_header(seg.first_position, salt, log.store_id, time.time_ns())
            try:
                fd = log.io.create_new(tmp)
                try:
                    log.io.pwrite_all(fd, <const char *>hdr, SEGMENT_HEADER_BYTES, 0)
                    woff = SEGMENT_HEADER_BYTES
                    off = SEGMENT_HEADER_BYTES
                    while off < seg.end:
                        status = check_frame(seg.map, seg.end, off, seg.salt, True, &fi)
                        if status != FRAME_OK:
                            raise CorruptionError(seg.path, off, frame_status_reason(status))
                        if fi.codec != CODEC_NONE:
                            dec.decode_frame(&fi, seg.path)
                        # Compressed frames carry no narrow region: drop it (records and
                        # offsets move down by its size); kept if compressing does not pay.
                        drop = fi.narrow if target is not None else 0
                        body = fi.raw_bytes - drop
                        fb = log._frame_buffer(fi.raw_bytes + FRAME_OVERHEAD_BYTES)
                        memcpy(fb + FRAME_HEADER_BYTES, fi.body + drop, body)
                        for k in range(fi.count if drop else 0):
                            st32(fb + FRAME_HEADER_BYTES + body - 4 * (fi.count - k),
                                 ld32(fb + FRAME_HEADER_BYTES + body - 4 * (fi.count - k)) - drop)
                        stored = 0
                        if target is not None:
                            cap = target.bound(body, fi.count)
                            if cap + FRAME_OVERHEAD_BYTES > log.zbuf_cap:
                                z = <unsigned char *>realloc(log.zbuf, cap + FRAME_OVERHEAD_BYTES)
                                if z == NULL:
                                    raise MemoryError()
                                log.zbuf = z
                                log.zbuf_cap = cap + FRAME_OVERHEAD_BYTES
                            with nogil:
                                stored = target.compress_body(fb + FRAME_HEADER_BYTES, body, fi.count,
                                                              log.zbuf + FRAME_HEADER_BYTES, cap)
                        if stored:
                            seal_frame(log.zbuf, stored, body, CODEC_ZSTD, target.dict_id, salt,
                                       fi.first_position, fi.count, SEGMENT_HEADER_BYTES, 0)
                            log.io.pwrite_all(fd, log.zbuf, stored + FRAME_OVERHEAD_BYTES, woff)
                            woff += stored + FRAME_OVERHEAD_BYTES
                        else:
                            if drop:  # as it was, narrow region included
                                body = fi.raw_bytes
                                memcpy(fb + FRAME_HEADER_BYTES, fi.body, body)
                            seal_frame(fb, body, body, CODEC_NONE, 0, salt, fi.first_position,
                                       fi.count, SEGMENT_HEADER_BYTES, fi.narrow)
                            log.io.pwrite_all(fd, fb, body + FRAME_OVERHEAD_BYTES, woff)
                            woff += body + FRAME_OVERHEAD_BYTES
                        off = fi.end
                    log.io.fsync(fd)
                finally:
                    log.io.close(fd)
                log.io.rename(tmp, seg.path)
            except BaseException as exc:
                # The scratch file goes (on a full disk it holds the space the next try
                # needs); the segment it was to replace is untouched.
                _discard(log, tmp)
                if isinstance(exc, OSError) and not isinstance(exc, ChronologError):
                    name = os.path.basename(seg.path)
                    raise StoreFailedError(log.path, exc, f"compact stopped rewriting {name} after "
                                           f"an I/O error ({exc}); nothing is lost: that segment "
                                           "and every other is whole (those rewritten so far in "
                                           "the new codec). Fix the cause (free space) and run "
                                           "compact again") from exc
                raise
            log.io.fsync_dir(log.path)
            before += seg.end
            after += woff
            rewritten += 1
    log._give_back(dec)
    return rewritten, before, after


cdef void _discard(Log log, str tmp) noexcept:
    """Remove a scratch segment, if it is there (best effort: its failure is not the error)."""
    try:
        log.io.unlink(tmp)
    except BaseException:
        pass


def sample_records(Log log, uint64_t n):
    """Up to n whole records (bytes), spread evenly over the visible log: what a zstd
    dictionary is trained on (records, not just payloads, are what frames compress)."""
    log._check_open()
    cdef uint64_t head = log.head, i, p
    cdef FrameInfo fi
    cdef RecordView rv
    fi.stored = NULL
    fi.body = NULL
    out = []
    if head == 0 or n == 0:
        return out
    if n > head:
        n = head
    cdef Decoder dec = log._decoder()
    try:
        for i in range(n):
            p = i * head // n
            view_position(log, p, &fi, &rv, True, dec)
            out.append(PyBytes_FromStringAndSize(<const char *>rv.rec, rv.rec_len))
    finally:
        log._give_back(dec)
    return out


def use_dictionary(Log log, uint32_t dict_id):
    """Compress new frames with stored dictionary `dict_id` (compression must be on)."""
    if log.compressor is None:
        raise InvalidArgumentError("this store was opened without compression; open it with "
                                   "compression='zstd' to use a dictionary")
    with log._lock:
        log.compressor.use_dictionary(log.dicts, dict_id)


def frame_totals(Log log):
    """(frames, stored bytes, decoded bytes, the highest dictionary id a frame names) over
    every frame, from their headers only."""
    log._check_open()
    cdef Segment seg
    cdef uint64_t off, frames = 0, stored = 0, raw = 0
    cdef uint32_t dict_id = 0
    cdef const unsigned char *h
    for seg in log.segments:
        if seg.map_len < seg.end:
            seg.ensure_mapped(seg.end, 0)
        off = SEGMENT_HEADER_BYTES
        while off + FRAME_OVERHEAD_BYTES <= seg.end:
            h = seg.map + off
            if ld32(h) != FRAME_MAGIC:
                break
            frames += 1
            stored += FRAME_OVERHEAD_BYTES + ld32(h + 4)
            raw += FRAME_OVERHEAD_BYTES + ld32(h + 32)
            if ld32(h + 36) > dict_id:
                dict_id = ld32(h + 36)
            off += FRAME_OVERHEAD_BYTES + ld32(h + 4)
    return frames, stored, raw, dict_id
