# The Log's second layer (commit.pyx): group commit, fail-stop and the index checkpoints
# written only after the events they cover are synced.
from libc.stdint cimport uint64_t
from chronolog._core.recovery cimport RecoveredLog
from chronolog._core.segment cimport Segment


cdef class GroupCommitLog(RecoveredLog):
    cdef object _sync_lock
    cdef object _waiters
    cdef bint syncing
    cdef long long last_sync_ns
    cdef public long long spin_ns
    cdef public long long spin_late_ns
    cdef public uint64_t close_tail_budget_ns
    # Written by waiters without the lock (a heuristic: a lost update only moves a back-off).
    cdef readonly long long spin_off_until
    cdef readonly long long spin_backoff
    cdef uint64_t written_seq
    cdef uint64_t synced_seq
    cdef int _fail(self, object exc, Segment seg, uint64_t keep) except -1
    cdef int sync_to(self, uint64_t seq) except -1
    cdef long long _spin_budget(self, Py_ssize_t waiting) noexcept
    cdef Segment _lead(self, uint64_t *target, uint64_t *target_pos, uint64_t *target_off, int *fd)
    cdef int _sync_as_leader(self, Segment seg, int fd, uint64_t target, uint64_t target_pos,
                             uint64_t target_off) except -1
    cdef object _covered_waiter(self)
    cdef int _wake_waiter(self) except -1
    cdef int _checkpoint(self) except -1
    cdef int _checkpoint_at_close(self) except -1
    cdef int _checkpoint_begin(self, bint background) except -1
