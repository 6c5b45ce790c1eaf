"""Type stubs of chronolog._core.index (compiled): the derived position and stream indexes.

Their methods are C-level only (used by the log); Python sees the classes and CheckpointJob.run.
"""

class PositionIndex:
    """position -> (segment ordinal << 32 | frame offset), dense from position 0."""

    def __init__(self) -> None: ...

class StreamIndex:
    """stream name -> stream id -> positions by version."""

    def __init__(self) -> None: ...

class CheckpointJob:
    """The file I/O of one checkpoint of both indexes (built and adopted by the log)."""

    through: int
    done: bool
    error: BaseException | None
    thread: object

    def __init__(self, io: object, through: int) -> None: ...
    def run(self) -> None:
        """Write both checkpoint files; a failure is kept in `error`."""
