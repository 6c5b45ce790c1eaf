from libc.stdint cimport int64_t, uint32_t, uint64_t
from chronolog._core.segment cimport FrameInfo

cdef extern from "zstd.h":
    ctypedef struct ZSTD_CCtx:
        pass
    ctypedef struct ZSTD_DCtx:
        pass
    ctypedef struct ZSTD_CDict:
        pass
    ctypedef struct ZSTD_DDict:
        pass

cdef class Dictionaries:
    cdef readonly str path
    cdef dict _loaded          # id -> _Dict
    cdef readonly uint32_t newest
    cdef uint32_t tried                # the last id add() took (its file may exist)
    cdef object _lock
    cdef const ZSTD_DDict *ddict(self, uint32_t dict_id) except NULL
    cdef object get(self, uint32_t dict_id)

cdef class Compressor:
    cdef ZSTD_CCtx *cctx[2]
    cdef int threads
    cdef const ZSTD_CDict *cdict
    cdef object dict_ref
    cdef readonly int level
    cdef readonly uint32_t dict_id
    cdef readonly uint64_t block_bytes
    cdef size_t bound(self, size_t raw_bytes, uint32_t count) noexcept nogil
    cdef size_t compress_body(self, const unsigned char *body, size_t raw_bytes, uint32_t count,
                              unsigned char *out, size_t cap) noexcept nogil

cdef class Decoder:
    cdef ZSTD_DCtx *dctx[2]
    cdef int threads
    cdef Dictionaries dicts
    cdef unsigned char *buf
    cdef size_t cap
    cdef unsigned char *block
    cdef size_t block_cap
    cdef const unsigned char *block_key
    cdef uint32_t block_raw
    cdef uint64_t block_start
    cdef const unsigned char *frame_key  # the stored body buf holds decoded (decode_frame_seq)
    cdef int _layout(self, const FrameInfo *fi, str path, uint32_t *n_blocks) except -1
    cdef int _inflate(self, const FrameInfo *fi, const unsigned char *src, size_t n,
                      unsigned char *dst, size_t raw, str path) except -1
    cdef int _decode_all(self, const FrameInfo *fi, uint32_t n_blocks, unsigned char *out,
                         str path) except -1
    cdef int decode_frame(self, FrameInfo *fi, str path) except -1
    cdef int decode_frame_seq(self, FrameInfo *fi, str path) except -1
    cdef bytes decode_frame_into(self, FrameInfo *fi, str path)
    cdef const unsigned char *record_block(self, const FrameInfo *fi, uint32_t i, str path,
                                           uint64_t *off_in_block, uint64_t *limit) except NULL

cdef int64_t split_record(const FrameInfo *fi) noexcept nogil
