"""Type stubs of chronolog._core.index (compiled): the derived position and stream indexes.

Their methods are C-level only (used by the log); Python sees the classes. The checkpoint
job that writes their files: checkpoint.pyi.
"""

from typing_extensions import disjoint_base

@disjoint_base
class PositionIndex:
    """position -> (segment ordinal << 32 | frame offset), dense from position 0."""

    def __init__(self) -> None: ...

@disjoint_base
class StreamIndex:
    """stream name -> stream id -> positions by version."""

    def __init__(self) -> None: ...
