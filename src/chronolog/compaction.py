"""Offline compaction: the sealed segments of a store rewritten with another codec."""

from __future__ import annotations

import os

from chronolog._core import compact as _compact
from chronolog.errors import InvalidArgumentError
from chronolog.store import EventStore

__all__ = ["compact"]


def compact(path: str | os.PathLike[str], *, compression: str | None = "zstd",
            compression_level: int = 1, use_dictionary: bool = True) -> dict[str, int]:
    """Rewrite the sealed segments of the store at `path` with `compression` ("zstd" or None),
    offline (it takes the write lock: no writer may have the store open).

    Positions, versions, ids, timestamps and every byte of every event stay as they are;
    only the frames' encoding changes. Crash-safe: each segment is written beside the old
    one, fsynced, and renamed over it, so a crash leaves it old or new, never neither; the
    index checkpoints are removed first and rebuilt by the next open. The newest segment is
    left alone (it is still growing). With use_dictionary, the store's newest trained
    dictionary is used.

    Returns:
        {"segments": rewritten, "bytes_before": ..., "bytes_after": ...}

    Raises:
        StoreLockedError: a writer has the store open.
        StoreNotFoundError: there is no store at `path`.
        CorruptionError: a sealed segment fails its checks (nothing is rewritten from it on).
        StoreFailedError: a write failed (a full disk): the segment being rewritten is kept
            as it was and its scratch file removed; run compact again once the cause is gone.

    Example:
        >>> import chronolog as cl
        >>> cl.compact("data/shop", compression="zstd")  # doctest: +SKIP
        {'segments': 3, 'bytes_before': 805306368, 'bytes_after': 201326592}
    """
    from chronolog._core.codec import Compressor

    if compression not in (None, "zstd"):
        raise InvalidArgumentError(f"compression must be None or 'zstd', got {compression!r}")
    EventStore.open(path, readonly=True).close()  # StoreNotFoundError, not a new empty store
    store = EventStore.open(path, durability="fsync")
    try:
        log = store._log
        target = None
        if compression == "zstd":
            newest = int(log.dicts.newest) if use_dictionary else 0
            target = Compressor(compression_level, log.dicts, newest)
        segments, before, after = _compact.compact_sealed(log, target)
    finally:
        store.close()
    return {"segments": int(segments), "bytes_before": int(before), "bytes_after": int(after)}
