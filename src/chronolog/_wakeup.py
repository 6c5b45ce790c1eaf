"""How followers learn of new appends: the store's in-process AppendNotifier, an inotify watch
of the store's directory for a writer in another process, and polling where there is neither.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from chronolog.errors import StoreClosedError

if TYPE_CHECKING:
    from chronolog._core.log import Log

_POLL_MIN_S = 0.0005   # adaptive polling (no inotify): first sleep
_POLL_MAX_S = 0.05     # and the longest
_POLL_MAX_MS = 2**31 - 1  # the longest poll() a C int of milliseconds allows


class AppendNotifier:
    """The in-process signal between a store and its readers: appends wake waiting
    subscriptions, and closing the store waits for a scan batch in progress.

    The store makes one, calls `notify()` after each append and `close()` before it releases
    its files.

    Invariants:
        - once closed, `reading()` raises StoreClosedError and every waiter is woken;
        - `close()` returns only when no `reading()` block is running.

    Thread-safety: every method may be called from any thread.

    Example:
        >>> n = AppendNotifier()
        >>> n.notify()
        >>> n.close()
    """

    def __init__(self, path: str = "") -> None:
        self._path = path
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0
        self._readers = 0
        self._closed = False
        self._on_close: dict[int, Callable[[], None]] = {}

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    def notify(self) -> None:
        """Wake every waiter (called after an append made new events visible). Costs a few
        attribute reads when nobody waits."""
        # The waiter increments _waiting under the lock before it checks the head; the appender
        # moved the head before reading _waiting. Under the GIL one of the two sees the other.
        if self._waiting:
            with self._cond:
                self._cond.notify_all()

    def wait(self, is_done: Callable[[], bool], timeout: float | None) -> bool:
        """Block until is_done() (checked after each notify), close, or timeout. Returns
        is_done()."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiting += 1
            try:
                while not is_done() and not self._closed:
                    if deadline is None:
                        self._cond.wait()
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or not self._cond.wait(remaining):
                            break
            finally:
                self._waiting -= 1
        return is_done()

    def wake(self) -> None:
        """Wake every waiter so it re-checks its condition (a subscription being closed)."""
        with self._cond:
            self._cond.notify_all()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Hold off close() while the block runs (a scan batch reading mapped segments).

        Raises:
            StoreClosedError: the store is closed.
        """
        self.begin_read()
        try:
            yield
        finally:
            self.end_read()

    def begin_read(self) -> None:
        """reading()'s start, for a hot path (~0.3 us where the context manager takes ~2):
        call end_read() in a finally after it.

        Raises:
            StoreClosedError: the store is closed.
        """
        with self._lock:  # (the condition's lock: `with` on it directly is cheaper)
            if self._closed:
                raise StoreClosedError(self._path)
            self._readers += 1

    def end_read(self) -> None:
        """reading()'s end: close() may go on once no read is running."""
        with self._lock:
            self._readers -= 1
            if self._readers == 0 and self._closed:
                self._cond.notify_all()

    def on_close(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Have close() call `wake` (a waiter that does not wait on this notifier: a read-only
        handle's, on inotify); returns the function that forgets it. Called at once when
        already closed."""
        key = id(wake)
        with self._cond:
            closed = self._closed
            if not closed:
                self._on_close[key] = wake
        if closed:
            wake()

        def forget() -> None:
            with self._cond:
                self._on_close.pop(key, None)

        return forget

    def close(self) -> None:
        """Refuse new readers, wake every waiter, and wait for readers in progress."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            wakes = list(self._on_close.values())
            self._on_close.clear()
        for wake in wakes:
            wake()
        with self._cond:
            while self._readers:
                self._cond.wait()


class DirectoryWatch:
    """inotify on the store directory (Linux): a segment written or created by another
    process makes `wait` return, and so does a rewrite of index/visible (in "fsync" mode an
    append becomes visible there, after its frame was written). A self-pipe lets another
    thread interrupt a wait."""

    IN_MODIFY = 0x00000002
    IN_MOVED_TO = 0x00000080
    IN_CREATE = 0x00000100

    def __init__(self, path: str) -> None:
        self.fd = -1
        try:  # the process's own symbols hold libc's (find_library runs ldconfig: ~5 ms)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.inotify_init1  # noqa: B018 (present, or AttributeError)
        except (OSError, AttributeError):
            from ctypes.util import find_library

            libc = ctypes.CDLL(find_library("c"), use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        mask = self.IN_MODIFY | self.IN_MOVED_TO | self.IN_CREATE
        if libc.inotify_add_watch(fd, os.fsencode(path), mask) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, "inotify_add_watch failed")
        # The index directory exists once a writer opened the store (in "fsync" mode appends
        # become visible by a rewrite of index/visible in it). Made later (a reader opened
        # first, or it was deleted as derived data), it is watched from the first drain after
        # its creation woke us.
        self._libc, self._mask = libc, mask
        self._index = os.fsencode(os.path.join(path, "index"))
        self.fd = fd
        self._index_watched = libc.inotify_add_watch(fd, self._index, mask) >= 0
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)

    def drain(self) -> None:
        """Forget the events seen so far (call before looking at the log again)."""
        if not self._index_watched and self.fd >= 0:
            self._index_watched = self._libc.inotify_add_watch(self.fd, self._index, self._mask) >= 0
        for fd in (self.fd, self.wake_r):
            try:
                while os.read(fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def wait(self, timeout: float | None) -> None:
        # poll takes a C int of milliseconds (~24.8 days at most): a longer wait returns
        # early, and its caller looks again and waits on.
        self.poller.poll(None if timeout is None else min(_POLL_MAX_MS, max(0, int(timeout * 1000 + 0.999))))

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"!")

    def close(self) -> None:
        fds, self.fd, self.wake_r, self.wake_w = (self.fd, self.wake_r, self.wake_w), -1, -1, -1
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __del__(self) -> None:
        # A subscription dropped without close() (`for e in reader.subscribe(): break`): its
        # descriptors go with it, as a file object's do (each one left open leaked three).
        if getattr(self, "wake_w", -1) >= 0:
            self.close()


def _call(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    live = method()
    if live is not None:
        live()


class HeadWaiter:
    """Waits for a log's head to move: the notifier in the writer's process, inotify for a
    read-only handle (another process writes), an adaptive sleep where neither works."""

    def __init__(self, log: Log, notifier: AppendNotifier | None) -> None:
        self.log = log
        self.notifier = notifier if not log.readonly else None
        self.closer = notifier  # the store's: closing it ends every wait, whatever waits on
        self.watch: DirectoryWatch | None = None
        self.woken = threading.Event()
        self._forget: Callable[[], None] | None = None
        if log.readonly:
            try:
                self.watch = DirectoryWatch(log.path)
            except (OSError, AttributeError):
                self.watch = None  # not Linux, or out of watches: poll
            if notifier is not None:
                # A reader's waits are on inotify: the store's close must wake them too. Held
                # weakly, and forgotten once this waiter is collected (a subscription dropped
                # without close() must not stay alive in the notifier with its descriptors).
                wake = weakref.WeakMethod(self.wake)
                self._forget = notifier.on_close(lambda: _call(wake))
                weakref.finalize(self, self._forget)
        self._delay = _POLL_MIN_S

    def head(self) -> int:
        """The head now (a read-only handle first indexes what the writer appended)."""
        if self.log.closed or (self.closer is not None and self.closer.closed):
            raise StoreClosedError(self.log.path)
        if self.watch is not None:
            self.watch.drain()  # before the refresh, so no append slips between the two
        return int(self.log.refresh() if self.log.readonly else self.log.head)

    def wait_beyond(self, seen: int, timeout: float | None, stop: Callable[[], bool]) -> None:
        """Return when the head may have moved past `seen` (the head last looked at), on
        wake(), or after `timeout`."""
        if self.notifier is not None:
            self.notifier.wait(lambda: self.log.closed or self.log.head > seen or stop(), timeout)
        elif self.watch is not None:
            self.watch.wait(timeout)
        else:
            delay = self._delay if timeout is None else min(self._delay, timeout)
            self.woken.wait(delay)
            self._delay = min(self._delay * 2, _POLL_MAX_S)

    def progressed(self) -> None:
        self._delay = _POLL_MIN_S

    def wake(self) -> None:
        self.woken.set()
        if self.notifier is not None:
            self.notifier.wake()
        if self.watch is not None:
            self.watch.wake()

    def close(self) -> None:
        if self._forget is not None:
            self._forget()
            self._forget = None
        if self.watch is not None:
            self.watch.close()
            self.watch = None
