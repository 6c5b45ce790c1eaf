# The Log's third layer (write.pyx): frames into the active segment, rolling segments.
from libc.stdint cimport int64_t, uint32_t, uint64_t
from chronolog._core.batch cimport ColView
from chronolog._core.commit cimport GroupCommitLog
from chronolog._core.fileio cimport chl_wpipe
from chronolog._core.narrow cimport NarrowPlan
from chronolog._core.segment cimport Segment


cdef class WritingLog(GroupCommitLog):
    cdef unsigned char *buf
    cdef size_t buf_cap
    cdef NarrowPlan nplan
    cdef unsigned char *zbuf
    cdef size_t zbuf_cap
    cdef const unsigned char *out
    cdef chl_wpipe wpipe
    cdef uint64_t hinted
    cdef uint64_t allocated
    cdef uint64_t reserve_from
    cdef uint64_t zeroed
    cdef unsigned char *_frame_buffer(self, size_t n) except NULL
    cdef void _trim_buffers(self, size_t keep) noexcept
    cdef Segment _segment_for(self, size_t frame_bytes)
    cdef Segment _roll(self)
    cdef size_t _plan_narrow(self, ColView *cols, Py_ssize_t n, size_t body) except? 0
    cdef size_t _seal(self, Segment seg, size_t body, uint32_t n, uint64_t first, uint32_t narrow) except 0
    cdef const unsigned char *_written_table(self, uint64_t n) noexcept
    cdef uint32_t _synced_mark(self, Segment seg) noexcept
    cdef int _preallocate(self, Segment seg, uint64_t end) except -1
    cdef int _release_reserved(self, Segment seg, bint sealing) except -1
    cdef int _zero_ahead(self, Segment seg, uint64_t end, size_t frame_bytes) except -1
    cdef uint64_t _writeback_due(self, Segment seg, uint64_t off, uint64_t *start) noexcept
    cdef uint64_t _write_frame(self, Segment seg, size_t frame_bytes) except? 0
    cdef int _fail_write(self, object exc, Segment seg, uint64_t off) except -1
    cdef uint64_t _wrote(self, Segment seg, uint64_t off, size_t frame_bytes) except? 0
    cdef uint64_t _write_piped(self, Segment seg, size_t body, const ColView *cols,
                               const unsigned char *idp, const unsigned char *idvalid,
                               int64_t id_offset, Py_ssize_t n, uint64_t first, int64_t timestamp,
                               size_t narrow) except? 0
    cdef uint64_t _end_piped(self, Segment seg, uint64_t off, size_t frame_bytes) except? 0
    cdef void _release(self) noexcept
