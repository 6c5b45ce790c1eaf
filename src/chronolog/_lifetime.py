"""What a store handle holds outside its class: the writer's lock, room in the open-file limit
for its segments, the "interval" flush thread, and their release at close."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import warnings

from chronolog import subscriptions as _subs
from chronolog._core.fileio import not_regular
from chronolog._core.log import Log
from chronolog.errors import StoreLockedError


def take_lock(path: str) -> int:
    """Create the store directory when missing and take its writer lock (`LOCK`, flock):
    return the lock's descriptor, or raise StoreLockedError at once when another writer holds
    it (never waits)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    lock_path = os.path.join(path, "LOCK")
    try:  # (O_NONBLOCK: a FIFO there must not hang the open)
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except IsADirectoryError:
        raise not_regular(lock_path) from None
    try:
        if not stat.S_ISREG(os.fstat(lock_fd).st_mode):
            raise not_regular(lock_path)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(lock_fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StoreLockedError(os.path.abspath(path)) from None
        raise
    return lock_fd


def flush_loop(log: Log, stop: threading.Event, period: float) -> None:
    """The "interval" durability thread: fdatasync every `period` seconds until stopped."""
    while not stop.wait(period):
        try:
            log.sync()
        except OSError:  # the log is now failed-stop (StoreFailedError); appends report it
            return


def release(log: Log, lock_fd: int | None, notifier: _subs.AppendNotifier,
             stop: threading.Event, flusher: threading.Thread | None) -> None:
    """What EventStore.close does: stop the flush thread, sync, checkpoint, let go of every
    file and, last, of the writer's lock."""
    stop.set()
    if flusher is not None and flusher is not threading.current_thread():
        flusher.join()
    notifier.close()
    try:
        log.close()
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def close_dropped(log: Log, lock_fd: int | None, notifier: _subs.AppendNotifier,
                   stop: threading.Event, flusher: threading.Thread | None) -> None:
    """An EventStore collected (or left at exit) unclosed: warn as an unclosed file does,
    then close it."""
    warnings.warn(f"EventStore({log.path!r}) was never closed: close it, or open it in a "
                  "with block", ResourceWarning, stacklevel=1)
    release(log, lock_fd, notifier, stop, flusher)
