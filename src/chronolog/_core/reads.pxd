# Reads of a Log (reads.pyx): the checked lookup of one position, for the append path's
# idempotent retries and the compression tools.
from libc.stdint cimport uint64_t
from chronolog._core.codec cimport Decoder
from chronolog._core.record cimport RecordView
from chronolog._core.recovery cimport RecoveredLog
from chronolog._core.segment cimport FrameInfo

cdef bint view_position(RecoveredLog log, uint64_t position, FrameInfo *fi, RecordView *rv,
                        bint strict, Decoder dec) except -1
