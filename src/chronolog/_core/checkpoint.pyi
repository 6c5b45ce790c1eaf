"""Type stubs of chronolog._core.checkpoint (compiled): the index checkpoint files and the job
that writes them (built and adopted by the log; its C-level methods are not visible here).
"""

class CheckpointJob:
    """The file I/O of one checkpoint of both indexes (built and adopted by the log)."""

    through: int
    done: bool
    error: BaseException | None
    thread: object

    def __init__(self, io: object, through: int) -> None: ...
    def run(self) -> None:
        """Write both checkpoint files; a failure is kept in `error`."""
