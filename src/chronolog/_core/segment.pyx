"""Segment files: their header, memory-mapped reading, and the check of one batch frame.

The format is specified in format.pxd (and docs/format.md).
"""
import os

cimport cython

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.errno cimport errno, EINTR
from libc.stdlib cimport realloc
from libc.string cimport memchr, memcmp
from posix.types cimport off_t
from posix.unistd cimport pread
from posix.mman cimport mmap, munmap, PROT_READ, MAP_SHARED, MAP_FAILED
from posix.fcntl cimport O_RDONLY, O_WRONLY, O_CLOEXEC
from posix.stat cimport struct_stat, fstat

from chronolog._core.format cimport (
    FRAME_HEADER_BYTES, FRAME_TRAILER_BYTES, FRAME_OVERHEAD_BYTES, FRAME_MAGIC, TRAILER_MAGIC,
    CODEC_NONE, CODEC_ZSTD, SEGMENT_HEADER_BYTES, FORMAT_VERSION, OLDEST_FORMAT_VERSION, FRAME_HAS_NARROW,
    NARROW_HEADER_BYTES, CHL_SEGMENT_MAGIC, CHL_STORE_MAGIC, CHL_MAX_BODY_BYTES,
    ld16, ld32, ld64, st32, st64, chl_crc32c)
from chronolog._core.fileio cimport FileIO
from chronolog.errors import CorruptionError

cdef uint64_t _MAP_CHUNK = 1 << 20


cdef FrameStatus check_frame(const unsigned char *base, uint64_t limit, uint64_t offset,
                             uint64_t salt, bint check_body, FrameInfo *fi) noexcept nogil:
    """Check the frame at `offset` of a mapping whose first `limit` bytes are readable."""
    if offset + FRAME_HEADER_BYTES > limit:
        return FRAME_SHORT
    return check_frame_at(base + offset, limit - offset, offset, salt, check_body, fi)


cdef FrameStatus check_frame_at(const unsigned char *h, uint64_t avail, uint64_t offset,
                                uint64_t salt, bint check_body, FrameInfo *fi) noexcept nogil:
    """Check the frame that starts at `h`, `avail` bytes of which are readable, and lies at
    `offset` of its segment."""
    if FRAME_HEADER_BYTES > avail:
        return FRAME_SHORT
    if ld32(h) != FRAME_MAGIC:
        return FRAME_BAD_MAGIC
    if chl_crc32c(h, 52) != ld32(h + 52):
        return FRAME_BAD_HEADER_CRC
    if ld64(h + 8) != salt:
        return FRAME_BAD_SALT
    cdef uint32_t body_bytes = ld32(h + 4)
    cdef uint32_t count = ld32(h + 24)
    cdef uint16_t codec = ld16(h + 28)
    cdef uint32_t raw_bytes = ld32(h + 32)
    cdef uint16_t flags = ld16(h + 30)
    cdef uint32_t narrow = ld32(h + 44)
    if count == 0 or (flags & ~FRAME_HAS_NARROW) != 0 or <uint64_t>raw_bytes > CHL_MAX_BODY_BYTES \
            or <uint64_t>count * 52 > <uint64_t>raw_bytes or ld32(h + 40) > offset:
        return FRAME_BAD_LAYOUT
    if flags & FRAME_HAS_NARROW:
        if codec != CODEC_NONE or narrow < NARROW_HEADER_BYTES or (narrow & 7) != 0 \
                or <uint64_t>narrow + <uint64_t>count * 52 > <uint64_t>raw_bytes:
            return FRAME_BAD_LAYOUT
    elif narrow != 0:
        return FRAME_BAD_LAYOUT
    if codec == CODEC_NONE:
        if raw_bytes != body_bytes or ld32(h + 36) != 0:
            return FRAME_BAD_LAYOUT
    elif codec == CODEC_ZSTD:
        if <uint64_t>body_bytes < 12 + 4 * <uint64_t>count:
            return FRAME_BAD_LAYOUT
    else:
        return FRAME_BAD_CODEC
    cdef uint64_t end = offset + FRAME_OVERHEAD_BYTES + body_bytes
    if FRAME_OVERHEAD_BYTES + <uint64_t>body_bytes > avail:
        return FRAME_SHORT
    cdef const unsigned char *t = h + FRAME_OVERHEAD_BYTES + body_bytes - FRAME_TRAILER_BYTES
    if ld32(t) != body_bytes or ld32(t + 4) != TRAILER_MAGIC:
        return FRAME_BAD_TRAILER
    if check_body and chl_crc32c(h + FRAME_HEADER_BYTES, body_bytes) != ld32(h + 48):
        return FRAME_BAD_BODY_CRC
    fi.offset = offset
    fi.end = end
    fi.first_position = ld64(h + 16)
    fi.count = count
    fi.body_bytes = body_bytes
    fi.raw_bytes = raw_bytes
    fi.codec = codec
    fi.dict_id = ld32(h + 36)
    fi.synced_mark = ld32(h + 40)
    fi.narrow = narrow
    fi.stored = h + FRAME_HEADER_BYTES
    fi.body = fi.stored if codec == CODEC_NONE else NULL
    return FRAME_OK


cdef FrameStatus check_frame_copy(int fd, uint64_t limit, uint64_t offset, uint64_t salt,
                                  unsigned char **buf, size_t *cap) noexcept nogil:
    """Check the frame at `offset` of the segment open as `fd`, whose first `limit` bytes
    exist, through a copy (pread into *buf, grown as needed, *cap bytes; free() it), never
    through a mapping: a reader that cannot know how far the writer's frames are complete
    must not touch bytes a writer may cut (a read of a page cut away is SIGBUS). The bytes a
    cut removes read short here instead. FRAME_SHORT too when *buf cannot grow."""
    cdef FrameInfo fi
    if offset + FRAME_HEADER_BYTES > limit:
        return FRAME_SHORT
    if not _grow(buf, cap, FRAME_HEADER_BYTES) or \
            _pread_full(fd, buf[0], FRAME_HEADER_BYTES, offset) != FRAME_HEADER_BYTES:
        return FRAME_SHORT
    cdef FrameStatus st = check_frame_at(buf[0], FRAME_HEADER_BYTES, offset, salt, False, &fi)
    if st != FRAME_SHORT:
        return st  # (a bad header: the whole frame cannot do better)
    cdef uint64_t n = FRAME_OVERHEAD_BYTES + <uint64_t>ld32(buf[0] + 4)
    if offset + n > limit or not _grow(buf, cap, n) or _pread_full(fd, buf[0], n, offset) != n:
        return FRAME_SHORT
    return check_frame_at(buf[0], n, offset, salt, True, &fi)


cdef int64_t later_claim(const unsigned char *p, uint64_t n, uint64_t at,
                         uint64_t salt) noexcept nogil:
    """The highest synced mark claimed by a complete frame starting after p[0] (-1: none):
    p holds n bytes of a segment from its offset `at` (the bytes after a frame that does not
    check: recovery's torn-tail rule)."""
    cdef FrameInfo fi
    cdef uint64_t k = 1
    cdef int64_t best = -1
    cdef const unsigned char *hit
    while k + FRAME_HEADER_BYTES <= n:
        hit = <const unsigned char *>memchr(p + k, 0x43, n - k)  # 'C' of CHLF
        if hit == NULL:
            break
        k = <uint64_t>(hit - p)
        if check_frame_at(p + k, n - k, at + k, salt, True, &fi) == FRAME_OK:
            if <int64_t>fi.synced_mark > best:
                best = fi.synced_mark
            k = fi.end - at
        else:
            k += 1
    return best


cdef bint _grow(unsigned char **buf, size_t *cap, uint64_t n) noexcept nogil:
    cdef void *p
    if n <= cap[0]:
        return True
    p = realloc(buf[0], <size_t>n)
    if p == NULL:
        return False
    buf[0] = <unsigned char *>p
    cap[0] = <size_t>n
    return True


cdef uint64_t _pread_full(int fd, unsigned char *p, uint64_t n, uint64_t offset) noexcept nogil:
    """Bytes read (fewer than n at the file's end or on an error)."""
    cdef uint64_t got = 0
    cdef ssize_t r
    while got < n:
        r = pread(fd, p + got, <size_t>(n - got), <off_t>(offset + got))
        if r < 0 and errno == EINTR:
            continue
        if r <= 0:
            break
        got += <uint64_t>r
    return got


cdef str frame_status_reason(FrameStatus status):
    return {
        FRAME_SHORT: "frame extends past the end of the file",
        FRAME_BAD_MAGIC: "no frame magic where a frame must start",
        FRAME_BAD_HEADER_CRC: "frame header CRC32C mismatch",
        FRAME_BAD_SALT: "frame salt differs from its segment's (a stale or foreign frame)",
        FRAME_BAD_LAYOUT: "frame header fields out of range",
        FRAME_BAD_BODY_CRC: "frame body CRC32C mismatch",
        FRAME_BAD_TRAILER: "frame trailer does not match its header",
        FRAME_BAD_CODEC: "frame uses an unknown codec",
    }.get(status, "unknown frame problem")


def segment_name(uint64_t first_position):
    """The file name of the segment that starts at `first_position`."""
    return f"{first_position:020d}.seg"


cdef bytes _encode_header(const char *magic, bytearray rest):
    """A 64-byte store or segment header (format.pxd): magic, format version, header bytes,
    `rest` (bytes 16..60), CRC32C."""
    cdef bytearray h = bytearray(SEGMENT_HEADER_BYTES)
    cdef unsigned char *p = h
    h[0:8] = magic[:8]
    st32(p + 8, FORMAT_VERSION)
    st32(p + 12, SEGMENT_HEADER_BYTES)
    h[16:60] = rest
    st32(p + 60, chl_crc32c(p, 60))
    return bytes(h)


cdef int _check_header(bytes h, str path, const char *magic, str kind) except -1:
    """Length, magic, CRC32C and format version of a store or segment header, else
    CorruptionError."""
    cdef const unsigned char *p = h
    if len(h) != SEGMENT_HEADER_BYTES:
        raise CorruptionError(path, 0, f"{kind} header is {len(h)} bytes, expected 64")
    if memcmp(p, magic, 8) != 0:
        raise CorruptionError(path, 0, f"not a Chronolog {kind} (bad magic)")
    if chl_crc32c(p, 60) != ld32(p + 60):
        raise CorruptionError(path, 60, f"{kind} header CRC32C mismatch")
    if ld32(p + 8) < OLDEST_FORMAT_VERSION or ld32(p + 8) > FORMAT_VERSION:
        raise CorruptionError(path, 8, f"{kind} format version {ld32(p + 8)} is not supported "
                              f"(this Chronolog reads versions {OLDEST_FORMAT_VERSION} to "
                              f"{FORMAT_VERSION})")
    return 0


def encode_store_header(bytes store_id, uint64_t created_ns):
    """The 64-byte header of a new store: store id at 16, created at 32."""
    cdef bytearray rest = bytearray(44)
    rest[0:16] = store_id
    st64(<unsigned char *>rest + 16, created_ns)
    return _encode_header(CHL_STORE_MAGIC, rest)


def decode_store_header(bytes h, str path):
    """Check a store header; return its store id or raise CorruptionError."""
    _check_header(h, path, CHL_STORE_MAGIC, "store")
    return h[16:32]


def encode_segment_header(uint64_t first_position, uint64_t salt, bytes store_id,
                          uint64_t created_ns):
    """The 64-byte header of a new segment: salt at 16, first position at 24, store id at
    32, created at 48."""
    cdef bytearray rest = bytearray(44)
    cdef unsigned char *p = rest
    st64(p, salt)
    st64(p + 8, first_position)
    rest[16:32] = store_id
    st64(p + 32, created_ns)
    return _encode_header(CHL_SEGMENT_MAGIC, rest)


def decode_segment_header(bytes h, str path, bytes store_id):
    """Check a segment header; return (first_position, salt, format version) or raise
    CorruptionError."""
    _check_header(h[:SEGMENT_HEADER_BYTES], path, CHL_SEGMENT_MAGIC, "segment")
    cdef const unsigned char *p = h
    if h[32:48] != store_id:
        raise CorruptionError(path, 32, "segment belongs to another store (store id differs)")
    return ld64(p + 24), ld64(p + 16), ld32(p + 8)


@cython.no_gc_clear
cdef class Segment:
    """One segment file of the log, read through a shared read-only mapping.

    Format: format.pxd. Writes never go through the mapping: the writer uses pwrite on `wfd`.

    Invariants:
        - bytes [0, end) hold the segment header and complete, checked frames;
        - a mapping, once made, stays valid until release() (old ones are kept when it grows,
          so a pointer handed out earlier never dangles).

    Thread-safety: not thread-safe by itself; the Log serialises use under the GIL.
    """

    def __cinit__(self):
        self.fd = -1
        self.wfd = -1
        self.map = NULL
        self.map_len = 0
        self._old_maps = []

    def __init__(self, FileIO io, str path, uint64_t first_position, uint64_t salt,
                 uint32_t ordinal, int fd=-1, uint32_t version=FORMAT_VERSION):
        self.io = io
        self.version = version
        self.path = path
        self.name = os.path.basename(path)
        self.first_position = first_position
        self.salt = salt
        self.ordinal = ordinal
        self.end = SEGMENT_HEADER_BYTES
        # `fd`: a read-only descriptor of `path` the caller already opened (it is owned here).
        self.fd = fd if fd >= 0 else io.open(path, O_RDONLY | O_CLOEXEC, 0)

    cdef uint64_t file_size(self) except? 0xFFFFFFFFFFFFFFFF:
        cdef struct_stat st
        if self.fd < 0 and self.sealed_size:
            return self.sealed_size  # sealed: never changes (and no descriptor to ask)
        if fstat(self.fd, &st) != 0:
            raise OSError(f"cannot stat segment {self.path}")
        return <uint64_t>st.st_size

    cdef int ensure_mapped(self, uint64_t length, uint64_t reserve) except -1:
        """Make at least `length` bytes addressable; map `reserve` bytes when growing so a
        growing segment is remapped rarely. Never touch mapped bytes past the file's end."""
        if length <= self.map_len:
            return 0
        if self.fd < 0:
            # Sealed: mapped whole when it gave its descriptor back, so nothing asks for more
            # (a read past its size is refused before it gets here).
            raise CorruptionError(self.path, self.sealed_size, f"asked for {length} bytes of "
                                  f"a sealed segment of {self.sealed_size}")
        cdef uint64_t want = length if length > reserve else reserve
        want = (want + _MAP_CHUNK - 1) // _MAP_CHUNK * _MAP_CHUNK
        cdef void *p = mmap(NULL, want, PROT_READ, MAP_SHARED, self.fd, 0)
        if p == MAP_FAILED:
            raise MemoryError(f"cannot map {want} bytes of segment {self.path}")
        if self.map != NULL:
            self._old_maps.append((<size_t>self.map, self.map_len))
        self.map = <unsigned char *>p
        self.map_len = want
        return 0

    cdef int open_for_write(self) except -1:
        if self.wfd < 0:
            self.wfd = self.io.open(self.path, O_WRONLY | O_CLOEXEC, 0)
        return 0

    cdef int seal(self) except -1:
        """The segment is sealed (a later one exists, so it never changes again): map it
        whole and give its read descriptor back. A store holds descriptors for its newest
        segment only, however many sealed ones it has (docs/design.md, "Descriptors")."""
        if self.fd < 0:
            return 0
        cdef uint64_t size = self.file_size()
        self.ensure_mapped(size, 0)
        self.sealed_size = size if size else 1  # (never 0: a segment holds its header)
        self.io.close(self.fd)
        self.fd = -1
        return 0

    cdef void release(self) noexcept:
        cdef size_t addr, n
        if self._old_maps is not None:
            for addr, n in self._old_maps:
                munmap(<void *>addr, n)
        self._old_maps = []
        if self.map != NULL:
            munmap(self.map, self.map_len)
            self.map = NULL
            self.map_len = 0
        if self.fd >= 0:
            self.io.close(self.fd)
            self.fd = -1
        if self.wfd >= 0:
            self.io.close(self.wfd)
            self.wfd = -1

    def __dealloc__(self):
        self.release()

    def __repr__(self):
        return f"Segment({self.name!r}, first_position={self.first_position}, end={self.end})"
