"""zstd for frame bodies: per-frame compression in blocks of whole records, trained
dictionaries stored as primary files, and bounded, checked decoding.

Compressed body (codec 1), stored:
    u32 block count (>= 1)
    per block: u32 stored bytes, u32 decoded bytes
    the blocks' zstd frames, back to back
    u32 record offsets[event count]   (into the decoded records, uncompressed)
Decoded, it is exactly a codec-0 body: the records, then the offsets. Blocks hold whole
records (about block_bytes each), so a random read decodes one block, not the frame.
A block never declares more than MAX_RATIO times its stored size (the writer stores such a
frame uncompressed instead), so a crafted frame cannot make a reader allocate more than that.

Dictionary file `zstd-<id:08d>.dict` (primary data, written once, fsynced before any frame
uses it):
    0  b"CHLZDICT"  8 B magic
    8  u32          format version
    12 u32          dictionary id (>= 1)
    16 u64          dictionary bytes
    24 u32          CRC32C of the dictionary bytes
    28 u32          CRC32C of bytes 0..28
    32              the zstd dictionary
"""
import os
import re
import threading

from libc.stdint cimport uint32_t, uint64_t
from chronolog._core.fileio cimport FileIO
from chronolog._core.fileio import read_regular
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from chronolog._core.format cimport (
    FORMAT_VERSION, OLDEST_FORMAT_VERSION, ld32, ld64, st32, chl_crc32c)
from chronolog._core.segment cimport FrameInfo
from chronolog.errors import CorruptionError, InvalidArgumentError

cdef extern from "zstd.h" nogil:
    unsigned long long ZSTD_CONTENTSIZE_UNKNOWN
    unsigned long long ZSTD_CONTENTSIZE_ERROR
    ZSTD_CCtx *ZSTD_createCCtx()
    size_t ZSTD_freeCCtx(ZSTD_CCtx *c)
    ZSTD_DCtx *ZSTD_createDCtx()
    size_t ZSTD_freeDCtx(ZSTD_DCtx *d)
    ZSTD_CDict *ZSTD_createCDict(const void *d, size_t n, int level)
    size_t ZSTD_freeCDict(ZSTD_CDict *c)
    ZSTD_DDict *ZSTD_createDDict(const void *d, size_t n)
    size_t ZSTD_freeDDict(ZSTD_DDict *d)
    size_t ZSTD_compressBound(size_t n)
    size_t ZSTD_compressCCtx(ZSTD_CCtx *c, void *dst, size_t cap, const void *src, size_t n, int level)
    size_t ZSTD_compress_usingCDict(ZSTD_CCtx *c, void *dst, size_t cap, const void *src, size_t n, const ZSTD_CDict *d)
    size_t ZSTD_decompressDCtx(ZSTD_DCtx *d, void *dst, size_t cap, const void *src, size_t n)
    size_t ZSTD_decompress_usingDDict(ZSTD_DCtx *d, void *dst, size_t cap, const void *src, size_t n, const ZSTD_DDict *dd)
    unsigned long long ZSTD_getFrameContentSize(const void *src, size_t n)
    unsigned ZSTD_isError(size_t r)
    const char *ZSTD_getErrorName(size_t r)
    int ZSTD_minCLevel()
    int ZSTD_maxCLevel()

cdef extern from "chl_zjobs.h" nogil:
    ctypedef struct chl_zjob:
        const void *src
        size_t src_bytes
        void *dst
        size_t dst_cap
        size_t result
    int chl_zcompress_jobs(chl_zjob *jobs, size_t n, ZSTD_CCtx **cctx, int threads,
                           const ZSTD_CDict *cdict, int level)
    int chl_zdecompress_jobs(chl_zjob *jobs, size_t n, ZSTD_DCtx **dctx, int threads,
                             const ZSTD_DDict *ddict)

cdef extern from "zdict.h" nogil:
    size_t ZDICT_trainFromBuffer(void *dict_buf, size_t cap, const void *samples,
                                 const size_t *sizes, unsigned n)
    unsigned ZDICT_isError(size_t r)
    const char *ZDICT_getErrorName(size_t r)

cdef enum:
    MAX_RATIO = 255
    DICT_HEADER_BYTES = 32
    # Bodies at least this large are (de)compressed by two threads, block by block: zstd at
    # level 1 runs below the speed of the rest of an append, and this machine class has 2 cores.
    PARALLEL_BYTES = 256 * 1024


cdef int _threads():
    n = os.cpu_count() or 1
    return 2 if n >= 2 else 1

_DICT_RE = re.compile(r"^zstd-(\d{8})\.dict$")
RESTORE_DICTIONARY = ("Restore this dictionary file from a backup: the frames that use it are "
                      "whole and read again once it is back (`chronolog repair --salvage` would "
                      "set aside every event from the first of them on)")
DEFAULT_BLOCK_BYTES = 32 * 1024


def dictionary_name(uint32_t dict_id):
    """The file name of dictionary `dict_id`."""
    return f"zstd-{dict_id:08d}.dict"


cdef class _Dict:
    cdef bytes data
    cdef ZSTD_DDict *ddict
    cdef dict cdicts      # level -> address of a ZSTD_CDict

    def __dealloc__(self):
        if self.ddict != NULL:
            ZSTD_freeDDict(self.ddict)
        if self.cdicts:
            for addr in self.cdicts.values():
                ZSTD_freeCDict(<ZSTD_CDict *><size_t>addr)


cdef class Dictionaries:
    """The trained zstd dictionaries of a store (primary files), loaded on first use.

    Thread-safety: every method may be called from any thread (an internal lock)."""

    def __init__(self, str path, list listing=None):
        """`listing`: the directory's names when the caller has just listed it."""
        self.path = path
        self._loaded = {}
        self._lock = threading.Lock()
        self.newest = 0
        self.tried = 0
        for name in (os.listdir(path) if listing is None else listing):
            m = _DICT_RE.match(name)
            if m and int(m.group(1)) > self.newest:
                self.newest = int(m.group(1))

    cdef object get(self, uint32_t dict_id):
        cdef _Dict d
        with self._lock:
            found = self._loaded.get(dict_id)
            if found is not None:
                return found
            path = os.path.join(self.path, dictionary_name(dict_id))
            try:
                raw = read_regular(path)
            except CorruptionError:
                raise
            except OSError:
                raise CorruptionError(path, None, f"a frame needs zstd dictionary {dict_id}, "
                                      "which is missing", remedy=RESTORE_DICTIONARY) from None
            data = _check_dictionary(raw, dict_id, path)
            d = _Dict()
            d.data = data
            d.cdicts = {}
            d.ddict = ZSTD_createDDict(<const char *>data, len(data))
            if d.ddict == NULL:
                raise CorruptionError(path, DICT_HEADER_BYTES, "zstd refuses the dictionary",
                                      remedy=RESTORE_DICTIONARY)
            self._loaded[dict_id] = d
            return d

    cdef const ZSTD_DDict *ddict(self, uint32_t dict_id) except NULL:
        cdef _Dict d = self.get(dict_id)
        return d.ddict

    def add(self, bytes data, FileIO io=None, uint32_t at_least=1):
        """Store a new dictionary durably (temporary file, fsync, rename, directory fsync);
        return its id. Every step goes through `io` (the store's FileIO, so that tests can
        inject faults; a fresh one when None).

        Ids are never handed out twice: the new one is above the newest file, every id this
        object tried before (a file whose directory entry may not be durable is not rewritten
        in place), every dictionary file in the directory now, and `at_least - 1` (the caller
        passes one above every id a frame names: a file lost must not have its id reused)."""
        if io is None:
            io = FileIO()
        cdef int fd
        with self._lock:
            dict_id = max(self.newest, self.tried, at_least - 1)
            for name in os.listdir(self.path):
                m = _DICT_RE.match(name)
                if m and int(m.group(1)) > dict_id:
                    dict_id = int(m.group(1))
            dict_id += 1
            self.tried = dict_id
            header = bytearray(DICT_HEADER_BYTES)
            header[0:8] = b"CHLZDICT"
            header[8:12] = FORMAT_VERSION.to_bytes(4, "little")
            header[12:16] = dict_id.to_bytes(4, "little")
            header[16:24] = len(data).to_bytes(8, "little")
            header[24:28] = chl_crc32c(<const char *>data, len(data)).to_bytes(4, "little")
            header[28:32] = chl_crc32c(<const char *>header, 28).to_bytes(4, "little")
            final = os.path.join(self.path, dictionary_name(dict_id))
            tmp = final + ".tmp"
            blob = bytes(header) + data
            fd = io.create_new(tmp)
            try:
                io.pwrite_all(fd, <const char *>blob, len(blob), 0)
                io.fsync(fd)
            finally:
                io.close(fd)
            io.rename(tmp, final)
            io.fsync_dir(self.path)
            self.newest = dict_id
            return dict_id


cdef int64_t split_record(const FrameInfo *fi) noexcept nogil:
    """The first record of a decoded codec-1 frame (fi.body, its records checked) that does not
    lie whole in one block, or -1: blocks hold whole records, and a read by stream decodes only
    the block of the record it wants (record_block)."""
    cdef const unsigned char *s = fi.stored
    cdef uint64_t n = ld32(s), k = 0, start = 0, end = 0, r, i
    cdef uint64_t table = fi.raw_bytes - 4 * <uint64_t>fi.count
    if n:
        end = ld32(s + 8)
    for i in range(fi.count):
        r = ld32(fi.body + table + 4 * i)
        if r < start:  # offsets out of order: look from the first block again
            k, start, end = 0, 0, ld32(s + 8)
        while r >= end and k + 1 < n:
            k += 1
            start = end
            end += ld32(s + 8 + 8 * k)
        if r >= end or r + ld32(fi.body + r) > end:
            return <int64_t>i
    return -1


cdef bytes _check_dictionary(bytes raw, uint32_t dict_id, str path):
    cdef const unsigned char *p = raw
    if len(raw) < DICT_HEADER_BYTES or raw[:8] != b"CHLZDICT":
        raise CorruptionError(path, 0, "not a Chronolog zstd dictionary file",
                              remedy=RESTORE_DICTIONARY)
    if chl_crc32c(p, 28) != ld32(p + 28):
        raise CorruptionError(path, 28, "dictionary header CRC32C mismatch",
                              remedy=RESTORE_DICTIONARY)
    if ld32(p + 12) != dict_id or ld32(p + 8) < OLDEST_FORMAT_VERSION or ld32(p + 8) > FORMAT_VERSION:
        raise CorruptionError(path, 8, "dictionary id or format version does not match its name",
                              remedy=RESTORE_DICTIONARY)
    if ld64(p + 16) != <uint64_t>(len(raw) - DICT_HEADER_BYTES):
        raise CorruptionError(path, 16, "dictionary length does not match the file",
                              remedy=RESTORE_DICTIONARY)
    if chl_crc32c(p + DICT_HEADER_BYTES, len(raw) - DICT_HEADER_BYTES) != ld32(p + 24):
        raise CorruptionError(path, DICT_HEADER_BYTES, "dictionary CRC32C mismatch",
                              remedy=RESTORE_DICTIONARY)
    return raw[DICT_HEADER_BYTES:]


def train(samples, uint64_t capacity=112640):
    """Train a zstd dictionary on `samples` (a list of bytes); return its bytes."""
    cdef bytes joined = b"".join(samples)
    cdef unsigned n = len(samples)
    cdef size_t *sizes = <size_t *>malloc(sizeof(size_t) * (n if n else 1))
    cdef bytearray out = bytearray(capacity)
    cdef unsigned char *o = out
    cdef const char *src = joined
    cdef size_t r
    if sizes == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            sizes[i] = len(samples[i])
        with nogil:
            r = ZDICT_trainFromBuffer(o, capacity, src, sizes, n)
    finally:
        free(sizes)
    if ZDICT_isError(r):
        raise InvalidArgumentError(
            f"zstd could not train a dictionary on {n} samples ({ZDICT_getErrorName(r).decode()}); "
            "give it more events (thousands) or skip the dictionary")
    return bytes(out[:r])


cdef class Compressor:
    """Compresses one frame body at a time (the writer's; used under its lock).

    Thread-safety: one thread at a time."""

    def __cinit__(self):
        self.threads = _threads()
        self.cctx[0] = ZSTD_createCCtx()
        self.cctx[1] = ZSTD_createCCtx() if self.threads > 1 else NULL
        if self.cctx[0] == NULL or (self.threads > 1 and self.cctx[1] == NULL):
            raise MemoryError()

    def __dealloc__(self):
        for i in range(2):
            if self.cctx[i] != NULL:
                ZSTD_freeCCtx(self.cctx[i])

    def __init__(self, int level=1, Dictionaries dicts=None, uint32_t dict_id=0,
                 uint64_t block_bytes=DEFAULT_BLOCK_BYTES):
        if level < ZSTD_minCLevel() or level > ZSTD_maxCLevel() or level == 0:
            raise InvalidArgumentError(
                f"compression_level must be between 1 and {ZSTD_maxCLevel()} (or negative, down "
                f"to {ZSTD_minCLevel()}, for faster levels), got {level}")
        if block_bytes < 1024 or block_bytes > (1 << 24):
            raise InvalidArgumentError("compression_block_bytes must be between 1 KiB and 16 MiB")
        self.level = level
        self.block_bytes = block_bytes
        self.dict_id = 0
        self.cdict = NULL
        if dict_id:
            self.use_dictionary(dicts, dict_id)

    def use_dictionary(self, Dictionaries dicts, uint32_t dict_id):
        """Compress new frames with dictionary `dict_id` of `dicts`."""
        cdef _Dict d = dicts.get(dict_id)
        addr = d.cdicts.get(self.level)
        if addr is None:
            cd = ZSTD_createCDict(<const char *>d.data, len(d.data), self.level)
            if cd == NULL:
                raise MemoryError()
            addr = <size_t>cd
            d.cdicts[self.level] = addr
        self.cdict = <const ZSTD_CDict *><size_t>addr
        self.dict_ref = d
        self.dict_id = dict_id

    cdef size_t bound(self, size_t raw_bytes, uint32_t count) noexcept nogil:
        # Every block but the last spans at least block_bytes; each block's worst case is
        # ZSTD_compressBound(b) <= b + b/256 + 128, and the directory takes 8 bytes a block.
        cdef size_t blocks = raw_bytes // self.block_bytes + 2
        return raw_bytes + (raw_bytes >> 8) + 160 * blocks + 64

    cdef size_t compress_body(self, const unsigned char *body, size_t raw_bytes, uint32_t count,
                              unsigned char *out, size_t cap) noexcept nogil:
        """Compress a codec-0 body into the codec-1 layout at `out`. Returns the stored size,
        or 0 when compressing does not pay (or would break the ratio bound): then the caller
        stores the frame uncompressed."""
        cdef const unsigned char *table = body + raw_bytes - 4 * <size_t>count
        cdef size_t records_end = raw_bytes - 4 * <size_t>count
        cdef uint32_t n_blocks = 0, i, j, k
        cdef size_t start, end, at, dir_end, r
        if count == 0 or ld32(table) != 0:
            return 0
        # Pass 1: count the blocks (each starts on a record, holds >= 1 record, and grows while
        # the next record starts within block_bytes of its start).
        i = 0
        while i < count:
            start = ld32(table + 4 * <size_t>i)
            j = i + 1
            while j < count and ld32(table + 4 * <size_t>j) - start < self.block_bytes:
                j += 1
            n_blocks += 1
            i = j
        dir_end = 4 + 8 * <size_t>n_blocks
        cdef chl_zjob *jobs = <chl_zjob *>malloc(sizeof(chl_zjob) * n_blocks)
        if jobs == NULL or dir_end > cap:
            free(jobs)
            return 0
        # Pass 2: one job per block, each with room for its worst case, side by side.
        at = dir_end
        i = 0
        k = 0
        while i < count:
            start = ld32(table + 4 * <size_t>i)
            j = i + 1
            while j < count and ld32(table + 4 * <size_t>j) - start < self.block_bytes:
                j += 1
            end = ld32(table + 4 * <size_t>j) if j < count else records_end
            if end <= start or end > records_end:
                free(jobs)
                return 0
            jobs[k].src = body + start
            jobs[k].src_bytes = end - start
            jobs[k].dst = out + at
            jobs[k].dst_cap = ZSTD_compressBound(end - start)
            at += jobs[k].dst_cap
            k += 1
            i = j
        if at + 4 * <size_t>count > cap:
            free(jobs)
            return 0
        # Pass 3: compress (two threads for a large body), then close the gaps in order.
        cdef int rc = chl_zcompress_jobs(jobs, n_blocks, self.cctx,
                                         self.threads if raw_bytes >= PARALLEL_BYTES else 1,
                                         self.cdict, self.level)
        at = dir_end
        if rc == 0:
            for k in range(n_blocks):
                r = jobs[k].result
                if r == 0 or jobs[k].src_bytes > <size_t>MAX_RATIO * r + 1024:
                    rc = -1
                    break
                if <unsigned char *>jobs[k].dst != out + at:
                    memmove(out + at, jobs[k].dst, r)
                st32(out + 4 + 8 * <size_t>k, <uint32_t>r)
                st32(out + 8 + 8 * <size_t>k, <uint32_t>jobs[k].src_bytes)
                at += r
        free(jobs)
        if rc != 0:
            return 0
        st32(out, n_blocks)
        memcpy(out + at, table, 4 * <size_t>count)
        at += 4 * <size_t>count
        if at >= raw_bytes:
            return 0
        return at


cdef class Decoder:
    """Decodes compressed frame bodies (a whole frame, or the one block a record is in).

    Invariants: a decoded buffer stays valid until the next decode by this Decoder.
    Thread-safety: one thread at a time; make one per reading call."""

    def __cinit__(self):
        self.threads = _threads()
        self.dctx[0] = ZSTD_createDCtx()
        self.dctx[1] = NULL  # made when a large frame first needs it
        if self.dctx[0] == NULL:
            raise MemoryError()

    def __dealloc__(self):
        for i in range(2):
            if self.dctx[i] != NULL:
                ZSTD_freeDCtx(self.dctx[i])
        free(self.buf)
        free(self.block)

    def __init__(self, Dictionaries dicts):
        self.dicts = dicts

    cdef int _layout(self, const FrameInfo *fi, str path, uint32_t *n_blocks) except -1:
        cdef const unsigned char *s = fi.stored
        cdef uint64_t n = ld32(s), k, stored_sum = 0, raw_sum = 0, st_k, raw_k
        if n == 0 or 4 + 8 * n + 4 * <uint64_t>fi.count > fi.body_bytes:
            raise CorruptionError(path, fi.offset, "compressed frame: block directory out of bounds")
        for k in range(n):
            st_k = ld32(s + 4 + 8 * k)
            raw_k = ld32(s + 8 + 8 * k)
            if st_k == 0 or raw_k == 0 or raw_k > <uint64_t>MAX_RATIO * st_k + 1024:
                raise CorruptionError(path, fi.offset, "compressed frame: a block declares an "
                                      "impossible size")
            stored_sum += st_k
            raw_sum += raw_k
        if 4 + 8 * n + stored_sum + 4 * <uint64_t>fi.count != fi.body_bytes \
                or raw_sum + 4 * <uint64_t>fi.count != fi.raw_bytes:
            raise CorruptionError(path, fi.offset, "compressed frame: sizes do not add up")
        n_blocks[0] = <uint32_t>n
        return 0

    cdef int _inflate(self, const FrameInfo *fi, const unsigned char *src, size_t n,
                      unsigned char *dst, size_t raw, str path) except -1:
        cdef unsigned long long declared = ZSTD_getFrameContentSize(src, n)
        if declared != raw:
            raise CorruptionError(path, fi.offset, "compressed block: zstd frame declares "
                                  f"{declared} bytes, the directory {raw}")
        cdef const ZSTD_DDict *dd = NULL
        if fi.dict_id:
            dd = self.dicts.ddict(fi.dict_id) if self.dicts is not None else NULL
            if dd == NULL:
                raise CorruptionError(path, fi.offset, f"frame needs zstd dictionary {fi.dict_id}")
        cdef size_t r
        with nogil:
            if dd != NULL:
                r = ZSTD_decompress_usingDDict(self.dctx[0], dst, raw, src, n, dd)
            else:
                r = ZSTD_decompressDCtx(self.dctx[0], dst, raw, src, n)
        if ZSTD_isError(r) or r != raw:
            raise CorruptionError(path, fi.offset, "compressed block does not decode "
                                  f"({ZSTD_getErrorName(r).decode() if ZSTD_isError(r) else 'short'})")
        return 0

    cdef int _decode_all(self, const FrameInfo *fi, uint32_t n_blocks, unsigned char *out,
                         str path) except -1:
        """Every block of a checked layout into `out` (fi.raw_bytes), then the offset table;
        two threads for a large frame."""
        cdef const unsigned char *s = fi.stored
        cdef uint64_t src = 4 + 8 * <uint64_t>n_blocks, dst = 0, st_k, raw_k
        cdef uint32_t k
        cdef unsigned long long declared
        cdef chl_zjob *jobs = <chl_zjob *>malloc(sizeof(chl_zjob) * n_blocks)
        if jobs == NULL:
            raise MemoryError()
        cdef const ZSTD_DDict *dd = NULL
        cdef int threads = 1
        try:
            for k in range(n_blocks):
                st_k = ld32(s + 4 + 8 * <uint64_t>k)
                raw_k = ld32(s + 8 + 8 * <uint64_t>k)
                declared = ZSTD_getFrameContentSize(s + src, st_k)
                if declared != raw_k:
                    raise CorruptionError(path, fi.offset, "compressed block: zstd frame declares "
                                          f"{declared} bytes, the directory {raw_k}")
                jobs[k].src = s + src
                jobs[k].src_bytes = st_k
                jobs[k].dst = out + dst
                jobs[k].dst_cap = raw_k
                src += st_k
                dst += raw_k
            if fi.dict_id:
                dd = self.dicts.ddict(fi.dict_id) if self.dicts is not None else NULL
                if dd == NULL:
                    raise CorruptionError(path, fi.offset, f"frame needs zstd dictionary {fi.dict_id}")
            if self.threads > 1 and fi.raw_bytes >= PARALLEL_BYTES and n_blocks > 1:
                if self.dctx[1] == NULL:
                    self.dctx[1] = ZSTD_createDCtx()
                if self.dctx[1] != NULL:
                    threads = 2
            with nogil:
                chl_zdecompress_jobs(jobs, n_blocks, self.dctx, threads, dd)  # per job: below
            for k in range(n_blocks):
                if ZSTD_isError(jobs[k].result) or jobs[k].result != jobs[k].dst_cap:
                    raise CorruptionError(path, fi.offset, "compressed block does not decode")
        finally:
            free(jobs)
        memcpy(out + dst, s + src, 4 * <size_t>fi.count)
        return 0

    cdef int decode_frame_seq(self, FrameInfo *fi, str path) except -1:
        """decode_frame for sequential reads, which come back to the frame they read last
        (read_all and subscriptions read 4,096 events a call, and one append_batch frame may
        hold a million): the frame this Decoder decoded last is not decoded again. Its stored
        bytes were checked then, and a mapping's addresses are not reused while the log lives."""
        if fi.stored == self.frame_key and self.frame_key != NULL:
            fi.body = self.buf
            return 0
        self.decode_frame(fi, path)
        self.frame_key = fi.stored
        return 0

    cdef int decode_frame(self, FrameInfo *fi, str path) except -1:
        """Decode a whole codec-1 frame; fi.body then points at the decoded body."""
        cdef uint32_t n_blocks
        self.frame_key = NULL  # (buf is overwritten)
        self._layout(fi, path, &n_blocks)
        cdef size_t need = fi.raw_bytes
        cdef unsigned char *p
        if need > self.cap:
            p = <unsigned char *>realloc(self.buf, need)
            if p == NULL:
                raise MemoryError(f"cannot allocate {need} bytes to decode a frame")
            self.buf = p
            self.cap = need
        self._decode_all(fi, n_blocks, self.buf, path)
        fi.body = self.buf
        return 0

    cdef bytes decode_frame_into(self, FrameInfo *fi, str path):
        """Decode a whole codec-1 frame into a new bytes object (which the caller keeps alive
        while fi.body, pointing into it, is used)."""
        cdef uint32_t n_blocks
        self._layout(fi, path, &n_blocks)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, fi.raw_bytes)
        cdef unsigned char *o = <unsigned char *>PyBytes_AS_STRING(out)
        self._decode_all(fi, n_blocks, o, path)
        fi.body = o
        return out

    cdef const unsigned char *record_block(self, const FrameInfo *fi, uint32_t i, str path,
                                           uint64_t *off_in_block, uint64_t *limit) except NULL:
        """Decode only the block holding record i; return it, with the record's offset in it
        and the block's decoded size."""
        cdef uint32_t n_blocks, k
        self._layout(fi, path, &n_blocks)
        cdef const unsigned char *s = fi.stored
        cdef uint64_t r = ld32(s + fi.body_bytes - 4 * <uint64_t>fi.count + 4 * <uint64_t>i)
        cdef uint64_t src = 4 + 8 * <uint64_t>n_blocks, raw_start = 0, st_k = 0, raw_k = 0
        for k in range(n_blocks):
            st_k = ld32(s + 4 + 8 * <uint64_t>k)
            raw_k = ld32(s + 8 + 8 * <uint64_t>k)
            if r < raw_start + raw_k:
                break
            src += st_k
            raw_start += raw_k
        else:
            raise CorruptionError(path, fi.offset, "record offset past the decoded records")
        cdef const unsigned char *key = s + src
        cdef unsigned char *p
        if key != self.block_key:
            if raw_k > self.block_cap:
                p = <unsigned char *>realloc(self.block, raw_k)
                if p == NULL:
                    raise MemoryError()
                self.block = p
                self.block_cap = raw_k
            self.block_key = NULL
            self._inflate(fi, key, st_k, self.block, raw_k, path)
            self.block_key = key
            self.block_raw = <uint32_t>raw_k
        off_in_block[0] = r - raw_start
        limit[0] = raw_k
        return self.block
