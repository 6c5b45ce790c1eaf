"""The reference workload of every Chronolog benchmark: seeded, vectorised, cached on disk.

1,000,000 events over 10,000 `order-…` streams, 5 event types, JSON payloads of about 180
bytes with realistic fields (ids, amounts, skus, timestamps). Generated in chunks of
100,000 events with numpy and pyarrow compute (no Python loop per event), so a 10-million
event ingestion can stream it in constant memory (`iter_batches`).

Example:
    >>> from benchmarks.workload import load_workload
    >>> wl = load_workload(100_000, n_streams=1_000)        # doctest: +SKIP
    >>> store.append_batch(wl.streams_arrow, wl.types_arrow, wl.datas_arrow)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import ipc

__all__ = [
    "EVENT_TYPES",
    "REFERENCE_EVENTS",
    "REFERENCE_STREAMS",
    "Workload",
    "WorkloadSpec",
    "bench_dir",
    "generate_chunk",
    "iter_batches",
    "load_workload",
    "record_bytes",
]

REFERENCE_EVENTS = 1_000_000
REFERENCE_STREAMS = 10_000
DEFAULT_SEED = 20240501
CHUNK_EVENTS = 100_000
# Bump when the generator changes, so stale caches are not reused.
_GENERATOR_VERSION = 2

# Event types and their relative frequencies (an order's life: placed, items, paid, shipped).
EVENT_TYPES = ("OrderPlaced", "ItemAdded", "PaymentReceived", "OrderShipped", "OrderCancelled")
_TYPE_WEIGHTS = np.array([0.15, 0.40, 0.20, 0.18, 0.07])

_SCHEMA = pa.schema([
    ("stream", pa.large_string()),
    ("type", pa.large_string()),
    ("data", pa.large_binary()),
    ("stream_index", pa.int32()),
])

# The size of one record in a segment (format.pxd): 48-byte header, stream, type, metadata,
# data, plus its u32 offset at the end of the frame body.
_RECORD_HEADER_BYTES = 48
_RECORD_OFFSET_BYTES = 4
_HEX = np.array([b"%02x" % i for i in range(256)], dtype="S2")


def bench_dir() -> Path:
    """The scratch directory of the benchmarks (CHRONOLOG_BENCH_DIR, default /tmp/chronolog-bench).

    Example:
        >>> bench_dir()  # doctest: +SKIP
        PosixPath('/tmp/chronolog-bench')
    """
    path = Path(os.environ.get("CHRONOLOG_BENCH_DIR", "/tmp/chronolog-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class WorkloadSpec:
    """What a workload is: its size, its number of streams and its seed.

    Example:
        >>> WorkloadSpec(1_000_000, 10_000).events_per_stream
        100.0
    """

    n_events: int = REFERENCE_EVENTS
    n_streams: int = REFERENCE_STREAMS
    seed: int = DEFAULT_SEED

    @property
    def events_per_stream(self) -> float:
        return self.n_events / self.n_streams

    @property
    def cache_name(self) -> str:
        return f"workload-v{_GENERATOR_VERSION}-{self.n_events}-{self.n_streams}-{self.seed}.arrow"


def _hex_ids(rng: np.random.Generator, n: int, n_bytes: int) -> pa.Array:
    """n random lowercase hex strings of 2 * n_bytes characters, without a Python loop."""
    raw = rng.integers(0, 256, (n, n_bytes), dtype=np.uint8)
    text = np.ascontiguousarray(_HEX[raw]).tobytes()
    width = 2 * n_bytes
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(text)])
    return fixed.cast(pa.binary()).cast(pa.string())


@functools.lru_cache(maxsize=4)
def _stream_ids(n_streams: int, seed: int) -> pa.Array:
    """The 16-hex-digit order id of each stream (stream name: "order-<id>")."""
    return _hex_ids(np.random.default_rng([seed, 0x5EED]), n_streams, 8)


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width=width, padding="0")


def _money(cents: np.ndarray) -> pa.Array:
    """Decimal amounts such as 123.45, from integer cents."""
    return pc.binary_join_element_wise(
        pc.cast(pa.array(cents // 100), pa.string()), ".", _digits(cents % 100, 2), "")


def _choice(rng: np.random.Generator, options: tuple[str, ...], n: int) -> pa.Array:
    return pc.take(pa.array(options, pa.string()), pa.array(rng.integers(0, len(options), n)))


def _payloads(kind: int, rng: np.random.Generator, order_ids: pa.Array, stamps: pa.Array) -> pa.Array:
    """The JSON payloads of n events of one type (about 180 bytes each)."""
    n = len(order_ids)
    j = pc.binary_join_element_wise
    head = ('{"order_id":"', order_ids, '","trace_id":"', _hex_ids(rng, n, 8))
    if kind == 0:  # OrderPlaced
        parts = head + (
            '","customer_id":"cus_', _digits(rng.integers(0, 10**8, n), 8),
            '","currency":"', _choice(rng, ("EUR", "USD", "GBP", "CHF"), n),
            '","total":', _money(rng.integers(500, 250_000, n)),
            ',"items":', pc.cast(pa.array(rng.integers(1, 12, n)), pa.string()),
            ',"channel":"', _choice(rng, ("web", "ios", "android", "store"), n),
            '","placed_at":"', stamps, '"}')
    elif kind == 1:  # ItemAdded
        parts = head + (
            '","line_id":', pc.cast(pa.array(rng.integers(1, 40, n)), pa.string()),
            ',"sku":"SKU-', _digits(rng.integers(0, 10**6, n), 6),
            '","quantity":', pc.cast(pa.array(rng.integers(1, 6, n)), pa.string()),
            ',"unit_price":', _money(rng.integers(99, 30_000, n)),
            ',"warehouse":"WH-', _digits(rng.integers(1, 40, n), 2),
            '","added_at":"', stamps, '"}')
    elif kind == 2:  # PaymentReceived
        parts = head + (
            '","payment_id":"pay_', _hex_ids(rng, n, 8),
            '","amount":', _money(rng.integers(500, 250_000, n)),
            ',"currency":"', _choice(rng, ("EUR", "USD", "GBP", "CHF"), n),
            '","method":"', _choice(rng, ("card", "paypal", "sepa", "klarna"), n),
            '","received_at":"', stamps, '"}')
    elif kind == 3:  # OrderShipped
        parts = head + (
            '","shipment_id":"shp_', _hex_ids(rng, n, 6),
            '","carrier":"', _choice(rng, ("DHL", "UPS", "FedEx", "GLS", "PostNL"), n),
            '","tracking":"', _digits(rng.integers(0, 10**12, n), 12),
            '","warehouse":"WH-', _digits(rng.integers(1, 40, n), 2),
            '","shipped_at":"', stamps, '"}')
    else:  # OrderCancelled
        parts = head + (
            '","reason":"', _choice(rng, ("customer_request", "payment_failed", "out_of_stock",
                                          "fraud_suspected"), n),
            '","refund":', _money(rng.integers(0, 250_000, n)),
            ',"operator":"op_', _digits(rng.integers(0, 10**5, n), 5),
            '","cancelled_at":"', stamps, '"}')
    return j(*parts, "")


def generate_chunk(spec: WorkloadSpec, chunk: int) -> pa.Table:
    """Events [chunk * 100,000, (chunk + 1) * 100,000) of the workload (fewer for the last).

    Deterministic: the same (spec, chunk) always gives the same events.

    Example:
        >>> generate_chunk(WorkloadSpec(1000, 10), 0).num_rows
        1000
    """
    start = chunk * CHUNK_EVENTS
    n = min(CHUNK_EVENTS, spec.n_events - start)
    if n <= 0:
        raise ValueError(f"chunk {chunk} is past the end of a workload of {spec.n_events} events")
    rng = np.random.default_rng([spec.seed, chunk])
    stream_index = rng.integers(0, spec.n_streams, n, dtype=np.int32)
    kinds = rng.choice(len(EVENT_TYPES), size=n, p=_TYPE_WEIGHTS)
    ids = pc.take(_stream_ids(spec.n_streams, spec.seed), pa.array(stream_index))
    streams = pc.binary_join_element_wise("order-", ids, "")
    # One event every ~3 s from 2024-05-01, in position order.
    seconds = 1_714_521_600 + (np.arange(start, start + n, dtype=np.int64) * 3)
    stamps_all = pc.strftime(pa.array(seconds.astype("datetime64[s]")), format="%Y-%m-%dT%H:%M:%SZ")
    data_parts: list[pa.Array] = []
    where_parts: list[np.ndarray] = []
    for kind in range(len(EVENT_TYPES)):
        where = np.flatnonzero(kinds == kind)
        if len(where) == 0:
            continue
        take = pa.array(where)
        data_parts.append(_payloads(kind, rng, pc.take(ids, take), pc.take(stamps_all, take)))
        where_parts.append(where)
    # Scatter the per-type payloads back into position order.
    order = np.empty(n, dtype=np.int64)
    order[np.concatenate(where_parts)] = np.arange(n)
    datas = pc.take(pa.concat_arrays(data_parts), pa.array(order))
    types = pc.take(pa.array(EVENT_TYPES, pa.string()), pa.array(kinds))
    return pa.Table.from_arrays(
        [streams.cast(pa.large_string()), types.cast(pa.large_string()),
         datas.cast(pa.large_binary()), pa.array(stream_index)],
        schema=_SCHEMA)


def iter_batches(spec: WorkloadSpec, batch_events: int = 10_000) -> Iterator[pa.Table]:
    """The workload as tables of `batch_events` rows, generated chunk by chunk (constant memory).

    Example:
        >>> sum(t.num_rows for t in iter_batches(WorkloadSpec(25_000, 100), 10_000))
        25000
    """
    n_chunks = -(-spec.n_events // CHUNK_EVENTS)
    pending: pa.Table | None = None
    for chunk in range(n_chunks):
        table = generate_chunk(spec, chunk)
        if pending is not None and pending.num_rows:
            table = pa.concat_tables([pending, table])
        at = 0
        while table.num_rows - at >= batch_events:
            yield table.slice(at, batch_events).combine_chunks()
            at += batch_events
        pending = table.slice(at)
    if pending is not None and pending.num_rows:
        yield pending.combine_chunks()


def record_bytes(table: pa.Table) -> int:
    """The bytes the events' records take in a segment (headers, names, payloads, offsets),
    before frame overhead.

    Example:
        >>> record_bytes(generate_chunk(WorkloadSpec(10, 2), 0)) > 10 * 48
        True
    """
    def _total(name: str) -> int:
        col = table.column(name)
        return int(sum(pc.sum(pc.binary_length(c)).as_py() or 0 for c in col.chunks))
    return (_total("stream") + _total("type") + _total("data")
            + table.num_rows * (_RECORD_HEADER_BYTES + _RECORD_OFFSET_BYTES))


class Workload:
    """A generated workload held in memory: parallel Arrow columns and Python lists.

    Attributes:
        spec: what it is (size, streams, seed).
        table: the Arrow table (stream, type, data, stream_index).

    Thread-safety: read-only after construction (the lazily built lists are cached).

    Example:
        >>> wl = Workload.generate(WorkloadSpec(1_000, 10))
        >>> len(wl.streams), wl.datas_arrow.type
        (1000, DataType(large_binary))
    """

    def __init__(self, spec: WorkloadSpec, table: pa.Table) -> None:
        self.spec = spec
        self.table = table.combine_chunks()

    @classmethod
    def generate(cls, spec: WorkloadSpec) -> Workload:
        """Generate the whole workload in memory (no cache)."""
        chunks = [generate_chunk(spec, k) for k in range(-(-spec.n_events // CHUNK_EVENTS))]
        return cls(spec, pa.concat_tables(chunks))

    def __len__(self) -> int:
        return self.table.num_rows

    # Arrow columns (what append_batch takes without a Python object per event).
    @property
    def streams_arrow(self) -> pa.Array:
        return self.table.column("stream").chunk(0)

    @property
    def types_arrow(self) -> pa.Array:
        return self.table.column("type").chunk(0)

    @property
    def datas_arrow(self) -> pa.Array:
        return self.table.column("data").chunk(0)

    # Python lists (what a user with Python objects has).
    @functools.cached_property
    def streams(self) -> list[str]:
        return self.streams_arrow.to_pylist()

    @functools.cached_property
    def types(self) -> list[str]:
        return self.types_arrow.to_pylist()

    @functools.cached_property
    def datas(self) -> list[bytes]:
        return self.datas_arrow.to_pylist()

    @functools.cached_property
    def stream_index(self) -> np.ndarray:
        """The number (0..n_streams-1) of each event's stream."""
        return self.table.column("stream_index").to_numpy()

    @functools.cached_property
    def versions(self) -> np.ndarray:
        """The version of each event within its stream (what the store will assign)."""
        s = self.stream_index
        order = np.argsort(s, kind="stable")
        ordered = s[order]
        starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
        lengths = np.diff(np.r_[starts, len(s)])
        out = np.empty(len(s), dtype=np.int64)
        out[order] = np.arange(len(s)) - np.repeat(starts, lengths)
        return out

    @functools.cached_property
    def payload_bytes(self) -> int:
        """The total bytes of the JSON payloads."""
        return int(pc.sum(pc.binary_length(self.datas_arrow)).as_py())

    @functools.cached_property
    def encoded_bytes(self) -> int:
        """The bytes of the events' records as the store lays them out (before frame overhead)."""
        return record_bytes(self.table)

    def slice(self, start: int, stop: int) -> Workload:
        """Events [start, stop) as a workload of their own."""
        return Workload(self.spec, self.table.slice(start, stop - start))

    def batches(self, batch_events: int) -> list[tuple[pa.Array, pa.Array, pa.Array]]:
        """The Arrow columns cut into (streams, types, datas) slices of batch_events rows."""
        s, t, d = self.streams_arrow, self.types_arrow, self.datas_arrow
        return [(s.slice(i, batch_events), t.slice(i, batch_events), d.slice(i, batch_events))
                for i in range(0, len(self), batch_events)]

    def __repr__(self) -> str:
        return (f"Workload({len(self):,} events, {self.spec.n_streams:,} streams, "
                f"{self.payload_bytes / max(1, len(self)):.0f} B payloads)")


@functools.lru_cache(maxsize=4)
def load_workload(n_events: int = REFERENCE_EVENTS, n_streams: int = REFERENCE_STREAMS,
                  seed: int = DEFAULT_SEED) -> Workload:
    """The workload, from the on-disk cache (an Arrow IPC file, memory-mapped) or generated
    and cached there.

    Example:
        >>> load_workload(100_000, 1_000).spec.events_per_stream  # doctest: +SKIP
        100.0
    """
    spec = WorkloadSpec(n_events, n_streams, seed)
    path = bench_dir() / "workload" / spec.cache_name
    if path.exists():
        try:
            with pa.memory_map(str(path)) as source:
                table = ipc.open_file(source).read_all()
            if table.schema.equals(_SCHEMA) and table.num_rows == n_events:
                return Workload(spec, table)
        except (pa.ArrowInvalid, OSError):
            pass  # a damaged cache: generate again
    wl = Workload.generate(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, _SCHEMA) as writer:
        writer.write_table(wl.table)
    os.replace(tmp, path)
    return wl
