"""Test helpers that read segment files directly: frame boundaries of a segment, a small store
with sealed segments, and copying a store directory (format: src/chronolog/_core/format.pxd).

Example:
    >>> frames = frame_extents(Path("store/00000000000000000000.seg"))  # doctest: +SKIP
    >>> frames[0].offset
    64
"""

from __future__ import annotations

import random
import shutil
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

import chronolog as cl

SEGMENT_HEADER_BYTES = 64
TRAILER_MAGIC = b"CLHF"  # a frame ends in u32 body bytes + this magic


def _frame_overhead(raw: bytes, offset: int) -> int:
    """Header + trailer bytes of the frame at `offset`, found from its trailer (so these tests
    follow a change of the frame header's size)."""
    body_bytes = raw[offset + 4 : offset + 8]
    body = int.from_bytes(body_bytes, "little")
    for header in range(16, 257, 4):
        at = offset + header + body
        if raw[at : at + 8] == body_bytes + TRAILER_MAGIC:
            return header + 8
    raise AssertionError(f"no frame trailer after the frame at {offset}")


@dataclass(frozen=True)
class Frame:
    """One batch frame of a segment file: its byte extent and the positions it holds."""

    offset: int
    end: int
    first_position: int
    count: int


def frame_extents(path: Path) -> list[Frame]:
    """The frames of a sound segment file, in order (asserts the file is made of whole frames).

    Example:
        >>> [f.count for f in frame_extents(seg)]  # doctest: +SKIP
        [1, 3, 1]
    """
    raw = path.read_bytes()
    frames = []
    off = SEGMENT_HEADER_BYTES
    overhead = _frame_overhead(raw, off) if len(raw) > off else 0
    while off < len(raw):
        (body_bytes,) = struct.unpack_from("<I", raw, off + 4)
        first, count = struct.unpack_from("<QI", raw, off + 16)
        end = off + overhead + body_bytes
        assert end <= len(raw), f"{path.name}: frame at {off} runs past the end of the file"
        frames.append(Frame(off, end, first, count))
        off = end
    return frames


def segment_files(store_dir: Path) -> list[Path]:
    """The segment files of a store, oldest first."""
    return sorted(store_dir.glob("*.seg"))


def build_small_store(store_dir: Path, seed: int = 7) -> list[cl.RecordedEvent]:
    """A closed store of a few dozen appends over 4 KiB segments (so several are sealed), whose
    newest segment holds at least four frames; returns all its events.

    Example:
        >>> events = build_small_store(tmp_path / "s")  # doctest: +SKIP
    """
    rng = random.Random(seed)
    with cl.EventStore.open(store_dir, durability="os", max_segment_bytes=4096) as store:
        for i in range(36):
            size = rng.choice((0, 10, 90, 400, 1500))
            if i % 3 == 2:
                n = rng.randint(2, 4)
                store.append_batch(
                    [f"acct-{rng.randint(0, 4)}" for _ in range(n)],
                    ["Moved"] * n,
                    [rng.randbytes(size) for _ in range(n)],
                    metadatas=[b"m"] * n,
                    ids=[uuid.UUID(int=rng.getrandbits(128)) for _ in range(n)],
                )
            else:
                store.append(
                    f"acct-{rng.randint(0, 4)}", [cl.NewEvent("Opened", rng.randbytes(size))]
                )
        # Small appends last, so the newest segment ends in several short frames, batches of
        # several streams among them (a torn batch must vanish whole).
        k = 0
        while len(frame_extents(segment_files(store_dir)[-1])) < 4:
            if k % 2:
                store.append("t", [cl.NewEvent("N", rng.randbytes(rng.randint(0, 8)))])
            else:
                store.append_batch(
                    ["t", "acct-1", "t"],
                    ["N"] * 3,
                    [rng.randbytes(rng.randint(0, 8)) for _ in range(3)],
                )
            k += 1
        events = list(store.read_all())
    assert len(segment_files(store_dir)) >= 3, "the small store should have sealed segments"
    return events


def copy_store(template: Path, dest: Path) -> Path:
    """A copy of a (closed) store directory, without its LOCK file."""
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("LOCK"))
    return dest
