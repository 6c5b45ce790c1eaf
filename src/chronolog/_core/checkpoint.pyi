"""Type stubs of chronolog._core.checkpoint (compiled): the index checkpoint files and the job
that writes them (built and adopted by the log; its C-level methods are not visible here).
"""

from typing_extensions import Self, disjoint_base

@disjoint_base
class CheckpointJob:
    """The file I/O of one checkpoint of both indexes (built and adopted by the log)."""

    through: int
    done: bool
    error: BaseException | None
    thread: object
    cancelled: bool

    def __new__(cls, io: object, through: int) -> Self: ...
    def wait(self) -> bool:
        """Wait for the job; False when its thread never started (it is then cancelled)."""

    def run(self) -> None:
        """Write both checkpoint files; a failure is kept in `error`."""
