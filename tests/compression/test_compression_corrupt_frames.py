"""Crafted compressed frames: a frame whose block directory, zstd frame header or compressed
bytes lie (with the frame's CRCs fixed up, so only the codec layer can notice) raises
CorruptionError from every reader, never returns garbage, and never allocates more than the
MAX_RATIO bound of codec.pyx allows (checked under RLIMIT_AS in a child process)."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _frames import (
    Frame,
    blocks,
    compressed_frames,
    edit_body,
    edit_frame,
    put_zstd_content_size,
    zstd_content_size,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chronolog as cl
from chronolog.cli.main import main as cli_main

MAX_RATIO = 255  # codec.pyx: a block never declares more than this times its stored size
HUGE = 0xF000_0000  # ~3.75 GiB, the largest a frame header can declare and stay consistent


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed zstd store of several segments; every frame has two blocks, the first large
    enough that its zstd header declares its size in a 4-byte field, the second in 2 bytes."""
    path = tmp_path_factory.mktemp("pristine") / "store"
    rng = random.Random(5)
    with cl.EventStore.open(path, durability="os", compression="zstd",
                            compression_block_bytes=128 * 1024, max_segment_bytes=20_000) as store:
        for _ in range(6):
            datas = [json.dumps({"order": rng.randrange(1000), "sku": f"S{rng.randrange(99)}",
                                 "note": "lorem ipsum " * rng.randrange(70)}).encode()
                     for _ in range(300)]
            store.append_batch([f"order-{i % 5}" for i in range(300)], ["T"] * 300, datas)
    segments = sorted(path.glob("*.seg"))
    assert len(segments) >= 3
    victim = compressed_frames(segments[0])[0]
    sizes = [zstd_content_size(victim.body[b.data_offset:]) for b in blocks(victim)]
    assert len(sizes) == 2 and sizes[0] > 65_791 and sizes[1] <= 65_791  # 4-byte, 2-byte fields
    return path


# ---------------------------------------------------------------------------- the damage

def _header_raw(frame: Frame, raws: list[int]) -> int:
    return sum(raws) + 4 * frame.count


def _set_directory(body: bytearray, index: int, stored: int | None = None,
                   raw: int | None = None) -> None:
    at = 4 + 8 * index
    if stored is not None:
        struct.pack_into("<I", body, at, stored)
    if raw is not None:
        struct.pack_into("<I", body, at + 4, raw)


def directory_declares_4_gib(seg: Path, f: Frame) -> None:
    """Block 0 claims ~3.75 GiB decoded; the frame header agrees (so the sums add up)."""
    b = blocks(f)
    raw0 = HUGE - b[1].raw_bytes - 4 * f.count
    edit_body(seg, f, lambda body: _set_directory(body, 0, raw=raw0), raw_bytes=HUGE)


def directory_at_the_ratio_bound(seg: Path, f: Frame) -> None:
    """Block 0 claims the most its stored size allows; header agrees; zstd says otherwise."""
    b = blocks(f)
    raw0 = MAX_RATIO * b[0].stored_bytes + 1024
    edit_body(seg, f, lambda body: _set_directory(body, 0, raw=raw0),
              raw_bytes=_header_raw(f, [raw0, b[1].raw_bytes]))


def zstd_frame_declares_4_gib(seg: Path, f: Frame) -> None:
    """The zstd frame of block 0 declares 0xFFFFFFFF bytes; the directory is untouched."""
    b = blocks(f)
    edit_body(seg, f, lambda body: put_zstd_content_size(body, b[0], 0xFFFF_FFFF))


def zstd_directory_and_header_all_declare_4_gib(seg: Path, f: Frame) -> None:
    """Every size field agrees on ~3.75 GiB for block 0: only the ratio bound is left."""
    b = blocks(f)
    raw0 = HUGE - b[1].raw_bytes - 4 * f.count

    def change(body: bytearray) -> None:
        put_zstd_content_size(body, b[0], raw0)
        _set_directory(body, 0, raw=raw0)

    edit_body(seg, f, change, raw_bytes=HUGE)


def zstd_and_directory_agree_on_more_than_the_data(seg: Path, f: Frame) -> None:
    """zstd header, directory and frame header agree on a size within the ratio bound that
    the compressed data does not produce."""
    b = blocks(f)
    raw0 = MAX_RATIO * b[0].stored_bytes

    def change(body: bytearray) -> None:
        put_zstd_content_size(body, b[0], raw0)
        _set_directory(body, 0, raw=raw0)

    edit_body(seg, f, change, raw_bytes=_header_raw(f, [raw0, b[1].raw_bytes]))


def zstd_and_directory_agree_on_one_byte_less(seg: Path, f: Frame) -> None:
    """The small block (2-byte size field) claims one byte less than it decodes to."""
    b = blocks(f)
    raw1 = b[1].raw_bytes - 1

    def change(body: bytearray) -> None:
        put_zstd_content_size(body, b[1], raw1)
        _set_directory(body, 1, raw=raw1)

    edit_body(seg, f, change, raw_bytes=_header_raw(f, [b[0].raw_bytes, raw1]))


def frame_header_declares_4_gib(seg: Path, f: Frame) -> None:
    edit_frame(seg, f, raw_bytes=HUGE)


def block_count_is_4_billion(seg: Path, f: Frame) -> None:
    edit_body(seg, f, lambda body: struct.pack_into("<I", body, 0, 0xFFFF_FFFF))


def block_count_is_zero(seg: Path, f: Frame) -> None:
    edit_body(seg, f, lambda body: struct.pack_into("<I", body, 0, 0))


def block_boundary_moved_by_one_byte(seg: Path, f: Frame) -> None:
    """Stored sizes still add up, but block 0 takes the first byte of block 1."""
    b = blocks(f)

    def change(body: bytearray) -> None:
        _set_directory(body, 0, stored=b[0].stored_bytes + 1)
        _set_directory(body, 1, stored=b[1].stored_bytes - 1)

    edit_body(seg, f, change)


def garbage_in_a_block(seg: Path, f: Frame) -> None:
    """64 random bytes over the middle of block 0's compressed data."""
    b = blocks(f)
    mid = b[0].data_offset + b[0].stored_bytes // 2
    noise = random.Random(17).randbytes(64)

    def change(body: bytearray) -> None:
        body[mid: mid + 64] = noise

    edit_body(seg, f, change)


def record_offset_past_the_records(seg: Path, f: Frame) -> None:
    """The (uncompressed) offset table sends a record past the decoded records."""
    at = f.stored_bytes - 4 * f.count + 4 * (f.count // 2)
    edit_body(seg, f, lambda body: struct.pack_into("<I", body, at, 0x7FFF_FFFF))


def record_offset_into_the_middle_of_a_record(seg: Path, f: Frame) -> None:
    at = f.stored_bytes - 4 * f.count + 4 * (f.count // 2)
    old, = struct.unpack_from("<I", f.body, at)
    edit_body(seg, f, lambda body: struct.pack_into("<I", body, at, old + 5))


def names_a_dictionary_that_does_not_exist(seg: Path, f: Frame) -> None:
    edit_frame(seg, f, dict_id=9)


DAMAGE: dict[str, Callable[[Path, Frame], None]] = {
    fn.__name__: fn
    for fn in (
        directory_declares_4_gib,
        directory_at_the_ratio_bound,
        zstd_frame_declares_4_gib,
        zstd_directory_and_header_all_declare_4_gib,
        zstd_and_directory_agree_on_more_than_the_data,
        zstd_and_directory_agree_on_one_byte_less,
        frame_header_declares_4_gib,
        block_count_is_4_billion,
        block_count_is_zero,
        block_boundary_moved_by_one_byte,
        garbage_in_a_block,
        record_offset_past_the_records,
        record_offset_into_the_middle_of_a_record,
        names_a_dictionary_that_does_not_exist,
    )
}


def damaged_copy(pristine: Path, dest: Path, damage: str) -> Path:
    """A copy of the pristine store (index checkpoints included, so opening does not read
    the damaged frame) with the first frame of its oldest, sealed segment damaged."""
    shutil.copytree(pristine, dest)
    seg = min(dest.glob("*.seg"))
    DAMAGE[damage](seg, compressed_frames(seg)[0])
    return dest


# ---------------------------------------------------------------------------- the readers

def _read_stream(path: Path) -> Any:
    with cl.EventStore.open(path, readonly=True) as store:
        return [store.read_stream(s) for s in store.streams()]


def _read_all(path: Path) -> Any:
    with cl.EventStore.open(path, readonly=True) as store:
        return list(store.read_all())


def _scan_table(path: Path) -> Any:
    with cl.EventStore.open(path, readonly=True) as store:
        return store.scan_table()


def _open_rebuilding_the_index(path: Path) -> Any:
    shutil.rmtree(path / "index")
    with cl.EventStore.open(path, durability="os") as store:
        return list(store.read_all())


def _compact(path: Path) -> Any:
    return cl.compact(path, compression="zstd")


READERS = {
    "read_stream": _read_stream,
    "read_all": _read_all,
    "scan_table": _scan_table,
    "open rebuilding the index": _open_rebuilding_the_index,
    "compact": _compact,
}


# Damage that zstd cannot see (it decodes, to the wrong records): only the records' own checks
# find it; compact verifies the whole log before it rewrites anything.


def _cases() -> list[Any]:
    return [
        pytest.param(damage, reader, id=f"{damage}-{reader}")
        for damage in DAMAGE for reader in READERS
    ]


@pytest.mark.parametrize(("damage", "reader"), _cases())
def test_a_crafted_compressed_frame_raises_corruption_error(pristine, tmp_path, damage, reader):
    path = damaged_copy(pristine, tmp_path / "s", damage)
    with pytest.raises(cl.CorruptionError) as info:
        READERS[reader](path)
    # It names the damaged segment, or the dictionary file the frame needs.
    assert Path(info.value.path).name.endswith((".seg", ".dict"))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_verify_reports_a_crafted_compressed_frame_at_its_segment_and_offset(
    pristine, tmp_path, damage
):
    path = damaged_copy(pristine, tmp_path / "s", damage)
    victim = min(path.glob("*.seg"))
    with cl.EventStore.open(path, readonly=True) as store:
        report = store.verify()
    assert not report["ok"]
    first = report["problems"][0]
    assert Path(first["segment"]).name == victim.name
    assert first["offset"] == compressed_frames(victim)[0].offset


@pytest.mark.parametrize("damage", ["garbage_in_a_block", "directory_declares_4_gib"])
def test_the_cli_verify_exits_1_on_a_crafted_compressed_frame(pristine, tmp_path, damage, capsys):
    path = damaged_copy(pristine, tmp_path / "s", damage)
    assert cli_main(["verify", str(path)]) == 1


def test_a_crafted_frame_leaves_the_other_frames_readable(pristine, tmp_path):
    with cl.EventStore.open(pristine, readonly=True) as store:
        want = [(e.position, e.data) for e in store.read_all()]
    path = damaged_copy(pristine, tmp_path / "s", "garbage_in_a_block")
    victim = compressed_frames(min(path.glob("*.seg")))[0]
    with cl.EventStore.open(path, readonly=True) as store:
        after = [(e.position, e.data) for e in store.read_all(victim.count)]
    assert after == want[victim.count:]


def test_compact_rewrites_nothing_when_a_sealed_frame_is_crafted(pristine, tmp_path):
    path = damaged_copy(pristine, tmp_path / "s", "garbage_in_a_block")
    before = {p.name: p.read_bytes() for p in path.glob("*.seg")}
    with pytest.raises(cl.CorruptionError):
        cl.compact(path, compression="zstd")
    assert {p.name: p.read_bytes() for p in path.glob("*.seg")} == before
    assert not list(path.glob("*.compact"))


# ---------------------------------------------------------------------------- memory bound

_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import chronolog as cl

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    pristine, damaged = sys.argv[1], json.loads(sys.argv[2])
    # Warm up every reader on the sound store (arenas, thread pools, pyarrow's allocator).
    with cl.EventStore.open(pristine, readonly=True) as store:
        list(store.read_all()); store.scan_table(); store.verify()
        [store.read_stream(s) for s in store.streams()]
    headroom = 256 << 20
    limit = status("VmSize:") + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    hwm_before = status("VmHWM:")
    outcomes = {}
    for name, path in damaged.items():
        for reader in ("read_stream", "read_all", "scan_table", "verify"):
            try:
                with cl.EventStore.open(path, readonly=True) as store:
                    if reader == "read_stream":
                        [store.read_stream(s) for s in store.streams()]
                    elif reader == "read_all":
                        list(store.read_all())
                    elif reader == "scan_table":
                        store.scan_table()
                    else:
                        report = store.verify()
                        raise cl.CorruptionError(path, 0, "verify") if not report["ok"] else None
                outcomes[f"{name} {reader}"] = "returned"
            except cl.CorruptionError:
                outcomes[f"{name} {reader}"] = "CorruptionError"
            except BaseException as exc:
                outcomes[f"{name} {reader}"] = type(exc).__name__
    print(json.dumps({"outcomes": outcomes, "hwm_growth": status("VmHWM:") - hwm_before}))
    """
)


def test_crafted_frames_raise_corruption_error_without_a_large_allocation(pristine, tmp_path):
    """In a child whose address space may grow by only 256 MiB (RLIMIT_AS), every reader of
    every crafted frame (some declaring ~4 GiB) raises CorruptionError: no MemoryError, no
    crash, and the peak resident memory grows by less than 64 MiB."""
    damaged = {name: str(damaged_copy(pristine, tmp_path / name, name)) for name in DAMAGE}
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(pristine), json.dumps(damaged)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert {k: v for k, v in result["outcomes"].items() if v != "CorruptionError"} == {}
    assert len(result["outcomes"]) == 4 * len(DAMAGE)
    assert result["hwm_growth"] < 64 << 20


# ---------------------------------------------------------------------------- never garbage

@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(at=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255),
       width=st.integers(min_value=1, max_value=8))
def test_any_damage_to_a_compressed_body_reads_as_corruption_or_as_the_original_events(
    pristine, tmp_path, at, value, width
):
    """Overwrite `width` bytes anywhere in a compressed body (CRCs fixed up): every reader
    either raises CorruptionError or returns exactly the original events."""
    with cl.EventStore.open(pristine, readonly=True) as store:
        want = [(e.position, e.stream, e.version, e.data) for e in store.read_all()]
    path = tmp_path / f"s-{uuid.uuid4().hex}"
    shutil.copytree(pristine, path)
    try:
        _damage_and_read(path, at, value, width, want)
    finally:
        shutil.rmtree(path)


def _damage_and_read(path: Path, at: int, value: int, width: int, want: list[Any]) -> None:
    seg = min(path.glob("*.seg"))
    frame = compressed_frames(seg)[0]
    start = at % frame.stored_bytes

    def change(body: bytearray) -> None:
        body[start: start + width] = bytes([value]) * len(body[start: start + width])

    edit_body(seg, frame, change)
    for reader in (_read_all, _scan_table, _read_stream):
        try:
            got = reader(path)
        except cl.CorruptionError:
            continue
        if reader is _read_all:
            assert [(e.position, e.stream, e.version, e.data) for e in got] == want
        elif reader is _scan_table:
            assert got.column("data").to_pylist() == [w[3] for w in want]
        else:
            flat = sorted((e.position, e.stream, e.version, e.data) for s in got for e in s)
            assert flat == want
