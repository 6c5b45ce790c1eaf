"""The exceptions Chronolog raises: one root, each also a subclass of the matching builtin.

Example:
    >>> import chronolog as cl
    >>> try:
    ...     raise cl.errors.InvalidStreamNameError("", "a stream name must not be empty")
    ... except ValueError as exc:
    ...     print(type(exc).__name__)
    InvalidStreamNameError
"""

from __future__ import annotations


class ChronologError(Exception):
    """Raised for every refusal or failure of Chronolog; the root of all its errors.

    Example:
        >>> issubclass(WrongExpectedVersionError, ChronologError)
        True
    """


class WrongExpectedVersionError(ChronologError, ValueError):
    """Raised when an append's expected version does not match the stream's actual version.

    Attributes:
        stream: the stream name.
        expected: what the append expected, as an int (-1 NO_STREAM, -2 ANY, -4 STREAM_EXISTS:
            equal to the StreamState members).
        actual: the stream's current version (its last event's version), or None when the
            stream does not exist.

    Example:
        >>> e = WrongExpectedVersionError("order-7", 1, 3)
        >>> e.actual
        3
    """

    def __init__(self, stream: str, expected: object, actual: int | None, detail: str = "") -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        now = "does not exist" if actual is None else f"is at version {actual}"
        want = {-1: "no stream", -2: "any version", -4: "an existing stream"}.get(
            expected if isinstance(expected, int) else 0, f"version {expected}")
        msg = f"stream {stream!r} {now}, the append expected {want}; nothing was written"
        if detail:
            msg += f" ({detail})"
        msg += ". Reload the stream and decide again, or pass expected_version=ANY."
        super().__init__(msg)


class StoreLockedError(ChronologError, BlockingIOError):
    """Raised when another process (or another open in this one) holds the store's write lock.

    Attributes:
        path: the store directory.

    Example:
        >>> StoreLockedError("/data/shop").path
        '/data/shop'
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"store {path!r} is already open for writing by another process or handle; "
            "open it with readonly=True to read and follow it, or close the other writer")


class CorruptionError(ChronologError, OSError):
    """Raised when bytes on disk fail a check (checksum, magic, length, density).

    Attributes:
        path: the file that failed the check.
        offset: the byte offset in that file where the problem starts (or None).
        reason: what was wrong.
        remedy: what to do, when not verify and salvage (the default advice).

    Example:
        >>> CorruptionError("00000000000000000000.seg", 64, "bad body CRC").offset
        64
    """

    def __init__(self, path: str, offset: int | None, reason: str, remedy: str | None = None) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        where = f"{path} at offset {offset}" if offset is not None else path
        super().__init__(
            f"corruption in {where}: {reason}. " + (remedy or "Run `chronolog verify` for a full "
                                                     "report; `chronolog repair --salvage` keeps "
                                                     "everything before the damage"))


class EventTooLargeError(ChronologError, ValueError):
    """Raised when an event (or a whole append) exceeds the store's size limits.

    Attributes:
        size: the offending size in bytes.
        limit: the limit it exceeded.

    Example:
        >>> EventTooLargeError(10, 5).limit
        5
    """

    def __init__(self, size: int, limit: int, what: str = "event", remedy: str | None = None) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is {size} bytes, over the limit of {limit} bytes; nothing was written. "
            + (remedy or "Store large blobs elsewhere and record a reference, or open the store "
               "with a larger max_event_bytes"))


class InvalidStreamNameError(ChronologError, ValueError):
    """Raised when a stream name is empty, too long, not a str, or not encodable as UTF-8.

    Attributes:
        stream: the refused name (repr-safe).

    Example:
        >>> InvalidStreamNameError("", "a stream name must not be empty").stream
        ''
    """

    def __init__(self, stream: object, reason: str) -> None:
        self.stream = stream
        super().__init__(f"invalid stream name {stream!r}: {reason}; nothing was done")


class InvalidEventError(ChronologError, TypeError):
    """Raised when an event's type, data, metadata or id has the wrong type or shape.

    Example:
        >>> isinstance(InvalidEventError("data must be bytes"), TypeError)
        True
    """


class InvalidArgumentError(ChronologError, ValueError):
    """Raised when an argument is out of its allowed range or of the wrong kind.

    Example:
        >>> isinstance(InvalidArgumentError("limit must be >= 0"), ValueError)
        True
    """


class StoreClosedError(ChronologError, RuntimeError):
    """Raised when a closed store (or subscription) is used.

    Example:
        >>> str(StoreClosedError("/data/shop")).startswith("store")
        True
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"store {path!r} is closed; open it again with EventStore.open()")


class ConcurrentUseError(ChronologError, RuntimeError):
    """Raised when a second thread uses an object made for one thread at a time (a
    Subscription, a scan's iterator) while the first is inside it.

    Example:
        >>> isinstance(ConcurrentUseError("a Subscription is iterated by one thread at a time"),
        ...            RuntimeError)
        True
    """


class ReadOnlyError(ChronologError, PermissionError):
    """Raised when a write is attempted on a store opened with readonly=True.

    Example:
        >>> isinstance(ReadOnlyError("/data/shop"), PermissionError)
        True
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"store {path!r} was opened read-only; open it without readonly=True "
            "(one writer per store) to append")


class StoreFailedError(ChronologError, OSError):
    """Raised by every append after a write or fsync failed: the store stopped (fail-stop);
    also by `compact` when a write fails (`message` then says what happened).

    Nothing acknowledged is lost; close the store, fix the cause (disk full, I/O error) and
    open it again: recovery truncates the unacknowledged tail.

    Attributes:
        cause: the OSError that stopped the store.

    Example:
        >>> StoreFailedError("/s", OSError(28, "No space left on device")).cause.errno
        28
    """

    def __init__(self, path: str, cause: OSError, message: str | None = None) -> None:
        self.path = path
        self.cause = cause
        super().__init__(
            message or f"store {path!r} stopped accepting writes after "
            f"{'an interruption' if isinstance(cause, InterruptedError) else 'an I/O error'} "
            f"({cause}); nothing acknowledged is lost: close it, fix the cause and open it again")


class ForkedWriterError(ChronologError, RuntimeError):
    """Raised when a writing handle is used in a process forked from the one that opened it.

    The child shares the parent's descriptors and its view of the log's end: an append from
    both would write at the same offsets, and the child's close would cut or hide what the
    parent appended since the fork. So a forked child never writes, syncs or checkpoints
    through an inherited writer; its close only lets go of its copies (the parent's handle and
    lock are untouched).

    Attributes:
        path: the store.
        owner: the process id that opened the handle.

    Example:
        >>> ForkedWriterError("/s", 4242).owner
        4242
    """

    def __init__(self, path: str, owner: int) -> None:
        import os

        self.path = path
        self.owner = owner
        super().__init__(
            f"store {path!r} was opened for writing by process {owner}, and this process "
            f"({os.getpid()}) is a fork of it: an inherited writer must not write (both would "
            "write at the same offsets). Read it with EventStore.open(path, readonly=True), or "
            "write through the parent, or open it here once the parent has closed it")


class StoreNotFoundError(ChronologError, FileNotFoundError):
    """Raised when a read-only open (or a tool) names a directory that holds no store.

    Example:
        >>> StoreNotFoundError("/nope").path
        '/nope'
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"no Chronolog store at {path!r}; create one with EventStore.open(path) "
            "(without readonly=True) or `chronolog init`")


class ResourceLimitError(ChronologError, RuntimeError):
    """Raised when the process has reached a limit the store cannot work under: it cannot
    start a thread the store needs (a thread, process or memory limit: `ulimit -u`, a
    container's pids limit, `ulimit -v`), or it may not open a descriptor for each of the
    store's segments (`ulimit -n`, its hard limit).

    What refuses: opening a store of more segments than the open-file hard limit allows (the
    soft limit is raised up to the hard one first), durability "interval" without its flush
    thread (both at open: nothing was written and the store's lock is released), and the
    async iteration of a subscription without the thread its waits run in. The store's other
    threads have a fallback: large frames are written by the appender itself, index
    checkpoints in the appending thread.

    Example:
        >>> err = ResourceLimitError("/s", "start its flush thread", RuntimeError("can't start new thread"))
        >>> str(err).startswith("store '/s': cannot start its flush thread (can't start new thread)")
        True
    """

    def __init__(self, path: str, what: str, cause: BaseException | str,
                 advice: str = "") -> None:
        self.path = path
        super().__init__(
            f"store {path!r}: cannot {what} ({cause}); the process has reached a limit: "
            f"raise it{advice}")


class StoreAccessError(ChronologError, PermissionError):
    """Raised when opening a store meets a file or directory the process may not use
    (permission denied): the store directory, its lock, a segment, an index file.

    Attributes:
        path: the store directory.
        denied: the file or directory that was refused.

    Example:
        >>> err = StoreAccessError("/s", PermissionError(13, "Permission denied", "/s/LOCK"))
        >>> err.denied
        '/s/LOCK'
    """

    def __init__(self, path: str, cause: OSError) -> None:
        self.path = path
        name = cause.filename if cause.filename is not None else path
        super().__init__(
            f"store {path!r}: permission denied on {name!r} ({cause.strerror or cause}); a "
            "writer needs read and write access to the store directory and every file in it, "
            "a reader read access: check their owner and mode (ls -l), or run as their owner")
        self.denied = name
