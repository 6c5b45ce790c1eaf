"""Recovery of the newest segment: a torn tail (truncated at any byte of its last three frames)
or trailing zeros/garbage is cut back to the last complete append, with or without index/.
A real torn tail is never covered by an index checkpoint (a checkpoint follows the sync of
what it covers), so the "kept" cases keep an index written before the last three frames; a
cut below what the checkpoint covers is damage (test_durable_floor.py)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
from _segments import Frame, build_small_store, copy_store, frame_extents, segment_files

import chronolog as cl


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[cl.RecordedEvent]]:
    template = tmp_path_factory.mktemp("torn") / "template"
    return template, build_small_store(template)


def _newest(store_dir: Path) -> tuple[Path, list[Frame]]:
    seg = segment_files(store_dir)[-1]
    return seg, frame_extents(seg)


def _reopens_to_exactly(
    store_dir: Path, expected: list[cl.RecordedEvent], cut_at: int, seg: Path | None = None
) -> None:
    """Open (recovering), compare, check the newest segment `seg` was cut at `cut_at`, append
    one event, reopen and find it right after them."""
    seg = seg or segment_files(store_dir)[-1]
    with cl.EventStore.open(store_dir, durability="os", max_segment_bytes=4096) as store:
        assert store.head == len(expected)
        assert list(store.read_all()) == expected
        report = store.verify()
        assert report["ok"], report["problems"]
        assert seg.stat().st_size == cut_at, "recovery did not cut the tail back to the last frame"
        store.append("after-recovery", [cl.NewEvent("Appended", b"fresh")])
    with cl.EventStore.open(store_dir, readonly=True) as store:
        events = list(store.read_all())
        assert events[:-1] == expected
        assert (events[-1].position, events[-1].stream, events[-1].data) == (
            len(expected),
            "after-recovery",
            b"fresh",
        )
        assert store.verify()["ok"]


@pytest.fixture(scope="module")
def index_before_tail(small_store: tuple[Path, list[cl.RecordedEvent]],
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template's index/ as a checkpoint written before its last three frames existed."""
    template, _ = small_store
    seg, frames = _newest(template)
    work = copy_store(template, tmp_path_factory.mktemp("before-tail") / "store")
    shutil.rmtree(work / "index")
    os.truncate(work / seg.name, frames[-3].offset)
    with cl.EventStore.open(work, durability="os", max_segment_bytes=4096):
        pass  # rebuilt from the segments; close writes the checkpoint
    return work / "index"


def _reset(case: Path, template: Path, index: str, kept_index: Path) -> None:
    """Make `case` a copy of the template again (cheaply: only the files a case changes), with
    the index written before the last three frames, or none."""
    seg = segment_files(template)[-1]
    shutil.copyfile(seg, case / seg.name)
    shutil.rmtree(case / "index", ignore_errors=True)
    if index == "kept":
        shutil.copytree(kept_index, case / "index")


@pytest.mark.parametrize("index", ["kept", "deleted"])
def test_truncation_at_every_byte_of_the_last_three_frames_reopens_to_the_complete_appends(
    small_store: tuple[Path, list[cl.RecordedEvent]], index_before_tail: Path, tmp_path: Path,
    index: str
) -> None:
    template, events = small_store
    seg, frames = _newest(template)
    case = copy_store(template, tmp_path / "case")
    for cut in range(frames[-3].offset, seg.stat().st_size):
        _reset(case, template, index, index_before_tail)
        os.truncate(case / seg.name, cut)
        complete = [f for f in frames if f.end <= cut]
        n = complete[-1].first_position + complete[-1].count
        try:
            _reopens_to_exactly(case, events[:n], complete[-1].end)
        except AssertionError as exc:
            raise AssertionError(f"truncated at byte {cut}: {exc}") from None
        assert segment_files(case) == [case / p.name for p in segment_files(template)]


def _tails() -> list[tuple[str, bytes]]:
    rng = random.Random(11)
    tails = []
    for size in (1, 7, 47, 48, 49, 300, 5000):
        tails.append((f"zeros-{size}", bytes(size)))
        tails.append((f"garbage-{size}", rng.randbytes(size)))
    return tails


@pytest.mark.parametrize("index", ["kept", "deleted"])
@pytest.mark.parametrize("name,tail", _tails(), ids=[n for n, _ in _tails()])
def test_zeros_or_garbage_after_the_last_frame_are_cut_on_open(
    small_store: tuple[Path, list[cl.RecordedEvent]],
    tmp_path: Path,
    index: str,
    name: str,
    tail: bytes,
) -> None:
    template, events = small_store
    case = copy_store(template, tmp_path / "case")
    if index == "deleted":
        shutil.rmtree(case / "index")
    seg, frames = _newest(case)
    with open(seg, "ab") as f:
        f.write(tail)
    _reopens_to_exactly(case, events, frames[-1].end)


@pytest.mark.parametrize(
    "garbage,zeros,kept",
    [(0, 32 << 20, False), (300, 3 << 20, False), ((1 << 20) + 4099, 2 << 20, True)],
    ids=["sized-ahead", "torn-then-sized-ahead", "over-1MiB-then-sized-ahead"])
def test_a_tail_sized_ahead_is_cut_and_only_its_bytes_that_are_not_zero_are_kept(
    small_store: tuple[Path, list[cl.RecordedEvent]], tmp_path: Path, garbage: int, zeros: int,
    kept: bool,
) -> None:
    """A writer in "fsync" mode extends its active segment with zeros ahead of its frames; a
    crash leaves them after the last frame (after a torn append, if one was being written).
    The open cuts them; it keeps a copy (`.torn-<offset>`) of the bytes before the zeros only
    when they are over 1 MiB, as for any torn tail, and never of the zeros."""
    template, events = small_store
    case = copy_store(template, tmp_path / "case")
    seg, frames = _newest(case)
    junk = random.Random(garbage).randbytes(garbage)
    if junk:
        junk = junk[:-1] + b"\x01"  # (its last byte is not zero)
    with open(seg, "ab") as f:
        f.write(junk)
        f.truncate(f.tell() + zeros)
    _reopens_to_exactly(case, events, frames[-1].end)
    torn = sorted(case.glob("*.torn-*"))
    if kept:
        assert [t.name for t in torn] == [f"{seg.name}.torn-{frames[-1].end:010d}"]
        assert torn[0].read_bytes() == junk
    else:
        assert torn == []


def test_whole_frames_after_a_torn_one_are_kept_aside_whole_before_the_zeros(
    small_store: tuple[Path, list[cl.RecordedEvent]], tmp_path: Path
) -> None:
    """A torn frame, then a whole frame that was never synced (a power loss with reordered
    writeback), then the zeros a writer in "fsync" mode sized its segment ahead by: the open
    cuts at the torn frame and keeps aside exactly the bytes before the zeros, the whole
    frame included to its last byte."""
    template, events = small_store
    case = copy_store(template, tmp_path / "case")
    seg, frames = _newest(case)
    last = seg.read_bytes()[frames[-1].offset : frames[-1].end]
    tail = last[:-30] + last
    with open(seg, "ab") as f:
        f.write(tail)
        f.truncate(f.tell() + (2 << 20))
    _reopens_to_exactly(case, events, frames[-1].end)
    torn = sorted(case.glob("*.torn-*"))
    assert [t.name for t in torn] == [f"{seg.name}.torn-{frames[-1].end:010d}"]
    assert torn[0].read_bytes() == tail


@pytest.mark.parametrize("index", ["kept", "deleted"])
@pytest.mark.parametrize("missing", [1, 8, 30])
def test_a_repeated_frame_missing_its_last_bytes_is_cut_on_open(
    small_store: tuple[Path, list[cl.RecordedEvent]], tmp_path: Path, index: str, missing: int
) -> None:
    # A torn write whose header is whole and checks: only its missing body/trailer shows it.
    template, events = small_store
    case = copy_store(template, tmp_path / "case")
    if index == "deleted":
        shutil.rmtree(case / "index")
    seg, frames = _newest(case)
    raw = seg.read_bytes()
    last = raw[frames[-1].offset : frames[-1].end]
    with open(seg, "ab") as f:
        f.write(last[:-missing])
    _reopens_to_exactly(case, events, frames[-1].end)


@pytest.mark.parametrize("index", ["kept", "deleted"])
@pytest.mark.parametrize("header_bytes", [0, 8, 63])
def test_a_next_segment_torn_while_being_created_is_dropped_on_open(
    small_store: tuple[Path, list[cl.RecordedEvent]], tmp_path: Path, index: str, header_bytes: int
) -> None:
    # A crash during a roll can leave the next segment with a partial header and no frames.
    template, events = small_store
    case = copy_store(template, tmp_path / "case")
    if index == "deleted":
        shutil.rmtree(case / "index")
    seg, frames = _newest(case)
    torn = case / f"{len(events):020d}.seg"
    torn.write_bytes(seg.read_bytes()[:header_bytes])
    with cl.EventStore.open(case, readonly=True) as reader:
        assert list(reader.read_all()) == events  # a reader waits for the header, as for a roll
    _reopens_to_exactly(case, events, frames[-1].end, seg)


def test_a_reader_following_a_roll_waits_while_the_new_segment_header_is_short(
    small_store: tuple[Path, list[cl.RecordedEvent]], tmp_path: Path
) -> None:
    # What a reader's refresh can meet while the writer creates the next segment: the file
    # with part of its header, then all of it, then frames. It waits (never CorruptionError)
    # and then follows, whatever the size of the file is by the time it looks again.
    from chronolog._core.segment import encode_segment_header

    template, events = small_store
    case = copy_store(template, tmp_path / "case")
    store_id = (case / "chronolog.store").read_bytes()[16:32]
    header = encode_segment_header(len(events), 12345, store_id, 1)
    nxt = case / f"{len(events):020d}.seg"
    with cl.EventStore.open(case, readonly=True) as reader:
        for cut in (0, 1, 10, 63):
            nxt.write_bytes(header[:cut])
            reader.refresh()
            assert list(reader.read_all()) == events, f"header cut at {cut}"
        nxt.write_bytes(header)
        reader.refresh()
        assert reader.head == len(events)
        with cl.EventStore.open(case, durability="os") as writer:
            writer.append("after-roll", [cl.NewEvent("Appended", b"x")])
        reader.refresh()
        got = list(reader.read_all())
        assert got[:-1] == events and (got[-1].stream, got[-1].position) == ("after-roll", len(events))
