"""Type stubs of chronolog._core.scan (the compiled columnar scan)."""

from collections.abc import Iterable, Iterator

import pyarrow as pa
from typing_extensions import disjoint_base

from chronolog._core.log import Log

@disjoint_base
class Scanner(Iterator[pa.RecordBatch]):
    start: int
    stop: int
    def __init__(
        self,
        log: Log,
        start: int = 0,
        stop: int | None = None,
        *,
        types: Iterable[str] | None = None,
        streams: Iterable[str] | None = None,
        stream_prefix: str | None = None,
        batch_size: int = 65536,
        columns: Iterable[str] | None = None,
    ) -> None: ...
    def __iter__(self) -> Scanner: ...
    def __next__(self) -> pa.RecordBatch: ...
    @property
    def position(self) -> int: ...
    @property
    def columns(self) -> list[str]: ...
    def next_batch(self) -> pa.RecordBatch | None: ...
