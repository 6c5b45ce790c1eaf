from libc.stdint cimport int64_t, uint64_t

cdef class NewEvent:
    cdef readonly str type
    cdef readonly bytes data
    cdef readonly bytes metadata
    cdef bytes _id
    cdef bytes _type_utf8

cdef class RecordedEvent:
    cdef readonly uint64_t position
    cdef readonly uint64_t version
    cdef readonly int64_t timestamp
    cdef readonly str stream
    cdef readonly str type
    cdef readonly bytes data
    cdef readonly bytes metadata
    cdef bytes _id

cdef class AppendResult:
    cdef readonly uint64_t first_position
    cdef readonly uint64_t last_position
    cdef readonly object next_version
