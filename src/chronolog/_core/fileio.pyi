"""Type stubs of chronolog._core.fileio (compiled): the core's one I/O layer."""

from collections.abc import Callable
from typing import Any

from typing_extensions import disjoint_base

@disjoint_base
class FileIO:
    """Thin wrappers over the POSIX calls the log uses, with optional fault injection.

    Ops: open, write, fsync (fsync and fdatasync), truncate, rename, unlink, fsync_dir,
    allocate, publish (the readers' visibility mark, index/visible).
    """

    @property
    def counts(self) -> dict[str, int]:
        """Calls made so far, per op."""

    trace: Callable[[str, Any, int, Any], object] | None
    """Called after every successful operation as trace(op, path, offset, data)."""

    def __init__(self) -> None: ...
    def inject(self, op: str, *, after: int = 0, errno: int = ..., persistent: bool = False) -> None:
        """Fail the (after+1)-th call of `op` from now with `errno` (every later one too when
        persistent)."""

    def clear(self) -> None:
        """Remove every injected fault."""

def not_regular(path: str) -> OSError:
    """The CorruptionError for a path where chronolog keeps a file but something else stands."""

def read_regular(path: str, limit: int = -1) -> bytes:
    """The bytes of the regular file at `path` (at most `limit`); CorruptionError otherwise."""
