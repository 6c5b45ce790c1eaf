"""In "fsync" mode the writer writes zeros over the blocks it reserved just past its small
frames (WritingLog._zero_ahead, docs/design.md "Zeros written ahead"): the next group
fdatasync writes them once, and later syncs of frames there have no unwritten extent to
convert. These tests hold the zeros to never touching a frame, never changing the file's
size, and to changing nothing when they fail."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

import chronolog as cl
from chronolog._core.fileio import FileIO

_SEG = "00000000000000000000.seg"


def _traced(io: FileIO) -> list[tuple[str, int, int]]:
    """(op, offset, length) of every write, zero and grow of the first segment, in order."""
    ops: list[tuple[str, int, int]] = []

    def trace(op: str, path: Any, offset: int, data: Any) -> None:
        if path is None or not str(path).endswith(_SEG):
            return
        if op == "write":
            ops.append((op, offset, len(data)))
        elif op in ("zero", "grow", "truncate"):
            ops.append((op, offset, data if isinstance(data, int) else 0))

    io.trace = trace
    return ops


def test_small_appends_in_fsync_mode_land_in_zeros_written_ahead_and_no_zero_touches_a_frame(
        open_store, store_path: Path) -> None:
    io = FileIO()
    ops = _traced(io)
    s = open_store(durability="fsync", io=io)
    payloads = [b"%06d" % i * (20 + i % 50) for i in range(3000)]  # ~700 KB of small frames
    for i, p in enumerate(payloads):
        s.append(f"s-{i % 7}", [cl.NewEvent("E", p)])
    size = (store_path / _SEG).stat().st_size
    frames_end = 0  # the end of every frame written so far
    grown = 0  # the file's size as the grows made it
    zeroed: list[list[int]] = []  # [start, end) runs of zeros written, merged
    outside = grows = 0
    for op, off, n in ops:
        if op == "grow":
            grown = max(grown, off + n)
            grows += 1
        elif op == "zero":
            assert off >= frames_end, "zeros written over a frame"
            assert off + n <= grown, "zeros past the size the file was grown to"
            assert n > 0
            if zeroed and zeroed[-1][1] == off:
                zeroed[-1][1] = off + n
            else:
                zeroed.append([off, off + n])
        elif op == "write":
            if off > 0 and not any(a <= off and off + n <= b for a, b in zeroed):
                outside += 1
            frames_end = max(frames_end, off + n)
    assert sum(op == "zero" for op, _, _ in ops) >= 5  # 128 to 256 KiB at a time
    # Outside the zeros: the first frame (written before any) and one frame across the
    # end of each later reservation (zeros stop where the blocks reserved so far end).
    assert 1 <= outside <= grows
    assert size == grown  # the zeros never changed the file's size
    assert [e.data for e in s.read_all()] == payloads
    assert s.verify()["ok"]
    s.close()
    assert (store_path / _SEG).stat().st_size == frames_end  # cut back to the last frame
    again = open_store(durability="fsync")
    assert [e.data for e in again.read_all()] == payloads


@pytest.mark.parametrize("durability", ["fsync", "os", "interval"])
def test_no_zeros_are_written_ahead_of_large_frames_nor_outside_fsync_mode(
        open_store, durability: str) -> None:
    io = FileIO()
    s = open_store(durability=durability, io=io)
    big = [b"x" * 300] * 400  # one ~130 KB frame per batch
    for k in range(5):
        s.append_batch([f"s-{i % 9}" for i in range(400)], ["E"] * 400, big)
    assert io.counts["zero"] == 0
    for i in range(50):
        s.append("small", [cl.NewEvent("E", b"y" * 100)])
    assert io.counts["zero"] == (1 if durability == "fsync" else 0)
    assert s.head == 2050


def test_failed_zero_writes_change_nothing(open_store, store_path: Path) -> None:
    io = FileIO()
    io.inject("zero", after=0, errno=errno.EIO, persistent=True)
    s = open_store(durability="fsync", io=io, max_segment_bytes=64 * 1024)
    payloads = [b"%05d" % i * 40 for i in range(600)]  # ~130 KB: a few segments
    for i, p in enumerate(payloads):
        s.append(f"s-{i % 5}", [cl.NewEvent("E", p)])
    assert io.counts["zero"] >= 2
    assert [e.data for e in s.read_all()] == payloads
    assert s.verify()["ok"]
    s.close()
    again = open_store(durability="fsync")
    assert [e.data for e in again.read_all()] == payloads
    assert again.stats()["segments"] >= 3


def test_zeros_ahead_stay_within_a_small_segment_and_are_cut_at_each_roll(
        open_store, store_path: Path) -> None:
    """With segments of 8 KiB, the zeros stop at the segment's limit, and a sealed segment
    ends at its last frame (the roll's cut removes them)."""
    s = open_store(durability="fsync", max_segment_bytes=8192)
    payloads = [b"%04d" % i * 100 for i in range(40)]
    for p in payloads:
        s.append("s", [cl.NewEvent("E", p)])
    segs = sorted(store_path.glob("*.seg"))
    assert len(segs) >= 3
    for seg in segs:
        assert seg.stat().st_size <= 8192
    for seg in segs[:-1]:
        assert seg.read_bytes()[-4:] != b"\0\0\0\0"  # sealed: ends at its last frame
    assert [e.data for e in s.read_all()] == payloads
    s.close()
    again = open_store(durability="fsync", max_segment_bytes=8192)
    assert [e.data for e in again.read_all()] == payloads
    assert again.verify()["ok"]
