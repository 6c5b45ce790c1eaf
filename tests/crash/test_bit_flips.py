"""Damage in a sealed segment is never returned as data: flipping any single byte of a small
sealed segment (a few XOR masks) raises CorruptionError at open or when everything is read,
and verify() reports it.
"""

from __future__ import annotations

import os
import shutil
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from _segments import SEGMENT_HEADER_BYTES, frame_extents, segment_files

import chronolog as cl

DEFAULT_MASKS = (0x01, 0x80, 0xFF)
ALL_MASKS = tuple(range(1, 256))


def _build(store_dir: Path) -> list[cl.RecordedEvent]:
    """A store whose first segment is sealed and small: three short frames (a single append,
    a batch over two streams with ids and metadata, a two-event append), then a large event
    that does not fit forces the roll."""
    with cl.EventStore.open(store_dir, durability="os", max_segment_bytes=4096) as store:
        store.append("flip-a", [cl.NewEvent("Opened", b'{"n": 1}')])
        store.append_batch(
            ["flip-b", "flip-a"],
            ["Moved", "Moved"],
            [b"x" * 20, b""],
            metadatas=[b"meta", b""],
            ids=[uuid.UUID(int=1), uuid.UUID(int=2)],
        )
        store.append(
            "flip-c", [cl.NewEvent("Noted", b"y"), cl.NewEvent("Noted", b"zz", id=uuid.UUID(int=3))]
        )
        store.append("flip-big", [cl.NewEvent("Blob", b"B" * 5000)])
        store.append("flip-a", [cl.NewEvent("Closed", b"{}")])
        events = list(store.read_all())
    segs = segment_files(store_dir)
    assert len(segs) >= 3 and len(frame_extents(segs[0])) == 3
    return events


@pytest.fixture(scope="module")
def flip_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[cl.RecordedEvent]]:
    store_dir = tmp_path_factory.mktemp("flips") / "store"
    return store_dir, _build(store_dir)


def _outcome(store_dir: Path, readonly: bool, events: list[cl.RecordedEvent]) -> str:
    """'open' when opening raised CorruptionError, 'read' when a full read did (and verify
    failed); raises AssertionError when damage came back as data or verify missed it."""
    try:
        store = cl.EventStore.open(store_dir, readonly=readonly, durability="os")
    except cl.CorruptionError:
        return "open"
    streams = sorted({e.stream for e in events})
    raised = 0
    with store:
        reads: list[tuple[str, Any]] = [
            ("read_all", lambda: list(store.read_all())),
            ("read_all backwards", lambda: list(store.read_all(backwards=True))[::-1]),
        ]
        reads += [(f"read_stream({s!r})", lambda s=s: store.read_stream(s)) for s in streams]
        for what, read in reads:
            want = (
                events
                if what.startswith("read_all")
                else [e for e in events if e.stream == what[13:-2]]
            )
            try:
                got = read()
            except cl.CorruptionError:
                raised += 1
                continue
            assert got == want, f"{what} returned damaged data without raising"
        report = store.verify()
    assert raised, "every read succeeded: the damage went unnoticed"
    assert not report["ok"], "reads raised CorruptionError but verify() reported ok"
    return "read"


def _flip_every_byte(
    store_dir: Path,
    events: list[cl.RecordedEvent],
    masks: tuple[int, ...],
    readonly: bool,
    drop_index: bool,
) -> dict[str, int]:
    seg = segment_files(store_dir)[0]
    original = seg.read_bytes()
    index = store_dir / "index"
    saved_index = {p.name: p.read_bytes() for p in index.iterdir()}
    tally = {"open": 0, "read": 0}
    try:
        for offset in range(len(original)):
            for mask in masks:
                damaged = bytearray(original)
                damaged[offset] ^= mask
                seg.write_bytes(damaged)
                if drop_index:
                    shutil.rmtree(index, ignore_errors=True)
                try:
                    outcome = _outcome(store_dir, readonly, events)
                    if offset < SEGMENT_HEADER_BYTES:
                        assert outcome == "open", "a damaged segment header must fail the open"
                except AssertionError as exc:
                    raise AssertionError(f"{seg.name} byte {offset} ^ {mask:#04x}: {exc}") from None
                tally[outcome] += 1
    finally:
        seg.write_bytes(original)
        shutil.rmtree(index, ignore_errors=True)
        index.mkdir()
        for name, raw in saved_index.items():
            (index / name).write_bytes(raw)
    return tally


def test_flipping_any_byte_of_a_sealed_segment_is_detected_by_a_reader(
    flip_store: tuple[Path, list[cl.RecordedEvent]],
) -> None:
    # Read-only, index kept: the open checks only the tail, so the reads must catch it.
    store_dir, events = flip_store
    tally = _flip_every_byte(store_dir, events, DEFAULT_MASKS, readonly=True, drop_index=False)
    assert tally["read"], "flips in frames should reach the reads (the open checks only the tail)"


def test_flipping_any_byte_of_a_sealed_segment_is_detected_when_the_writer_rebuilds_the_index(
    flip_store: tuple[Path, list[cl.RecordedEvent]],
) -> None:
    # Writer, index deleted: the open scans every frame (bodies included) to rebuild it.
    store_dir, events = flip_store
    tally = _flip_every_byte(store_dir, events, (0x10,), readonly=False, drop_index=True)
    assert tally["read"] == 0, "a full rebuild checks every frame body, so the open should fail"


def test_flipping_any_byte_of_a_sealed_segment_is_detected_by_a_writer_with_its_index(
    flip_store: tuple[Path, list[cl.RecordedEvent]],
) -> None:
    store_dir, events = flip_store
    _flip_every_byte(store_dir, events, (0x04,), readonly=False, drop_index=False)


@pytest.mark.crash
@pytest.mark.parametrize("readonly,drop_index", [(True, False), (False, True), (False, False)])
def test_flipping_any_byte_of_a_sealed_segment_with_any_mask_is_detected(
    flip_store: tuple[Path, list[cl.RecordedEvent]], readonly: bool, drop_index: bool
) -> None:
    store_dir, events = flip_store
    _flip_every_byte(store_dir, events, ALL_MASKS, readonly=readonly, drop_index=drop_index)


def test_bytes_after_the_last_frame_of_a_sealed_segment_fail_verify(
    flip_store: tuple[Path, list[cl.RecordedEvent]], tmp_path: Path
) -> None:
    store_dir, events = flip_store
    case = tmp_path / "case"
    shutil.copytree(store_dir, case, ignore=shutil.ignore_patterns("LOCK"))
    with open(segment_files(case)[0], "ab") as f:
        f.write(os.urandom(100))
    try:
        with cl.EventStore.open(case, readonly=True) as store:
            assert list(store.read_all()) == events
            assert not store.verify()["ok"]
    except cl.CorruptionError:
        pass  # refusing at open is as good


NARROW = ["position", "stream", "type"]


@pytest.fixture(scope="module")
def narrow_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A store whose sealed first segment is one append_batch frame of 64 events (it has a
    narrow region); returns the directory and the end of that frame's region."""
    store_dir = tmp_path_factory.mktemp("narrow-flips") / "store"
    with cl.EventStore.open(store_dir, durability="os", max_segment_bytes=4096) as store:
        store.append_batch([f"nf-{i % 5}" for i in range(64)], [f"T{i % 3}" for i in range(64)],
                           [b"%d" % i for i in range(64)])
        store.append("nf-big", [cl.NewEvent("Blob", b"B" * 5000)])
    seg = segment_files(store_dir)[0]
    raw = seg.read_bytes()
    (frame,) = frame_extents(seg)
    flags, = struct.unpack_from("<H", raw, frame.offset + 30)
    narrow, = struct.unpack_from("<I", raw, frame.offset + 44)
    assert flags == 1 and narrow > 0
    return store_dir, frame.offset + 56 + narrow


def _narrow_flips(store_dir: Path, offsets: range, mask: int) -> None:
    """Flip each byte of `offsets` in the sealed segment; every time, a read-only handle's
    narrow and full scans either return exactly the original or raise CorruptionError (at
    least one raises), and verify() fails."""
    seg = segment_files(store_dir)[0]
    original = seg.read_bytes()
    with cl.EventStore.open(store_dir, readonly=True) as store:
        want_narrow, want_full = store.scan_table(columns=NARROW), store.scan_table()
    try:
        for offset in offsets:
            damaged = bytearray(original)
            damaged[offset] ^= mask
            seg.write_bytes(damaged)
            try:
                store = cl.EventStore.open(store_dir, readonly=True)
            except cl.CorruptionError:
                continue
            raised = 0
            with store:
                for cols, want in ((NARROW, want_narrow), (None, want_full)):
                    try:
                        got = store.scan_table(columns=cols)
                    except cl.CorruptionError:
                        raised += 1
                        continue
                    assert got.equals(want), f"byte {offset}: a scan returned damaged data"
                assert raised, f"byte {offset}: every scan succeeded: the damage went unnoticed"
                assert not store.verify()["ok"], f"byte {offset}: verify() missed the damage"
    finally:
        seg.write_bytes(original)


def test_flipping_any_byte_of_a_narrow_region_or_its_frame_header_is_detected_by_scans(
    narrow_store: tuple[Path, int],
) -> None:
    store_dir, region_end = narrow_store
    _narrow_flips(store_dir, range(SEGMENT_HEADER_BYTES, region_end), 0x10)


@pytest.mark.crash
def test_flipping_any_byte_of_a_sealed_narrow_frame_with_several_masks_is_detected_by_scans(
    narrow_store: tuple[Path, int],
) -> None:
    store_dir, _ = narrow_store
    size = segment_files(store_dir)[0].stat().st_size
    for mask in DEFAULT_MASKS:
        _narrow_flips(store_dir, range(SEGMENT_HEADER_BYTES, size), mask)
