from libc.stdint cimport uint32_t, uint64_t
from chronolog._core.fileio cimport FileIO
from chronolog._core.streams cimport chl_snap_entry

cdef enum:
    INDEX_HEADER_BYTES = 64

cdef bytes positions_header(bytes store_id, uint64_t count)
cdef const unsigned char *map_positions(str path, bytes store_id, void **map_out,
                                        uint64_t *len_out) except? NULL
cdef const unsigned char *map_streams(str path, bytes store_id, void **map_out,
                                      uint64_t *len_out) except? NULL

cdef class CheckpointJob:
    cdef FileIO io
    cdef readonly uint64_t through
    cdef str p_path
    cdef bytes p_header
    cdef unsigned char *p_entries
    cdef uint64_t p_bytes
    cdef uint64_t p_offset
    cdef bint p_in_place
    cdef str s_path
    cdef bytes s_store_id
    cdef chl_snap_entry *s_snap       # the live streams to write (owned: freed at dealloc)
    cdef uint64_t s_n
    cdef uint64_t s_names_bytes
    cdef uint64_t s_through
    cdef uint32_t s_anchor
    cdef const void *s_drop_map       # the base's mapping, whose pages the copy drops
    cdef uint64_t s_drop_len
    cdef void *s_map                  # once written: the file, mapped and checked (owned)
    cdef uint64_t s_map_len
    cdef void *s_unmap                # a mapping the index retired, unmapped by `run`
    cdef uint64_t s_unmap_len
    cdef object s_owner               # the StreamIndex of the snapshot (kept alive)
    cdef int _map_streams(self, bytes hdr, uint32_t crc) except -1
    cdef public bint done
    cdef public object error
    cdef public object thread
    cdef public bint cancelled      # its thread's start was interrupted: run does nothing
    cdef bint unstarted(self)
    cdef int _write_positions(self) except -1
    cdef int _write_streams(self) except -1
