# The Log's first layer (recovery.pyx): a store directory opened and recovered, the state
# every layer above shares (commit.pyx, write.pyx, log.pyx), and what the modules that read a
# Log use (reads, verify, compact, scan).
from libc.stdint cimport int64_t, uint32_t, uint64_t
from chronolog._core.fileio cimport FileIO
from chronolog._core.checkpoint cimport CheckpointJob
from chronolog._core.index cimport PositionIndex, StreamIndex
from chronolog._core.streams cimport chl_streams
from chronolog._core.segment cimport Segment, FrameInfo
from chronolog._core.codec cimport Compressor, Decoder, Dictionaries

cdef enum:
    DURABILITY_OS = 0
    DURABILITY_FSYNC = 1
    DURABILITY_INTERVAL = 2


cdef class RecoveredLog:
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
    # Events indexed (counted in `written`) whose frame's bytes are not all written yet (nor
    # counted in seg.end and written_seq): a pipelined frame between _index_batch and
    # _end_piped (log.pyx). A sync's snapshot and verify() count only written - inflight.
    cdef uint64_t inflight
    cdef bint catching_up
    cdef uint64_t durable_ordinal
    cdef uint64_t durable_offset
    cdef object _lock
    cdef CheckpointJob _ckpt
    cdef readonly object failed
    cdef int visible_fd        # index/visible: the writer publishes, readers read it
    cdef uint64_t visible      # readers: the last mark read
    cdef unsigned char *copy_buf  # readers: frames checked through a copy (_scan_tail)
    cdef size_t copy_cap
    cdef readonly bint closed
    cdef readonly long owner_pid  # the process that opened it (a forked child must not write)
    cdef unsigned char *fork_page  # writers: zeroed in a forked child (MADV_WIPEONFORK), or NULL
    cdef int64_t *sids
    cdef uint64_t *vers
    cdef size_t scratch_cap
    cdef readonly uint64_t checkpoint_through
    # The events the position checkpoint found on open covers, which were on stable storage
    # when it was written (a checkpoint follows the sync of what it covers): the writer's
    # recovery never ends below it, and verify() reports a store that does (docs/design.md,
    # "Recovery and the torn-tail rule").
    cdef readonly uint64_t durable_floor
    # The writer's open: a newest segment whose header is torn (a crash while creating it),
    # removed only once the open knows it will not refuse the store (_drop_torn_new).
    cdef str torn_new
    # Sequential reads: the frame (its header in a mapping) whose body CRC was checked last,
    # not checked again when the next read_all chunk comes back to it (reads.pyx _view_seq).
    cdef const unsigned char *seq_checked
    cdef readonly uint64_t seq_checks  # whole-frame checks made by sequential reads (tests)
    cdef list _types
    cdef list _decoders
    cdef readonly Compressor compressor
    cdef readonly Dictionaries dicts
    cdef _open(self)
    cdef _index_dir(self)
    cdef _create_store(self, str store_file)
    cdef bytes _read_store_header(self, str store_file)
    cdef bint _attach_segment(self, str name, bint is_newest) except -1
    cdef int _drop_torn_new(self) except -1
    cdef int _check_floor(self, object path, object offset, str where) except -1
    cdef uint64_t _load_checkpoints(self, uint64_t pcount) except? 0xFFFFFFFFFFFFFFFF
    cdef uint32_t _anchor_of(self, uint64_t position, FrameInfo *fi) except? 0
    cdef int _catch_up(self, bint recover) except -1
    cdef uint64_t _visible_mark(self) except? 0
    cdef int _open_visible_for_write(self) except -1
    cdef int _publish(self, uint64_t value) except -1
    cdef int _scan_tail(self, bint recover) except -1
    cdef int _quarantine(self, Segment seg, uint64_t off, uint64_t size) except -1
    cdef int _index_frame(self, Segment seg, FrameInfo *fi) except -1
    cdef int _index_records(self, Segment seg, FrameInfo *fi) except -1
    cdef int _reserve_scratch(self, size_t n) except -1
    cdef void _reset_pending(self, size_t n) noexcept
    cdef int _commit(self, uint64_t n, uint64_t entry, const unsigned char *table) except -1
    cdef int _index_batch(self, uint64_t n, uint64_t entry, const unsigned char *table) except -1
    cdef void _show_written(self) noexcept
    cdef Segment _new_segment(self, uint64_t first_position)
    cdef int _checkpoint_poll(self) except -1
    cdef int _checkpoint_join(self) except -1
    cdef int _check_open(self) except -1
    cdef int _check_writable(self) except -1
    cdef bint _forked(self) noexcept
    cdef bint _forked(self) noexcept
    cdef int _make_sound(self) except -1
    cdef bint _lookups_unsound(self) except -1
    cdef int _unsound(self) except -1
    cdef Segment _segment_of(self, uint64_t position)
    cdef Decoder _decoder(self)
    cdef void _give_back(self, Decoder dec) noexcept
    cdef bint _rebuild_indexes(self) except -1
    cdef int _empty_indexes(self) except -1
    cdef int _rebuild_unlocked(self) except -1
    cdef void _release(self) noexcept
