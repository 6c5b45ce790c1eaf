# The Arrow columns of a scan (columns.pyx): their names and bits, and pass 2, which fills
# a RecordBatch from the records pass 1 (scan.pyx) selected.
from libc.stdint cimport int32_t, uint32_t, uint64_t

cdef enum:
    COL_POSITION = 1
    COL_STREAM = 2
    COL_VERSION = 4
    COL_TYPE = 8
    COL_TIMESTAMP = 16
    COL_DATA = 32
    COL_METADATA = 64
    COL_ID = 128
    COL_ALL = 255
    COL_NARROW = COL_POSITION | COL_STREAM | COL_TYPE   # what a frame's narrow region serves
    # The largest byte total of one variable-width column in one batch (32-bit Arrow offsets).
    MAX_COLUMN_BYTES = 0x7FFFFFFF


cdef struct SelectedRecords:
    # What pass 1 selected, per event: its record (or, in a narrow scan, its stream name with
    # its length and position) and the scan's id of its type.
    const unsigned char **sel
    int32_t *sel_type
    uint32_t *sel_slen
    uint64_t *sel_pos
    bint narrow


cdef list column_names(object columns)
cdef int column_bits(list names) except -1
cdef object build_batch(const SelectedRecords *sel, size_t n, const uint64_t *sizes, int cols,
                        list names, object type_dict, str path)
