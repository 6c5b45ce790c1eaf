"""Round trip: random events appended under every codec and dictionary combination read back
exactly, through every reader, before and after a reopen (docs/compression.md)."""

from __future__ import annotations

import json
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from _frames import CODEC_NONE, CODEC_ZSTD, frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chronolog as cl

# (compression, level, block bytes, trained dictionary)
COMBINATIONS = {
    "none": (None, 1, 32 * 1024, False),
    "zstd-1-block-1KiB": ("zstd", 1, 1024, False),
    "zstd-1-block-32KiB": ("zstd", 1, 32 * 1024, False),
    "zstd-19-block-4KiB": ("zstd", 19, 4096, False),
    "zstd-1-block-1KiB-dictionary": ("zstd", 1, 1024, True),
    "zstd-3-block-32KiB-dictionary": ("zstd", 3, 32 * 1024, True),
    "zstd-fast-5-block-2KiB-dictionary": ("zstd", -5, 2048, True),
}

STREAMS = ["order-1", "order-2", "customer-Ωmega", "x" * 200]
TYPES = ["OrderPlaced", "ItemAdded", "Ünïcode"]

words = st.sampled_from([b'"order"', b'"sku"', b'"amount"', b"12.50", b'"EUR"', b"{", b"}", b","])
compressible = st.lists(words, min_size=1, max_size=200).map(b"".join)
payloads = st.one_of(compressible, st.binary(max_size=300), st.binary(min_size=2000, max_size=4000))
events = st.tuples(
    st.sampled_from(STREAMS),
    st.sampled_from(TYPES),
    payloads,
    st.one_of(st.just(b""), compressible, st.binary(max_size=40)),
    st.booleans(),  # has an id
)
appends = st.lists(
    st.tuples(st.sampled_from(["append", "append_batch"]), st.lists(events, min_size=1, max_size=30)),
    min_size=1,
    max_size=6,
)


def _seed_events(n: int) -> list[tuple[str, str, bytes]]:
    """Deterministic JSON events to train a dictionary on."""
    return [
        (
            f"order-{i % 50}",
            TYPES[i % 3],
            json.dumps({"order": f"o-{i % 50}", "sku": f"SKU-{i % 17}", "amount": i * 7 % 1000,
                        "currency": "EUR", "at": f"2026-01-01T00:{i % 60:02d}:00Z"}).encode(),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed zstd store of 2,000 JSON events with a trained dictionary (id 1)."""
    path = tmp_path_factory.mktemp("template") / "store"
    with cl.EventStore.open(path, durability="os", compression="zstd") as store:
        seed = _seed_events(2000)
        store.append_batch([s for s, _, _ in seed], [t for _, t, _ in seed], [d for _, _, d in seed])
        assert store.train_dictionary(sample_events=2000, dict_bytes=4096) == 1
    return path


def _as_tuple(e: cl.RecordedEvent) -> tuple[Any, ...]:
    return (e.position, e.stream, e.version, e.type, e.data, e.metadata, e.timestamp, e.id)


def _write(store: cl.EventStore, program: list[Any], counter: list[int]) -> list[tuple[Any, ...]]:
    """Run the appends; return (stream, type, data, metadata, id) per event, in order."""
    written = []
    for how, batch in program:
        rows = []
        for stream, etype, data, meta, has_id in batch:
            counter[0] += 1
            rows.append((stream, etype, data, meta, uuid.UUID(int=counter[0]) if has_id else None))
        if how == "append":
            stream = rows[0][0]
            rows = [(stream, *r[1:]) for r in rows]
            store.append(stream, [cl.NewEvent(t, d, metadata=m, id=i) for _, t, d, m, i in rows])
        else:
            store.append_batch([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                               metadatas=[r[3] for r in rows], ids=[r[4] for r in rows])
        written.extend(rows)
    return written


def _check_readers(store: cl.EventStore, first: int, written: list[tuple[Any, ...]]) -> None:
    got = list(store.read_all(first))
    assert [(e.stream, e.type, e.data, e.metadata, e.id) for e in got] == written
    assert [e.position for e in got] == list(range(first, first + len(written)))
    by_position = {e.position: _as_tuple(e) for e in got}
    for stream in STREAMS:
        for e in store.read_stream(stream):
            if e.position >= first:
                assert _as_tuple(e) == by_position[e.position]
    backwards = list(store.read_all(backwards=True, limit=len(written)))
    assert [_as_tuple(e) for e in reversed(backwards)] == [_as_tuple(e) for e in got]
    table = store.scan_table(first)
    assert table.column("data").to_pylist() == [w[2] for w in written]
    assert table.column("metadata").to_pylist() == [w[3] for w in written]
    assert table.column("version").to_pylist() == [e.version for e in got]


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(program=appends)
def test_random_events_read_back_exactly_under_every_codec_and_dictionary(
    combination: str, program: list[Any], tmp_path: Path, trained_template: Path
) -> None:
    compression, level, block_bytes, with_dictionary = COMBINATIONS[combination]
    path = tmp_path / f"s-{uuid.uuid4().hex}"
    if with_dictionary:
        shutil.copytree(trained_template, path)
    options = {"durability": "os", "compression": compression, "compression_level": level,
                   "compression_block_bytes": block_bytes, "max_segment_bytes": 64 * 1024}
    try:
        with cl.EventStore.open(path, **options) as store:
            first = store.head
            written = _write(store, program, [0])
            _check_readers(store, first, written)
        with cl.EventStore.open(path, readonly=True) as store:
            _check_readers(store, first, written)
            assert store.verify()["ok"]
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _frame_kinds(path: Path) -> set[tuple[int, int]]:
    return {(f.codec, f.dict_id) for seg in sorted(path.glob("*.seg")) for f in frames(seg)}


def test_a_dictionary_store_writes_frames_that_name_the_dictionary(
    trained_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "s"
    shutil.copytree(trained_template, path)
    before = _frame_kinds(path)
    with cl.EventStore.open(path, durability="os", compression="zstd") as store:
        seed = _seed_events(100)
        for stream, etype, data in seed:
            store.append(stream, [cl.NewEvent(etype, data)])
    assert (CODEC_ZSTD, 1) not in before
    assert (CODEC_ZSTD, 1) in _frame_kinds(path)


def test_incompressible_appends_are_stored_uncompressed(tmp_path: Path) -> None:
    path = tmp_path / "s"
    rng = random.Random(3)
    noise = [rng.randbytes(300) for _ in range(10)]
    with cl.EventStore.open(path, durability="os", compression="zstd") as store:
        for data in noise:
            store.append("s", [cl.NewEvent("T", data)])
        assert [e.data for e in store.read_stream("s")] == noise
    assert _frame_kinds(path) == {(CODEC_NONE, 0)}


def test_compression_ratio_counts_decoded_over_stored_frame_bytes(
    tmp_path: Path, trained_template: Path
) -> None:
    with cl.EventStore.open(trained_template, readonly=True) as store:
        stats = store.stats()
    assert stats["compression_ratio"] == stats["decoded_frame_bytes"] / stats["stored_frame_bytes"]
    assert stats["compression_ratio"] > 2
    with cl.EventStore.open(tmp_path / "plain", durability="os") as plain:
        plain.append("s", [cl.NewEvent("T", b'{"a": 1}' * 50)])
        assert plain.stats()["compression_ratio"] == 1.0
        assert plain.stats()["compression"] is None
