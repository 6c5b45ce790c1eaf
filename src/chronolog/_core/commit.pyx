"""The Log's second layer: what makes appends durable. Group commit (sync_to: one leader
fdatasyncs for everyone who wrote, the others wait for a baton; docs/design.md "Group
commit"), fail-stop after a write or sync error, and the index checkpoints, which are never
more durable than the events they cover.
"""
import os
import threading

from libc.stdint cimport uint64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from chronolog._core.checkpoint cimport CheckpointJob
from chronolog._core.recovery cimport RecoveredLog, DURABILITY_FSYNC
from chronolog._core.segment cimport Segment, FrameInfo
from chronolog._core.streams cimport chl_streams_tail_pieces

from chronolog.errors import ForkedWriterError, StoreFailedError

# Close leaves the tail past the last checkpoint to the next open (_checkpoint_at_close) when
# indexing it would cost a fresh open at most CLOSE_TAIL_BUDGET_NS by the estimate below, it
# holds at most CLOSE_TAIL_BYTES bytes, all in the newest segment, and the checkpoint would
# cover at least CLOSE_TAIL_SHARE times as many streams and events. Costs measured on the
# 2-vCPU VM: writing the stream checkpoint ~150 ns per stream and event (576 ms for 2M + 2M;
# 0.2-0.5 s for the 10M-event store of 100,000 streams); indexing a tail event on open 0.1-0.2
# µs (CLOSE_TAIL_EVENT_NS), plus the first check of each directory chunk and slot block of the
# checkpoint its stream's lookup reads (CLOSE_TAIL_PIECE_NS each, their CRCs and page faults:
# in a store of 1M streams, 256 events on streams of their own made that open 0.24 -> 6.5 ms).
# A store has few pieces (100,000 streams: 114), so a tail of thousands of events over them
# costs a few ms; the budget is what the rule of 256 events allowed at worst. A log's
# `close_tail_budget_ns` is CLOSE_TAIL_BUDGET_NS unless a test sets it.
cdef uint64_t CLOSE_TAIL_EVENT_NS = 200
cdef uint64_t CLOSE_TAIL_PIECE_NS = 12500
cdef uint64_t CLOSE_TAIL_BUDGET_NS = 6500000
cdef uint64_t CLOSE_TAIL_BYTES = 4 * 1024 * 1024
cdef uint64_t CLOSE_TAIL_SHARE = 256

# A group-commit waiter (sync_to) looks every slice, without the GIL, whether its baton got
# lost: the last sync covered it already, or no sync runs (it should lead one). A slice is
# twice the last fdatasync, between BATON_SLICE_NS and BATON_TIMEOUT_NS: longer than most
# waits in a steady stream of appends, so they cost no extra wake-up there, and never longer
# than the fixed timeout it replaced. After four slices (2-8 ms) it looks again under the
# lock whatever it saw.
cdef long long BATON_SLICE_NS = 500000
cdef long long BATON_TIMEOUT_NS = 2000000
# Before it sleeps, a waiter spins (giving the CPU up between looks, docs/design.md "Group
# commit") when at least SPIN_MIN_WAITERS wait and the last fdatasync took at most
# SPIN_SYNC_MAX_NS (a fast disk: waiting on a slow one is not worth the CPU), for up to three
# times that sync, at most SPIN_MAX_NS. A log's `spin_ns` overrides it: 0 never spins, > 0
# always spins that long (tests), -1 (the default) is the rule above.
cdef long long SPIN_SYNC_MAX_NS = 400000
cdef long long SPIN_MAX_NS = 1000000
cdef Py_ssize_t SPIN_MIN_WAITERS = 4
# A spinner that gets the CPU back more than SPIN_LATE_NS after it gave it up shares it with
# threads that run whole time slices (another process, a CPU-bound thread): waiters then sleep
# for a while, SPIN_BACKOFF_NS doubled at each such spin up to SPIN_BACKOFF_MAX_NS, back to
# SPIN_BACKOFF_NS once a spin ends with its baton. (Without this, two CPU-bound processes
# beside 16 appending threads took them from ~25 k to ~6.5 k appends/s.) A log's
# `spin_late_ns` is SPIN_LATE_NS unless a test sets it; `spin_backoff` and `spin_off_until`
# are readable (tests).
cdef long long SPIN_LATE_NS = 1000000
cdef long long SPIN_BACKOFF_NS = 50000000
cdef long long SPIN_BACKOFF_MAX_NS = 2000000000

cdef extern from "chl_baton.h" nogil:
    ctypedef struct chl_baton:
        pass
    int chl_baton_init(chl_baton *b)
    void chl_baton_destroy(chl_baton *b)
    void chl_baton_post(chl_baton *b)
    int chl_baton_wait(chl_baton *b, long long timeout_ns)
    int chl_baton_spin(chl_baton *b, long long spin_ns, long long slice_ns, long long late_ns,
                       const uint64_t *synced, uint64_t seq, const int *syncing)


cdef inline long long _monotonic_ns() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return <long long>t.tv_sec * 1000000000 + t.tv_nsec


cdef inline uint64_t tail_cost_ns(uint64_t events, uint64_t pieces) noexcept:
    """What indexing a tail of `events` whose lookups check `pieces` directory chunks and slot
    blocks costs an open, by the measured rates above (saturating: a huge tail never wraps)."""
    if events >= 1 << 40 or pieces >= 1 << 40:
        return 0xFFFFFFFFFFFFFFFF
    return events * CLOSE_TAIL_EVENT_NS + pieces * CLOSE_TAIL_PIECE_NS

cdef class _Baton:
    """One wait of a group-commit waiter (sync_to): posted once, by whoever wakes it."""
    cdef chl_baton b

    def __cinit__(self):
        if chl_baton_init(&self.b) != 0:
            raise MemoryError("cannot make the condition a group commit waiter sleeps on")

    def __dealloc__(self):
        chl_baton_destroy(&self.b)


def acquire_through(object lock):
    """Acquire `lock` even when an exception (a signal handler's, in the main thread) interrupts
    a blocking acquire, which then returns without it; return that exception (or None) for
    the caller to raise once its state is consistent again (the group commit's lock: a
    leader that could not take it back would leave `syncing` set and hold every later sync).

    Example:
        >>> import threading; lock = threading.Lock()
        >>> acquire_through(lock) is None and lock.locked()
        True
    """
    pending = None
    while True:
        try:
            lock.acquire()
            return pending
        except BaseException as exc:
            pending = exc


cdef class GroupCommitLog(RecoveredLog):
    """A recovered log that syncs what its writers wrote, together (group commit), stops at
    the first write or sync error (fail-stop), and writes index checkpoints.

    Invariants:
        - synced_seq <= written_seq (bytes written by this handle, in order);
        - the events below written - inflight are in bytes counted in written_seq;
        - at most one sync runs (`syncing`), with _sync_lock released during its fdatasync;
        - after a write or fsync error, `failed` is set and no append succeeds again.

    Thread-safety: any thread may call sync_to; _sync_lock guards the waiters' queue, the
    `syncing` flag and the active segment's descriptor against a roll.
    """

    def __cinit__(self):
        self.spin_ns = -1
        self.spin_late_ns = SPIN_LATE_NS
        self.spin_backoff = SPIN_BACKOFF_NS
        self.close_tail_budget_ns = CLOSE_TAIL_BUDGET_NS

    # ---------------------------------------------------------------- fail-stop and group commit

    cdef int _fail(self, object exc, Segment seg, uint64_t keep) except -1:
        """Fail-stop: no append succeeds after this. Cut what this handle wrote past `keep`
        in `seg` (best effort: nothing there was acknowledged), then raise."""
        self.failed = exc
        try:
            if seg is not None and seg.wfd >= 0:
                self.io.ftruncate(seg.wfd, keep)
                # What reads the segment's bytes (stats, verify) must stop at the cut: its
                # mapping past the file's new end is no memory any more (SIGBUS).
                if seg.end > keep:
                    seg.end = keep
        except OSError:
            pass  # the open after a restart cuts the torn tail instead
        raise StoreFailedError(self.path, exc) from exc

    cdef int sync_to(self, uint64_t seq) except -1:
        """Group commit: return once every byte written up to `seq` is on stable storage.

        One caller at a time is the leader: it snapshots what has been written and
        fdatasyncs it with the lock released, while other appenders keep writing and queue
        up (docs/design.md, "Group commit"). Waiters are woken one at a time, each by a
        thread that is about to give up the GIL (a baton): the leader when its sync is done
        (the first waiter: covered, it returns; else it leads the next sync), and every
        caller as it enters here (the first waiter the last sync covered). A woken thread
        thus finds the GIL free instead of joining a herd. A waiter whose baton got lost (its
        passer did not come back: a burst) sees it at the end of a slice, without the GIL,
        and goes on (covered) or leads the next sync. With several waiters and a fast disk, a
        waiter first spins (see SPIN_SYNC_MAX_NS) so that its baton wakes no one. In
        durability "fsync" this is also what makes appends visible to readers."""
        if self.synced_seq >= seq:
            return 0
        cdef Segment seg
        cdef int fd
        cdef uint64_t target, target_pos, target_off
        cdef bint woken
        cdef int spun
        cdef long long waited, piece, spin
        cdef _Baton baton = None, waiter
        cdef chl_baton *give
        cond = self._sync_lock
        try:
            with cond:
                baton = self._covered_waiter()
                while True:
                    if self.synced_seq >= seq:
                        return 0
                    if self.failed is not None:
                        raise StoreFailedError(self.path, self.failed)
                    if not self.syncing:
                        break
                    waiter = _Baton()
                    entry = (seq, waiter)
                    self._waiters.append(entry)
                    spin = self._spin_budget(len(self._waiters))
                    cond.release()
                    # The baton goes on once the GIL is given up: its taker finds it free.
                    give = &baton.b if baton is not None else NULL
                    with nogil:
                        if give != NULL:
                            chl_baton_post(give)
                        piece = 2 * self.last_sync_ns
                        if piece < BATON_SLICE_NS:
                            piece = BATON_SLICE_NS
                        elif piece > BATON_TIMEOUT_NS:
                            piece = BATON_TIMEOUT_NS  # a slow disk: a lost baton costs <= 2 ms
                        waited = 0
                        spun = chl_baton_spin(&waiter.b, spin, piece, self.spin_late_ns,
                                              &self.synced_seq, seq,
                                              <const int *>&self.syncing) if spin > 0 else 0
                        if spun == 3:  # the CPUs are busy: sleep, and stop spinning for a while
                            self.spin_off_until = _monotonic_ns() + self.spin_backoff
                            self.spin_backoff = min(2 * self.spin_backoff, SPIN_BACKOFF_MAX_NS)
                        elif spun == 1:
                            self.spin_backoff = SPIN_BACKOFF_NS
                        woken = spun == 1
                        while spun == 0 or spun == 3:
                            woken = chl_baton_wait(&waiter.b, piece)
                            if woken:
                                break
                            # Racy reads, looked at again under the lock: a lost baton.
                            waited += piece
                            if self.synced_seq >= seq or not self.syncing or waited >= 4 * piece:
                                break
                    baton = None
                    pending = acquire_through(cond)
                    if not woken or pending is not None:
                        try:
                            self._waiters.remove(entry)
                        except ValueError:
                            pass  # popped by a waker just now
                    if pending is not None:
                        raise pending  # (the lock is held again: `with` releases it)
                seg = self._lead(&target, &target_pos, &target_off, &fd)
        finally:
            if baton is not None:
                chl_baton_post(&baton.b)
        return self._sync_as_leader(seg, fd, target, target_pos, target_off)

    cdef long long _spin_budget(self, Py_ssize_t waiting) noexcept:
        """How long a waiter spins before it sleeps (see SPIN_SYNC_MAX_NS), `waiting` waiters
        queued with it."""
        if self.spin_ns >= 0:
            return self.spin_ns
        if waiting < SPIN_MIN_WAITERS or self.last_sync_ns > SPIN_SYNC_MAX_NS \
                or _monotonic_ns() < self.spin_off_until:
            return 0
        return min(3 * self.last_sync_ns, SPIN_MAX_NS)

    cdef Segment _lead(self, uint64_t *target, uint64_t *target_pos, uint64_t *target_off,
                       int *fd):
        """With the sync lock held: become the group commit's leader and snapshot what its
        fdatasync covers (fd: a duplicate of the active segment's descriptor, or -1)."""
        self.syncing = True
        # A consistent snapshot (the GIL is held): every byte counted in written_seq is in
        # this segment or in an older one, which the roll synced before sealing it. The
        # events of a pipelined frame still being written are indexed already (`inflight`):
        # this sync does not cover them, so it must not make them visible.
        target[0] = self.written_seq
        target_pos[0] = self.written - self.inflight
        cdef Segment seg = self.segments[len(self.segments) - 1]
        target_off[0] = seg.end
        fd[0] = -1
        if seg.wfd >= 0:
            # dup under the lock: a roll closes the old segment's descriptor under the
            # same lock, so it cannot vanish between the snapshot and here.
            try:
                fd[0] = self.io.dup(seg.wfd)
            except OSError as exc:
                self.syncing = False
                self._wake_waiter()
                self._fail(exc, None, 0)
        return seg

    cdef int _sync_as_leader(self, Segment seg, int fd, uint64_t target, uint64_t target_pos,
                             uint64_t target_off) except -1:
        """The leader's fdatasync (the lock released, its duration noted for the waiters'
        slices), then what it covered is synced and visible; the first waiter is woken. If the
        store failed meanwhile, nothing it covered is acknowledged (StoreFailedError)."""
        cdef long long began
        cond = self._sync_lock
        try:
            if fd < 0:
                return 0  # being closed; close() syncs
            try:
                try:
                    began = _monotonic_ns()
                    self.io.fdatasync(fd)
                    self.last_sync_ns = _monotonic_ns() - began
                finally:
                    self.io.close(fd, True)
            except OSError as exc:
                # Unsynced appends were not acknowledged: cut them in "fsync" mode; in
                # "interval" mode they were, so they stay.
                if self.dmode == DURABILITY_FSYNC and seg.ordinal == self.durable_ordinal:
                    self._fail(exc, seg, self.durable_offset)
                self._fail(exc, None, 0)
            if self.failed is not None:
                # A write failed while this sync ran, and its fail-stop cut every frame past
                # the last completed sync, some of which this one covered: acknowledge none.
                raise StoreFailedError(self.path, self.failed)
            if target > self.synced_seq:
                self.synced_seq = target
            # (A sync of a sealed segment that ends after a roll moves nothing back.)
            if seg.ordinal > self.durable_ordinal or (
                    seg.ordinal == self.durable_ordinal and target_off > self.durable_offset):
                self.durable_ordinal = seg.ordinal
                self.durable_offset = target_off
            if target_pos > self.head:
                self.head = target_pos
                if self.dmode == DURABILITY_FSYNC:
                    self._publish(target_pos)
        finally:
            # However this ends: a leader that left `syncing` set would hold every later
            # sync back for good.
            pending = acquire_through(cond)
            try:
                self.syncing = False
                self._wake_waiter()
            finally:
                cond.release()
            if pending is not None:
                raise pending
        return 0

    cdef object _covered_waiter(self):
        """With the sync lock held: the baton of the first waiter when the last sync covered
        it (taken off the queue: the caller posts it, which wakes it), else None."""
        if self._waiters and self._waiters[0][0] <= self.synced_seq:
            return self._waiters.popleft()[1]
        return None

    cdef int _wake_waiter(self) except -1:
        """With the sync lock held, a sync just ended: wake the first waiter (covered, it
        returns; else it leads the next sync), or every waiter when the store failed (each
        raises)."""
        cdef _Baton w
        while self._waiters:
            w = self._waiters.popleft()[1]
            chl_baton_post(&w.b)
            if self.failed is None:
                break
        return 0

    def sync(self):
        """fdatasync everything written so far (the interval thread and close call this)."""
        if not self.readonly and not self.closed and self.failed is None:
            if self._forked():
                raise ForkedWriterError(self.path, self.owner_pid)
            self.sync_to(self.written_seq)

    # ---------------------------------------------------------------- index checkpoints

    def checkpoint(self):
        """Write both index checkpoints for everything up to head (the writer only)."""
        self._check_open()
        if not self.readonly and self._forked():
            raise ForkedWriterError(self.path, self.owner_pid)
        with self._lock:
            self._checkpoint()

    cdef int _checkpoint(self) except -1:
        """Write the checkpoints now (after any one still being written). They are derived:
        failing to write them (a full disk) loses nothing, it only makes the next open scan
        more; so an OSError here is swallowed."""
        self._checkpoint_begin(False)
        return 0

    cdef int _checkpoint_at_close(self) except -1:
        """Close's checkpoint (the lock held): written, unless the events past the last one
        (the tail) cost the next open little to index, are in the newest segment, and are a
        small share of what it would rewrite. The stream checkpoint is rewritten whole
        (O(streams + events): ~580 ms for 2M streams of one event), so a process that opens a
        large store, appends some events and closes would pay that at every close; the next
        opens index such a tail from the segment instead (at most ~6.5 ms by the estimate of
        CLOSE_TAIL_*), until a close finds it worth writing (docs/design.md, "The stream
        index")."""
        self._checkpoint_join()  # adopt a roll's checkpoint still being written
        cdef uint64_t tail = self.written - self.checkpoint_through, entry
        cdef Segment seg
        if self.checkpoint_through != 0xFFFFFFFFFFFFFFFF and 0 < tail \
                and tail * CLOSE_TAIL_SHARE <= self.checkpoint_through + self.st.n_streams \
                and tail_cost_ns(tail, chl_streams_tail_pieces(self.st)) <= self.close_tail_budget_ns:
            entry = self.pidx.get(self.checkpoint_through)  # the tail's first frame
            seg = self.segments[len(self.segments) - 1]
            if entry >> 32 == seg.ordinal and seg.end - (entry & 0xFFFFFFFF) <= CLOSE_TAIL_BYTES:
                return 0
        return self._checkpoint_begin(False)

    cdef int _checkpoint_begin(self, bint background) except -1:
        """Start a checkpoint of both indexes through `written` (docs/design.md, "Index
        checkpoints in the background"): build it in memory with the lock held, then write it
        here, or from a background thread when `background` (the roll: the appender goes on;
        the next append, checkpoint, rebuild or close adopts what it wrote). A roll that
        finds the previous roll's job still writing skips its own: waiting for it would put
        the checkpoint's time back in the appender's path (it grows with the log), and the next
        roll writes both rolls' worth."""
        if background and self._ckpt is not None and not self._ckpt.done \
                and not self._ckpt.unstarted():
            return 0
        self._checkpoint_join()
        if self.readonly or self.written == self.checkpoint_through \
                or self.checkpoint_through == 0xFFFFFFFFFFFFFFFF:
            return 0
        cdef FrameInfo fi
        cdef CheckpointJob job = CheckpointJob(self.io, self.written)
        idx = os.path.join(self.path, "index")
        # An index must never be more durable than the events it covers: after a power loss
        # it would name events the segments no longer hold. Sync them first (a failure here
        # fail-stops the store: it is not one of the checkpoint's own, which are swallowed).
        if self.written_seq > self.synced_seq:
            self.sync_to(self.written_seq)
        try:
            self._make_sound()
            self.pidx.image(job, os.path.join(idx, "positions.idx"), self.store_id)
            self.sidx.snapshot(job, os.path.join(idx, "streams.idx"), self.store_id,
                               self.written, self._anchor_of(self.written - 1, &fi))
        except OSError:
            return 0
        self._ckpt = job
        if background:
            job.thread = threading.Thread(target=job.run, name="chronolog-checkpoint")
            try:
                job.thread.start()
            except RuntimeError:
                # No thread can be made now (a thread, process or memory limit): write it
                # here; the roll waits for it, as every roll did before the thread.
                job.thread = None
                background = False
        if not background:
            job.run()
            self._checkpoint_join()
        return 0
