"""The one I/O layer of the compiled core: every open, pwrite, fsync, rename and truncate of
the log and its indexes goes through a FileIO, so tests can inject faults without touching
the log's logic.
"""
import errno as _errno
import os
import stat

from libc.errno cimport errno, EINTR
from posix.fcntl cimport O_RDONLY, O_DIRECTORY, O_NONBLOCK
from posix.stat cimport struct_stat, fstat, S_ISREG
from posix.unistd cimport close as c_close, dup as c_dup, fsync as c_fsync, ftruncate as c_ftruncate
from posix.types cimport off_t
from chronolog._core.format cimport CHL_VISIBLE_CHECK, VISIBLE_MARK_BYTES, st64

from chronolog.errors import CorruptionError

cdef extern from "<unistd.h>" nogil:
    int c_fdatasync "fdatasync" (int fd)

cdef extern from "<fcntl.h>" nogil:
    int c_open "open" (const char *path, int flags, int mode)
    enum: O_NOFOLLOW
    enum: O_EXCL
    enum: O_CREAT
    enum: O_WRONLY
    enum: O_CLOEXEC

cdef extern from *:
    """
    #include <fcntl.h>
    static int chl_allocate(int fd, long long off, long long n, int grow) {
    #if defined(__linux__) && defined(FALLOC_FL_KEEP_SIZE)
        return fallocate(fd, grow ? 0 : FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)n);
    #else
        (void)fd; (void)off; (void)n; (void)grow;
        return -1;
    #endif
    }
    """
    int chl_allocate(int fd, long long off, long long n, int grow) nogil

cdef extern from *:
    """
    /* A run of zeros that FileIO.zero writes, as many times as needed. */
    static const unsigned char chl_zero_run[65536];
    """
    const unsigned char chl_zero_run[65536]

cdef extern from "<stdio.h>" nogil:
    int c_rename "rename" (const char *src, const char *dst)

cdef extern from "<unistd.h>" nogil:
    int c_unlink "unlink" (const char *path)

cdef extern from "chl_wpipe.h" nogil:
    void chl_wpipe_start(chl_wpipe *w, int fd, const unsigned char *base, uint64_t offset,
                         uint64_t hint_from, uint64_t hint_bytes)
    int chl_wpipe_finish(chl_wpipe *w, size_t upto)
    int chl_pwrite_all(int fd, const unsigned char *p, size_t n, uint64_t off)

cdef enum:
    SMALL_WRITE_BYTES = 64 * 1024


_OPS = ("open", "write", "fsync", "truncate", "rename", "unlink", "fsync_dir", "allocate", "publish",
        "zero")


def not_regular(str path):
    """The error for a path where chronolog keeps a file but something else stands."""
    return CorruptionError(path, None, "not a regular file (a FIFO, device, socket or directory "
                           "stands where chronolog keeps a file of the store): move it away")


def read_regular(str path, Py_ssize_t limit=-1):
    """The bytes of the regular file at `path` (at most `limit` when not -1), read without the
    FileIO's counting or faults (store header, dictionaries). Anything but a regular file
    raises not_regular(path); O_NONBLOCK keeps a FIFO from hanging the open."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise not_regular(path)
    with open(fd, "rb") as f:  # (closes fd)
        return f.read() if limit < 0 else f.read(limit)


cdef inline _raise_os(int err, str what, str path=None):
    if path is not None:
        raise OSError(err, f"{os.strerror(err)} ({what})", path)
    raise OSError(err, f"{os.strerror(err)} ({what})")


cdef class FileIO:
    """Thin wrappers over the POSIX calls the log uses, with optional fault injection.

    `inject(op, after=N, errno=E, persistent=False)` makes the (N+1)-th call of `op` from now
    fail with `E` (and every later one when persistent). Ops: open, write, fsync (fsync and
    fdatasync), truncate, rename, unlink, fsync_dir, allocate (a failed allocate is ignored:
    it only reserves blocks ahead of the writes), publish (the readers' visibility mark), zero
    (zeros written ahead of the writes: a hint too, a failure is ignored).
    `counts` tallies the calls per op.

    `trace`, when set to a callable, is called after every successful operation as
    `trace(op, path, offset, data)`: ("open", path, flags, None), ("write", path, offset,
    bytes), ("fsync", path, 0, None), ("truncate", path, size, None), ("rename", src, 0, dst),
    ("unlink", path, 0, None), ("fsync_dir", path, 0, None), ("close", path, 0, None),
    ("allocate", path, offset, length) (blocks reserved, size unchanged), ("grow", path,
    offset, length) (blocks reserved and the file extended to offset + length if shorter, the
    new bytes zeros), ("writeback", path,
    offset, length) (writeback of that range asked for: a hint, nothing changes), ("zero",
    path, offset, length) (zeros written there: a write), ("publish",
    path, 0, bytes) (the visibility mark rewritten: a write of those bytes at offset 0). The
    torture suite replays it to simulate a power loss (what was fsynced survives, the rest may
    not).

    Invariants:
        - A failed pwrite may have written a prefix; the caller treats the file as suspect.

    Thread-safety: calls may come from several threads; the GIL is released around each
    syscall that can block (not around `dup`, a quick `close`, or a write of a few KiB) and
    fault bookkeeping happens with the GIL held.

    Example:
        >>> io = FileIO()
        >>> io.inject("fsync", after=0, errno=5)
    """

    def __cinit__(self):
        self.trace = None
        self._paths = {}
        self._armed = False
        self._faults = {}
        self.counts = {op: 0 for op in _OPS}

    def inject(self, str op, *, int after=0, int errno=_errno.EIO, bint persistent=False):  # no-cython-lint
        """Fail the (after+1)-th call of `op` from now with `errno` (every later one too when
        persistent)."""
        if op not in _OPS:
            raise ValueError(f"unknown I/O op {op!r}; choose one of {', '.join(_OPS)}")
        if after < 0:
            raise ValueError("after must be >= 0")
        self._faults[op] = [after, errno, persistent]
        self._armed = True

    def clear(self):
        """Remove every injected fault."""
        self._faults.clear()
        self._armed = False

    cdef int _fault(self, str op, str path=None) except -1:
        self.counts[op] += 1
        if not self._armed:
            return 0
        plan = self._faults.get(op)
        if plan is None:
            return 0
        if plan[0] > 0:
            plan[0] -= 1
            return 0
        if not plan[2]:
            del self._faults[op]
        if path is not None:  # (as the call would: OSError's filename)
            raise OSError(plan[1], f"{os.strerror(plan[1])} (injected {op} fault)", path)
        raise OSError(plan[1], f"{os.strerror(plan[1])} (injected {op} fault)")

    cdef int open(self, str path, int flags, int mode) except -1:
        """Open `path`; unless it is opened as a directory, it must be a regular file: anything
        else (a FIFO, a device, a socket, a directory) raises CorruptionError, and O_NONBLOCK
        keeps a FIFO from hanging the open (on a regular file it changes nothing)."""
        self._fault("open", path)
        cdef bytes p = os.fsencode(path)
        cdef const char *cp = p
        cdef int fd
        cdef struct_stat st
        cdef int oflags = flags if flags & O_DIRECTORY else flags | O_NONBLOCK
        while True:
            with nogil:
                fd = c_open(cp, oflags, mode)
            if fd >= 0:
                if not flags & O_DIRECTORY and (fstat(fd, &st) != 0 or not S_ISREG(st.st_mode)):
                    c_close(fd)
                    raise not_regular(path)
                if self.trace is not None:
                    self._paths[fd] = path
                    self.trace("open", path, flags, None)
                return fd
            if errno != EINTR:
                _raise_os(errno, "open", path)

    cdef int create_new(self, str path) except -1:
        """Open a fresh file for writing (mode 0600) at `path`, replacing whatever is there
        without following it: a symlink planted at a temporary name is removed, not
        written through."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return self.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)

    cdef int close(self, int fd, bint quick=False) except -1:
        """Close fd; `quick` keeps the GIL (a duplicate of a descriptor that stays open: its
        close releases nothing, and handing the GIL over would cost more)."""
        # The path is forgotten before the descriptor is: once closed, its number may be
        # reused by another thread's open at once.
        path = self._paths.pop(fd, None) if self.trace is not None else None
        if quick:
            c_close(fd)
        else:
            with nogil:
                c_close(fd)
        if self.trace is not None:
            self.trace("close", path, 0, None)
        return 0

    cdef int dup(self, int fd) except -1:
        cdef int d = c_dup(fd)  # with the GIL: a table update, never blocks
        if d < 0:
            _raise_os(errno, "dup")
        if self.trace is not None:
            self._paths[d] = self._paths.get(fd)
        return d

    cdef int pwrite_all(self, int fd, const void *buf, size_t n, uint64_t offset) except -1:
        self._fault("write")
        cdef const unsigned char *p = <const unsigned char *>buf
        cdef int err = 0
        # A small write into the page cache takes a few microseconds: releasing the GIL
        # around it costs more than it saves when many threads append (each release hands the
        # GIL to a waiting thread, a convoy). Large writes release it.
        if n <= SMALL_WRITE_BYTES:
            err = chl_pwrite_all(fd, p, n, offset)
        else:
            with nogil:
                err = chl_pwrite_all(fd, p, n, offset)
        if err:
            _raise_os(err, "write")
        if self.trace is not None:
            self.trace("write", self._paths.get(fd), offset, (<const char *>buf)[:n])
        return 0

    cdef int publish(self, int fd, uint64_t value) except -1:
        """Rewrite the visibility mark of index/visible (format.pxd): `value` and its check
        word, one 16-byte pwrite at offset 0, with the GIL held (a few microseconds)."""
        self._fault("publish")
        cdef unsigned char buf[VISIBLE_MARK_BYTES]
        st64(buf, value)
        st64(buf + 8, value ^ CHL_VISIBLE_CHECK)
        cdef int err = chl_pwrite_all(fd, buf, VISIBLE_MARK_BYTES, 0)
        if err:
            _raise_os(err, "write")
        if self.trace is not None:
            self.trace("publish", self._paths.get(fd), 0, (<const char *>buf)[:VISIBLE_MARK_BYTES])
        return 0

    cdef int pipe_start(self, chl_wpipe *w, int fd, const unsigned char *frame, uint64_t offset,
                        uint64_t hint_from, uint64_t hint_bytes) except -1:
        """Begin one pipelined pwrite of a frame (`frame`, `offset`: where the frame and its
        header go): a helper thread writes the body from frame + 56 as the encoder submits
        it (chl_wpipe_submit, without the GIL); pipe_finish writes the header last. One
        "write" op, counted and faulted here, before any byte. With hint_bytes it also asks the
        kernel to start writeback of [hint_from, hint_from + hint_bytes) (sync_file_range, a
        hint). See csrc/chl_wpipe.h."""
        self._fault("write")
        chl_wpipe_start(w, fd, frame + 56, offset + 56, hint_from, hint_bytes)
        if hint_bytes and self.trace is not None:
            self.trace("writeback", self._paths.get(fd), hint_from, hint_bytes)
        return 0

    cdef int pipe_finish(self, chl_wpipe *w, int fd, const unsigned char *frame, size_t n,
                         size_t head, uint64_t offset) except -1:
        """End the pipeline of pipe_start: the body and trailer (frame[head:n]) are all
        submitted; wait until they are written, then write the header (frame[:head]), so a
        frame is whole only once its header is: a reader or recovery meeting it earlier sees a
        frame that does not check yet. An error is raised after the pipeline stopped."""
        cdef int err
        with nogil:
            err = chl_wpipe_finish(w, n - head)
            if not err:
                err = chl_pwrite_all(fd, frame, head, offset)
        if err:
            _raise_os(err, "write")
        if self.trace is not None:
            self.trace("write", self._paths.get(fd), offset, (<const char *>frame)[:n])
        return 0

    cdef int hint_writeback(self, chl_wpipe *w, int fd, uint64_t offset, uint64_t n) except -1:
        """Ask the kernel to start writing back [offset, offset + n) of fd, from a helper
        thread (w's: a pipeline job with nothing to write), so the caller does not wait for it;
        chl_wpipe_reap waits for it. A hint (sync_file_range): errors surface at the next fdatasync."""
        with nogil:
            chl_wpipe_start(w, fd, NULL, 0, offset, n)
            chl_wpipe_finish(w, 0)
        if self.trace is not None:
            self.trace("writeback", self._paths.get(fd), offset, n)
        return 0

    cdef int allocate(self, int fd, uint64_t offset, uint64_t n, bint grow=False) except -1:
        """Reserve disk blocks for [offset, offset + n) of fd (fallocate): later writes there
        skip the filesystem's block allocation. Without `grow` the file's size is unchanged
        (FALLOC_FL_KEEP_SIZE); with it the file is extended to offset + n if shorter (the new
        bytes read as zeros), so that a later fdatasync of writes there has no size to record
        (docs/design.md, "Segments sized ahead"). A hint: returns 1 when it worked, 0 when it
        did not (no space, no support, an injected "allocate" fault); the write that follows
        still decides."""
        cdef int r
        try:
            self._fault("allocate")
        except OSError:
            return 0
        with nogil:
            r = chl_allocate(fd, <long long>offset, <long long>n, grow)
        if r != 0:
            return 0
        if self.trace is not None:
            self.trace("grow" if grow else "allocate", self._paths.get(fd), offset, n)
        return 1

    cdef int zero(self, int fd, uint64_t offset, uint64_t n) except -1:
        """Write zeros over [offset, offset + n) of fd, a range the writer has reserved and
        not written yet (docs/design.md, "Zeros written ahead"): once the next fdatasync has
        written them, the filesystem holds those blocks as written, and later syncs of writes
        there have no extent to convert. A hint: returns 1 when it worked, 0 when it did not
        (an error, an injected "zero" fault); the writes that follow still decide."""
        cdef int err = 0
        cdef uint64_t at = offset, left = n, k
        try:
            self._fault("zero")
        except OSError:
            return 0
        with nogil:
            while left > 0 and err == 0:
                k = left if left < sizeof(chl_zero_run) else sizeof(chl_zero_run)
                err = chl_pwrite_all(fd, chl_zero_run, <size_t>k, at)
                at += k
                left -= k
        if err != 0:
            return 0
        if self.trace is not None:
            self.trace("zero", self._paths.get(fd), offset, n)
        return 1

    cdef int fsync(self, int fd) except -1:
        self._fault("fsync")
        cdef int r
        with nogil:
            r = c_fsync(fd)
        if r != 0:
            _raise_os(errno, "fsync")
        if self.trace is not None:
            self.trace("fsync", self._paths.get(fd), 0, None)
        return 0

    cdef int fdatasync(self, int fd) except -1:
        self._fault("fsync")
        cdef int r
        with nogil:
            r = c_fdatasync(fd)
        if r != 0:
            _raise_os(errno, "fdatasync")
        if self.trace is not None:
            self.trace("fsync", self._paths.get(fd), 0, None)
        return 0

    cdef int ftruncate(self, int fd, uint64_t size) except -1:
        self._fault("truncate")
        cdef int r
        with nogil:
            r = c_ftruncate(fd, <off_t>size)
        if r != 0:
            _raise_os(errno, "ftruncate")
        if self.trace is not None:
            self.trace("truncate", self._paths.get(fd), size, None)
        return 0

    cdef int rename(self, str src, str dst) except -1:
        self._fault("rename")
        cdef bytes a = os.fsencode(src), b = os.fsencode(dst)
        cdef const char *ca = a
        cdef const char *cb = b
        cdef int r
        with nogil:
            r = c_rename(ca, cb)
        if r != 0:
            _raise_os(errno, "rename", src)
        if self.trace is not None:
            self.trace("rename", src, 0, dst)
        return 0

    cdef int unlink(self, str path) except -1:
        self._fault("unlink")
        cdef bytes a = os.fsencode(path)
        cdef const char *ca = a
        cdef int r
        with nogil:
            r = c_unlink(ca)
        if r != 0:
            _raise_os(errno, "unlink", path)
        if self.trace is not None:
            self.trace("unlink", path, 0, None)
        return 0

    cdef int fsync_dir(self, str path) except -1:
        self._fault("fsync_dir")
        cdef int fd = self.open(path, O_RDONLY | O_DIRECTORY, 0)
        cdef int r, err = 0
        with nogil:
            r = c_fsync(fd)
            if r != 0:
                err = errno
        self.close(fd)
        if r != 0:
            _raise_os(err, "fsync of directory", path)
        if self.trace is not None:
            self.trace("fsync_dir", path, 0, None)
        return 0
