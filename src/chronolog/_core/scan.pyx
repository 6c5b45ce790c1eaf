"""Columnar replay: walk a log's batch frames and fill Arrow buffers in the compiled core.

No Python object is made per event: a first pass (without the GIL, here) checks each frame
and selects the records of a batch that pass the filters, summing their sizes; the Arrow
buffers are then allocated once and a second pass (columns.pyx, without the GIL) fills them.
Format of what is read: format.pxd.
"""
import pyarrow as pa

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcmp, memset

from chronolog._core.format cimport SEGMENT_HEADER_BYTES, CODEC_NONE, ld32, chl_crc32c
from chronolog._core.segment cimport (
    Segment, FrameInfo, FrameStatus, check_frame, frame_status_reason, FRAME_OK,
    FRAME_BAD_BODY_CRC)
from chronolog._core.record cimport RecordView, record_problem, view_record
from chronolog._core.narrow cimport NarrowView, view_narrow, narrow_offsets, narrow_stream_ix
from chronolog._core.streams cimport (
    chl_streams, chl_streams_new, chl_streams_free, chl_streams_find, chl_streams_intern,
    chl_name_key)
from chronolog._core.log cimport Log
from chronolog._core.codec cimport Decoder
from chronolog._core.columns cimport (
    COL_STREAM, COL_TYPE, COL_DATA, COL_METADATA, COL_NARROW, MAX_COLUMN_BYTES, SelectedRecords,
    column_names, column_bits, build_batch)

from chronolog.errors import ConcurrentUseError, CorruptionError, InvalidArgumentError, StoreClosedError

cdef enum:
    # Problems of pass 1, turned into CorruptionError by _raise_problem (with the GIL).
    PROBLEM_NONE = 0
    PROBLEM_FRAME = 1        # check_frame failed: detail holds the FrameStatus
    PROBLEM_RECORD = 2       # view_record failed: detail holds its code
    PROBLEM_POSITION = 3     # a frame or record out of position sequence
    PROBLEM_MISSING = 4      # the segments end before the snapshot's stop position
    PROBLEM_NOMEM = 5
    PROBLEM_DECODE = 6       # not a problem: a compressed frame needs decoding (with the GIL)
    PROBLEM_NARROW = 7       # a narrow region fails: detail 1 layout, 2 CRC, 3 index out of range

_NARROW_PROBLEMS = {1: "layout out of bounds", 2: "CRC32C mismatch",
                    3: "a stream or type index out of range"}


cdef chl_streams *_name_table(object names, str what, uint32_t max_bytes) except NULL:
    """A lookup table of the UTF-8 names in `names` (an iterable of str)."""
    if isinstance(names, (str, bytes)):
        raise InvalidArgumentError(f"{what} must be a list of names, not a single "
                                   f"{type(names).__name__}; e.g. {what}=[{names!r}]")
    cdef chl_streams *t = chl_streams_new()
    if t == NULL:
        raise MemoryError()
    cdef bytes b
    try:
        for name in names:
            if not isinstance(name, str):
                raise InvalidArgumentError(f"{what} must hold str names, got {name!r}")
            b = (<str>name).encode("utf-8", "surrogatepass")
            if len(b) == 0 or <uint64_t>len(b) > max_bytes:
                continue  # no stored event can carry this name
            if chl_streams_intern(t, b, <uint32_t>len(b), 1) < 0:
                raise MemoryError()
    except BaseException:
        chl_streams_free(t)
        raise
    return t


cdef enum:
    TYPE_CACHE = 64          # direct-mapped cache of type name -> scan type id

cdef struct TypeSlot:
    uint64_t a
    uint64_t b
    uint32_t n
    int32_t tid


cdef struct SegRef:
    const unsigned char *map
    uint64_t end
    uint64_t salt


cdef class Scanner:
    """An iterator of Arrow RecordBatches over the positions [start, stop) of a Log.

    `stop` is fixed when the scanner is made (at most the log's head then): a scan never sees
    part of an append, nor anything appended after it started. Each frame's body CRC32C is
    checked before any of its events is used; damage raises CorruptionError.

    Invariants:
        - `pos` is the next position to examine; segment `k`, offset `off` hold its frame;
        - segment mappings named in `refs` stay valid while the log is open (a growing
          segment keeps its old mappings), and every position below `stop` lies within them.

    Thread-safety: one thread at a time per scanner (a second concurrent call raises
    RuntimeError); many scanners may run at once, also while the log is appended to. The log
    must not be closed while a batch is being built (EventStore guards this).

    Example:
        >>> sc = Scanner(store._log, 0, None, columns=["position"])  # doctest: +SKIP
        >>> sum(b.num_rows for b in sc)  # doctest: +SKIP
        42
    """
    cdef Log log
    cdef list segs
    cdef Decoder decoder
    cdef list batch_bodies
    cdef object dec_obj
    cdef const unsigned char *dec_body
    cdef size_t dec_k
    cdef uint64_t dec_off
    cdef SegRef *refs
    cdef size_t n_refs
    cdef size_t k
    cdef uint64_t off
    cdef uint64_t pos
    cdef readonly uint64_t start
    cdef readonly uint64_t stop
    cdef bint fresh_frame
    cdef size_t checked_k
    cdef uint64_t checked_off
    cdef int cols
    cdef list names
    cdef uint64_t batch_size
    # the type dictionary of this scan (ids in order of first appearance) and the filters
    cdef chl_streams *types
    cdef uint8_t *type_ok
    cdef size_t type_ok_cap
    cdef object type_dict
    cdef uint64_t type_dict_n
    cdef TypeSlot tcache[TYPE_CACHE]
    cdef chl_streams *want_types
    cdef chl_streams *want_streams
    cdef bytes prefix
    cdef const char *pre
    cdef uint64_t plen
    # per-batch scratch: the selected records and their type ids; when only narrow columns are
    # asked (`narrow`), sel holds each event's stream name instead, with its length and position
    cdef const unsigned char **sel
    cdef int32_t *sel_type
    cdef uint32_t *sel_slen
    cdef uint64_t *sel_pos
    cdef size_t sel_cap
    cdef bint narrow
    # the narrow region of the current frame (valid while checked_k/off name that frame, in a
    # narrow scan): where each stream name starts, which pass the stream filters, scan type ids
    cdef NarrowView nv
    cdef uint32_t *fs_at
    cdef uint8_t *fs_ok
    cdef size_t fs_cap
    cdef uint32_t ft_at[256]
    cdef int32_t ft_tid[256]
    cdef bint busy
    # where pass 1 stopped on a problem
    cdef int problem
    cdef int detail
    cdef size_t problem_k
    cdef uint64_t problem_off

    def __cinit__(self):
        cdef size_t c
        for c in range(TYPE_CACHE):
            self.tcache[c].tid = -1
        self.refs = NULL
        self.types = NULL
        self.type_ok = NULL
        self.want_types = NULL
        self.want_streams = NULL
        self.sel = NULL
        self.sel_type = NULL
        self.sel_slen = NULL
        self.sel_pos = NULL
        self.fs_at = NULL
        self.fs_ok = NULL
        self.pre = NULL
        self.plen = 0

    def __dealloc__(self):
        free(self.refs)
        free(self.type_ok)
        free(self.sel)
        free(self.sel_type)
        free(self.sel_slen)
        free(self.sel_pos)
        free(self.fs_at)
        free(self.fs_ok)
        chl_streams_free(self.types)
        chl_streams_free(self.want_types)
        chl_streams_free(self.want_streams)

    def __init__(self, Log log not None, uint64_t start=0, object stop=None, *, object types=None,
                 object streams=None, object stream_prefix=None, uint64_t batch_size=65536,
                 object columns=None):
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
        if stream_prefix is not None and not isinstance(stream_prefix, str):
            raise InvalidArgumentError(f"stream_prefix must be a str or None, got {stream_prefix!r}")
        if log.closed:
            raise StoreClosedError(log.path)
        self.log = log
        self.names = column_names(columns)
        self.cols = column_bits(self.names)
        self.narrow = (self.cols & ~COL_NARROW) == 0
        self.batch_size = batch_size
        self.types = chl_streams_new()
        if self.types == NULL:
            raise MemoryError()
        if types is not None:
            self.want_types = _name_table(types, "types", 255)
        if streams is not None:
            self.want_streams = _name_table(streams, "streams", 1024)
        if stream_prefix:
            self.prefix = (<str>stream_prefix).encode("utf-8", "surrogatepass")
            self.pre = <const char *>self.prefix
            self.plen = len(self.prefix)
        # The snapshot: positions [start, stop), stop at most the head now.
        cdef uint64_t head = log.head
        cdef uint64_t s = head if stop is None or stop > head else <uint64_t>stop
        self.start = start
        self.pos = start
        self.stop = s if s > start else start
        self.segs = []
        if self.pos >= self.stop:
            return
        cdef uint64_t e = log.pidx.get(self.pos)
        cdef size_t first = <size_t>(e >> 32)
        cdef Segment seg
        self.segs = log.segments[first:]
        self.n_refs = len(self.segs)
        self.refs = <SegRef *>malloc(sizeof(SegRef) * (self.n_refs if self.n_refs else 1))
        if self.refs == NULL:
            raise MemoryError()
        cdef size_t i
        for i in range(self.n_refs):
            seg = self.segs[i]
            self.refs[i].map = seg.map
            self.refs[i].end = seg.end
            self.refs[i].salt = seg.salt
        self.k = 0
        self.off = e & 0xFFFFFFFF
        self.fresh_frame = False
        self.checked_k = <size_t>-1

    def __iter__(self):
        return self

    def __next__(self):
        batch = self.next_batch()
        if batch is None:
            raise StopIteration
        return batch

    @property
    def position(self):
        """The next position the scan will examine (== stop once it is done)."""
        return self.pos

    @property
    def columns(self):
        """The names of the columns of each batch, in order."""
        return list(self.names)

    def next_batch(self):
        """The next RecordBatch (1..batch_size rows), or None when the range is exhausted.

        Raises:
            CorruptionError: a frame or record fails its checks (nothing of it is returned).
            StoreClosedError: the log was closed.
        """
        if self.busy:
            raise ConcurrentUseError("a scan's iterator is used by one thread at a time: give "
                                     "each thread a scan of its own")
        self.busy = True
        try:
            return self._next_batch()
        finally:
            self.busy = False

    cdef object _next_batch(self):
        cdef size_t n = 0
        cdef uint64_t sizes[4]
        cdef int rc
        while self.pos < self.stop:
            if self.log.closed:
                raise StoreClosedError(self.log.path)
            if self._reserve(self.batch_size if self.batch_size < self.stop - self.pos
                             else self.stop - self.pos) < 0:
                raise MemoryError()
            memset(sizes, 0, sizeof(sizes))
            n = 0
            # Decoded bodies of compressed frames whose records this batch selects: alive
            # until the batch is built (the last one also into the next batch).
            self.batch_bodies = [self.dec_obj] if self.dec_obj is not None else []
            # Pass 1: select the batch's records and sum the sizes of its columns, stopping to
            # decode each compressed frame (that needs the GIL: dictionaries load lazily).
            while True:
                with nogil:
                    rc = self._select(&n, sizes)
                if rc != PROBLEM_DECODE:
                    break
                self._decode_current()
            if rc != PROBLEM_NONE:
                self._raise_problem()
            if n:
                try:
                    return self._build(n, sizes)
                finally:
                    self.batch_bodies = None
        return None

    cdef int _decode_current(self) except -1:
        """Decode the compressed frame at (k, off) whole; _select then reads its records."""
        cdef FrameInfo fi
        cdef const SegRef *ref = &self.refs[self.k]
        cdef Segment seg = self.segs[self.k]
        if check_frame(ref.map, ref.end, self.off, ref.salt, False, &fi) != FRAME_OK:
            raise CorruptionError(seg.path, self.off, "frame changed while scanning")
        if self.decoder is None:
            self.decoder = Decoder(self.log.dicts)
        self.dec_obj = self.decoder.decode_frame_into(&fi, seg.path)
        self.batch_bodies.append(self.dec_obj)
        self.dec_body = fi.body
        self.dec_k = self.k
        self.dec_off = self.off
        return 0

    cdef int _reserve(self, uint64_t n) noexcept:
        if n <= self.sel_cap:
            return 0
        cdef void *a = realloc(self.sel, n * sizeof(const unsigned char *))
        if a == NULL:
            return -1
        self.sel = <const unsigned char **>a
        a = realloc(self.sel_type, n * sizeof(int32_t))
        if a == NULL:
            return -1
        self.sel_type = <int32_t *>a
        a = realloc(self.sel_slen, n * sizeof(uint32_t))
        if a == NULL:
            return -1
        self.sel_slen = <uint32_t *>a
        a = realloc(self.sel_pos, n * sizeof(uint64_t))
        if a == NULL:
            return -1
        self.sel_pos = <uint64_t *>a
        self.sel_cap = n
        return 0

    cdef int _fail(self, int problem, int detail) noexcept nogil:
        self.problem = problem
        self.detail = detail
        self.problem_k = self.k
        self.problem_off = self.off
        return problem

    cdef int64_t _type_id(self, const unsigned char *etype, uint32_t tlen) noexcept nogil:
        """The scan's id of an event type (interned on first sight), or -1 out of memory."""
        cdef uint64_t a, b
        chl_name_key(etype, tlen, &a, &b)
        cdef TypeSlot *e = &self.tcache[((a ^ b ^ tlen) * <uint64_t>0x9e3779b97f4a7c15) >> 58]
        if e.tid >= 0 and e.n == tlen and e.a == a and e.b == b and (
                tlen <= 16 or memcmp(self.types.streams[e.tid].name, etype, tlen) == 0):
            return e.tid
        cdef uint64_t before = self.types.n_streams
        cdef int64_t tid = chl_streams_intern(self.types, <const char *>etype, tlen, 1)
        cdef void *grown
        if tid < 0:
            return -1
        if <uint64_t>tid >= before:
            # A type seen for the first time: decide the type filter for it once.
            if <size_t>tid >= self.type_ok_cap:
                grown = realloc(self.type_ok, (self.type_ok_cap * 2 + 16))
                if grown == NULL:
                    return -1
                self.type_ok = <uint8_t *>grown
                self.type_ok_cap = self.type_ok_cap * 2 + 16
            self.type_ok[tid] = self.want_types == NULL or \
                chl_streams_find(self.want_types, <const char *>etype, tlen) >= 0
        e.a = a
        e.b = b
        e.n = tlen
        e.tid = <int32_t>tid
        return tid

    cdef int _select(self, size_t *n_out, uint64_t *sizes) noexcept nogil:
        """Pass 1: from `pos`, pick up to batch_size records that pass the filters, stopping
        early when a variable-width column would overflow 32-bit offsets. sizes[0..3]: stream,
        data, metadata bytes and the number of ids among the selected."""
        cdef FrameInfo fi
        cdef RecordView rv
        cdef FrameStatus status
        cdef const SegRef *ref
        cdef uint64_t i, last
        cdef size_t n = n_out[0]
        cdef int64_t tid = -1
        cdef int rc
        cdef bint use_nv
        cdef bint need_type = (self.cols & COL_TYPE) != 0 or self.want_types != NULL
        cdef uint64_t plen = self.plen
        cdef const char *pre = self.pre
        while self.pos < self.stop and n < self.batch_size:
            if self.k >= self.n_refs:
                return self._fail(PROBLEM_MISSING, 0)
            ref = &self.refs[self.k]
            if self.off >= ref.end:
                self.k += 1
                self.off = SEGMENT_HEADER_BYTES
                self.fresh_frame = True
                continue
            # The body CRC is checked once per frame, even when a frame spans two batches; a
            # narrow scan of a frame with a narrow region checks that region's CRC instead
            # (it reads nothing else of the body).
            status = check_frame(ref.map, ref.end, self.off, ref.salt, False, &fi)
            if status != FRAME_OK:
                return self._fail(PROBLEM_FRAME, status)
            use_nv = self.narrow and fi.narrow != 0
            if not (self.checked_k == self.k and self.checked_off == self.off):
                if use_nv:
                    rc = self._narrow_frame(&fi)
                    if rc:
                        return self._fail(PROBLEM_NOMEM, 0) if rc < 0 else \
                            self._fail(PROBLEM_NARROW, rc)
                elif chl_crc32c(fi.stored, fi.body_bytes) != ld32(fi.stored - 8):
                    return self._fail(PROBLEM_FRAME, FRAME_BAD_BODY_CRC)
                self.checked_k = self.k
                self.checked_off = self.off
            if fi.codec != CODEC_NONE:
                if self.dec_body == NULL or self.dec_k != self.k or self.dec_off != self.off:
                    n_out[0] = n
                    return PROBLEM_DECODE
                fi.body = self.dec_body
            if fi.first_position > self.pos or self.pos - fi.first_position >= fi.count \
                    or (self.fresh_frame and fi.first_position != self.pos):
                return self._fail(PROBLEM_POSITION, 0)
            self.fresh_frame = False
            i = self.pos - fi.first_position
            last = fi.count if self.stop - fi.first_position > fi.count else self.stop - fi.first_position
            if use_nv:
                rc = self._select_narrow(&i, last, &n, sizes)
                if rc != PROBLEM_NONE:
                    return rc
                if i < last:  # the batch is full
                    n_out[0] = n
                    return PROBLEM_NONE
            while i < last and n < self.batch_size:
                # The body CRC covers every record; view_record still bounds-checks each.
                rc = view_record(&fi, <uint32_t>i, fi.codec != CODEC_NONE, &rv)
                if rc:
                    return self._fail(PROBLEM_RECORD, rc)
                if rv.position != self.pos:
                    return self._fail(PROBLEM_POSITION, 0)
                if pre != NULL and (rv.slen < plen or memcmp(rv.stream, pre, plen) != 0):
                    i += 1; self.pos += 1
                    continue
                if self.want_streams != NULL and chl_streams_find(
                        self.want_streams, <const char *>rv.stream, rv.slen) < 0:
                    i += 1; self.pos += 1
                    continue
                if need_type:
                    tid = self._type_id(rv.etype, rv.tlen)
                    if tid < 0:
                        return self._fail(PROBLEM_NOMEM, 0)
                    if not self.type_ok[tid]:
                        i += 1; self.pos += 1
                        continue
                if n and ((self.cols & COL_STREAM and sizes[0] + rv.slen > MAX_COLUMN_BYTES)
                          or (self.cols & COL_DATA and sizes[1] + rv.dlen > MAX_COLUMN_BYTES)
                          or (self.cols & COL_METADATA and sizes[2] + rv.mlen > MAX_COLUMN_BYTES)):
                    n_out[0] = n
                    return PROBLEM_NONE  # the batch is full by bytes; resume at this record
                if self.narrow:
                    self.sel[n] = rv.stream
                    self.sel_slen[n] = rv.slen
                    self.sel_pos[n] = rv.position
                else:
                    self.sel[n] = rv.rec
                self.sel_type[n] = <int32_t>tid
                n += 1
                sizes[0] += rv.slen
                sizes[1] += rv.dlen
                sizes[2] += rv.mlen
                sizes[3] += rv.eid != NULL
                i += 1; self.pos += 1
            if i == fi.count:
                self.off = fi.end
                self.fresh_frame = True
        n_out[0] = n
        return PROBLEM_NONE

    cdef int _narrow_frame(self, const FrameInfo *fi) noexcept nogil:
        """Check the narrow region of a fresh frame and make its tables: where each stream
        name starts, whether it passes the stream filters, each type's scan id. 0, a
        PROBLEM_NARROW detail, or -1 out of memory."""
        cdef int rc = view_narrow(fi, True, &self.nv)
        cdef uint32_t s, t, S
        cdef int64_t tid
        cdef void *a
        cdef const unsigned char *name
        cdef uint32_t nlen
        if rc:
            return rc
        S = self.nv.streams
        if S + 1 > self.fs_cap:
            a = realloc(self.fs_at, (S + 1) * sizeof(uint32_t))
            if a == NULL:
                return -1
            self.fs_at = <uint32_t *>a
            a = realloc(self.fs_ok, S + 1)
            if a == NULL:
                return -1
            self.fs_ok = <uint8_t *>a
            self.fs_cap = S + 1
        narrow_offsets(&self.nv, self.fs_at, self.ft_at)
        if self.pre != NULL or self.want_streams != NULL:
            for s in range(S):
                name = self.nv.names + self.fs_at[s]
                nlen = self.fs_at[s + 1] - self.fs_at[s]
                self.fs_ok[s] = (self.pre == NULL or (
                    nlen >= self.plen and memcmp(name, self.pre, self.plen) == 0)) and (
                    self.want_streams == NULL or chl_streams_find(
                        self.want_streams, <const char *>name, nlen) >= 0)
        for t in range(self.nv.types):
            tid = self._type_id(self.nv.names + self.ft_at[t], self.ft_at[t + 1] - self.ft_at[t])
            if tid < 0:
                return -1
            self.ft_tid[t] = <int32_t>tid
        return 0

    cdef int _select_narrow(self, uint64_t *i_io, uint64_t last, size_t *n_io,
                            uint64_t *sizes) noexcept nogil:
        """Pass 1 over a frame with a checked narrow region: select its events from i_io up to
        `last` (or a full batch) from the region alone."""
        cdef uint64_t i = i_io[0]
        cdef size_t n = n_io[0]
        cdef uint32_t si, ti, slen
        cdef int32_t tid
        cdef bint filter_streams = self.pre != NULL or self.want_streams != NULL
        cdef bint stream_col = (self.cols & COL_STREAM) != 0
        cdef const NarrowView *nv = &self.nv
        cdef int rc = PROBLEM_NONE
        while i < last and n < self.batch_size:
            si = narrow_stream_ix(nv, i)
            ti = nv.type_ix[i]
            if si >= nv.streams or ti >= nv.types:
                rc = self._fail(PROBLEM_NARROW, 3)
                break
            tid = self.ft_tid[ti]
            if (filter_streams and not self.fs_ok[si]) or not self.type_ok[tid]:
                i += 1; self.pos += 1
                continue
            slen = self.fs_at[si + 1] - self.fs_at[si]
            if n and stream_col and sizes[0] + slen > MAX_COLUMN_BYTES:
                break  # the batch is full by bytes; resume at this event
            self.sel[n] = nv.names + self.fs_at[si]
            self.sel_slen[n] = slen
            self.sel_pos[n] = self.pos
            self.sel_type[n] = tid
            sizes[0] += slen
            n += 1
            i += 1; self.pos += 1
        i_io[0] = i
        n_io[0] = n
        return rc

    cdef _raise_problem(self):
        cdef Segment seg = self.segs[self.problem_k] if self.problem_k < <size_t>len(self.segs) else None
        path = seg.path if seg is not None else self.log.path
        if self.problem == PROBLEM_NOMEM:
            raise MemoryError("out of memory while scanning")
        if self.problem == PROBLEM_FRAME:
            reason = frame_status_reason(<FrameStatus>self.detail)
        elif self.problem == PROBLEM_RECORD:
            reason = f"record of position {self.pos}: " + record_problem(self.detail, "bad record")
        elif self.problem == PROBLEM_NARROW:
            reason = f"narrow region of the frame of position {self.pos}: " + \
                _NARROW_PROBLEMS.get(self.detail, "bad region")
        elif self.problem == PROBLEM_POSITION:
            reason = f"frame or record out of position sequence at position {self.pos}"
        else:
            reason = f"the segments end before position {self.pos}, which the index holds"
        raise CorruptionError(path, self.problem_off if seg is not None else None, reason)

    cdef object _type_dictionary(self):
        cdef uint64_t nt = self.types.n_streams
        if self.type_dict is None or self.type_dict_n != nt:
            try:
                names = [self.types.streams[i].name[:self.types.streams[i].name_len].decode("utf-8")
                         for i in range(nt)]
            except UnicodeDecodeError:
                raise CorruptionError(self.log.path, None, "an event type in the scanned range is "
                                      "not valid UTF-8; `chronolog verify` names its segment and "
                                      "offset") from None
            self.type_dict = pa.array(names, pa.string())
            self.type_dict_n = nt
        return self.type_dict

    cdef object _build(self, size_t n, uint64_t *sizes):
        """Pass 2 (columns.pyx): the RecordBatch of the n records pass 1 selected."""
        cdef SelectedRecords picked
        picked.sel = self.sel
        picked.sel_type = self.sel_type
        picked.sel_slen = self.sel_slen
        picked.sel_pos = self.sel_pos
        picked.narrow = self.narrow
        return build_batch(&picked, n, sizes, self.cols, self.names,
                           self._type_dictionary() if self.cols & COL_TYPE else None, self.log.path)
