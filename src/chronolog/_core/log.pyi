"""Type stubs of chronolog._core.log (compiled): the segmented log of one store directory."""


from typing import Any

import pyarrow as pa

from chronolog._core.events import AppendResult, NewEvent
from chronolog._core.fileio import FileIO
from chronolog._core.write import WritingLog

FORMAT_VERSION_NUMBER: int
DEFAULT_MAX_SEGMENT_BYTES: int
DEFAULT_MAX_EVENT_BYTES: int
STREAM_NAME_MAX_BYTES: int
MAX_SEGMENT_BYTES_LIMIT: int
DEFAULT_BLOCK_BYTES: int
WHOLE_APPEND_REMEDY: str  # what an append over the largest frame is told to do

class Log(WritingLog):
    """The segmented append-only log of one store directory, with its indexes."""

    def __init__(self, path: str, *, readonly: bool = False, durability: str = "fsync",
                 max_segment_bytes: int = ..., max_event_bytes: int = ...,
                 io: FileIO | None = None, compression: str | None = None,
                 compression_level: int = 1, compression_block_bytes: int = ...) -> None: ...
    def append(self, stream: str, events: Any, expected: int, timestamp: int) -> AppendResult: ...
    def append_columns(self, streams: pa.Array, types: pa.Array, datas: pa.Array,
                       metas: pa.Array | None, ids: pa.Array | None,
                       expected_versions: dict[str, int] | None,
                       timestamp: int) -> AppendResult: ...
    def append_lists(self, streams: list[Any], types: list[Any], datas: list[Any],
                     metas: list[Any] | None, ids: list[Any] | None,
                     expected_versions: dict[str, int] | None,
                     timestamp: int) -> AppendResult: ...
    def close(self) -> None: ...

__all__ = ["Log", "NewEvent"]
