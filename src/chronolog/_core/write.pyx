"""The Log's third layer: frames into the active segment. The reusable frame buffers,
sealing (compressed when it pays), one pwrite per frame or a pipelined write of a large one
while it is being encoded, blocks reserved ahead, writeback hints, and rolling to a new
segment when the active one is full (the sealed one synced first).
"""
import errno

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport realloc, free
from libc.string cimport memset

from chronolog._core.format cimport (
    SEGMENT_HEADER_BYTES, FRAME_HEADER_BYTES, FRAME_OVERHEAD_BYTES, CODEC_NONE, CODEC_ZSTD,
    NARROW_MIN_EVENTS, CHL_MAX_BODY_BYTES, ld32)
from chronolog._core.batch cimport NOGIL_BATCH, ColView, encode_batch
from chronolog._core.codec cimport Compressor
from chronolog._core.commit cimport GroupCommitLog
from chronolog._core.fileio cimport chl_wpipe_reap, chl_wpipe_stop
from chronolog._core.narrow cimport NarrowPlan, narrow_free, narrow_reserve, narrow_plan
from chronolog._core.record cimport seal_frame, seal_frame_crc
from chronolog._core.recovery cimport RecoveredLog, DURABILITY_FSYNC
from chronolog._core.segment cimport Segment

from chronolog.errors import StoreFailedError

cdef enum:
    # Outside "fsync" mode, every WRITEBACK_HINT_BYTES of the active segment a helper thread
    # asks the kernel to start writing them back (_writeback_due), so that sealing it (one
    # fdatasync) does not wait for the whole segment to reach the disk. 1 MiB: the slowest
    # single append (the one that seals) took 7.5-9.4 ms with 8 MiB, 4.2-4.9 with 2 MiB and
    # 3.0-3.9 with 1 MiB (docs/design.md, "Pipelined writes").
    WRITEBACK_HINT_BYTES = 1024 * 1024
    # Blocks are reserved ahead of the active segment's end (FileIO.allocate): as many as this
    # handle has written to it, at least PREALLOC_MIN_BYTES, at most PREALLOC_MAX_BYTES ahead.
    PREALLOC_MIN_BYTES = 1024 * 1024
    PREALLOC_MAX_BYTES = 32 * 1024 * 1024
    # Outside "fsync" mode nothing is reserved until the handle has written PREALLOC_AFTER_BYTES
    # to the segment: a short session's few appends go through delayed allocation and leave
    # nothing to give back at close (a fallocate and an ftruncate, ~170 µs here, saved).
    PREALLOC_AFTER_BYTES = 256 * 1024
    # In "fsync" mode, after a frame of at most ZERO_FRAME_MAX_BYTES, zeros are written over
    # the reserved blocks up to ZERO_AHEAD_BYTES past its end, once fewer than half of them
    # are left (_zero_ahead; docs/design.md, "Zeros written ahead").
    ZERO_AHEAD_BYTES = 256 * 1024
    ZERO_FRAME_MAX_BYTES = 64 * 1024


cdef class WritingLog(GroupCommitLog):
    """A log that writes sealed frames at the end of its active segment and rolls segments.

    Invariants:
        - `out` is the frame last sealed (buf, or zbuf when compressed);
        - `allocated` >= the active segment's end while blocks are reserved ahead of it;
        - at most one pipelined write (`wpipe`) runs, and it is reaped before its segment's
          descriptor is closed; its helper thread lives until _release or dealloc.

    Thread-safety: called with the Log's `_lock` held.
    """

    def __cinit__(self):
        self.buf = NULL
        self.zbuf = NULL
        memset(&self.nplan, 0, sizeof(NarrowPlan))

    def __dealloc__(self):
        with nogil:
            chl_wpipe_stop(&self.wpipe)
        free(self.buf)
        free(self.zbuf)
        narrow_free(&self.nplan)

    cdef unsigned char *_frame_buffer(self, size_t n) except NULL:
        if n > self.buf_cap:
            p = <unsigned char *>realloc(self.buf, n)
            if p == NULL:
                raise MemoryError(f"cannot allocate {n} bytes for an append")
            self.buf = p
            self.buf_cap = n
        return self.buf

    cdef void _trim_buffers(self, size_t keep) noexcept:
        """Give back the encoding buffers and per-event scratch an append grew past `keep`
        bytes (KEEP_BUFFER_BYTES after each append; 0 at close): one append_batch of 3M
        events kept ~740 MB for the life of the handle, close() included. Smaller ones stay,
        so the usual batches never allocate again."""
        if self.buf_cap > keep:
            free(self.buf)
            self.buf = NULL
            self.buf_cap = 0
        if self.zbuf_cap > keep:
            free(self.zbuf)
            self.zbuf = NULL
            self.zbuf_cap = 0
        if self.scratch_cap * 16 > keep:  # (sids and vers: 8 bytes each per event)
            free(self.sids)
            free(self.vers)
            self.sids = NULL
            self.vers = NULL
            self.scratch_cap = 0

    cdef Segment _segment_for(self, size_t frame_bytes):
        cdef Segment seg = self.segments[len(self.segments) - 1]
        if seg.end > SEGMENT_HEADER_BYTES and seg.end + frame_bytes > self.max_segment_bytes:
            try:
                seg = self._roll()
            except StoreFailedError:
                raise  # its sync failed: already fail-stopped, with the OSError as its cause
            except OSError as exc:
                self._fail(exc, None, 0)
            except BaseException as exc:
                # Raised midway by a signal handler (a KeyboardInterrupt: the roll runs Python
                # code between its steps). The next segment may be on disk without being in
                # this handle's list, and an append into the old one would then leave a gap
                # that every later open refuses. Fail-stop: the caller's exception goes on,
                # nothing acknowledged is lost, and the next open takes the disk as it is.
                if self.failed is None:
                    self.failed = InterruptedError(
                        errno.EINTR, f"a segment roll was interrupted by {type(exc).__name__}; "
                        "no append after it is taken by this handle")
                raise
        return seg

    cdef Segment _roll(self):
        """Seal the active segment (synced, whatever the durability mode) and start the next."""
        # Sealed segments are always on stable storage (at most one fdatasync per segment):
        # after a power loss only the newest segment can be torn.
        cdef Segment old = self.segments[len(self.segments) - 1]
        with nogil:
            chl_wpipe_reap(&self.wpipe)  # its writeback hint uses old.wfd
        self._release_reserved(old, True)
        # This sync also makes its cut back to the last frame durable (a sealed segment ends
        # at its last frame). Through the group commit, never beside it: a leader may be
        # syncing this segment through a dup of its descriptor (the same open file), and
        # Linux reports a writeback error to only one of two concurrent fdatasyncs of an open
        # file, so the other could acknowledge lost appends. It also makes what it covers
        # synced and visible, and costs nothing when a sync covered it already.
        self.sync_to(self.written_seq)
        cdef Segment seg = self._new_segment(self.written)
        self.hinted = 0
        self.allocated = 0
        self.reserve_from = 0
        self.zeroed = 0
        self.durable_ordinal = seg.ordinal
        self.durable_offset = SEGMENT_HEADER_BYTES
        seg.open_for_write()
        seg.ensure_mapped(SEGMENT_HEADER_BYTES, self.max_segment_bytes)
        with self._sync_lock:
            self.io.close(old.wfd)
            old.wfd = -1
        old.seal()
        self._checkpoint_begin(True)
        return seg

    cdef size_t _plan_narrow(self, ColView *cols, Py_ssize_t n, size_t body) except? 0:
        """The bytes of the narrow region the next frame's body (`body` bytes without it) starts
        with (0: none): for batches of at least NARROW_MIN_EVENTS events, uncompressed, into a
        segment of format version 3 or later, of at most NARROW_MAX_TYPES types. Needs
        sids[0:n]."""
        cdef size_t r = 0
        cdef Segment seg = self.segments[len(self.segments) - 1]
        if n < NARROW_MIN_EVENTS or self.compressor is not None:
            return 0
        if seg.version < 3 and not (seg.end > SEGMENT_HEADER_BYTES and seg.end + body
                                    + FRAME_OVERHEAD_BYTES > self.max_segment_bytes):
            return 0  # the frame goes into a version-2 segment (a new one would be version 3)
        if narrow_reserve(&self.nplan, <size_t>n, <size_t>self.st.n_streams) < 0:
            raise MemoryError()
        if n >= NOGIL_BATCH:
            with nogil:
                r = narrow_plan(&self.nplan, cols[0].offsets, cols[0].data, cols[1].offsets,
                                cols[1].data, self.sids, <size_t>n)
        else:
            r = narrow_plan(&self.nplan, cols[0].offsets, cols[0].data, cols[1].offsets,
                            cols[1].data, self.sids, <size_t>n)
        if body + r > CHL_MAX_BODY_BYTES:
            return 0
        return r

    cdef size_t _seal(self, Segment seg, size_t body, uint32_t n, uint64_t first,
                      uint32_t narrow) except 0:
        """Seal the frame whose raw body is in buf (starting with a narrow region of `narrow`
        bytes when not 0; never with compression on): compressed into zbuf when compression is
        on and pays, else as it is. Sets `out` to the frame to write; returns its length."""
        cdef uint32_t mark = self._synced_mark(seg)
        cdef size_t stored = 0, cap
        cdef unsigned char *z
        cdef Compressor c = self.compressor
        if c is not None:
            cap = c.bound(body, n)
            if cap + FRAME_OVERHEAD_BYTES > self.zbuf_cap:
                z = <unsigned char *>realloc(self.zbuf, cap + FRAME_OVERHEAD_BYTES)
                if z == NULL:
                    raise MemoryError(f"cannot allocate {cap} bytes to compress an append")
                self.zbuf = z
                self.zbuf_cap = cap + FRAME_OVERHEAD_BYTES
            with nogil:
                stored = c.compress_body(self.buf + FRAME_HEADER_BYTES, body, n,
                                         self.zbuf + FRAME_HEADER_BYTES, cap)
                if stored:
                    seal_frame(self.zbuf, stored, body, CODEC_ZSTD, c.dict_id, seg.salt, first, n,
                               mark, 0)
            if stored:
                self.out = self.zbuf
                return stored + FRAME_OVERHEAD_BYTES
        seal_frame(self.buf, body, body, CODEC_NONE, 0, seg.salt, first, n, mark, narrow)
        self.out = self.buf
        return body + FRAME_OVERHEAD_BYTES

    cdef const unsigned char *_written_table(self, uint64_t n) noexcept:
        """The offset table of the frame just written, when it went out uncompressed."""
        if self.out != self.buf:
            return NULL
        return self.buf + FRAME_HEADER_BYTES + ld32(self.buf + 32) - 4 * n

    cdef uint32_t _synced_mark(self, Segment seg) noexcept:
        """What the next frame of `seg` may claim as already on stable storage."""
        if seg.ordinal == self.durable_ordinal:
            return <uint32_t>self.durable_offset
        return SEGMENT_HEADER_BYTES

    cdef int _preallocate(self, Segment seg, uint64_t end) except -1:
        """Before writing up to `end` of the active segment: make sure its blocks are
        reserved, reserving ahead as the segment grows (up to its size limit). Buffered writes
        into reserved blocks skip the filesystem's delayed allocation (a third less kernel time
        per byte on ext4; docs/design.md). In "fsync" mode the file is extended over them too
        (zeros past the last frame, "Segments sized ahead"): each append's fdatasync then has
        no new size to record. A hint: a failure changes nothing else."""
        cdef uint64_t start, ahead, stop
        if end <= self.allocated:
            return 0
        if self.reserve_from == 0:
            # The handle's first write into this segment (after open or a roll): reserve ahead
            # by what it writes, not by what the segment holds, so that a short session on a
            # big segment reserves nothing ("os", "interval") or 1 MiB ("fsync"), not 32.
            self.reserve_from = seg.end
        if self.dmode != DURABILITY_FSYNC and end - self.reserve_from < PREALLOC_AFTER_BYTES:
            return 0
        start = seg.end if seg.end > self.allocated else self.allocated
        ahead = end - self.reserve_from if end > self.reserve_from else 0
        if ahead < PREALLOC_MIN_BYTES:
            ahead = PREALLOC_MIN_BYTES
        if ahead > PREALLOC_MAX_BYTES:
            ahead = PREALLOC_MAX_BYTES
        stop = end + ahead
        if stop > self.max_segment_bytes:
            stop = self.max_segment_bytes if self.max_segment_bytes > end else end
        self.allocated = stop
        self.io.allocate(seg.wfd, start, stop - start, self.dmode == DURABILITY_FSYNC)
        return 0

    cdef int _release_reserved(self, Segment seg, bint sealing) except -1:
        """Give back the blocks _preallocate reserved past the end of `seg`, the active
        segment, once it is sealed or the store closes (ftruncate to its own size frees them):
        a store keeps no more disk than its bytes, however small. A file extended over them
        ("fsync" mode) is cut back to its last frame, a change the next sync must cover: it
        counts as written (the roll and close sync after this). Otherwise a hint: a failure
        changes nothing else. But a segment being sealed must end at its last frame: a failed
        cut of an extended one fail-stops the store (it stays the newest segment, whose zeros
        the next open cuts)."""
        cdef bint extended = self.dmode == DURABILITY_FSYNC
        if self.allocated > seg.end and seg.wfd >= 0:
            self.allocated = seg.end
            self.zeroed = seg.end
            if extended:
                self.written_seq += 1
            try:
                self.io.ftruncate(seg.wfd, seg.end)
            except OSError as exc:
                if extended and sealing:
                    self._fail(exc, None, 0)
        return 0

    cdef int _zero_ahead(self, Segment seg, uint64_t end, size_t frame_bytes) except -1:
        """In "fsync" mode, after a small frame (at most ZERO_FRAME_MAX_BYTES) that ends at
        `end`: when fewer than ZERO_AHEAD_BYTES / 2 of zeros are written past it, write zeros
        over the blocks reserved up to ZERO_AHEAD_BYTES past it (never past `allocated`, the size
        the reservation gave the file, and never before `end`, so no frame is touched). The next
        group fdatasync writes them once and the filesystem converts their extent once; the
        syncs after it then write into written blocks, with no extent to convert (group commit
        1.2-1.5x faster here; docs/design.md, "Zeros written ahead"). Large frames skip it:
        each of their syncs writes far more than the conversion costs. A hint."""
        cdef uint64_t start, stop
        if self.dmode != DURABILITY_FSYNC or frame_bytes > ZERO_FRAME_MAX_BYTES:
            return 0
        if end + ZERO_AHEAD_BYTES // 2 <= self.zeroed:
            return 0
        start = self.zeroed if self.zeroed > end else end
        stop = end + ZERO_AHEAD_BYTES
        if stop > self.allocated:
            stop = self.allocated
        if stop <= start:
            return 0
        self.zeroed = stop
        self.io.zero(seg.wfd, start, stop - start)
        return 0

    cdef uint64_t _writeback_due(self, Segment seg, uint64_t off, uint64_t *start) noexcept:
        """Outside "fsync" mode: how many bytes of the active segment `seg`, from `hinted` (set
        in start) up to the page holding `off`, to ask the kernel to start writing back now,
        once there are at least WRITEBACK_HINT_BYTES of them (0: not yet); `hinted` moves past
        them. Bytes known to be on stable storage (synced at open, or since) need no hint: a
        handle that appends a little after opening never starts the hint thread."""
        cdef uint64_t upto = off & ~<uint64_t>4095, n
        if self.dmode == DURABILITY_FSYNC:
            return 0
        if self.hinted > upto:
            self.hinted = 0  # (a roll resets it; never past the end)
        if seg.ordinal == self.durable_ordinal and self.hinted < (self.durable_offset & ~<uint64_t>4095):
            self.hinted = self.durable_offset & ~<uint64_t>4095
        n = upto - self.hinted
        if n < WRITEBACK_HINT_BYTES:
            return 0
        start[0] = self.hinted
        self.hinted = upto
        return n

    cdef uint64_t _write_frame(self, Segment seg, size_t frame_bytes) except? 0:
        """pwrite one sealed frame at the segment's end; fail-stop on any error."""
        cdef uint64_t off = seg.end
        cdef uint64_t hint_from = 0, hint_bytes
        self._preallocate(seg, off + frame_bytes)
        try:
            self.io.pwrite_all(seg.wfd, self.out, frame_bytes, off)
        except OSError as exc:
            self._fail_write(exc, seg, off)
        hint_bytes = self._writeback_due(seg, off, &hint_from)
        if hint_bytes:
            self.io.hint_writeback(&self.wpipe, seg.wfd, hint_from, hint_bytes)
        self._zero_ahead(seg, off + frame_bytes, frame_bytes)
        return self._wrote(seg, off, frame_bytes)

    cdef int _fail_write(self, object exc, Segment seg, uint64_t off) except -1:
        """Fail-stop after a failed write of the frame at `off`: cut its bytes; in "fsync" mode
        also every unsynced frame before it (their appenders are still waiting for the sync, so
        none was acknowledged)."""
        return self._fail(exc, seg, self.durable_offset if self.dmode == DURABILITY_FSYNC
                          and seg.ordinal == self.durable_ordinal else off)

    cdef uint64_t _wrote(self, Segment seg, uint64_t off, size_t frame_bytes) except? 0:
        """Account for the frame of `frame_bytes` just written at `off`; returns `off`."""
        seg.end = off + frame_bytes
        self.written_seq += frame_bytes
        seg.ensure_mapped(seg.end, self.max_segment_bytes)
        return off

    cdef uint64_t _write_piped(self, Segment seg, size_t body, const ColView *cols,
                               const unsigned char *idp, const unsigned char *idvalid,
                               int64_t id_offset, Py_ssize_t n, uint64_t first, int64_t timestamp,
                               size_t narrow) except? 0:
        """Encode a large uncompressed frame into buf and start writing it at the segment's
        end: a helper thread pwrites each finished chunk of the body while the next is being
        encoded (FileIO.pipe_start, csrc/chl_wpipe.h); returns the frame's offset. The caller
        must then call _end_piped, which writes the header and waits for the rest (in between
        the appender indexes the frame while the helper writes its last chunks). Same bytes,
        same single "write" op and same fail-stop as _write_frame."""
        cdef uint64_t off = seg.end
        cdef uint64_t hint_from = 0
        cdef size_t frame_bytes = body + FRAME_OVERHEAD_BYTES
        cdef unsigned char *bp = self.buf
        cdef uint32_t mark = self._synced_mark(seg)
        cdef uint32_t crc
        self._preallocate(seg, off + frame_bytes)
        cdef uint64_t hint_bytes = self._writeback_due(seg, off, &hint_from)
        try:
            self.io.pipe_start(&self.wpipe, seg.wfd, bp, off, hint_from, hint_bytes)
        except OSError as exc:
            self._fail(exc, seg, off)
        with nogil:
            crc = encode_batch(bp, body, cols, idp, idvalid, id_offset, n, first, self.vers,
                               timestamp, &self.nplan, narrow, self.sids, &self.wpipe)
            seal_frame_crc(bp, body, body, CODEC_NONE, 0, seg.salt, first, <uint32_t>n, mark,
                           <uint32_t>narrow, crc)
        self.out = bp
        return off

    cdef uint64_t _end_piped(self, Segment seg, uint64_t off, size_t frame_bytes) except? 0:
        """The header of the frame _write_piped started, then wait until every byte is
        written; fail-stop on any error (the frame is cut)."""
        try:
            self.io.pipe_finish(&self.wpipe, seg.wfd, self.out, frame_bytes, FRAME_HEADER_BYTES, off)
        except OSError as exc:
            self._fail_write(exc, seg, off)
        return self._wrote(seg, off, frame_bytes)

    cdef void _release(self) noexcept:
        with nogil:
            chl_wpipe_stop(&self.wpipe)  # its writeback hint uses the active segment's fd
        RecoveredLog._release(self)
