"""The columnar read side of a store: `scan` (Arrow RecordBatches) and `scan_table`.

The work is done by the compiled core (chronolog._core.scan.Scanner); this module validates
arguments and keeps a closing store from pulling the segments away under a running batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from chronolog._args import name_list, non_negative
from chronolog.errors import InvalidArgumentError

if TYPE_CHECKING:
    import pyarrow as pa

    from chronolog._core.columns import COLUMNS, schema_of
    from chronolog._core.log import Log
    from chronolog._core.scan import Scanner
    from chronolog.subscriptions import AppendNotifier

__all__ = ["COLUMNS", "scan", "scan_table", "schema_of"]

DEFAULT_BATCH_SIZE = 65536


def __getattr__(name: str) -> Any:
    """COLUMNS and schema_of come from the compiled core, loaded (with pyarrow) at first use:
    `import chronolog` does not import pyarrow."""
    if name in ("COLUMNS", "schema_of"):
        from chronolog._core import columns

        return getattr(columns, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_scanner(
    log: Log,
    from_position: int = 0,
    to_position: int | None = None,
    *,
    types: Iterable[str] | None = None,
    streams: Iterable[str] | None = None,
    stream_prefix: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    columns: Iterable[str] | None = None,
) -> Scanner:
    """A compiled Scanner over [from_position, to_position) of `log`, arguments checked."""
    start = non_negative(from_position, "from_position", default=0)
    stop = None if to_position is None else non_negative(to_position, "to_position", default=0)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an int >= 1, got {batch_size!r}")
    from chronolog._core.scan import Scanner

    return Scanner(log, start, stop, types=name_list(types, "types"),
                   streams=name_list(streams, "streams"),
                   stream_prefix=stream_prefix, batch_size=min(batch_size, 1 << 30),
                   columns=name_list(columns, "columns"))


def scan(
    log: Log,
    from_position: int = 0,
    to_position: int | None = None,
    *,
    types: Iterable[str] | None = None,
    streams: Iterable[str] | None = None,
    stream_prefix: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    columns: Iterable[str] | None = None,
    notifier: AppendNotifier | None = None,
) -> Iterator[pa.RecordBatch]:
    """Replay positions from_position <= p < to_position as Arrow RecordBatches.

    The range ends at the head when the scan starts (to_position=None, or a larger one):
    later appends are not seen, and no append is ever seen in part. Filters (types, exact
    streams, a stream prefix) are applied in the core before anything is copied; a batch
    holds 1..batch_size rows (fewer when its variable-width columns would pass 2 GiB).

    Columns (all by default, in this order; `columns=` picks a subset and skips the rest):
    position uint64, stream string, version uint64, type dictionary<int32, string>,
    timestamp timestamp[ns, UTC], data binary, metadata binary, id fixed_size_binary(16)
    (null when the event has no id).

    Args:
        log: the store's Log (EventStore.scan passes its own).
        notifier: the store's AppendNotifier: a close() of the store then waits for a batch
            being built instead of unmapping the segments under it.

    Raises:
        InvalidArgumentError: a negative position, batch_size < 1, an unknown column.
        CorruptionError: a frame fails its CRC32C or layout checks (raised before any of
            its events is returned).
        StoreClosedError: the store was closed.

    Example:
        >>> for batch in store.scan(types=["OrderPlaced"], columns=["position", "data"]):  # doctest: +SKIP
        ...     print(batch.num_rows)
        3
    """
    scanner = make_scanner(log, from_position, to_position, types=types, streams=streams,
                           stream_prefix=stream_prefix, batch_size=batch_size, columns=columns)
    return _batches(scanner, notifier)


def _batches(scanner: Scanner, notifier: AppendNotifier | None) -> Iterator[pa.RecordBatch]:
    while True:
        if notifier is not None:
            with notifier.reading():
                batch = scanner.next_batch()
        else:
            batch = scanner.next_batch()
        if batch is None:
            return
        yield batch


def scan_table(
    log: Log,
    from_position: int = 0,
    to_position: int | None = None,
    *,
    types: Iterable[str] | None = None,
    streams: Iterable[str] | None = None,
    stream_prefix: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    columns: Iterable[str] | None = None,
    notifier: AppendNotifier | None = None,
) -> pa.Table:
    """The whole scan as one pyarrow.Table (empty, with the scan's schema, when nothing
    matches). Same arguments and errors as `scan`.

    Example:
        >>> store.scan_table(columns=["stream", "type"]).num_rows  # doctest: +SKIP
        42
    """
    scanner = make_scanner(log, from_position, to_position, types=types, streams=streams,
                           stream_prefix=stream_prefix, batch_size=batch_size, columns=columns)
    import pyarrow as pa

    from chronolog._core.columns import schema_of

    return pa.Table.from_batches(list(_batches(scanner, notifier)),
                                 schema=schema_of(scanner.columns))
