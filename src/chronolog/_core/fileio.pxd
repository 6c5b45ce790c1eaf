from libc.stdint cimport uint64_t

cdef extern from "chl_wpipe.h" nogil:
    ctypedef struct chl_wpipe:
        pass
    void chl_wpipe_submit(chl_wpipe *w, size_t upto)
    void chl_wpipe_reap(chl_wpipe *w)
    void chl_wpipe_stop(chl_wpipe *w)

cdef class FileIO:
    cdef bint _armed
    cdef dict _faults
    cdef readonly dict counts
    cdef public object trace
    cdef dict _paths
    cdef int _fault(self, str op, str path=*) except -1
    cdef int open(self, str path, int flags, int mode) except -1
    cdef int close(self, int fd, bint quick=*) except -1
    cdef int create_new(self, str path) except -1
    cdef int dup(self, int fd) except -1
    cdef int pwrite_all(self, int fd, const void *buf, size_t n, uint64_t offset) except -1
    cdef int publish(self, int fd, uint64_t value) except -1
    cdef int pipe_start(self, chl_wpipe *w, int fd, const unsigned char *frame, uint64_t offset,
                        uint64_t hint_from, uint64_t hint_bytes) except -1
    cdef int pipe_finish(self, chl_wpipe *w, int fd, const unsigned char *frame, size_t n,
                         size_t head, uint64_t offset) except -1
    cdef int allocate(self, int fd, uint64_t offset, uint64_t n, bint grow=*) except -1
    cdef int zero(self, int fd, uint64_t offset, uint64_t n) except -1
    cdef int hint_writeback(self, chl_wpipe *w, int fd, uint64_t offset, uint64_t n) except -1
    cdef int fsync(self, int fd) except -1
    cdef int fdatasync(self, int fd) except -1
    cdef int ftruncate(self, int fd, uint64_t size) except -1
    cdef int rename(self, str src, str dst) except -1
    cdef int unlink(self, str path) except -1
    cdef int fsync_dir(self, str path) except -1
