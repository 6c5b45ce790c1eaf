"""Acceptance 1: for random stores, scan with every filter combination equals the same
selection made from read_all in pure Python, column by column."""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chronolog as cl
from chronolog.scan import COLUMNS

STREAMS = ["a-1", "a-2", "ab-1", "b-1", "é-1"]
TYPES = ["Made", "Paid", "Shipped"]

appends = st.lists(
    st.lists(
        st.tuples(st.sampled_from(STREAMS), st.sampled_from(TYPES),
                  st.binary(max_size=300), st.binary(max_size=8), st.booleans()),
        min_size=1, max_size=6),
    max_size=25)


def _expected(events: list[cl.RecordedEvent], column: str) -> list[Any]:
    pick = {
        "position": lambda e: e.position, "stream": lambda e: e.stream,
        "version": lambda e: e.version, "type": lambda e: e.type,
        "timestamp": lambda e: e.timestamp, "data": lambda e: e.data,
        "metadata": lambda e: e.metadata, "id": lambda e: e.id_bytes,
    }[column]
    return [pick(e) for e in events]


def _actual(table: pa.Table, column: str) -> list[Any]:
    col = table.column(column)
    if column == "timestamp":
        col = col.cast(pa.int64())
    return col.to_pylist()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.function_scoped_fixture])
@given(
    batches=appends,
    lo=st.integers(0, 60), span=st.one_of(st.none(), st.integers(0, 80)),
    types=st.one_of(st.none(), st.lists(st.sampled_from(TYPES + ["Nope"]), max_size=3)),
    streams=st.one_of(st.none(), st.lists(st.sampled_from(STREAMS + ["zz"]), max_size=3)),
    prefix=st.one_of(st.none(), st.sampled_from(["a-", "a", "b-", "é", "zz", ""])),
    batch_size=st.sampled_from([1, 2, 3, 7, 65536]),
    columns=st.one_of(st.none(), st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=8,
                                          unique=True)),
)
def test_scan_with_filters_equals_the_same_selection_from_read_all(
        batches: list[list[tuple[str, str, bytes, bytes, bool]]], lo: int, span: int | None,
        types: list[str] | None, streams: list[str] | None, prefix: str | None,
        batch_size: int, columns: list[str] | None, scan_table: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp, \
            cl.EventStore.open(tmp + "/s", durability="os", max_segment_bytes=4096) as store:
            for batch in batches:
                if len(batch) == 1 or len({s for s, *_ in batch}) > 1:
                    store.append_batch([b[0] for b in batch], [b[1] for b in batch],
                                       [b[2] for b in batch], metadatas=[b[3] for b in batch],
                                       ids=[uuid.uuid4() if b[4] else None for b in batch])
                else:
                    store.append(batch[0][0], [
                        cl.NewEvent(t, d, metadata=m, id=uuid.uuid4() if i else None)
                        for _, t, d, m, i in batch])
            hi = None if span is None else lo + span
            want = [e for e in store.read_all()
                    if e.position >= lo and (hi is None or e.position < hi)
                    and (types is None or e.type in types)
                    and (streams is None or e.stream in streams)
                    and (not prefix or e.stream.startswith(prefix))]
            table = scan_table(store, lo, hi, types=types, streams=streams,
                               stream_prefix=prefix, batch_size=batch_size, columns=columns)
            assert table.column_names == (columns or list(COLUMNS))
            assert table.num_rows == len(want)
            for column in table.column_names:
                assert _actual(table, column) == _expected(want, column), column
            assert all(len(c) <= batch_size for c in table.column(0).chunks)
