from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from chronolog._core.fileio cimport FileIO

cdef enum FrameStatus:
    FRAME_OK = 0
    FRAME_SHORT = 1        # fewer bytes than the frame needs: a torn or still-being-written tail
    FRAME_BAD_MAGIC = 2
    FRAME_BAD_HEADER_CRC = 3
    FRAME_BAD_SALT = 4
    FRAME_BAD_LAYOUT = 5   # header fields out of range
    FRAME_BAD_BODY_CRC = 6
    FRAME_BAD_TRAILER = 7
    FRAME_BAD_CODEC = 8

cdef struct FrameInfo:
    uint64_t offset
    uint64_t end
    uint64_t first_position
    uint32_t count
    uint32_t body_bytes
    uint32_t raw_bytes
    uint16_t codec
    uint32_t dict_id
    uint32_t synced_mark
    uint32_t narrow                # bytes of the narrow region at the body's start (0: none)
    const unsigned char *stored    # the stored body, inside the mapping
    const unsigned char *body      # the decoded body (== stored for codec 0, else NULL until decoded)

cdef FrameStatus check_frame(const unsigned char *base, uint64_t limit, uint64_t offset,
                             uint64_t salt, bint check_body, FrameInfo *fi) noexcept nogil
cdef FrameStatus check_frame_at(const unsigned char *h, uint64_t avail, uint64_t offset,
                                uint64_t salt, bint check_body, FrameInfo *fi) noexcept nogil
cdef int64_t later_claim(const unsigned char *p, uint64_t n, uint64_t at,
                         uint64_t salt) noexcept nogil
cdef FrameStatus check_frame_copy(int fd, uint64_t limit, uint64_t offset, uint64_t salt,
                                  unsigned char **buf, size_t *cap) noexcept nogil
cdef str frame_status_reason(FrameStatus status)

cdef class Segment:
    cdef readonly str path
    cdef readonly str name
    cdef readonly uint64_t first_position
    cdef readonly uint64_t salt
    cdef readonly uint32_t ordinal
    cdef readonly uint32_t version      # its format version (narrow regions from 3)
    cdef public uint64_t end
    cdef int fd                        # -1 once sealed (seal()): the mapping covers the file
    cdef int wfd
    cdef uint64_t sealed_size          # the file's size when sealed; 0 while it may still grow
    cdef unsigned char *map
    cdef uint64_t map_len
    cdef list _old_maps
    cdef FileIO io
    cdef uint64_t file_size(self) except? 0xFFFFFFFFFFFFFFFF
    cdef int ensure_mapped(self, uint64_t length, uint64_t reserve) except -1
    cdef int open_for_write(self) except -1
    cdef int seal(self) except -1
    cdef void release(self) noexcept


cdef inline uint64_t nonzero_end(const unsigned char *p, uint64_t off, uint64_t size) noexcept nogil:
    """Where the bytes of p[off:size] that are not zero end (off when all of them are)."""
    cdef uint64_t end = size
    while end > off and (end & 7) != 0:
        if p[end - 1] != 0:
            return end
        end -= 1
    while end >= off + 8 and (<const uint64_t *>(p + end - 8))[0] == 0:
        end -= 8
    while end > off and p[end - 1] == 0:
        end -= 1
    return end
