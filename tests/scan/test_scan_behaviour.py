"""The columnar scan: schema, column selection, batching, snapshots, corruption, and the
DuckDB / Polars interop (acceptance 3 and 4)."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pytest

import chronolog as cl
from chronolog.errors import CorruptionError, InvalidArgumentError, StoreClosedError
from chronolog.scan import schema_of


def _fill(store: cl.EventStore, n: int, *, streams: int = 4) -> None:
    store.append_batch([f"order-{i % streams}" for i in range(n)],
                       ["Placed" if i % 3 else "Paid" for i in range(n)],
                       [b'{"amount": %d}' % i for i in range(n)])


def test_scan_of_an_empty_store_yields_no_batches(store: cl.EventStore, scan: Any) -> None:
    assert scan(store) == []


def test_scan_table_with_no_match_is_empty_and_has_the_scan_schema(
        store: cl.EventStore, scan_table: Any) -> None:
    _fill(store, 10)
    table = scan_table(store, types=["NoSuchType"])
    assert table.num_rows == 0
    assert table.schema == schema_of(None)


def test_scan_batches_have_the_documented_column_types(store: cl.EventStore, scan: Any) -> None:
    store.append("order-1", [cl.NewEvent("Placed", b"{}", id=uuid.uuid4())])
    (batch,) = scan(store)
    assert [(f.name, f.type) for f in batch.schema] == [
        ("position", pa.uint64()), ("stream", pa.string()), ("version", pa.uint64()),
        ("type", pa.dictionary(pa.int32(), pa.string())),
        ("timestamp", pa.timestamp("ns", tz="UTC")), ("data", pa.binary()),
        ("metadata", pa.binary()), ("id", pa.binary(16))]


def test_scan_with_columns_returns_only_those_columns_in_the_given_order(
        store: cl.EventStore, scan_table: Any) -> None:
    _fill(store, 10)
    table = scan_table(store, columns=["type", "position"])
    assert table.column_names == ["type", "position"]
    assert table.column("position").to_pylist() == list(range(10))


def test_scan_with_an_unknown_column_raises_invalid_argument(
        store: cl.EventStore, scan: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="unknown scan column 'payload'"):
        scan(store, columns=["payload"])


def test_scan_with_a_negative_position_raises_invalid_argument(
        store: cl.EventStore, scan: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        scan(store, -1)


def test_scan_splits_the_range_into_batches_of_batch_size(
        store: cl.EventStore, scan: Any) -> None:
    _fill(store, 25)
    assert [b.num_rows for b in scan(store, batch_size=10)] == [10, 10, 5]


def test_scan_reads_an_event_without_id_as_a_null_id(store: cl.EventStore, scan_table: Any) -> None:
    eid = uuid.uuid4()
    store.append("s", [cl.NewEvent("A", b"1"), cl.NewEvent("B", b"2", id=eid)])
    assert scan_table(store, columns=["id"]).column("id").to_pylist() == [None, eid.bytes]


def test_scan_ends_at_the_head_when_it_started(store: cl.EventStore) -> None:
    from chronolog import scan as scan_mod
    _fill(store, 5)
    batches = scan_mod.scan(store._log, batch_size=2, columns=["position"])
    first = next(batches)
    _fill(store, 5)
    rest = list(batches)
    assert sum(b.num_rows for b in [first, *rest]) == 5


def test_scan_across_many_segments_returns_every_position(
        open_store: Any, scan_table: Any) -> None:
    store = open_store(max_segment_bytes=4096)
    for i in range(40):
        _fill(store, 7)
    assert store.stats()["segments"] > 3
    assert scan_table(store, 3, 270, batch_size=13, columns=["position"]).column(0).to_pylist() \
        == list(range(3, 270))


def test_scan_of_a_readonly_handle_sees_what_the_writer_appended(
        store: cl.EventStore, open_store: Any, store_path: Path, scan_table: Any) -> None:
    _fill(store, 3)
    reader = open_store(readonly=True)
    _fill(store, 4)
    assert scan_table(reader, columns=["position"]).num_rows == 7


def test_scan_of_a_closed_store_raises_store_closed(store: cl.EventStore, scan: Any) -> None:
    _fill(store, 3)
    store.close()
    with pytest.raises(StoreClosedError):
        scan(store)


def test_scan_of_a_damaged_payload_raises_corruption_error_not_wrong_data(
        open_store: Any, store_path: Path, scan: Any) -> None:
    store = open_store()
    for _ in range(3):
        store.append_batch(["s"] * 4, ["T"] * 4, [b"payload-%d" % i for i in range(4)])
    store.close()
    seg = store_path / min(n for n in os.listdir(store_path) if n.endswith(".seg"))
    raw = bytearray(seg.read_bytes())
    at = raw.index(b"payload-2")
    raw[at] ^= 0x01
    seg.write_bytes(bytes(raw))
    reader = open_store(readonly=True)
    with pytest.raises(CorruptionError) as info:
        scan(reader)
    assert info.value.path == str(seg) and "body CRC32C" in info.value.reason


def test_scan_while_appending_never_yields_a_partial_append(
        store: cl.EventStore, scan: Any) -> None:
    """Acceptance 3: every append is 10 events; every scan sees whole appends only."""
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 400:
            store.append_batch([f"s-{i}"] * 10, ["T"] * 10, [b"x" * 50] * 10)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(30):
            rows = [p for b in scan(store, batch_size=7, columns=["position"])
                    for p in b.column(0).to_pylist()]
            assert rows == list(range(len(rows))) and len(rows) % 10 == 0
    finally:
        stop.set()
        t.join()


def test_duckdb_queries_a_scan_batch(store: cl.EventStore, scan: Any) -> None:
    _fill(store, 30, streams=3)
    (batch,) = scan(store)  # noqa: RUF059 (DuckDB finds `batch` by name)
    result = duckdb.sql("select type, count(*) as n, max(position) as last "
                        "from batch group by type order by type").fetchall()
    assert result == [("Paid", 10, 27), ("Placed", 20, 29)]


def test_polars_reads_a_scan_table(store: cl.EventStore, scan_table: Any) -> None:
    _fill(store, 30, streams=3)
    df = pl.from_arrow(scan_table(store))
    per_stream = df.group_by("stream").agg(pl.len().alias("n")).sort("stream")
    assert per_stream.to_dicts() == [{"stream": f"order-{k}", "n": 10} for k in range(3)]
    assert df.filter(pl.col("type") == "Paid")["position"].to_list() == list(range(0, 30, 3))


def test_scan_tells_apart_types_that_differ_only_in_the_middle_or_in_length(
        store: cl.EventStore, scan_table: Any) -> None:
    # Same length, same first and last eight bytes; and short names that are prefixes of each
    # other: the scan's type cache must compare whole names.
    types = ["AAAAAAAAxxxxBBBBBBBB", "AAAAAAAAyyyyBBBBBBBB", "ab", "abc", "abcd", "abce",
             "b", "AAAAAAAAxxxxBBBBBBBB"] * 3
    store.append_batch(["s"] * len(types), types, [b"{}"] * len(types))
    assert scan_table(store).column("type").to_pylist() == types
    table = scan_table(store, types=["AAAAAAAAyyyyBBBBBBBB", "abc"])
    assert table.column("type").to_pylist() == ["AAAAAAAAyyyyBBBBBBBB", "abc"] * 3
