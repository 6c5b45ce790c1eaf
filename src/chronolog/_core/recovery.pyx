"""The Log's first layer: a store directory opened and recovered. The store header, the
segments (each header checked), the index checkpoints when sound, the tail indexed past them
(a torn tail of the newest segment cut and kept aside), the indexes rebuilt from the segments
on any doubt, and the checkpoints a background thread wrote adopted. The layers above add
group commit (commit.pyx), writes (write.pyx) and appends (log.pyx).
"""
import os
import re
import stat

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport realloc, free
from posix.unistd cimport getpid
from posix.fcntl cimport O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_CLOEXEC
cdef extern from "<fcntl.h>":
    enum: O_NOFOLLOW
cdef extern from "chl_fork.h" nogil:
    unsigned char *chl_fork_page_new()
    void chl_fork_page_free(unsigned char *p)
    bint chl_forked(const unsigned char *page, long owner)

from chronolog._core.format cimport (
    STORE_HEADER_BYTES, SEGMENT_HEADER_BYTES, FRAME_HEADER_BYTES, CODEC_NONE,
    CHL_VISIBLE_ALL as VISIBLE_ALL, read_visible_mark)
from chronolog._core.record cimport RecordView, record_problem, view_record
from chronolog._core.codec cimport Decoder, Dictionaries
from chronolog._core.segment cimport (
    Segment, FrameInfo, FrameStatus, check_frame, check_frame_copy, frame_status_reason,
    later_claim, nonzero_end, FRAME_OK)
from chronolog._core.checkpoint cimport CheckpointJob
from chronolog._core.index cimport PositionIndex, StreamIndex
from chronolog._core.streams cimport (
    chl_streams_intern, chl_streams_push_batch, chl_streams_count, chl_streams_at,
    chl_streams_materialize)
from chronolog._core.fileio import not_regular, read_regular
from chronolog._core.segment import (
    segment_name, encode_segment_header, decode_segment_header, encode_store_header,
    decode_store_header)

from chronolog.errors import (
    CorruptionError, ForkedWriterError, ReadOnlyError, StoreClosedError, StoreFailedError,
    StoreNotFoundError)

_SEGMENT_RE = re.compile(r"^(\d{20})\.seg$")
STORE_FILE = "chronolog.store"
VISIBLE_FILE = os.path.join("index", "visible")
# A torn tail is the part of one append a crash interrupted (or, after a power loss, the
# unsynced appends): cutting more than this keeps a copy anyway (nothing is deleted).
QUARANTINE_BYTES = 1 << 20


cdef class RecoveredLog:
    """A store directory opened and recovered: its segments and the indexes over them.

    Format: format.pxd (docs/format.md). Only ever used as the base of Log (log.pyx), which
    sets every field in its __init__ and then calls _open.

    Invariants:
        - written == positions.count(): every position below written is indexed;
        - head <= written: positions below head are visible to reads (in "fsync" mode head
          trails written until a sync covers them; otherwise they are equal);
        - the frames of the positions below written - inflight are all written (`inflight`:
          the events of a pipelined frame indexed while its helper still writes it), so a
          sync or verify() of another thread looks no further;
        - for every stream, its versions are 0..count-1 and map to increasing positions;
        - segments[-1] is the only segment that grows; bytes past its `end` are not yet
          acknowledged (or are a torn tail that recovery cut).

    Thread-safety: the writer's changes happen under `_lock`; reads may run in any thread.
    """

    def __cinit__(self):
        self.owner_pid = getpid()
        self.fork_page = NULL  # the writer's, made by _open (readers never write)
        self.sids = NULL
        self.vers = NULL
        self.visible_fd = -1
        self.visible = VISIBLE_ALL
        self.copy_buf = NULL
        self.copy_cap = 0

    def __dealloc__(self):
        free(self.sids)
        free(self.vers)
        free(self.copy_buf)
        chl_fork_page_free(self.fork_page)

    # ---------------------------------------------------------------- opening and recovery

    cdef _open(self):
        if not self.readonly:
            self.fork_page = chl_fork_page_new()  # for _forked: NULL falls back to getpid()
        # Pass 1: the store header (created with the directory when missing).
        store_file = os.path.join(self.path, STORE_FILE)
        try:
            os.stat(store_file)
            has_header = True
        except FileNotFoundError:
            has_header = False
        if not has_header:
            try:
                stray = sum(1 for n in os.listdir(self.path) if _SEGMENT_RE.match(n))
            except FileNotFoundError:
                stray = 0
            if stray:
                # Segments name the store id of the header: a new header would orphan them
                # for good. Nothing is created.
                raise CorruptionError(store_file, None, f"the store header is missing, but "
                                      f"{stray} segment files are there: restore {STORE_FILE} "
                                      "from a backup (it holds the store id the segments "
                                      "carry); nothing was changed")
            if self.readonly:
                raise StoreNotFoundError(self.path)
            self._create_store(store_file)
        self.store_id = self._read_store_header(store_file)
        listing = os.listdir(self.path)  # one listing: dictionaries and segments
        self.dicts = Dictionaries(self.path, listing)
        if self.compressor is not None and self.dicts.newest:
            self.compressor.use_dictionary(self.dicts, self.dicts.newest)
        if not self.readonly:
            self._index_dir()
        # Pass 2: the segments, by name; each header checked.
        names = sorted(n for n in listing if _SEGMENT_RE.match(n))
        for name in names:
            if not self._attach_segment(name, name == names[len(names) - 1]):
                break
        # The position checkpoint covers only events that were synced before it was written:
        # the writer's recovery must find at least that many (_check_floor); verify() holds
        # readers to it too.
        cdef uint64_t pcount = self.pidx.load(os.path.join(self.path, "index", "positions.idx"),
                                              self.store_id)
        self.durable_floor = pcount
        if not self.segments:
            if self.readonly:
                raise StoreNotFoundError(self.path)
            self._check_floor(None, None, "there is no segment file")
            self._drop_torn_new()
            self._new_segment(0)
        # Sealed segments are complete and immutable: readable to their end. (Their frames are
        # checked when read; verify() checks all of them.)
        cdef Segment seg
        for seg in self.segments[:len(self.segments) - 1]:
            seg.end = seg.file_size()
            seg.ensure_mapped(seg.end, 0)
        # Pass 3: the index checkpoints, when sound and consistent with the segments.
        cdef uint64_t through = self._load_checkpoints(pcount)
        # Pass 4: index the tail past the checkpoint (cutting a torn tail when writing).
        self._catch_up(not self.readonly)
        if not self.readonly:
            seg = self.segments[len(self.segments) - 1]
            self._check_floor(seg.path, seg.end, f"the newest segment, {seg.name}, ends at "
                              f"byte {seg.end}")
            self._drop_torn_new()
        if self.st.unsound:
            # A stream of the tail was looked up in a damaged chunk of the checkpoint.
            self._rebuild_unlocked()
            through = 0
        if not self.readonly:
            seg = self.segments[len(self.segments) - 1]
            seg.open_for_write()
            # Blocks a killed writer reserved past the end (fallocate, docs/design.md
            # "Pipelined writes"): given back now, not at the next roll or close after a write.
            if os.fstat(seg.wfd).st_blocks * 512 > ((seg.end + 4095) & ~4095) + 65536:
                try:
                    self.io.ftruncate(seg.wfd, seg.end)
                except OSError:
                    pass  # (a hint: the blocks stay reserved, nothing else changes)
            # What recovery kept may sit in the page cache only (a process crash in "os"
            # mode): sync it once, so later frames may truthfully claim it as synced.
            self.io.fdatasync(seg.wfd)
            self.durable_ordinal = seg.ordinal
            self.durable_offset = seg.end
            self.visible_fd = self._open_visible_for_write()
            self._publish(self.head if self.dmode == DURABILITY_FSYNC else VISIBLE_ALL)
        self.checkpoint_through = through

    cdef _index_dir(self):
        """The writer's index/ directory, made when missing. Anything else by that name (a
        file, a link) is derived data standing in the way: removed, then the directory made."""
        idx = os.path.join(self.path, "index")
        try:
            mode = os.lstat(idx).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISDIR(mode):
            self.io.unlink(idx)
        os.makedirs(idx, mode=0o700, exist_ok=True)

    cdef _create_store(self, str store_file):
        import time
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        cdef bytes h = encode_store_header(os.urandom(16), time.time_ns())
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
        return decode_store_header(read_regular(store_file, STORE_HEADER_BYTES + 1), store_file)

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
                    self.torn_new = path
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
        if len(self.segments) > 1:
            # The one before is sealed for good (a writer creates a segment only after it has
            # cut and synced the last): map it whole and give its descriptor back.
            (<Segment>self.segments[len(self.segments) - 2]).seal()
        return True

    cdef int _drop_torn_new(self) except -1:
        """Remove the newest segment whose header a crash tore while creating it (it holds no
        frame), once the open has passed every check that could refuse the store: a refused
        open changes nothing, and repair keeps the file."""
        if self.torn_new is not None:
            self.io.unlink(self.torn_new)
            self.io.fsync_dir(self.path)
            self.torn_new = None
        return 0

    cdef int _check_floor(self, object path, object offset, str where) except -1:
        """The writer's recovery ends at `written` (where: what ends it there): refuse to
        open (CorruptionError, before anything is cut or written) when that is below the
        durable floor, the events the position checkpoint records as once synced. Fewer can
        only mean damage from outside: a segment deleted or truncated, or its last synced
        frames damaged (no later frame's synced mark covers those). Opening anyway would
        hand out the lost positions again (DESIGN invariant 3)."""
        if self.written >= self.durable_floor:
            return 0
        cdef uint64_t missing = self.durable_floor - self.written
        raise CorruptionError(
            path if path is not None else self.path, offset,
            f"{where}: the segments hold {self.written} events, but the index checkpoint "
            f"records {self.durable_floor} as written to stable storage, so {missing} "
            f"acknowledged event{'s are' if missing != 1 else ' is'} missing (a segment deleted "
            "or truncated, or its last frames damaged). Restore the store from a backup (a copy "
            "taken while a writer runs must copy index/ before the segments), or give the "
            "missing events up: `chronolog repair --salvage` opens it with those that are left "
            "(their positions are then used again), and logs it")

    cdef uint64_t _load_checkpoints(self, uint64_t pcount) except? 0xFFFFFFFFFFFFFFFF:
        """Use both checkpoints (the position one loaded already: `pcount` entries) when they
        are sound and consistent with the segments; on any doubt start from nothing (a full
        rebuild)."""
        idx = os.path.join(self.path, "index")
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

    cdef uint64_t _visible_mark(self) except? 0:
        """Readers: the positions below this are acknowledged by the writer (index/visible;
        docs/design.md, "What readers see"). Every complete frame while the file is missing (a
        store of before the mark); the last mark read when it does not check."""
        if self.visible_fd < 0:
            try:
                self.visible_fd = self.io.open(os.path.join(self.path, VISIBLE_FILE),
                                               O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0)
            except OSError:
                return self.visible
        self.visible = read_visible_mark(self.visible_fd, self.visible)
        return self.visible

    cdef int _open_visible_for_write(self) except -1:
        """The writer's descriptor of index/visible, the same file its readers hold (never
        replaced while it is a regular file). Anything else there (a FIFO, a symlink, a
        directory...) is derived data standing in the way: it is removed and the file made."""
        path = os.path.join(self.path, VISIBLE_FILE)
        cdef int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW
        try:
            return self.io.open(path, flags, 0o600)
        except OSError as exc:
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                mode = 0
            if mode == 0 or stat.S_ISREG(mode):
                raise exc  # missing, or a regular file that cannot be opened: not ours to remove
        if stat.S_ISDIR(mode):
            raise not_regular(path)  # (a directory may hold someone's files: not removed)
        self.io.unlink(path)
        return self.io.open(path, flags, 0o600)

    cdef int _publish(self, uint64_t value) except -1:
        """The writer: readers may read the positions below `value` (VISIBLE_ALL: every
        complete frame). A failed rewrite is ignored: the file is derived, and readers only
        lag behind until the next one succeeds."""
        if self.visible_fd >= 0:
            try:
                self.io.publish(self.visible_fd, value)
            except OSError:
                pass
        return 0

    cdef int _scan_tail(self, bint recover) except -1:
        cdef Segment seg
        cdef uint64_t size, off, ordinal, e
        cdef FrameStatus status
        cdef FrameInfo fi
        # Readers index only what the writer acknowledged; the writer (recovering, or
        # rebuilding its indexes), every complete frame.
        cdef uint64_t visible = self._visible_mark() if self.readonly else VISIBLE_ALL
        # A reader with no exact mark (the writer's mode is not "fsync", or the mark file is
        # missing) checks each new frame of the newest segment through a copy before it reads
        # it mapped: a writer opening after a crash cuts a torn tail, and a read through the
        # mapping of a page it cut away would be SIGBUS (complete frames, and sealed
        # segments, are never cut).
        cdef bint by_copy = self.readonly and visible == VISIBLE_ALL
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
                if self.written >= visible:
                    # The mark is a frame boundary: nothing past it is acknowledged, so none of
                    # its bytes are read, not even to check them (the writer's fail-stop may be
                    # cutting them: a read of a page cut away is SIGBUS).
                    return 0
                if by_copy and ordinal + 1 == <uint64_t>len(self.segments):
                    status = check_frame_copy(seg.fd, size, off, seg.salt, &self.copy_buf,
                                              &self.copy_cap)
                    if status == FRAME_OK:  # complete: its mapped bytes stay
                        status = check_frame(seg.map, size, off, seg.salt, False, &fi)
                else:
                    status = check_frame(seg.map, size, off, seg.salt, True, &fi)
                if status != FRAME_OK:
                    break
                if fi.first_position != self.written:
                    raise CorruptionError(seg.path, off, f"frame starts at position "
                                          f"{fi.first_position}, expected {self.written}")
                if fi.first_position + fi.count > visible:
                    return 0  # written, not yet acknowledged: look again later
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
            self._check_floor(seg.path, off, frame_status_reason(status))
            # Damage or a torn tail? Every frame records how much of its segment was on
            # stable storage when it was written (its synced mark). If any complete frame
            # after this point claims a mark past it, these bytes had been synced: damage.
            # Otherwise they never were, nor was anything after them (a power loss with
            # reordered writeback can leave later frames whole): a torn tail, cut here.
            # Zeros at the end are neither searched nor kept: a writer in "fsync" mode sizes
            # its segment ahead of its frames (docs/design.md, "Segments sized ahead"), and a
            # crash leaves them. A whole frame ends in its trailer's magic, never in a zero
            # byte, so every whole frame of the tail lies before `used`.
            used = nonzero_end(seg.map, off, size)
            claim = later_claim(seg.map + off, used - off, off, seg.salt)
            if claim > <int64_t>off:
                raise CorruptionError(seg.path, off, frame_status_reason(status) +
                                      "; a later frame records these bytes as synced, so this "
                                      "is damage, not a torn tail")
            seg.open_for_write()
            if claim >= 0 or used - off > QUARANTINE_BYTES:
                self._quarantine(seg, off, used)
            self.io.ftruncate(seg.wfd, off)
            self.io.fsync(seg.wfd)
            return 0

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

    # ---------------------------------------------------------------- indexing frames

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
        self._index_batch(n, entry, table)
        self._show_written()
        return 0

    cdef int _index_batch(self, uint64_t n, uint64_t entry, const unsigned char *table) except -1:
        """Index n events at `written` (their frame: `entry`) and count them as written; reads
        stop at head, which this leaves alone."""
        if chl_streams_push_batch(self.st, self.sids, n, self.written) != 0:
            raise MemoryError()
        self.pidx.push_n(entry, n)
        if table != NULL:
            self.pidx.set_roff(self.written, table, n, (entry & 0xFFFFFFFF) + FRAME_HEADER_BYTES)
        self.written += n
        return 0

    cdef void _show_written(self) noexcept:
        if self.dmode != DURABILITY_FSYNC or self.catching_up:
            self.head = self.written  # in fsync mode, sync_to makes appends visible

    # ---------------------------------------------------------------- segments and adopted checkpoints

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
        if not job.wait():
            self._ckpt = None  # its thread never started: nothing written, nothing to adopt
            return 0
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

    # ---------------------------------------------------------------- checks

    cdef int _check_open(self) except -1:
        if self.closed:
            raise StoreClosedError(self.path)
        return 0

    def check_writable(self):
        """Raise what an append would raise now: StoreClosedError, ReadOnlyError,
        StoreFailedError or ForkedWriterError."""
        self._check_writable()

    cdef int _check_writable(self) except -1:
        if self.closed:
            raise StoreClosedError(self.path)
        if self.readonly:
            raise ReadOnlyError(self.path)
        if self._forked():
            raise ForkedWriterError(self.path, self.owner_pid)
        if self.failed is not None:
            raise StoreFailedError(self.path, self.failed)
        return 0

    cdef bint _forked(self) noexcept:
        """This handle was opened by another process: we are a child forked from it."""
        return chl_forked(self.fork_page, self.owner_pid)

    cdef int _make_sound(self) except -1:
        """Check every chunk of a lazily attached stream checkpoint now (O(streams), once), and
        rebuild the indexes from the segments when one fails: a checkpoint must never copy a
        damaged chunk into a new file under fresh CRCs. The writer calls it before writing a
        checkpoint (with the lock held)."""
        chl_streams_materialize(self.st)
        if self.st.unsound:
            self._rebuild_unlocked()
        return 0

    cdef bint _lookups_unsound(self) except -1:
        """The writer, after an append's stream lookups and before it decides anything from
        them: when one met a damaged chunk of the lazily attached stream checkpoint (it may
        have hidden a stream, which the append would then create again at version 0),
        rebuild the indexes from the segments and return True: the append looks its streams
        up again, in a table that has no checkpoint behind it (so every lookup is sound).
        False when every lookup so far was sound. Checking only the chunks an append touches
        keeps the first append to a store of millions of streams O(its events), where
        checking them all (_make_sound) cost ~90 ms and ~120 MB per million streams
        (docs/design.md, "The stream index")."""
        if not self.st.unsound:
            return False
        self._rebuild_unlocked()
        return True

    cdef int _unsound(self) except -1:
        """Readers: a lookup met a damaged chunk of the stream checkpoint, so the answer may be
        wrong: raise CorruptionError, which the reading method answers by rebuilding the
        indexes and reading again."""
        if self.st.unsound:
            raise CorruptionError(self.path, None, "a chunk of the stream index checkpoint fails "
                                  "its check")
        return 0

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

    cdef Decoder _decoder(self):
        """A Decoder for one reading call (from a small pool: creating one costs a zstd
        context). Give it back with _give_back."""
        if self._decoders:
            return self._decoders.pop()
        return Decoder(self.dicts)

    cdef void _give_back(self, Decoder dec) noexcept:
        if dec is not None and len(self._decoders) < 8:
            self._decoders.append(dec)

    # ---------------------------------------------------------------- rebuilding the indexes, refresh, release

    cdef bint _rebuild_indexes(self) except -1:
        """A read found the indexes disagreeing with the segments (a damaged or stale index
        file): rebuild both from the segments and return True so the read is retried. Raises
        CorruptionError when the segments themselves are damaged."""
        if self.closed:
            return False
        with self._lock:  # a reader's threads share its indexes as a writer's do
            self._check_open()  # closed while this read waited for the lock
            self._rebuild_unlocked()
        return True

    cdef int _empty_indexes(self) except -1:
        """Start from empty indexes (at open, and to rebuild them from the segments)."""
        self.pidx = PositionIndex()
        self.sidx = StreamIndex()
        self.sidx.lazy = True  # every entry is read through chl_streams_at or find/intern
        self.st = self.sidx.t
        self.written = 0
        self.head = 0
        return 0

    cdef int _rebuild_unlocked(self) except -1:
        self._checkpoint_join()  # it may still be writing from the indexes replaced here
        cdef PositionIndex old_p = self.pidx
        cdef StreamIndex old_s = self.sidx
        cdef uint64_t old_written = self.written, old_head = self.head
        # The scan moves each segment's end as it indexes: a rebuild that stops at damage
        # must give back the ends too, or the good events past the damage (which the old
        # indexes still reach) would read as past their segment's end.
        cdef list old_ends = [(<Segment>seg).end for seg in self.segments]
        self._empty_indexes()
        try:
            self._catch_up(False)
            if self.written < old_written:
                raise CorruptionError(self.path, None, f"the segments hold {self.written} "
                                      f"events, {old_written} were indexed")
        except BaseException:
            self.pidx, self.sidx, self.st = old_p, old_s, old_s.t
            self.written, self.head = old_written, old_head
            for i in range(len(old_ends)):
                (<Segment>self.segments[i]).end = old_ends[i]
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
            # One refresh at a time: two threads of a reader once both attached the writer's
            # next segment (the second saw a gap between segments and every later call failed).
            with self._lock:
                self._check_open()  # a close may have come first
                self._catch_up(False)
                if self.st.unsound:
                    self._rebuild_unlocked()
        return self.head

    cdef void _release(self) noexcept:
        cdef Segment seg
        if self._ckpt is not None:
            try:
                self._ckpt.wait()  # it writes from the indexes freed below
            except BaseException:
                pass  # an interrupt while waiting: the wait went on to the end
        self._ckpt = None
        for seg in self.segments:
            seg.release()
        self.segments = []
        self._decoders = []  # (each holds the last frame it decoded, up to a frame's size)
        self.pidx.clear()
        self.sidx.clear()
        if self.visible_fd >= 0:
            self.io.close(self.visible_fd)
            self.visible_fd = -1

    def _check_invariants(self):
        """Debug check: head == position index count; stream counts add up to head."""
        cdef uint64_t i, total = 0
        assert self.written == self.pidx.count(), (self.written, self.pidx.count())
        for i in range(self.st.n_streams):
            total += chl_streams_count(self.st, i)
            assert chl_streams_at(self.st, i).pending == 0
        assert total == self.written, (total, self.written)
        return True
