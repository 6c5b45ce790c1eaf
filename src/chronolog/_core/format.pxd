# The on-disk format of a Chronolog store, format version 3. Specified here, once, next to its
# constants; mirrored in docs/format.md. Change all of them (and FORMAT_VERSION) in one commit.
# Version 3 added the narrow region of a frame (flags bit 0); version 2 files are read as they
# are (no version-2 frame has it) and new segments are written as version 3. Version 1 (a
# 48-byte frame header) is refused.
#
# Every integer is little-endian. CRC32C is the Castagnoli CRC (csrc/chl_crc32c.c).
#
# Store directory
#   chronolog.store            primary, written once at creation (STORE_HEADER_BYTES):
#     0  magic  b"CHLSTORE"     8 bytes
#     8  u32    format version
#     12 u32    header bytes (64)
#     16 16 B   store id (random)
#     32 u64    created, ns since the Unix epoch (UTC)
#     40 20 B   reserved, zero
#     60 u32    CRC32C of bytes 0..60
#   {first_position:020d}.seg  primary: the log, one file per segment
#   index/                     derived (deletable, rebuilt from the segments on open)
#   LOCK                       the writer's flock(2) target; holds nothing
#
# Segment = header, then batch frames back to back, up to the end of the file.
#   Segment header (SEGMENT_HEADER_BYTES = 64):
#     0  magic  b"CHLOGSEG"     8 bytes
#     8  u32    format version
#     12 u32    header bytes (64)
#     16 u64    salt (random per segment; every frame repeats it)
#     24 u64    first position (equal to the number in the file name)
#     32 16 B   store id (the store's; a segment of another store is refused)
#     48 u64    created, ns since the epoch
#     56 u32    reserved, zero
#     60 u32    CRC32C of bytes 0..60
#
# Batch frame = one append, atomic: header, body, trailer.
#   Frame header (FRAME_HEADER_BYTES = 56):
#     0  u32    magic 0x464C4843 (b"CHLF")
#     4  u32    body bytes as stored (after the codec)
#     8  u64    salt of the segment (a stale frame from an older file fails here)
#     16 u64    position of the first event
#     24 u32    event count (>= 1)
#     28 u16    codec: 0 = none, 1 = zstd (docs/compression.md)
#     30 u16    flags: bit 0 = the body starts with a narrow region (codec 0 only); others 0
#     32 u32    body bytes once decoded (== stored bytes for codec 0)
#     36 u32    dictionary id, 0 = none
#     40 u32    synced mark: every byte of this segment below this offset was on stable
#               storage when this frame was written (recovery tells damage from a torn,
#               never-synced tail with it: see log.pyx, _scan_tail)
#     44 u32    narrow region bytes (a multiple of 8, >= 16) when flags bit 0, else zero
#     48 u32    CRC32C of the stored body
#     52 u32    CRC32C of header bytes 0..52
#   Body (decoded): [narrow region,] event count records back to back, then u32 record
#     offsets[event count] (offset of each record from the start of the body), so any record
#     is found in O(1). The body CRC covers the narrow region too.
#   Narrow region (NARROW_HEADER_BYTES = 16, then the variable part; S streams, T types):
#     0  u32    S: distinct streams of the frame (>= 1), in order of first appearance
#     4  u16    T: distinct event types (1..255), in order of first appearance
#     6  u8     stream index width W: 2 or 4 bytes
#     7  u8     zero
#     8  u32    names bytes (the S stream names, then the T type names)
#     12 u32    CRC32C of region bytes 16..region bytes (a narrow scan checks this, not the body)
#     16        stream index[event count] (W bytes each, < S), type index[event count] (u8, < T),
#               u16 stream name bytes[S] (1..1024), u8 type name bytes[T] (>= 1), the names,
#               zero padding to the region's length (< 8 bytes)
#     It repeats each record's stream and type so that a scan of position, stream and type
#     reads a few bytes per event instead of every record. Written by append_batch for
#     batches of >= NARROW_MIN_EVENTS events when compression is off (docs/scan.md "Narrow scans").
#   Trailer (FRAME_TRAILER_BYTES = 8):
#     0  u32    body bytes as stored (again: lets a reader check the frame's extent)
#     4  u32    magic 0x46484C43 (b"CLHF")
#
# Record (inside a decoded body; RECORD_HEADER_BYTES = 48, then the variable part):
#     0  u32    record bytes, header included
#     4  u32    CRC32C of record bytes 8..record bytes (checked on every read)
#     8  u16    stream name bytes (UTF-8, 1..MAX_STREAM_NAME_BYTES)
#     10 u8     event type bytes (UTF-8, 1..MAX_TYPE_NAME_BYTES)
#     11 u8     flags: bit 0 = has a 16-byte event id
#     12 u32    metadata bytes
#     16 u64    global position
#     24 u64    stream version
#     32 i64    timestamp, ns since the epoch (UTC)
#     40 u32    data bytes
#     44 u32    reserved, zero
#     48        [event id, 16 B, when flag bit 0] stream, type, metadata, data
#
# Derived index files (index/): see checkpoint.pyx for their layout; they are validated on open and
# rebuilt from the segments whenever missing, damaged or stale.
#
# index/visible (VISIBLE_MARK_BYTES = 16): how far readers in other processes may read,
# rewritten in place by the writer (docs/design.md, "What readers see"):
#     0  u64    V: the positions below V are acknowledged; VISIBLE_ALL = every complete frame
#     8  u64    V ^ VISIBLE_CHECK (a read torn by a concurrent rewrite does not check)
# Missing or not checking: readers keep their last V (VISIBLE_ALL when the file is missing).
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from posix.unistd cimport pread

cdef enum:
    FORMAT_VERSION = 3
    OLDEST_FORMAT_VERSION = 2   # the oldest version this Chronolog reads
    STORE_HEADER_BYTES = 64
    SEGMENT_HEADER_BYTES = 64
    FRAME_HEADER_BYTES = 56
    FRAME_TRAILER_BYTES = 8
    FRAME_OVERHEAD_BYTES = 64
    RECORD_HEADER_BYTES = 48
    EVENT_ID_BYTES = 16
    FRAME_MAGIC = 0x464C4843
    VISIBLE_MARK_BYTES = 16
    TRAILER_MAGIC = 0x46484C43
    CODEC_NONE = 0
    CODEC_ZSTD = 1
    RECORD_HAS_ID = 1
    FRAME_HAS_NARROW = 1
    NARROW_HEADER_BYTES = 16
    NARROW_MIN_EVENTS = 64
    NARROW_MAX_TYPES = 255
    MAX_STREAM_NAME_BYTES = 1024
    MAX_TYPE_NAME_BYTES = 255

cdef extern from *:
    """
    #define CHL_STORE_MAGIC "CHLSTORE"
    #define CHL_SEGMENT_MAGIC "CHLOGSEG"
    /* The largest decoded frame body: a whole append must fit (u32 offsets in the body). */
    #define CHL_MAX_BODY_BYTES ((uint64_t)0xF0000000u)
    /* index/visible: the mark's "every complete frame" value and its check word. */
    #define CHL_VISIBLE_ALL UINT64_MAX
    #define CHL_VISIBLE_CHECK 0x564953494245314cULL
    """
    const char *CHL_STORE_MAGIC
    const char *CHL_SEGMENT_MAGIC
    uint64_t CHL_MAX_BODY_BYTES
    uint64_t CHL_VISIBLE_ALL
    uint64_t CHL_VISIBLE_CHECK

cdef inline uint16_t ld16(const unsigned char *p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v

cdef inline uint32_t ld32(const unsigned char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v

cdef inline uint64_t ld64(const unsigned char *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v

cdef inline void st16(unsigned char *p, uint16_t v) noexcept nogil:
    memcpy(p, &v, 2)

cdef inline void st32(unsigned char *p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)

cdef inline void st64(unsigned char *p, uint64_t v) noexcept nogil:
    memcpy(p, &v, 8)

cdef extern from "chl_crc32c.h":
    uint32_t chl_crc32c(const void *buf, size_t n) nogil
    uint32_t chl_crc32c_extend(uint32_t crc, const void *buf, size_t n) nogil
    uint32_t chl_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2) nogil
    void chl_crc32c_3(const unsigned char *a, size_t na, const unsigned char *b, size_t nb,
                      const unsigned char *c, size_t nc, uint32_t *out) nogil
    uint32_t chl_crc32c_extend_record(uint32_t crc, const unsigned char *rec, size_t n) nogil
    uint32_t chl_crc32c_portable(uint32_t crc, const void *buf, size_t n) nogil
    int chl_crc32c_is_hardware() nogil


cdef inline uint64_t read_visible_mark(int fd, uint64_t last) noexcept nogil:
    """The mark of index/visible open at `fd`, or `last` when it does not check three times
    in a row (a rewrite under way each time, or a file cut short)."""
    cdef unsigned char buf[VISIBLE_MARK_BYTES]
    cdef uint64_t v
    cdef int _try
    for _try in range(3):
        if pread(fd, buf, VISIBLE_MARK_BYTES, 0) == VISIBLE_MARK_BYTES:
            v = ld64(buf)
            if ld64(buf + 8) == v ^ CHL_VISIBLE_CHECK:
                return v
    return last
