# The Log (log.pyx): the append API on top of its layers (recovery.pxd, commit.pxd,
# write.pxd), which declare its state.
from libc.stdint cimport int64_t, uint32_t, uint64_t
from chronolog._core.batch cimport ColView
from chronolog._core.write cimport WritingLog


cdef class Log(WritingLog):
    cdef object _retry_result(self, int64_t sid, uint64_t count, int64_t expected, uint64_t n,
                              uint64_t n_first, const unsigned char *ids, const char **streams,
                              const uint32_t *slens)
    cdef list _look_up_streams(self, ColView *cols, Py_ssize_t n, dict expected_versions)
    cdef object _append_views(self, ColView *cols, const unsigned char *idp,
                              const unsigned char *idvalid, int64_t id_offset, Py_ssize_t n,
                              bint all_ids, dict expected_versions, int64_t timestamp)
