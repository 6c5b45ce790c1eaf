"""The reference workload, seeded: events over many streams, 5 event types, JSON payloads of
about 180 bytes. Built as Arrow columns (no Python object per event), ready for append_batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (imported where used: the CLI starts without numpy and pyarrow)
    import numpy as np
    import pyarrow as pa

EVENT_TYPES = ("OrderPlaced", "ItemAdded", "PaymentReceived", "OrderShipped", "OrderCancelled")
# How often each type occurs: mostly items, few cancellations.
TYPE_WEIGHTS = (0.15, 0.45, 0.15, 0.15, 0.10)
DEFAULT_EVENTS = 1_000_000
DEFAULT_STREAMS = 10_000
DEFAULT_BATCH_EVENTS = 10_000
DEFAULT_SEED = 20240607
_NOTE = "leave at the door"


@dataclass(frozen=True)
class WorkloadBatch:
    """One batch of the workload: parallel Arrow columns for EventStore.append_batch.

    Example:
        >>> b = next(reference_batches(events=3, streams=2))
        >>> len(b.streams), b.types.type, b.datas.type
        (3, DataType(large_string), DataType(large_binary))
    """

    streams: pa.Array
    types: pa.Array
    datas: pa.Array

    @property
    def data_bytes(self) -> int:
        """The payload bytes of the batch."""
        import pyarrow.compute as pc

        return int(pc.sum(pc.binary_length(self.datas)).as_py() or 0)


def stream_names(streams: int) -> pa.Array:
    """The stream names of the workload: order-00000, order-00001, ...

    Example:
        >>> stream_names(2).to_pylist()
        ['order-00000', 'order-00001']
    """
    import pyarrow as pa

    return pa.array([f"order-{i:05d}" for i in range(streams)], type=pa.string())


def _digits(values: np.ndarray, width: int) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width, "0")


def reference_batches(events: int = DEFAULT_EVENTS, streams: int = DEFAULT_STREAMS,
                      batch_events: int = DEFAULT_BATCH_EVENTS,
                      seed: int = DEFAULT_SEED) -> Iterator[WorkloadBatch]:
    """Yield the workload in batches of `batch_events`; the same seed gives the same bytes.

    Each event goes to a uniformly random stream, has one of EVENT_TYPES (TYPE_WEIGHTS), and
    a JSON payload of about 180 bytes that carries its sequence number.

    Example:
        >>> sum(len(b.streams) for b in reference_batches(events=25, batch_events=10))
        25
    """
    if events < 0 or streams < 1 or batch_events < 1:
        raise ValueError("events must be >= 0, streams and batch_events >= 1")
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    names = stream_names(streams)
    types = pa.array(EVENT_TYPES, type=pa.large_string())
    done = 0
    while done < events:
        n = min(batch_events, events - done)
        sid = rng.integers(0, streams, n)
        tid = rng.choice(len(EVENT_TYPES), n, p=TYPE_WEIGHTS)
        quantity = rng.integers(1, 10, n)
        price = rng.integers(100, 100_000, n)
        warehouse = rng.integers(1, 20, n)
        customer = (sid * 7919) % 100_000
        seq = np.arange(done, done + n)
        stream_col = pc.take(names, pa.array(sid))
        payload = pc.binary_join_element_wise(
            '{"order_id":"', stream_col,
            '","customer":"customer-', _digits(customer, 6),
            '","sku":"SKU-', _digits(price % 99_991, 5),
            '","quantity":', _digits(quantity, 1),
            ',"price_cents":', _digits(price, 1),
            ',"currency":"EUR","warehouse":"WH-', _digits(warehouse, 2),
            '","seq":', _digits(seq, 1),
            ',"note":"', _NOTE, '"}', "")
        yield WorkloadBatch(
            streams=stream_col.cast(pa.large_string()),
            types=pc.take(types, pa.array(tid)),
            datas=payload.cast(pa.large_binary()),
        )
        done += n
