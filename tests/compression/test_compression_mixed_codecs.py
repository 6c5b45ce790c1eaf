"""A store whose frames mix codecs (uncompressed, zstd, zstd with a dictionary) reads the same
through every reader: read_stream, read_all, scan, scan_table, subscribe, verify, the CLI dump."""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from _frames import CODEC_NONE, CODEC_ZSTD, frames

import chronolog as cl
from chronolog.cli.dump import event_json
from chronolog.cli.main import main

Written = tuple[str, str, bytes, bytes, "uuid.UUID | None"]

# The phases of the store's life: (how it is opened, events appended).
PHASES = [
    ("uncompressed", 700),
    ("zstd", 1500),
    ("zstd, then train a dictionary", 700),
    ("uncompressed again", 300),
]


def _event(rng: random.Random, i: int) -> Written:
    stream = f"order-{rng.randrange(40)}"
    data = json.dumps({"order": stream, "sku": f"SKU-{rng.randrange(300)}",
                       "amount": rng.randrange(100_000) / 100, "currency": "EUR", "n": i}).encode()
    meta = b"" if i % 3 else json.dumps({"trace": f"t-{rng.randrange(10**6)}"}).encode()
    eid = uuid.UUID(int=i + 1) if i % 2 else None
    return stream, rng.choice(["OrderPlaced", "ItemAdded", "Paid"]), data, meta, eid


def _append(store: cl.EventStore, rows: list[Written], single: bool) -> None:
    if single:
        for s, t, d, m, i in rows:
            store.append(s, [cl.NewEvent(t, d, metadata=m, id=i)])
        return
    for k in range(0, len(rows), 50):
        chunk = rows[k: k + 50]
        store.append_batch([r[0] for r in chunk], [r[1] for r in chunk], [r[2] for r in chunk],
                           metadatas=[r[3] for r in chunk], ids=[r[4] for r in chunk])


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Written], int, int]:
    """The store of PHASES (closed), what was written, and the time window of the writes."""
    path = tmp_path_factory.mktemp("mixed") / "store"
    rng = random.Random(11)
    written: list[Written] = []
    start = time.time_ns()
    for phase, n in PHASES:
        rows = [_event(rng, len(written) + i) for i in range(n)]
        compression = "zstd" if phase.startswith("zstd") else None
        with cl.EventStore.open(path, durability="os", compression=compression,
                                compression_block_bytes=2048, max_segment_bytes=48 * 1024) as store:
            if "dictionary" in phase:
                assert store.train_dictionary(sample_events=2000, dict_bytes=4096) == 1
            half = n // 2
            _append(store, rows[:half], single=True)
            _append(store, rows[half:], single=False)
        written.extend(rows)
    return path, written, start, time.time_ns()


def _as_tuple(e: cl.RecordedEvent) -> tuple[Any, ...]:
    return (e.position, e.stream, e.version, e.type, e.data, e.metadata, e.timestamp, e.id)


def _expected(mixed_store: tuple[Path, list[Written], int, int]) -> list[tuple[Any, ...]]:
    """What every reader must return: the written events, with dense positions and versions,
    and the timestamps the store gave them (checked against the writing window)."""
    path, written, start, end = mixed_store
    with cl.EventStore.open(path, readonly=True) as store:
        stamps = [e.timestamp for e in store.read_all()]
    assert len(stamps) == len(written)
    assert all(start <= t <= end for t in stamps)
    versions: dict[str, int] = {}
    out = []
    for p, ((s, t, d, m, i), stamp) in enumerate(zip(written, stamps)):
        v = versions.get(s, 0)
        versions[s] = v + 1
        out.append((p, s, v, t, d, m, stamp, i))
    return out


def test_the_mixed_store_holds_plain_compressed_and_dictionary_frames(mixed_store):
    path = mixed_store[0]
    kinds = {(f.codec, f.dict_id) for seg in sorted(path.glob("*.seg")) for f in frames(seg)}
    assert {(CODEC_NONE, 0), (CODEC_ZSTD, 0), (CODEC_ZSTD, 1)} <= kinds
    assert len(list(path.glob("*.seg"))) > 3


def _read_all(store: cl.EventStore) -> list[tuple[Any, ...]]:
    return [_as_tuple(e) for e in store.read_all()]


def _read_all_backwards(store: cl.EventStore) -> list[tuple[Any, ...]]:
    return [_as_tuple(e) for e in reversed(list(store.read_all(backwards=True)))]


def _read_all_from_each_position(store: cl.EventStore) -> list[tuple[Any, ...]]:
    return [_as_tuple(next(iter(store.read_all(p, limit=1)))) for p in range(store.head)]


def _read_stream(store: cl.EventStore) -> list[tuple[Any, ...]]:
    out = [_as_tuple(e) for s in store.streams() for e in store.read_stream(s)]
    return sorted(out)


def _read_stream_one_version_at_a_time(store: cl.EventStore) -> list[tuple[Any, ...]]:
    out = []
    for s in store.streams():
        for v in range(store.stream_version(s) + 1):
            out.extend(_as_tuple(e) for e in store.read_stream(s, v, limit=1))
    return sorted(out)


def _scan_rows(batches: list[Any]) -> list[tuple[Any, ...]]:
    out = []
    for b in batches:
        cols = b.drop_columns(["timestamp"]).to_pydict()
        stamps = b.column("timestamp").cast("int64").to_pylist()
        for k in range(b.num_rows):
            raw_id = cols["id"][k]
            out.append((cols["position"][k], cols["stream"][k], cols["version"][k], cols["type"][k],
                        cols["data"][k], cols["metadata"][k],
                        stamps[k],
                        None if raw_id is None else uuid.UUID(bytes=raw_id)))
    return out


def _scan(store: cl.EventStore) -> list[tuple[Any, ...]]:
    return _scan_rows(list(store.scan(batch_size=333)))


def _scan_table(store: cl.EventStore) -> list[tuple[Any, ...]]:
    return _scan_rows(store.scan_table().to_batches())


def _subscribe(store: cl.EventStore) -> list[tuple[Any, ...]]:
    out = []
    with store.subscribe(0, timeout=0.2) as sub:
        for e in sub:
            out.append(_as_tuple(e))
            if len(out) == store.head:
                break
    return out


def _subscribe_batches(store: cl.EventStore) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    with store.subscribe(0, batches=True, timeout=0.2) as sub:
        for b in sub:
            out.extend(_scan_rows([b]))
            if len(out) >= store.head:
                break
    return out


READERS = {
    "read_all": _read_all,
    "read_all backwards": _read_all_backwards,
    "read_all one position at a time": _read_all_from_each_position,
    "read_stream": _read_stream,
    "read_stream one version at a time": _read_stream_one_version_at_a_time,
    "scan": _scan,
    "scan_table": _scan_table,
    "subscribe": _subscribe,
    "subscribe batches": _subscribe_batches,
}


@pytest.mark.parametrize("readonly", [True, False], ids=["readonly", "writer"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_returns_the_written_events_from_a_store_mixing_codecs(
    mixed_store, reader, readonly
):
    want = _expected(mixed_store)
    options = {"readonly": True} if readonly else {"durability": "os", "compression": "zstd"}
    with cl.EventStore.open(mixed_store[0], **options) as store:
        got = READERS[reader](store)
    assert got == (sorted(want) if reader.startswith("read_stream") else want)


def test_verify_passes_on_a_store_mixing_codecs(mixed_store):
    with cl.EventStore.open(mixed_store[0], readonly=True) as store:
        report = store.verify()
    assert report["ok"], report["problems"]
    assert report["events"] == len(mixed_store[1])


def test_the_cli_dump_prints_the_written_events_from_a_store_mixing_codecs(mixed_store, capsys):
    want = _expected(mixed_store)
    assert main(["dump", str(mixed_store[0])]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    with cl.EventStore.open(mixed_store[0], readonly=True) as store:
        rendered = [event_json(e) for e in store.read_all()]
        assert [_as_tuple(e) for e in store.read_all()] == want
    assert lines == rendered
    assert [(d["position"], d["stream"], d["version"], d["data"]) for d in lines] == [
        (p, s, v, data.decode()) for p, s, v, _, data, _, _, _ in want
    ]


def test_the_cli_verify_passes_on_a_store_mixing_codecs(mixed_store, capsys):
    assert main(["verify", str(mixed_store[0])]) == 0


def test_appends_continue_after_every_codec_change(mixed_store, tmp_path):
    """Reopening the mixed store with and without compression keeps positions dense."""
    import shutil

    path = tmp_path / "copy"
    shutil.copytree(mixed_store[0], path)
    head = len(mixed_store[1])
    for compression in (None, "zstd", None):
        with cl.EventStore.open(path, durability="os", compression=compression) as store:
            got = store.append("order-new", [cl.NewEvent("Added", b'{"k": "v"}' * 20)])
            assert got.first_position == head
            head += 1
    with cl.EventStore.open(path, readonly=True) as store:
        assert [e.version for e in store.read_stream("order-new")] == [0, 1, 2]
        assert store.verify()["ok"]
