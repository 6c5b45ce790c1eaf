from libc.stdint cimport uint32_t, uint64_t
from chronolog._core.checkpoint cimport CheckpointJob
from chronolog._core.streams cimport chl_streams

cdef class PositionIndex:
    cdef const uint64_t *base
    cdef uint64_t base_count
    cdef uint64_t *delta
    cdef uint64_t delta_count
    cdef uint64_t delta_cap
    cdef void *map
    cdef uint64_t map_len
    cdef uint32_t *roff
    cdef uint64_t roff_cap
    cdef uint64_t count(self) noexcept
    cdef uint64_t get(self, uint64_t position) noexcept
    cdef uint32_t roff_at(self, uint64_t position) noexcept
    cdef int _grow_roff(self, uint64_t need) except -1
    cdef int set_roff(self, uint64_t first, const unsigned char *table, uint64_t n,
                      uint64_t body_at) except -1
    cdef void set_one_roff(self, uint64_t position, uint32_t value) noexcept
    cdef const uint64_t *slot(self, uint64_t position) noexcept
    cdef int push_n(self, uint64_t entry, uint64_t n) except -1
    cdef void clear(self) noexcept
    cdef uint64_t load(self, str path, bytes store_id) except? 0xFFFFFFFFFFFFFFFF
    cdef int image(self, CheckpointJob job, str path, bytes store_id) except -1
    cdef int adopt(self, CheckpointJob job) except -1

cdef class StreamIndex:
    cdef chl_streams *t
    cdef void *map
    cdef uint64_t map_len
    cdef void *retired                # the previous base's mapping, for the next job to unmap
    cdef uint64_t retired_len
    cdef uint64_t base_through
    cdef uint32_t anchor
    cdef bint lazy
    cdef void clear(self) noexcept
    cdef uint64_t load(self, str path, bytes store_id) except? 0xFFFFFFFFFFFFFFFF
    cdef int snapshot(self, CheckpointJob job, str path, bytes store_id, uint64_t through,
                      uint32_t anchor) except -1
    cdef int adopt(self, CheckpointJob job) except -1
