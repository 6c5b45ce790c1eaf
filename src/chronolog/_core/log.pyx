"""The Log: the segmented append-only log of one store directory, built in layers (one
module each, docs/design.md "The modules of the core"): recovery.pyx opens and recovers it,
commit.pyx makes appends durable (group commit, fail-stop, checkpoints), write.pyx writes
frames and rolls segments, and this module is the append API (single-stream appends, batches
of Arrow columns or Python lists, idempotent retries) and closing. Reads: reads.pyx.
"""
import collections
import os
import threading

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcmp

from chronolog._core.format cimport (
    FORMAT_VERSION, FRAME_HEADER_BYTES, FRAME_OVERHEAD_BYTES, MAX_STREAM_NAME_BYTES,
    MAX_TYPE_NAME_BYTES, CHL_MAX_BODY_BYTES, st32)
from chronolog._core.batch cimport (
    ANY, NO_STREAM, NOGIL_BATCH, WPIPE_MIN_BYTES, ColView, ArrowColumn, stream_utf8,
    payload_bytes, event_id16, packed_column, expectation_holds, col_view, col_len, col_ptr,
    size_batch, encode_batch, id_present)
from chronolog._core.codec cimport Compressor, Decoder
from chronolog._core.events cimport NewEvent, AppendResult
from chronolog._core.fileio cimport FileIO
from chronolog._core.streams cimport (
    chl_streams_find, chl_streams_intern, chl_streams_intern_batch,
    chl_streams_count, chl_streams_position)
from chronolog._core.reads cimport view_position
from chronolog._core.record cimport RecordView, record_bytes, put_record
from chronolog._core.recovery cimport DURABILITY_OS, DURABILITY_FSYNC, DURABILITY_INTERVAL
from chronolog._core.segment cimport Segment, FrameInfo
from chronolog._core.write cimport WritingLog
from chronolog._core.codec import DEFAULT_BLOCK_BYTES

from chronolog.errors import (
    EventTooLargeError, InvalidArgumentError, InvalidEventError, InvalidStreamNameError,
    WrongExpectedVersionError)

_DURABILITY = {"os": DURABILITY_OS, "fsync": DURABILITY_FSYNC, "interval": DURABILITY_INTERVAL}
FORMAT_VERSION_NUMBER = FORMAT_VERSION
DEFAULT_MAX_SEGMENT_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
STREAM_NAME_MAX_BYTES = MAX_STREAM_NAME_BYTES  # (UTF-8 bytes of a stream name, format.pxd)
WHOLE_APPEND_REMEDY = ("A whole append is one frame and no option raises that limit: split it "
                       "into several appends (each is atomic on its own)")
MAX_SEGMENT_BYTES_LIMIT = 1 << 31
# Encoding buffers an append grew past this are given back after it (WritingLog._trim_buffers):
# a reference batch of 10,000 events is a 2.7 MB frame; one of a million, 230 MB.
cdef size_t KEEP_BUFFER_BYTES = 64 << 20


cdef class Log(WritingLog):
    """The segmented append-only log of one store directory, with its indexes.

    Format: format.pxd (docs/format.md). One Log per open store handle. Its layers:
    RecoveredLog (recovery.pyx), GroupCommitLog (commit.pyx), WritingLog (write.pyx).

    Invariants:
        - written == positions.count(), head <= written (RecoveredLog);
        - for every stream, its versions are 0..count-1 and map to increasing positions;
        - segments[-1] is the only segment that grows; bytes past its `end` are not yet
          acknowledged (or are a torn tail that recovery cut);
        - after a write or fsync error, `failed` is set and no append succeeds again.

    Thread-safety: appends from many threads are serialised by an internal lock and share
    fsyncs (group commit); reads may run in any thread at any time.
    """

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
        self._empty_indexes()
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

    # ---------------------------------------------------------------- appends

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
            if not view_position(self, p0, &fi, &rv, False, dec) or rv.eid == NULL or memcmp(rv.eid, ids, 16) != 0:
                return None
            if p0 + n > self.written:
                return False
            for i in range(n):
                if not view_position(self, p0 + i, &fi, &rv, False, dec) or rv.eid == NULL \
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
            raise EventTooLargeError(body, CHL_MAX_BODY_BYTES, "the append", WHOLE_APPEND_REMEDY)
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
            if self._lookups_unsound():
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
            try:
                if sid < 0:
                    sid = chl_streams_intern(self.st, sp, slen, 1)
                    if sid < 0:
                        raise MemoryError()
                self._reserve_scratch(n)
                for i in range(n):
                    self.sids[i] = sid
                self._commit(n, (<uint64_t>seg.ordinal << 32) | off, self._written_table(n))
            except MemoryError as exc:
                # Written but not indexed: fail-stop, the frame cut as after a failed write.
                self._fail_write(exc, seg, off)
            seq = self.written_seq
            self._trim_buffers(KEEP_BUFFER_BYTES)
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

    cdef list _look_up_streams(self, ColView *cols, Py_ssize_t n, dict expected_versions):
        """Pass 2 of _append_views (the lock held): each event's stream id and version into
        sids and vers (new streams get ids now, with no events; `pending` counts the batch's
        events), and (name, code, count) for each stream expected_versions names. Every
        lookup comes before any decision made from it: when one met a damaged chunk of the
        stream checkpoint, the indexes are rebuilt and the lookups made again
        (_lookups_unsound). On an exception nothing stays pending."""
        cdef size_t done
        cdef int64_t sid
        cdef list expected
        for _ in range(2):
            done = chl_streams_intern_batch(self.st, cols[0].offsets, cols[0].data, <size_t>n,
                                            self.sids, self.vers)
            if done < <size_t>n:
                self._reset_pending(done)
                raise MemoryError()
            expected = []
            try:
                if expected_versions:
                    for name, code in expected_versions.items():
                        b = stream_utf8(name)
                        sid = chl_streams_find(self.st, PyBytes_AS_STRING(b), len(b))
                        expected.append((name, code, chl_streams_count(self.st, sid) if sid >= 0 else 0))
            except BaseException:
                self._reset_pending(n)
                raise
            if not self.st.unsound:
                return expected
            self._reset_pending(n)
            self._lookups_unsound()
        raise AssertionError("the stream index is still unsound after a rebuild")

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
        if problem == 4:
            raise InvalidStreamNameError(
                bytes(col_ptr(&cols[0], bad)[:col_len(&cols[0], bad)]).decode("utf-8", "replace"),
                f"event {bad}: a stream name must be valid UTF-8, this one's bytes are "
                f"{bytes(col_ptr(&cols[0], bad)[:min(col_len(&cols[0], bad), 60)])!r} (an Arrow "
                "string array is not checked by its producer: array.validate(full=True) finds these)")
        if problem == 5:
            raise InvalidEventError(
                f"event {bad}: the event type must be valid UTF-8, its bytes are "
                f"{bytes(col_ptr(&cols[1], bad)[:min(col_len(&cols[1], bad), 60)])!r} (an Arrow "
                "string array is not checked by its producer: array.validate(full=True) finds these)")
        if problem == 3:
            raise EventTooLargeError(record_bytes(col_len(&cols[0], bad), col_len(&cols[1], bad),
                                                  col_len(&cols[2], bad), col_len(&cols[3], bad),
                                                  id_present(idp, idvalid, id_offset, bad)),
                                     self.max_event_bytes, f"event {bad}")
        if body > CHL_MAX_BODY_BYTES:
            raise EventTooLargeError(body, CHL_MAX_BODY_BYTES, "the append", WHOLE_APPEND_REMEDY)
        cdef size_t frame_bytes = body + FRAME_OVERHEAD_BYTES
        cdef int64_t sid, code
        cdef uint64_t count, first, seq, off
        cdef Segment seg
        cdef unsigned char *bp
        cdef size_t n_first = 0
        cdef size_t narrow = 0
        cdef const char **streams_p
        cdef uint32_t *slens_p
        cdef bint piped = False
        with self._lock:
            self._check_writable()
            self._checkpoint_poll()
            self._reserve_scratch(n)
            # Pass 2: stream ids and versions, and the streams expected_versions names.
            expected = self._look_up_streams(cols, n, expected_versions)
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
                for name, code, count in expected:
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
                piped = frame_bytes >= WPIPE_MIN_BYTES and self.compressor is None
                if piped:
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
            # Pass 6: commit to the indexes. A piped write is indexed while its helper writes
            # the last chunks (reads stop at head, which moves only once it is all written:
            # `inflight` keeps another thread's sync from moving it earlier; a failed write
            # fail-stops: nothing past head is ever read).
            try:
                if piped:
                    # Indexed before its bytes are all written: until then no sync (another
                    # thread's group commit, the interval thread) may make it visible.
                    self.inflight = n
                    try:
                        self._index_batch(n, (<uint64_t>seg.ordinal << 32) | off, self._written_table(n))
                    finally:
                        try:
                            self._end_piped(seg, off, frame_bytes)  # the pipeline always ends
                        finally:
                            self.inflight = 0
                    self._show_written()
                else:
                    self._commit(n, (<uint64_t>seg.ordinal << 32) | off, self._written_table(n))
            except MemoryError as exc:
                # Written but not indexed: fail-stop, the frame cut as after a failed write.
                self._fail_write(exc, seg, off)
            seq = self.written_seq
            single = True
            for i in range(1, n):
                if self.sids[i] != self.sids[0]:
                    single = False
                    break
            next_version = self.vers[n - 1] + 1 if single else None
            self._trim_buffers(KEEP_BUFFER_BYTES)
        if self.dmode == DURABILITY_FSYNC:
            self.sync_to(seq)
        return AppendResult(first, first + n - 1, next_version)

    # ---------------------------------------------------------------- close

    def close(self):
        """Sync, checkpoint the indexes unless the tail past the last checkpoint is short (the
        writer) and release every file."""
        if self.closed:
            return
        # Under the lock, as every append, refresh and rebuild is (each checks `closed` once it
        # holds it): none of them may run on what _release frees.
        with self._lock:
            if self.closed:
                return
            try:
                # A forked child's inherited writer lets go of its copies only: the parent's
                # handle, its files and its lock are untouched (docs/design.md, "After fork()").
                if not self.readonly and self.failed is None and not self._forked():
                    if self.segments:  # (a cut back to the last frame: synced just below)
                        self._release_reserved(self.segments[len(self.segments) - 1], False)
                    self.sync()
                    self._checkpoint_at_close()
            finally:
                self.closed = True
                self._release()
                self._trim_buffers(0)
