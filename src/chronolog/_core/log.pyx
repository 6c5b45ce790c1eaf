"""The log: opening and recovery, the append path (framing, writes, group commit), index
checkpoints and the checked lookup of one position. Format: format.pxd; what an append is
made of: batch.pyx; reads: reads.pyx; verify: verify.pyx; compression tools: compact.pyx.
"""
import collections
import os
import re
import threading

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcmp, memset, memchr
from posix.fcntl cimport O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_CLOEXEC
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
cdef extern from "<fcntl.h>":
    enum: O_NOFOLLOW

from chronolog._core.format cimport (
    FORMAT_VERSION, OLDEST_FORMAT_VERSION, STORE_HEADER_BYTES, SEGMENT_HEADER_BYTES,
    FRAME_HEADER_BYTES, FRAME_OVERHEAD_BYTES, FRAME_MAGIC, CODEC_NONE, CODEC_ZSTD,
    NARROW_MIN_EVENTS, MAX_STREAM_NAME_BYTES, MAX_TYPE_NAME_BYTES, CHL_STORE_MAGIC,
    CHL_MAX_BODY_BYTES, ld16, ld32, ld64, st32, st64, chl_crc32c)
from chronolog._core.batch cimport (
    ANY, NO_STREAM, STREAM_EXISTS, WPIPE_MIN_BYTES, ColView, ArrowColumn, stream_utf8,
    payload_bytes, event_id16, packed_column, expectation_holds, col_view, col_len, col_ptr,
    size_batch, encode_batch)
from chronolog._core.fileio cimport FileIO, chl_wpipe, chl_wpipe_reap
from chronolog._core.events cimport NewEvent, AppendResult
from chronolog._core.record cimport (
    RecordView, record_bytes, record_problem, put_record, seal_frame, seal_frame_crc,
    view_record, view_record_at)
from chronolog._core.narrow cimport NarrowPlan, narrow_free, narrow_reserve, narrow_plan
from chronolog._core.codec cimport Compressor, Decoder, Dictionaries
from chronolog._core.codec import DEFAULT_BLOCK_BYTES
from chronolog._core.segment cimport (
    Segment, FrameInfo, FrameStatus, check_frame, frame_status_reason, FRAME_OK)
from chronolog._core.index cimport (
    CheckpointJob, PositionIndex, StreamIndex, chl_streams, chl_stream, chl_streams_find,
    chl_streams_intern, chl_streams_intern_batch, chl_streams_push_batch, chl_streams_count,
    chl_streams_position, chl_streams_at, chl_streams_materialize)
from chronolog._core.segment import segment_name, encode_segment_header, decode_segment_header

from chronolog.errors import (
    CorruptionError, EventTooLargeError, InvalidArgumentError, InvalidEventError,
    InvalidStreamNameError, ReadOnlyError, StoreClosedError, StoreFailedError,
    StoreNotFoundError, WrongExpectedVersionError)

cdef enum:
    DURABILITY_OS = 0
    DURABILITY_FSYNC = 1
    DURABILITY_INTERVAL = 2
    NOGIL_BATCH = 2048   # encode batches at least this long with the GIL released
    # Outside "fsync" mode, every WRITEBACK_HINT_BYTES of the active segment a helper thread
    # asks the kernel to start writing them back (Log._writeback_due), so that sealing it (one
    # fdatasync) does not wait for the whole segment to reach the disk.
    WRITEBACK_HINT_BYTES = 8 * 1024 * 1024
    # Blocks are reserved ahead of the active segment's end (FileIO.allocate): as many as the
    # segment already holds, at least PREALLOC_MIN_BYTES, at most PREALLOC_MAX_BYTES ahead.
    PREALLOC_MIN_BYTES = 1024 * 1024
    PREALLOC_MAX_BYTES = 32 * 1024 * 1024

# A group-commit waiter (Log.sync_to) looks every slice, without the GIL, whether its baton
# got lost: the last sync covered it already, or no sync runs (it should lead one). A slice is
# twice the last fdatasync, between BATON_SLICE_NS and BATON_TIMEOUT_NS: longer than most
# waits in a steady stream of appends, so they cost no extra wake-up there, and never longer
# than the fixed timeout it replaced. After four slices (2-8 ms) it looks again under the
# lock whatever it saw.
cdef long long BATON_SLICE_NS = 500000
cdef long long BATON_TIMEOUT_NS = 2000000

cdef extern from "chl_baton.h" nogil:
    ctypedef struct chl_baton:
        pass
    int chl_baton_init(chl_baton *b)
    void chl_baton_destroy(chl_baton *b)
    void chl_baton_post(chl_baton *b)
    int chl_baton_wait(chl_baton *b, long long timeout_ns)


cdef inline long long _monotonic_ns() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return <long long>t.tv_sec * 1000000000 + t.tv_nsec


cdef class _Baton:
    """One wait of a group-commit waiter (Log.sync_to): posted once, by whoever wakes it."""
    cdef chl_baton b

    def __cinit__(self):
        if chl_baton_init(&self.b) != 0:
            raise MemoryError("cannot make the condition a group commit waiter sleeps on")

    def __dealloc__(self):
        chl_baton_destroy(&self.b)

_SEGMENT_RE = re.compile(r"^(\d{20})\.seg$")
_DURABILITY = {"os": DURABILITY_OS, "fsync": DURABILITY_FSYNC, "interval": DURABILITY_INTERVAL}
STORE_FILE = "chronolog.store"
FORMAT_VERSION_NUMBER = FORMAT_VERSION
DEFAULT_MAX_SEGMENT_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
MAX_SEGMENT_BYTES_LIMIT = 1 << 31
# A torn tail is the part of one append a crash interrupted (or, after a power loss, the
# unsynced appends): cutting more than this keeps a copy anyway (nothing is deleted).
QUARANTINE_BYTES = 1 << 20




cdef class Log:
    """The segmented append-only log of one store directory, with its indexes.

    Format: format.pxd (docs/format.md). One Log per open store handle.

    Invariants:
        - head == positions.count(): every position below head is indexed and readable;
        - for every stream, its versions are 0..count-1 and map to increasing positions;
        - segments[-1] is the only segment that grows; bytes past its `end` are not yet
          acknowledged (or are a torn tail that recovery cut);
        - after a write or fsync error, `failed` is set and no append succeeds again.

    Thread-safety: appends from many threads are serialised by an internal lock and share
    fsyncs (group commit); reads may run in any thread at any time.
    """


    def __cinit__(self):
        self.buf = NULL
        self.zbuf = NULL
        self.sids = NULL
        self.vers = NULL
        memset(&self.nplan, 0, sizeof(NarrowPlan))

    def __dealloc__(self):
        with nogil:
            chl_wpipe_reap(&self.wpipe)
        free(self.buf)
        free(self.zbuf)
        free(self.sids)
        free(self.vers)
        narrow_free(&self.nplan)

    def __init__(self, str path, *, bint readonly=False, str durability="fsync",
                 uint64_t max_segment_bytes=DEFAULT_MAX_SEGMENT_BYTES,
                 uint64_t max_event_bytes=DEFAULT_MAX_EVENT_BYTES, FileIO io=None,
                 compression=None, int compression_level=1,
                 uint64_t compression_block_bytes=DEFAULT_BLOCK_BYTES):
        if durability not in _DURABILITY:
            raise InvalidArgumentError(
                f"durability must be 'fsync', 'interval' or 'os', got {durability!r}")
        if max_segment_bytes < 4096 or max_segment_bytes > MAX_SEGMENT_BYTES_LIMIT:
            raise InvalidArgumentError(
                f"max_segment_bytes must be between 4096 and {MAX_SEGMENT_BYTES_LIMIT}, got {max_segment_bytes}")
        if max_event_bytes < 64 or max_event_bytes > (1 << 30):
            raise InvalidArgumentError(
                f"max_event_bytes must be between 64 and {1 << 30}, got {max_event_bytes}")
        self.path = os.path.abspath(path)
        self.readonly = readonly
        self.durability = durability
        self.dmode = _DURABILITY[durability]
        self.max_segment_bytes = max_segment_bytes
        self.max_event_bytes = max_event_bytes
        self.io = io if io is not None else FileIO()
        self.segments = []
        self.pidx = PositionIndex()
        self.sidx = StreamIndex()
        self.sidx.lazy = True  # every entry is read through chl_streams_at or find/intern
        self.st = self.sidx.t
        self.written = 0
        self.head = 0
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._waiters = collections.deque()
        self.failed = None
        self.closed = False
        self._types = []
        self._decoders = []
        self.compressor = None
        if compression not in (None, "zstd"):
            raise InvalidArgumentError(f"compression must be None or 'zstd', got {compression!r}")
        if compression is not None:
            self.compressor = Compressor(compression_level, None, 0, compression_block_bytes)
        try:
            self._open()
        except BaseException:
            self._release()
            raise

    # ---------------------------------------------------------------- opening and recovery

    cdef _open(self):
        # Pass 1: the store header (created with the directory when missing).
        store_file = os.path.join(self.path, STORE_FILE)
        if not os.path.exists(store_file):
            if self.readonly:
                raise StoreNotFoundError(self.path)
            self._create_store(store_file)
        self.store_id = self._read_store_header(store_file)
        listing = os.listdir(self.path)  # one listing: dictionaries and segments
        self.dicts = Dictionaries(self.path, listing)
        if self.compressor is not None and self.dicts.newest:
            self.compressor.use_dictionary(self.dicts, self.dicts.newest)
        if not self.readonly:
            os.makedirs(os.path.join(self.path, "index"), mode=0o700, exist_ok=True)
        # Pass 2: the segments, by name; each header checked.
        names = sorted(n for n in listing if _SEGMENT_RE.match(n))
        for name in names:
            if not self._attach_segment(name, name == names[len(names) - 1]):
                break
        if not self.segments:
            if self.readonly:
                raise StoreNotFoundError(self.path)
            self._new_segment(0)
        # Sealed segments are complete and immutable: readable to their end. (Their frames are
        # checked when read; verify() checks all of them.)
        cdef Segment seg
        for seg in self.segments[:len(self.segments) - 1]:
            seg.end = seg.file_size()
            seg.ensure_mapped(seg.end, 0)
        # Pass 3: the index checkpoints, when sound and consistent with the segments.
        cdef uint64_t through = self._load_checkpoints()
        # Pass 4: index the tail past the checkpoint (cutting a torn tail when writing).
        self._catch_up(not self.readonly)
        if self.st.unsound:
            # A stream of the tail was looked up in a damaged chunk of the checkpoint.
            self._rebuild_unlocked()
            through = 0
        if not self.readonly:
            seg = self.segments[len(self.segments) - 1]
            seg.open_for_write()
            # What recovery kept may sit in the page cache only (a process crash in "os"
            # mode): sync it once, so later frames may truthfully claim it as synced.
            self.io.fdatasync(seg.wfd)
            self.durable_ordinal = seg.ordinal
            self.durable_offset = seg.end
        self.checkpoint_through = through

    cdef _create_store(self, str store_file):
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        cdef bytearray h = bytearray(STORE_HEADER_BYTES)
        cdef unsigned char *p = h
        h[0:8] = CHL_STORE_MAGIC[:8]
        st32(p + 8, FORMAT_VERSION)
        st32(p + 12, STORE_HEADER_BYTES)
        h[16:32] = os.urandom(16)
        import time
        st64(p + 32, <uint64_t>time.time_ns())
        st32(p + 60, chl_crc32c(p, 60))
        tmp = store_file + ".tmp"
        cdef int fd = self.io.create_new(tmp)
        try:
            self.io.pwrite_all(fd, <const char *>h, STORE_HEADER_BYTES, 0)
            self.io.fsync(fd)
        finally:
            self.io.close(fd)
        self.io.rename(tmp, store_file)
        self.io.fsync_dir(self.path)
        # The store directory's own entry, so a new store survives a power loss.
        self.io.fsync_dir(os.path.dirname(self.path) or ".")

    cdef bytes _read_store_header(self, str store_file):
        with open(store_file, "rb") as f:
            h = f.read(STORE_HEADER_BYTES + 1)
        cdef const unsigned char *p = h
        if len(h) != STORE_HEADER_BYTES or memcmp(p, CHL_STORE_MAGIC, 8) != 0:
            raise CorruptionError(store_file, 0, "not a Chronolog store header")
        if chl_crc32c(p, 60) != ld32(p + 60):
            raise CorruptionError(store_file, 60, "store header CRC32C mismatch")
        if ld32(p + 8) < OLDEST_FORMAT_VERSION or ld32(p + 8) > FORMAT_VERSION:
            raise CorruptionError(store_file, 8, f"store format version {ld32(p + 8)} is not "
                                  f"supported (this Chronolog reads versions "
                                  f"{OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})")
        return h[16:32]

    cdef bint _attach_segment(self, str name, bint is_newest) except -1:
        """Open and check one segment; False when it is the newest and its header is torn
        (a segment being created: the writer removes it, a reader waits for it)."""
        path = os.path.join(self.path, name)
        cdef int fd = self.io.open(path, O_RDONLY | O_CLOEXEC, 0)
        try:
            h = os.pread(fd, SEGMENT_HEADER_BYTES, 0)
            first, salt, version = decode_segment_header(h, path, self.store_id)
        except BaseException as exc:
            self.io.close(fd)
            if not isinstance(exc, CorruptionError):
                raise
            # The newest segment with a torn header is one being created. A reader that read
            # it short waits (the writer may have written it since: its size proves nothing);
            # the writer (alone: the lock) removes what a crash during creation left.
            if is_newest and ((self.readonly and len(h) < SEGMENT_HEADER_BYTES) or (
                    len(h) <= SEGMENT_HEADER_BYTES and os.path.getsize(path) <= SEGMENT_HEADER_BYTES)):
                if not self.readonly:
                    self.io.unlink(path)
                    self.io.fsync_dir(self.path)
                return False
            raise
        if segment_name(first) != name or (self.segments and first < (
                <Segment>self.segments[len(self.segments) - 1]).first_position):
            self.io.close(fd)
            if segment_name(first) != name:
                raise CorruptionError(path, 24, f"segment header says first position {first}, "
                                      f"its name says {int(name[:20])}")
            raise CorruptionError(path, 24, "segment positions are not increasing")
        self.segments.append(Segment(self.io, path, first, salt, len(self.segments), fd, version))
        return True

    cdef uint64_t _load_checkpoints(self) except? 0xFFFFFFFFFFFFFFFF:
        """Load both checkpoints; on any doubt start from nothing (a full rebuild)."""
        idx = os.path.join(self.path, "index")
        cdef uint64_t pcount = self.pidx.load(os.path.join(idx, "positions.idx"), self.store_id)
        cdef uint64_t through = 0
        cdef uint32_t anchor = 0
        cdef FrameInfo fi
        if pcount:
            anchor = self._anchor_of(pcount - 1, &fi)
            if anchor == 0:
                pcount = 0
        if pcount:
            through = self.sidx.load(os.path.join(idx, "streams.idx"), self.store_id)
            # The stream checkpoint names the segment of its last position; check it.
            if through == 0xFFFFFFFFFFFFFFFF or through > pcount:
                through = 0
            elif through > 0 and self.sidx.anchor != self._anchor_of(through - 1, &fi):
                through = 0
        if through == 0:
            self.pidx.clear()
            self.sidx.clear()
            return 0
        # Entries past `through` are dropped: the tail scan re-adds them.
        if self.pidx.base_count > through:
            self.pidx.base_count = through
        self.written = through
        self.head = through
        return through

    cdef uint32_t _anchor_of(self, uint64_t position, FrameInfo *fi) except? 0:
        """Low 32 bits of the salt of the segment holding `position` (with a sanity check of
        its frame), or 0 when the position index entry does not hold up."""
        cdef uint64_t e = self.pidx.get(position)
        cdef uint64_t ordinal = e >> 32, off = e & 0xFFFFFFFF
        if ordinal >= <uint64_t>len(self.segments):
            return 0
        cdef Segment seg = self.segments[ordinal]
        cdef uint64_t size = seg.file_size()
        seg.ensure_mapped(size, 0)
        if check_frame(seg.map, size, off, seg.salt, False, fi) != FRAME_OK:
            return 0
        if not (fi.first_position <= position < fi.first_position + fi.count):
            return 0
        cdef uint32_t a = <uint32_t>(seg.salt & 0xFFFFFFFF)
        return a if a else 1

    cdef int _catch_up(self, bint recover) except -1:
        """Index every complete frame past `written`, then make it all visible. With
        `recover` (the writer on open) a torn tail of the newest segment is cut; without it
        (readers) scanning stops there; a bad frame anywhere else is CorruptionError."""
        self.catching_up = True
        try:
            self._scan_tail(recover)
        finally:
            self.catching_up = False
            self.head = self.written
        return 0

    cdef int _scan_tail(self, bint recover) except -1:
        cdef Segment seg
        cdef uint64_t size, off, ordinal, e
        cdef FrameStatus status
        cdef FrameInfo fi
        # Pass 1: where head's frame starts: right after the frame of head - 1.
        if self.written == 0:
            ordinal = 0
            off = SEGMENT_HEADER_BYTES
        else:
            e = self.pidx.get(self.written - 1)
            ordinal = e >> 32
            if ordinal >= <uint64_t>len(self.segments):
                raise CorruptionError(self.path, None, "position index names a missing segment")
            seg = self.segments[ordinal]
            seg.ensure_mapped(seg.file_size(), 0)
            if check_frame(seg.map, seg.file_size(), e & 0xFFFFFFFF, seg.salt, False, &fi) != FRAME_OK:
                raise CorruptionError(seg.path, e & 0xFFFFFFFF, "indexed frame no longer checks")
            off = fi.end
        # Pass 2: frame by frame, segment by segment.
        while True:
            seg = self.segments[ordinal]
            seg.end = off
            size = seg.file_size()
            if size >= (1 << 32) + 1:
                raise CorruptionError(seg.path, None, "segment file is larger than 4 GiB")
            seg.ensure_mapped(size, self.max_segment_bytes)
            while True:
                status = check_frame(seg.map, size, off, seg.salt, True, &fi)
                if status != FRAME_OK:
                    break
                if fi.first_position != self.written:
                    raise CorruptionError(seg.path, off, f"frame starts at position "
                                          f"{fi.first_position}, expected {self.written}")
                self._index_frame(seg, &fi)
                off = fi.end
                seg.end = off
            is_newest = ordinal + 1 == <uint64_t>len(self.segments)
            if off == size:
                if is_newest and self.readonly:
                    nxt = segment_name(self.written)
                    if not (nxt != seg.name and os.path.exists(os.path.join(self.path, nxt))
                            and self._attach_segment(nxt, True)):
                        return 0
                elif is_newest:
                    return 0
                ordinal += 1
                off = SEGMENT_HEADER_BYTES
                if (<Segment>self.segments[ordinal]).first_position != self.written:
                    raise CorruptionError((<Segment>self.segments[ordinal]).path, 24,
                                          f"segment starts at position {(<Segment>self.segments[ordinal]).first_position}, "
                                          f"expected {self.written} (a gap between segments)")
                continue
            # A frame that does not check. Only the newest segment may end in a torn tail.
            if not is_newest:
                raise CorruptionError(seg.path, off, frame_status_reason(status))
            if not recover:
                return 0  # a writer may be mid-write; look again later
            # Damage or a torn tail? Every frame records how much of its segment was on
            # stable storage when it was written (its synced mark). If any complete frame
            # after this point claims a mark past it, these bytes had been synced: damage.
            # Otherwise they never were, nor was anything after them (a power loss with
            # reordered writeback can leave later frames whole): a torn tail, cut here.
            claim = self._later_claim(seg, off, size)
            if claim > <int64_t>off:
                raise CorruptionError(seg.path, off, frame_status_reason(status) +
                                      "; a later frame records these bytes as synced, so this "
                                      "is damage, not a torn tail")
            seg.open_for_write()
            if claim >= 0 or size - off > QUARANTINE_BYTES:
                self._quarantine(seg, off, size)
            self.io.ftruncate(seg.wfd, off)
            self.io.fsync(seg.wfd)
            return 0

    cdef int64_t _later_claim(self, Segment seg, uint64_t off, uint64_t size) except -2:
        """The highest synced mark claimed by a complete frame after `off` (-1: none)."""
        cdef FrameInfo fi
        cdef uint64_t p = off + 1
        cdef int64_t best = -1
        cdef const unsigned char *hit
        while p + FRAME_HEADER_BYTES <= size:
            hit = <const unsigned char *>memchr(seg.map + p, 0x43, size - p)  # 'C' of CHLF
            if hit == NULL:
                break
            p = <uint64_t>(hit - seg.map)
            if check_frame(seg.map, size, p, seg.salt, True, &fi) == FRAME_OK:
                if <int64_t>fi.synced_mark > best:
                    best = fi.synced_mark
                p = fi.end
            else:
                p += 1
        return best

    cdef int _quarantine(self, Segment seg, uint64_t off, uint64_t size) except -1:
        """Keep the bytes recovery cuts (whole frames that were never synced follow the torn
        point, or more than QUARANTINE_BYTES) in `<segment>.torn-<offset>` beside it, for
        forensics and `chronolog repair`: nothing is deleted."""
        path = f"{seg.path}.torn-{off:010d}"
        cdef int fd = self.io.create_new(path)
        try:
            self.io.pwrite_all(fd, seg.map + off, size - off, 0)
            self.io.fsync(fd)
        finally:
            self.io.close(fd)
        self.io.fsync_dir(self.path)
        return 0

    cdef int _index_frame(self, Segment seg, FrameInfo *fi) except -1:
        """Check every record of a frame (density of positions and versions), then index it."""
        cdef Decoder dec
        if fi.codec != CODEC_NONE:
            dec = self._decoder()
            try:
                dec.decode_frame(fi, seg.path)
                self._index_records(seg, fi)
            finally:
                self._give_back(dec)
            return 0
        return self._index_records(seg, fi)

    cdef int _index_records(self, Segment seg, FrameInfo *fi) except -1:
        cdef uint32_t i
        cdef int rc
        cdef int64_t sid
        cdef RecordView rv
        cdef uint64_t expect_version
        self._reserve_scratch(fi.count)
        for i in range(fi.count):
            rc = view_record(fi, i, fi.codec != CODEC_NONE, &rv)  # the body CRC covers stored bytes only
            if rc:
                raise CorruptionError(seg.path, fi.offset, f"record {i}: {record_problem(rc, '')}")
            if rv.position != self.written + i:
                raise CorruptionError(seg.path, fi.offset, f"record {i} has position "
                                      f"{rv.position}, expected {self.written + i}")
            sid = chl_streams_intern(self.st, <const char *>rv.stream, rv.slen, 1)
            if sid < 0:
                raise MemoryError()
            expect_version = chl_streams_count(self.st, sid) + self.st.streams[sid].pending
            self.st.streams[sid].pending += 1
            self.sids[i] = sid
            if rv.version != expect_version:
                self._reset_pending(i + 1)
                raise CorruptionError(seg.path, fi.offset, f"record {i} of stream "
                                      f"{bytes(rv.stream[:rv.slen])!r} has version {rv.version}, "
                                      f"expected {expect_version}")
        self._commit(fi.count, (<uint64_t>seg.ordinal << 32) | fi.offset,
                     fi.body + fi.raw_bytes - 4 * <uint64_t>fi.count
                     if fi.codec == CODEC_NONE and fi.body != NULL else NULL)
        return 0

    cdef int _reserve_scratch(self, size_t n) except -1:
        cdef size_t cap
        if n <= self.scratch_cap:
            return 0
        cap = n if n > 1024 else 1024
        s = <int64_t *>realloc(self.sids, cap * 8)
        if s == NULL:
            raise MemoryError()
        self.sids = s
        v = <uint64_t *>realloc(self.vers, cap * 8)
        if v == NULL:
            raise MemoryError()
        self.vers = v
        self.scratch_cap = cap
        return 0

    cdef void _reset_pending(self, size_t n) noexcept:
        cdef size_t i
        for i in range(n):
            self.st.streams[self.sids[i]].pending = 0

    cdef int _commit(self, uint64_t n, uint64_t entry, const unsigned char *table) except -1:
        """Make n events, whose stream ids are in sids[0:n], visible at head. `table`: the
        frame's offset table when it is uncompressed (record offsets for random reads), or
        NULL."""
        if chl_streams_push_batch(self.st, self.sids, n, self.written) != 0:
            raise MemoryError()
        self.pidx.push_n(entry, n)
        if table != NULL:
            self.pidx.set_roff(self.written, table, n, (entry & 0xFFFFFFFF) + FRAME_HEADER_BYTES)
        self.written += n
        if self.dmode != DURABILITY_FSYNC or self.catching_up:
            self.head = self.written  # in fsync mode, sync_to makes appends visible
        return 0

    # ---------------------------------------------------------------- segments and checkpoints

    cdef Segment _new_segment(self, uint64_t first_position):
        import time
        name = segment_name(first_position)
        path = os.path.join(self.path, name)
        cdef bytes h = encode_segment_header(first_position, int.from_bytes(os.urandom(8), "little"),
                                             self.store_id, time.time_ns())
        cdef int fd = self.io.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        try:
            self.io.pwrite_all(fd, <const char *>h, SEGMENT_HEADER_BYTES, 0)
            self.io.fsync(fd)
        finally:
            self.io.close(fd)
        self.io.fsync_dir(self.path)
        first, salt, version = decode_segment_header(h, path, self.store_id)
        seg = Segment(self.io, path, first, salt, len(self.segments), -1, version)
        if not self.readonly:
            # Ready for writing before anyone (a group-commit leader) can see it.
            seg.open_for_write()
        self.segments.append(seg)
        return seg

    cdef Segment _roll(self):
        """Seal the active segment (synced unless durability is 'os') and start the next."""
        # Sealed segments are always on stable storage, whatever the durability mode (one
        # fdatasync per segment): after a power loss only the newest segment can be torn.
        cdef Segment old = self.segments[len(self.segments) - 1]
        with nogil:
            chl_wpipe_reap(&self.wpipe)  # its writeback hint uses old.wfd
        self._release_reserved(old)
        self.io.fdatasync(old.wfd)
        cdef Segment seg = self._new_segment(self.written)
        self.hinted = 0
        self.allocated = 0
        self.durable_ordinal = seg.ordinal
        self.durable_offset = SEGMENT_HEADER_BYTES
        seg.open_for_write()
        seg.ensure_mapped(SEGMENT_HEADER_BYTES, self.max_segment_bytes)
        with self._sync_lock:
            self.io.close(old.wfd)
            old.wfd = -1
        self._checkpoint_begin(True)
        return seg

    def checkpoint(self):
        """Write both index checkpoints for everything up to head (the writer only)."""
        self._check_open()
        with self._lock:
            self._checkpoint()

    cdef int _checkpoint(self) except -1:
        """Write the checkpoints now (after any one still being written). They are derived:
        failing to write them (a full disk) loses nothing, it only makes the next open scan
        more; so an OSError here is swallowed."""
        self._checkpoint_begin(False)
        return 0

    cdef int _checkpoint_begin(self, bint background) except -1:
        """Start a checkpoint of both indexes through `written` (docs/design.md, "Index
        checkpoints in the background"): build it in memory with the lock held, then write it
        here, or from a background thread when `background` (the roll: the appender goes on;
        the next append, checkpoint, rebuild or close adopts what it wrote)."""
        self._checkpoint_join()
        if self.readonly or self.written == self.checkpoint_through \
                or self.checkpoint_through == 0xFFFFFFFFFFFFFFFF:
            return 0
        cdef FrameInfo fi
        cdef CheckpointJob job = CheckpointJob(self.io, self.written)
        idx = os.path.join(self.path, "index")
        try:
            # An index must never be more durable than the events it covers: after a power
            # loss it would name events the segments no longer hold. Sync them first.
            if self.written_seq > self.synced_seq:
                self.sync_to(self.written_seq)
            self._make_sound()
            self.pidx.image(job, os.path.join(idx, "positions.idx"), self.store_id)
            self.sidx.image(job, os.path.join(idx, "streams.idx"), self.store_id, self.written,
                            self._anchor_of(self.written - 1, &fi))
        except OSError:
            return 0
        self._ckpt = job
        if background:
            job.thread = threading.Thread(target=job.run, name="chronolog-checkpoint")
            job.thread.start()
        else:
            job.run()
            self._checkpoint_join()
        return 0

    cdef int _checkpoint_poll(self) except -1:
        """Adopt a background checkpoint that is done (the lock is held)."""
        if self._ckpt is not None and self._ckpt.done:
            self._checkpoint_join()
        return 0

    cdef int _checkpoint_join(self) except -1:
        """Wait for the checkpoint being written, if any, and adopt it: the indexes map the
        files it wrote. When it failed, they keep what they have in memory (and the next
        checkpoint writes it again)."""
        cdef CheckpointJob job = self._ckpt
        if job is None:
            return 0
        if job.thread is not None:
            job.thread.join()
        self._ckpt = None
        if job.error is not None:
            if not isinstance(job.error, OSError):
                raise job.error
            return 0
        try:
            self.pidx.adopt(job)
            self.sidx.adopt(job)
        except OSError:
            return 0
        self.checkpoint_through = job.through
        return 0

    # ---------------------------------------------------------------- the append path

    cdef int _check_writable(self) except -1:
        if self.closed:
            raise StoreClosedError(self.path)
        if self.readonly:
            raise ReadOnlyError(self.path)
        if self.failed is not None:
            raise StoreFailedError(self.path, self.failed)
        if not self.sidx_checked:
            self._make_sound()
        return 0

    cdef int _make_sound(self) except -1:
        """Check every chunk of a lazily attached stream checkpoint now (O(streams), once), and
        rebuild the indexes from the segments when one fails: a write must never trust a
        stream lookup that a damaged chunk could have answered (a stream it hid would be
        created again at version 0). The writer calls it before its first append and before
        writing a checkpoint (with the lock held)."""
        chl_streams_materialize(self.st)
        if self.st.unsound:
            self._rebuild_unlocked()
        self.sidx_checked = True
        return 0

    cdef int _unsound(self) except -1:
        """Readers: a lookup met a damaged chunk of the stream checkpoint, so the answer may be
        wrong: raise CorruptionError, which the reading method answers by rebuilding the
        indexes and reading again."""
        if self.st.unsound:
            raise CorruptionError(self.path, None, "a chunk of the stream index checkpoint fails "
                                  "its check")
        return 0

    cdef unsigned char *_frame_buffer(self, size_t n) except NULL:
        if n > self.buf_cap:
            p = <unsigned char *>realloc(self.buf, n)
            if p == NULL:
                raise MemoryError(f"cannot allocate {n} bytes for an append")
            self.buf = p
            self.buf_cap = n
        return self.buf

    cdef Segment _segment_of(self, uint64_t position):
        """The segment holding `position` (< written): the last whose first position is at
        most it (binary search; segments are in position order)."""
        cdef Py_ssize_t lo = 0, hi = len(self.segments) - 1, mid
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if (<Segment>self.segments[mid]).first_position <= position:
                lo = mid
            else:
                hi = mid - 1
        return <Segment>self.segments[lo]

    cdef Segment _segment_for(self, size_t frame_bytes):
        cdef Segment seg = self.segments[len(self.segments) - 1]
        if seg.end > SEGMENT_HEADER_BYTES and seg.end + frame_bytes > self.max_segment_bytes:
            try:
                seg = self._roll()
            except OSError as exc:
                self._fail(exc, None, 0)
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
        per byte on ext4; docs/design.md). A hint: a failure changes nothing else."""
        cdef uint64_t start, ahead, stop
        if end <= self.allocated:
            return 0
        start = seg.end if seg.end > self.allocated else self.allocated
        ahead = end - SEGMENT_HEADER_BYTES if end > SEGMENT_HEADER_BYTES else 0
        if ahead < PREALLOC_MIN_BYTES:
            ahead = PREALLOC_MIN_BYTES
        if ahead > PREALLOC_MAX_BYTES:
            ahead = PREALLOC_MAX_BYTES
        stop = end + ahead
        if stop > self.max_segment_bytes:
            stop = self.max_segment_bytes if self.max_segment_bytes > end else end
        self.allocated = stop
        self.io.allocate(seg.wfd, start, stop - start)
        return 0

    cdef int _release_reserved(self, Segment seg) except -1:
        """Give back the blocks _preallocate reserved past the end of `seg`, the active
        segment, once it is sealed or the store closes (ftruncate to its own size frees them):
        a store keeps no more disk than its bytes, however small. A hint: a failure changes
        nothing else."""
        if self.allocated > seg.end and seg.wfd >= 0:
            self.allocated = seg.end
            try:
                self.io.ftruncate(seg.wfd, seg.end)
            except OSError:
                pass
        return 0

    cdef uint64_t _writeback_due(self, uint64_t off, uint64_t *start) noexcept:
        """Outside "fsync" mode: how many bytes of the active segment, from `hinted` (set in
        start) up to the page holding `off`, to ask the kernel to start writing back now, once
        there are at least WRITEBACK_HINT_BYTES of them (0: not yet); `hinted` moves past them."""
        cdef uint64_t upto = off & ~<uint64_t>4095, n
        if self.dmode == DURABILITY_FSYNC:
            return 0
        if self.hinted > upto:
            self.hinted = 0  # (a roll resets it; never past the end)
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
        hint_bytes = self._writeback_due(off, &hint_from)
        if hint_bytes:
            self.io.hint_writeback(&self.wpipe, seg.wfd, hint_from, hint_bytes)
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
        """Encode a large uncompressed frame into buf and write it at the segment's end at
        once: a helper thread pwrites each finished chunk of the body while the next is being
        encoded, and the header goes last (FileIO.pipe_start/pipe_finish, csrc/chl_wpipe.h).
        Same bytes, same single "write" op and same fail-stop as _write_frame."""
        cdef uint64_t off = seg.end
        cdef uint64_t hint_from = 0
        cdef size_t frame_bytes = body + FRAME_OVERHEAD_BYTES
        cdef unsigned char *bp = self.buf
        cdef uint32_t mark = self._synced_mark(seg)
        cdef uint32_t crc
        self._preallocate(seg, off + frame_bytes)
        cdef uint64_t hint_bytes = self._writeback_due(off, &hint_from)
        try:
            self.io.pipe_start(&self.wpipe, seg.wfd, bp, off, hint_from, hint_bytes)
        except OSError as exc:
            self._fail(exc, seg, off)
        with nogil:
            crc = encode_batch(bp, body, cols, idp, idvalid, id_offset, n, first, self.vers,
                               timestamp, &self.nplan, narrow, self.sids, &self.wpipe)
            seal_frame_crc(bp, body, body, CODEC_NONE, 0, seg.salt, first, <uint32_t>n, mark,
                           <uint32_t>narrow, crc)
        try:
            self.io.pipe_finish(&self.wpipe, seg.wfd, bp, frame_bytes, FRAME_HEADER_BYTES, off)
        except OSError as exc:
            self._fail_write(exc, seg, off)
        self.out = bp
        return self._wrote(seg, off, frame_bytes)

    cdef int _fail(self, object exc, Segment seg, uint64_t keep) except -1:
        """Fail-stop: no append succeeds after this. Cut what this handle wrote past `keep`
        in `seg` (best effort: nothing there was acknowledged), then raise."""
        self.failed = exc
        try:
            if seg is not None and seg.wfd >= 0:
                self.io.ftruncate(seg.wfd, keep)
        except OSError:
            pass  # the open after a restart cuts the torn tail instead
        raise StoreFailedError(self.path, exc) from exc

    cdef int sync_to(self, uint64_t seq) except -1:
        """Group commit: return once every byte written up to `seq` is on stable storage.

        One caller at a time is the leader: it snapshots what has been written and
        fdatasyncs it with the lock released, while other appenders keep writing and queue
        up (docs/design.md, "Group commit"). Waiters are woken one at a time, each by a
        thread that is about to give up the GIL (a baton): the leader when its sync is done
        (the first waiter: covered, it returns; else it leads the next sync), and every
        caller as it enters here (the first waiter the last sync covered). A woken thread
        thus finds the GIL free instead of joining a herd. A waiter whose baton got lost (its
        passer did not come back: a burst) sees it at the end of a slice, without the GIL,
        and goes on (covered) or leads the next sync. In durability "fsync" this is also what
        makes appends visible to readers."""
        if self.synced_seq >= seq:
            return 0
        cdef Segment seg
        cdef int fd
        cdef uint64_t target, target_pos, target_off
        cdef bint woken
        cdef long long waited, piece
        cdef _Baton baton = None, waiter
        cdef chl_baton *give
        cond = self._sync_lock
        try:
            with cond:
                baton = self._covered_waiter()
                while True:
                    if self.synced_seq >= seq:
                        return 0
                    if self.failed is not None:
                        raise StoreFailedError(self.path, self.failed)
                    if not self.syncing:
                        break
                    waiter = _Baton()
                    entry = (seq, waiter)
                    self._waiters.append(entry)
                    cond.release()
                    # The baton goes on once the GIL is given up: its taker finds it free.
                    give = &baton.b if baton is not None else NULL
                    with nogil:
                        if give != NULL:
                            chl_baton_post(give)
                        piece = 2 * self.last_sync_ns
                        if piece < BATON_SLICE_NS:
                            piece = BATON_SLICE_NS
                        elif piece > BATON_TIMEOUT_NS:
                            piece = BATON_TIMEOUT_NS  # a slow disk: a lost baton costs <= 2 ms
                        waited = 0
                        while True:
                            woken = chl_baton_wait(&waiter.b, piece)
                            if woken:
                                break
                            # Racy reads, looked at again under the lock: a lost baton.
                            waited += piece
                            if self.synced_seq >= seq or not self.syncing or waited >= 4 * piece:
                                break
                    baton = None
                    cond.acquire()
                    if not woken:
                        try:
                            self._waiters.remove(entry)
                        except ValueError:
                            pass  # popped by a waker just now
                seg = self._lead(&target, &target_pos, &target_off, &fd)
        finally:
            if baton is not None:
                chl_baton_post(&baton.b)
        return self._sync_as_leader(seg, fd, target, target_pos, target_off)

    cdef Segment _lead(self, uint64_t *target, uint64_t *target_pos, uint64_t *target_off,
                       int *fd):
        """With the sync lock held: become the group commit's leader and snapshot what its
        fdatasync covers (fd: a duplicate of the active segment's descriptor, or -1)."""
        self.syncing = True
        # A consistent snapshot (the GIL is held): every byte counted in written_seq is in
        # this segment or in an older one, which the roll synced before sealing it.
        target[0] = self.written_seq
        target_pos[0] = self.written
        cdef Segment seg = self.segments[len(self.segments) - 1]
        target_off[0] = seg.end
        fd[0] = -1
        if seg.wfd >= 0:
            # dup under the lock: a roll closes the old segment's descriptor under the
            # same lock, so it cannot vanish between the snapshot and here.
            try:
                fd[0] = self.io.dup(seg.wfd)
            except OSError as exc:
                self.syncing = False
                self._wake_waiter()
                self._fail(exc, None, 0)
        return seg

    cdef int _sync_as_leader(self, Segment seg, int fd, uint64_t target, uint64_t target_pos,
                             uint64_t target_off) except -1:
        """The leader's fdatasync (the lock released, its duration noted for the waiters'
        slices), then what it covered is synced and visible; the first waiter is woken."""
        cdef long long began
        cond = self._sync_lock
        try:
            if fd < 0:
                return 0  # being closed; close() syncs
            try:
                try:
                    began = _monotonic_ns()
                    self.io.fdatasync(fd)
                    self.last_sync_ns = _monotonic_ns() - began
                finally:
                    self.io.close(fd, True)
            except OSError as exc:
                # Unsynced appends were not acknowledged: cut them in "fsync" mode; in
                # "interval" mode they were, so they stay.
                if self.dmode == DURABILITY_FSYNC and seg.ordinal == self.durable_ordinal:
                    self._fail(exc, seg, self.durable_offset)
                self._fail(exc, None, 0)
            if target > self.synced_seq:
                self.synced_seq = target
            if seg.ordinal > self.durable_ordinal or target_off > self.durable_offset:
                self.durable_ordinal = seg.ordinal
                self.durable_offset = target_off
            if target_pos > self.head:
                self.head = target_pos
        finally:
            with cond:
                self.syncing = False
                self._wake_waiter()
        return 0

    cdef object _covered_waiter(self):
        """With the sync lock held: the baton of the first waiter when the last sync covered
        it (taken off the queue: the caller posts it, which wakes it), else None."""
        if self._waiters and self._waiters[0][0] <= self.synced_seq:
            return self._waiters.popleft()[1]
        return None

    cdef int _wake_waiter(self) except -1:
        """With the sync lock held, a sync just ended: wake the first waiter (covered, it
        returns; else it leads the next sync), or every waiter when the store failed (each
        raises)."""
        cdef _Baton w
        while self._waiters:
            w = self._waiters.popleft()[1]
            chl_baton_post(&w.b)
            if self.failed is None:
                break
        return 0

    def sync(self):
        """fdatasync everything written so far (the interval thread and close call this)."""
        if not self.readonly and not self.closed and self.failed is None:
            self.sync_to(self.written_seq)

    cdef object _retry_result(self, int64_t sid, uint64_t count, int64_t expected, uint64_t n,
                              uint64_t n_first,
                              const unsigned char *ids, const char **streams,
                              const uint32_t *slens):
        """Idempotent retries (KurrentDB's rule). When the append's first event would repeat
        a stored event with the same id, and the next n-1 stored events repeat the rest
        (same ids, same streams), return the original AppendResult; a partial repeat is
        WrongExpectedVersionError; anything else returns None (append as usual)."""
        cdef uint64_t v0
        if sid < 0 or count == 0:
            return None
        if expected >= NO_STREAM:
            if <int64_t>count - 1 <= expected:
                return None
            v0 = <uint64_t>(expected + 1)
        else:
            if count < n_first:
                return None
            v0 = count - n_first
        cdef uint64_t p0 = chl_streams_position(self.st, sid, v0)
        if p0 >= self.written:
            return None
        cdef RecordView rv
        cdef FrameInfo fi
        cdef uint64_t i
        fi.stored = NULL
        fi.body = NULL
        cdef Decoder dec = self._decoder()
        try:
            if not self._view(p0, &fi, &rv, False, dec) or rv.eid == NULL or memcmp(rv.eid, ids, 16) != 0:
                return None
            if p0 + n > self.written:
                return False
            for i in range(n):
                if not self._view(p0 + i, &fi, &rv, False, dec) or rv.eid == NULL \
                        or memcmp(rv.eid, ids + 16 * i, 16) != 0 or rv.slen != slens[i] \
                        or memcmp(rv.stream, streams[i], rv.slen) != 0:
                    return False
        finally:
            self._give_back(dec)
        next_version = rv.version + 1 if streams == NULL or n == n_first else None
        return AppendResult(p0, p0 + n - 1, next_version)

    def append(self, stream, events, int64_t expected, int64_t timestamp):
        """Append events of one stream as one frame; see EventStore.append."""
        self._check_writable()
        cdef bytes s = stream_utf8(stream)
        cdef const char *sp = PyBytes_AS_STRING(s)
        cdef uint32_t slen = <uint32_t>PyBytes_GET_SIZE(s)
        # A private tuple: another thread cannot swap an event between sizing and encoding.
        if isinstance(events, NewEvent):
            events = (events,)
        elif isinstance(events, (str, bytes)) or not hasattr(events, "__iter__"):
            raise InvalidEventError(f"events must be a list of chronolog.NewEvent, got "
                                    f"{'None' if events is None else type(events).__name__}")
        else:
            events = tuple(events)
        cdef Py_ssize_t n = len(events), i
        if n == 0:
            raise InvalidArgumentError("append needs at least one event; pass a list of NewEvent")
        cdef NewEvent ev
        cdef size_t body = 0, rec
        cdef bint all_ids = True
        for i in range(n):
            obj = events[i]
            if not isinstance(obj, NewEvent):
                raise InvalidEventError(f"event {i} must be a chronolog.NewEvent, got {type(obj).__name__}")
            ev = <NewEvent>obj
            rec = record_bytes(slen, len(ev._type_utf8), len(ev.metadata), len(ev.data), ev._id is not None)
            if rec > self.max_event_bytes:
                raise EventTooLargeError(rec, self.max_event_bytes, f"event {i} ({ev.type})")
            body += rec + 4
            if ev._id is None:
                all_ids = False
        if body > CHL_MAX_BODY_BYTES:
            raise EventTooLargeError(body, CHL_MAX_BODY_BYTES, "the append")
        cdef size_t frame_bytes = body + FRAME_OVERHEAD_BYTES
        cdef int64_t sid
        cdef uint64_t count, first, seq, off
        cdef Segment seg
        cdef unsigned char *bp
        cdef size_t at
        cdef bytes ids
        cdef const char **streams_p
        cdef uint32_t *slens_p
        with self._lock:
            self._check_writable()
            self._checkpoint_poll()
            sid = chl_streams_find(self.st, sp, slen)
            count = chl_streams_count(self.st, sid) if sid >= 0 else 0
            # Pass 1: an idempotent retry returns the original result and writes nothing.
            if all_ids and count:
                ids = b"".join([(<NewEvent>e)._id for e in events])
                streams_p = <const char **>malloc(n * sizeof(char *))
                slens_p = <uint32_t *>malloc(n * sizeof(uint32_t))
                try:
                    for i in range(n):
                        streams_p[i] = sp
                        slens_p[i] = slen
                    res = self._retry_result(sid, count, expected, n, n, ids, streams_p, slens_p)
                finally:
                    free(streams_p)
                    free(slens_p)
                if res is False:
                    raise WrongExpectedVersionError(stream, expected, count - 1,
                                                    "part of this append repeats stored events")
                if res is not None:
                    return res
            # Pass 2: the expected version.
            if not expectation_holds(expected, count):
                raise WrongExpectedVersionError(stream, expected, count - 1 if count else None)
            # Pass 3: encode the frame into the reusable buffer and write it.
            seg = self._segment_for(frame_bytes)
            bp = self._frame_buffer(frame_bytes)
            first = self.written
            at = 0
            for i in range(n):
                ev = <NewEvent>events[i]
                st32(bp + FRAME_HEADER_BYTES + body - 4 * (n - i), <uint32_t>at)
                at += put_record(bp + FRAME_HEADER_BYTES + at, sp, slen,
                                 PyBytes_AS_STRING(ev._type_utf8), PyBytes_GET_SIZE(ev._type_utf8),
                                 <const unsigned char *>PyBytes_AS_STRING(ev._id) if ev._id is not None else NULL,
                                 PyBytes_AS_STRING(ev.metadata), PyBytes_GET_SIZE(ev.metadata),
                                 PyBytes_AS_STRING(ev.data), PyBytes_GET_SIZE(ev.data),
                                 first + i, count + i, timestamp)
            off = self._write_frame(seg, self._seal(seg, body, <uint32_t>n, first, 0))
            # Pass 4: commit to the indexes (the stream is created here, never on a refusal).
            if sid < 0:
                sid = chl_streams_intern(self.st, sp, slen, 1)
                if sid < 0:
                    raise MemoryError()
            self._reserve_scratch(n)
            for i in range(n):
                self.sids[i] = sid
            self._commit(n, (<uint64_t>seg.ordinal << 32) | off, self._written_table(n))
            seq = self.written_seq
        if self.dmode == DURABILITY_FSYNC:
            self.sync_to(seq)
        return AppendResult(first, first + n - 1, count + n)

    def append_columns(self, streams, types, datas, metas, ids, dict expected_versions,
                       int64_t timestamp):
        """Append parallel Arrow columns as one frame; see EventStore.append_batch.

        streams and types: large_string arrays; datas and metas: large_binary arrays (metas
        may be None); ids: fixed_size_binary(16) array or None. No nulls except in ids."""
        self._check_writable()
        cdef Py_ssize_t n = len(streams)
        if n == 0:
            raise InvalidArgumentError("append_batch needs at least one event")
        cdef ArrowColumn cs = ArrowColumn(streams, "streams"), ct = ArrowColumn(types, "types"), cd = ArrowColumn(datas, "datas")
        cdef ArrowColumn cm = ArrowColumn(metas, "metadatas") if metas is not None else None
        cdef const unsigned char *idp = NULL
        cdef const unsigned char *idvalid = NULL
        cdef int64_t id_offset = 0
        if ids is not None:
            bufs = ids.buffers()
            id_offset = ids.offset
            idp = <const unsigned char *><size_t>bufs[1].address
            if bufs[0] is not None and ids.null_count:
                idvalid = <const unsigned char *><size_t>bufs[0].address
        cdef bint all_ids = ids is not None and ids.null_count == 0
        cdef ColView cols[4]
        cols[0] = col_view(cs)
        cols[1] = col_view(ct)
        cols[2] = col_view(cm)
        cols[3] = col_view(cd)
        return self._append_views(cols, idp, idvalid, id_offset, n, all_ids, expected_versions,
                                  timestamp)

    def append_lists(self, list streams, list types, list datas, metas, ids,
                     dict expected_versions, int64_t timestamp):
        """append_columns for short Python lists: the same pipeline, without building Arrow
        arrays (which cost more than the append itself for a few events)."""
        self._check_writable()
        cdef Py_ssize_t n = len(streams), i
        if n == 0:
            raise InvalidArgumentError("append_batch needs at least one event")
        if len(types) != n or len(datas) != n or (metas is not None and len(metas) != n) \
                or (ids is not None and len(ids) != n):
            raise InvalidArgumentError("the columns must be parallel: every one needs a value "
                                       f"per event ({n} streams)")
        sb = [stream_utf8(x) for x in streams]
        tb = []
        for i in range(n):
            t = types[i]
            if not isinstance(t, str):
                raise InvalidEventError(f"event {i}: the event type must be a str, got {type(t).__name__}")
            try:
                tb.append((<str>t).encode("utf-8"))
            except UnicodeEncodeError:
                raise InvalidEventError(f"event {i}: the event type must be valid Unicode") from None
        db = [payload_bytes(x, "data", i) for i, x in enumerate(datas)]
        mb = [payload_bytes(x, "metadata", i) for i, x in enumerate(metas)] if metas is not None else None
        cdef bytes idbuf = None, valid = None
        cdef bint all_ids = False
        if ids is not None:
            parts = []
            bits = bytearray((n + 7) // 8)
            all_ids = True
            for i in range(n):
                v = ids[i]
                if v is None:
                    parts.append(bytes(16))
                    all_ids = False
                else:
                    parts.append(event_id16(v, i))
                    bits[i >> 3] |= 1 << (i & 7)
            idbuf = b"".join(parts)
            valid = bytes(bits)
        keep = [packed_column(sb), packed_column(tb), packed_column(mb) if mb is not None else None, packed_column(db)]
        cdef ColView cols[4]
        cdef const char *buf
        for i in range(4):
            if keep[i] is None:
                cols[i].offsets = NULL
                cols[i].data = NULL
            else:
                buf = keep[i][1]
                cols[i].data = buf
                cols[i].offsets = <const int64_t *><size_t>keep[i][2]
        return self._append_views(cols, <const unsigned char *>idbuf if idbuf is not None else NULL,
                                  <const unsigned char *>valid if (valid is not None and not all_ids) else NULL,
                                  0, n, all_ids, expected_versions, timestamp)

    cdef object _append_views(self, ColView *cols, const unsigned char *idp,
                              const unsigned char *idvalid, int64_t id_offset, Py_ssize_t n,
                              bint all_ids, dict expected_versions, int64_t timestamp):
        # Pass 1: sizes and limits, no Python object per event (long batches without the GIL;
        # short ones keep it: releasing it costs more than it saves when threads contend).
        cdef size_t body = 0
        cdef Py_ssize_t bad = -1
        cdef int problem = 0
        cdef size_t max_event = self.max_event_bytes
        if n >= NOGIL_BATCH:
            with nogil:
                problem = size_batch(cols, idp, idvalid, id_offset, n, max_event, &body, &bad)
        else:
            problem = size_batch(cols, idp, idvalid, id_offset, n, max_event, &body, &bad)
        if problem == 1:
            name = bytes(col_ptr(&cols[0], bad)[:col_len(&cols[0], bad)]).decode("utf-8", "replace")
            stream_utf8(name)  # raises the precise reason
            raise InvalidStreamNameError(name, f"event {bad}: a stream name must be 1..{MAX_STREAM_NAME_BYTES} bytes")
        if problem == 2:
            raise InvalidEventError(f"event {bad}: the event type must be 1..{MAX_TYPE_NAME_BYTES} bytes of UTF-8")
        if problem == 3:
            raise EventTooLargeError(record_bytes(col_len(&cols[0], bad), col_len(&cols[1], bad),
                                                  col_len(&cols[2], bad), col_len(&cols[3], bad),
                                                  idp != NULL),
                                     self.max_event_bytes, f"event {bad}")
        if body > CHL_MAX_BODY_BYTES:
            raise EventTooLargeError(body, CHL_MAX_BODY_BYTES, "the append")
        cdef size_t frame_bytes = body + FRAME_OVERHEAD_BYTES
        cdef int64_t sid, code
        cdef uint64_t count, first, seq, off, at
        cdef Segment seg
        cdef unsigned char *bp
        cdef uint64_t salt
        cdef uint32_t mark
        cdef size_t n_first = 0
        cdef size_t narrow = 0
        cdef size_t done
        cdef const char **streams_p
        cdef uint32_t *slens_p
        with self._lock:
            self._check_writable()
            self._checkpoint_poll()
            self._reserve_scratch(n)
            # Pass 2: stream ids and versions (new streams get ids now, with no events).
            done = chl_streams_intern_batch(self.st, cols[0].offsets, cols[0].data, <size_t>n,
                                            self.sids, self.vers)
            if done < <size_t>n:
                self._reset_pending(done)
                raise MemoryError()
            try:
                # Pass 3: an idempotent retry returns the original result and writes nothing.
                if all_ids:
                    sid = self.sids[0]
                    count = chl_streams_count(self.st, sid)
                    n_first = self.st.streams[sid].pending
                    code = ANY
                    if expected_versions:
                        s0 = bytes(col_ptr(&cols[0], 0)[:col_len(&cols[0], 0)]).decode("utf-8")
                        if s0 in expected_versions:
                            code = expected_versions[s0]
                    streams_p = <const char **>malloc(n * sizeof(char *))
                    slens_p = <uint32_t *>malloc(n * sizeof(uint32_t))
                    try:
                        for i in range(n):
                            streams_p[i] = col_ptr(&cols[0], i)
                            slens_p[i] = <uint32_t>col_len(&cols[0], i)
                        res = self._retry_result(sid, count, code, n, n_first,
                                                 idp + 16 * id_offset, streams_p, slens_p)
                    finally:
                        free(streams_p)
                        free(slens_p)
                    if res is False:
                        raise WrongExpectedVersionError(
                            bytes(col_ptr(&cols[0], 0)[:col_len(&cols[0], 0)]).decode("utf-8"), code,
                            count - 1 if count else None, "part of this batch repeats stored events")
                    if res is not None:
                        self._reset_pending(n)
                        return res
                # Pass 4: every expected version, before anything is written.
                if expected_versions:
                    for name, code in expected_versions.items():
                        b = stream_utf8(name)
                        sid = chl_streams_find(self.st, PyBytes_AS_STRING(b), len(b))
                        count = chl_streams_count(self.st, sid) if sid >= 0 else 0
                        if not expectation_holds(code, count):
                            raise WrongExpectedVersionError(name, code, count - 1 if count else None)
                # Pass 5: the narrow region (docs/scan.md "Narrow scans"), then encode
                # (without the GIL for long batches) and write.
                narrow = self._plan_narrow(cols, n, body)
                body += narrow
                frame_bytes += narrow
                seg = self._segment_for(frame_bytes)
                bp = self._frame_buffer(frame_bytes)
                first = self.written
                salt = seg.salt
                mark = self._synced_mark(seg)
                if frame_bytes >= WPIPE_MIN_BYTES and self.compressor is None:
                    off = self._write_piped(seg, body, cols, idp, idvalid, id_offset, n, first,
                                            timestamp, narrow)
                else:
                    if n >= NOGIL_BATCH:
                        with nogil:
                            encode_batch(bp, body, cols, idp, idvalid, id_offset, n, first,
                                         self.vers, timestamp, &self.nplan, narrow, self.sids, NULL)
                    else:
                        encode_batch(bp, body, cols, idp, idvalid, id_offset, n, first, self.vers,
                                     timestamp, &self.nplan, narrow, self.sids, NULL)
                    off = self._write_frame(seg, self._seal(seg, body, <uint32_t>n, first, narrow))
            except BaseException:
                self._reset_pending(n)
                raise
            # Pass 6: commit to the indexes.
            self._commit(n, (<uint64_t>seg.ordinal << 32) | off, self._written_table(n))
            seq = self.written_seq
            single = True
            for i in range(1, n):
                if self.sids[i] != self.sids[0]:
                    single = False
                    break
            next_version = self.vers[n - 1] + 1 if single else None
        if self.dmode == DURABILITY_FSYNC:
            self.sync_to(seq)
        return AppendResult(first, first + n - 1, next_version)

    # ---------------------------------------------------------------- lookups (reads: reads.pyx)

    cdef int _check_open(self) except -1:
        if self.closed:
            raise StoreClosedError(self.path)
        return 0

    cdef bint _view(self, uint64_t position, FrameInfo *fi, RecordView *rv, bint strict,
                    Decoder dec) except -1:
        """Random read: find the record at `position` (< written) with the fewest cache
        misses. Checked: the frame's magic, extent and range (bounds), the record's CRC32C and
        position, so what is returned is exactly what was written. The frame's own CRCs and
        trailer are checked by sequential reads (_view_seq), scans and verify(). A compressed
        frame decodes only the block holding the record (with `dec`).
        A problem raises CorruptionError when strict, else returns False."""
        cdef uint32_t ro = self.pidx.roff_at(position)
        cdef Segment seg
        if ro != 0:
            # The record's offset is known: read it without the position entry, the frame
            # header and the offset table. Its bounds (the segment's end), CRC and position
            # make it exactly what was written; anything else takes the checked path below.
            seg = self._segment_of(position)
            if seg.map_len < seg.end:
                seg.ensure_mapped(seg.end, 0)
            if view_record_at(seg.map, ro - 1, seg.end, True, rv) == 0 and rv.position == position:
                return True
        cdef uint64_t e = self.pidx.get(position)
        cdef uint64_t ordinal = e >> 32, off = e & 0xFFFFFFFF
        if ordinal >= <uint64_t>len(self.segments):
            if strict:
                raise CorruptionError(self.path, None, f"position index names a missing segment for position {position}")
            return False
        seg = self.segments[ordinal]
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
                self.pidx.set_one_roff(position, <uint32_t>(rv.rec - seg.map) + 1)
            return True
        fi.stored = NULL
        fi.body = NULL
        if strict:
            raise CorruptionError(seg.path, off, reason)
        return False

    cdef Decoder _decoder(self):
        """A Decoder for one reading call (from a small pool: creating one costs a zstd
        context). Give it back with _give_back."""
        if self._decoders:
            return self._decoders.pop()
        return Decoder(self.dicts)

    cdef void _give_back(self, Decoder dec) noexcept:
        if dec is not None and len(self._decoders) < 8:
            self._decoders.append(dec)

    cdef bint _rebuild_indexes(self) except -1:
        """A read found the indexes disagreeing with the segments (a damaged or stale index
        file): rebuild both from the segments and return True so the read is retried. Raises
        CorruptionError when the segments themselves are damaged."""
        if self.closed:
            return False
        if self.readonly:
            self._rebuild_unlocked()
        else:
            with self._lock:
                self._rebuild_unlocked()
        return True

    cdef int _rebuild_unlocked(self) except -1:
        self._checkpoint_join()  # it may still be writing from the indexes replaced here
        cdef PositionIndex old_p = self.pidx
        cdef StreamIndex old_s = self.sidx
        cdef uint64_t old_written = self.written, old_head = self.head
        self.pidx = PositionIndex()
        self.sidx = StreamIndex()
        self.sidx.lazy = True  # every entry is read through chl_streams_at or find/intern
        self.st = self.sidx.t
        self.written = 0
        self.head = 0
        try:
            self._catch_up(False)
            if self.written < old_written:
                raise CorruptionError(self.path, None, f"the segments hold {self.written} "
                                      f"events, {old_written} were indexed")
        except BaseException:
            self.pidx, self.sidx, self.st = old_p, old_s, old_s.t
            self.written, self.head = old_written, old_head
            raise
        if self.head > old_head and self.dmode == DURABILITY_FSYNC:
            self.head = old_head
        if not self.readonly:
            # The checkpoint files were wrong: drop them; close writes sound ones.
            for name in ("positions.idx", "streams.idx"):
                try:
                    self.io.unlink(os.path.join(self.path, "index", name))
                except OSError:
                    pass
            self.checkpoint_through = 0
        return 0

    def refresh(self):
        """Read-only handles: index what the writer appended since; returns the new head."""
        self._check_open()
        if self.readonly:
            self._catch_up(False)
            if self.st.unsound:
                self._rebuild_unlocked()
        return self.head

    # ---------------------------------------------------------------- close

    cdef void _release(self) noexcept:
        cdef Segment seg
        if self._ckpt is not None and self._ckpt.thread is not None:
            self._ckpt.thread.join()  # it writes from the indexes freed below
        self._ckpt = None
        with nogil:
            chl_wpipe_reap(&self.wpipe)  # its writeback hint uses the active segment's fd
        for seg in self.segments:
            seg.release()
        self.segments = []
        self.pidx.clear()
        self.sidx.clear()

    def close(self):
        """Sync, checkpoint the indexes (the writer) and release every file."""
        if self.closed:
            return
        try:
            if not self.readonly and self.failed is None:
                with self._lock:
                    self.sync()
                    self._checkpoint()
                    if self.segments:
                        self._release_reserved(self.segments[len(self.segments) - 1])
        finally:
            self.closed = True
            self._release()

    def _check_invariants(self):
        """Debug check: head == position index count; stream counts add up to head."""
        cdef uint64_t i, total = 0
        assert self.written == self.pidx.count(), (self.written, self.pidx.count())
        for i in range(self.st.n_streams):
            total += chl_streams_count(self.st, i)
            assert chl_streams_at(self.st, i).pending == 0
        assert total == self.written, (total, self.written)
        return True
