from libc.stdint cimport int64_t, uint32_t, uint64_t
from chronolog._core.fileio cimport FileIO, chl_wpipe
from chronolog._core.index cimport CheckpointJob, PositionIndex, StreamIndex, chl_streams
from chronolog._core.segment cimport Segment, FrameInfo
from chronolog._core.record cimport RecordView
from chronolog._core.narrow cimport NarrowPlan
from chronolog._core.batch cimport ColView
from chronolog._core.codec cimport Compressor, Decoder, Dictionaries

cdef class Log:
    cdef readonly str path
    cdef readonly bint readonly
    cdef readonly str durability
    cdef int dmode
    cdef readonly uint64_t max_segment_bytes
    cdef readonly uint64_t max_event_bytes
    cdef readonly bytes store_id
    cdef readonly FileIO io
    cdef list segments
    cdef PositionIndex pidx
    cdef StreamIndex sidx
    cdef chl_streams *st
    cdef readonly uint64_t head
    cdef readonly uint64_t written
    cdef bint catching_up
    cdef bint sidx_checked
    cdef uint64_t durable_ordinal
    cdef uint64_t durable_offset
    cdef object _lock
    cdef object _sync_lock
    cdef object _waiters
    cdef CheckpointJob _ckpt
    cdef bint syncing
    cdef long long last_sync_ns
    cdef uint64_t written_seq
    cdef uint64_t synced_seq
    cdef readonly object failed
    cdef readonly bint closed
    cdef unsigned char *buf
    cdef size_t buf_cap
    cdef int64_t *sids
    cdef uint64_t *vers
    cdef size_t scratch_cap
    cdef NarrowPlan nplan
    cdef readonly uint64_t checkpoint_through
    cdef list _types
    cdef list _decoders
    cdef readonly Compressor compressor
    cdef readonly Dictionaries dicts
    cdef unsigned char *zbuf
    cdef size_t zbuf_cap
    cdef const unsigned char *out
    cdef chl_wpipe wpipe
    cdef uint64_t hinted
    cdef uint64_t allocated
    cdef _open(self)
    cdef _create_store(self, str store_file)
    cdef bytes _read_store_header(self, str store_file)
    cdef bint _attach_segment(self, str name, bint is_newest) except -1
    cdef uint64_t _load_checkpoints(self) except? 0xFFFFFFFFFFFFFFFF
    cdef uint32_t _anchor_of(self, uint64_t position, FrameInfo *fi) except? 0
    cdef int _catch_up(self, bint recover) except -1
    cdef int _scan_tail(self, bint recover) except -1
    cdef int64_t _later_claim(self, Segment seg, uint64_t off, uint64_t size) except -2
    cdef int _quarantine(self, Segment seg, uint64_t off, uint64_t size) except -1
    cdef int _index_frame(self, Segment seg, FrameInfo *fi) except -1
    cdef int _reserve_scratch(self, size_t n) except -1
    cdef void _reset_pending(self, size_t n) noexcept
    cdef int _commit(self, uint64_t n, uint64_t entry, const unsigned char *table) except -1
    cdef const unsigned char *_written_table(self, uint64_t n) noexcept
    cdef Segment _new_segment(self, uint64_t first_position)
    cdef Segment _roll(self)
    cdef int _checkpoint(self) except -1
    cdef int _wake_waiter(self) except -1
    cdef object _covered_waiter(self)
    cdef Segment _lead(self, uint64_t *target, uint64_t *target_pos, uint64_t *target_off, int *fd)
    cdef int _sync_as_leader(self, Segment seg, int fd, uint64_t target, uint64_t target_pos, uint64_t target_off) except -1
    cdef int _checkpoint_begin(self, bint background) except -1
    cdef int _checkpoint_poll(self) except -1
    cdef int _checkpoint_join(self) except -1
    cdef int _check_writable(self) except -1
    cdef unsigned char *_frame_buffer(self, size_t n) except NULL
    cdef Segment _segment_for(self, size_t frame_bytes)
    cdef Segment _segment_of(self, uint64_t position)
    cdef uint32_t _synced_mark(self, Segment seg) noexcept
    cdef uint64_t _write_frame(self, Segment seg, size_t frame_bytes) except? 0
    cdef int _fail_write(self, object exc, Segment seg, uint64_t off) except -1
    cdef uint64_t _wrote(self, Segment seg, uint64_t off, size_t frame_bytes) except? 0
    cdef int _preallocate(self, Segment seg, uint64_t end) except -1
    cdef int _release_reserved(self, Segment seg) except -1
    cdef uint64_t _writeback_due(self, uint64_t off, uint64_t *start) noexcept
    cdef uint64_t _write_piped(self, Segment seg, size_t body, const ColView *cols,
                               const unsigned char *idp, const unsigned char *idvalid,
                               int64_t id_offset, Py_ssize_t n, uint64_t first, int64_t timestamp,
                               size_t narrow) except? 0
    cdef int sync_to(self, uint64_t seq) except -1
    cdef int _fail(self, object exc, Segment seg, uint64_t keep) except -1
    cdef object _retry_result(self, int64_t sid, uint64_t count, int64_t expected, uint64_t n, uint64_t n_first, const unsigned char *ids, const char **streams, const uint32_t *slens)
    cdef int _check_open(self) except -1
    cdef bint _view(self, uint64_t position, FrameInfo *fi, RecordView *rv, bint strict, Decoder dec) except -1
    cdef Decoder _decoder(self)
    cdef void _give_back(self, Decoder dec) noexcept
    cdef size_t _plan_narrow(self, ColView *cols, Py_ssize_t n, size_t body) except? 0
    cdef size_t _seal(self, Segment seg, size_t body, uint32_t n, uint64_t first, uint32_t narrow) except 0
    cdef int _index_records(self, Segment seg, FrameInfo *fi) except -1
    cdef void _release(self) noexcept
    cdef object _append_views(self, ColView *cols, const unsigned char *idp, const unsigned char *idvalid, int64_t id_offset, Py_ssize_t n, bint all_ids, dict expected_versions, int64_t timestamp)
    cdef bint _rebuild_indexes(self) except -1
    cdef int _make_sound(self) except -1
    cdef int _unsound(self) except -1
    cdef int _rebuild_unlocked(self) except -1
