"""Damage to the derived files (index/positions.idx, index/streams.idx): deleted, truncated at
many lengths, or a byte changed at every offset. Reopening must rebuild what it cannot trust
and answer every query exactly as before: read_all, read_stream of every stream (forwards and
backwards), stream_version of every stream and streams().
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _scratch import ram_dir

import chronolog as cl

INDEX_FILES = ("positions.idx", "streams.idx")
HEADER_BYTES = 64


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """Scratch space in RAM when /dev/shm is there (hundreds of copies of a small store)."""
    with ram_dir(tmp_path, "chronolog-idx-") as d:
        yield d


def build_store(store_dir: Path) -> None:
    """A closed store over several segments whose checkpoints cover everything."""
    rng = random.Random(5)
    with cl.EventStore.open(store_dir, durability="os", max_segment_bytes=4096) as store:
        for i in range(40):
            if i % 5 == 4:
                store.append_batch([f"s-{rng.randint(0, 5)}" for _ in range(3)], ["B"] * 3,
                                   [rng.randbytes(rng.randint(0, 300)) for _ in range(3)])
            else:
                store.append(f"s-{rng.randint(0, 5)}" if i % 7 else "ünï-€",
                             [cl.NewEvent("A", rng.randbytes(rng.randint(0, 400)))])


def answers(store_dir: Path) -> dict[str, Any]:
    """Every query's answer, as plain values."""
    with cl.EventStore.open(store_dir, durability="os") as store:
        def t(e: cl.RecordedEvent) -> tuple[Any, ...]:
            return (e.position, e.stream, e.version, e.type, e.data, e.metadata, e.timestamp)
        names = store.streams()
        return {
            "head": store.head,
            "all": [t(e) for e in store.read_all()],
            "streams": names,
            "versions": {s: store.stream_version(s) for s in names},
            "by_stream": {s: [t(e) for e in store.read_stream(s)] for s in names},
            "backwards": {s: [e.version for e in store.read_stream(s, backwards=True)] for s in names},
            "missing": store.stream_version("never-written"),
        }


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    d = tmp_path_factory.mktemp("idx-template") / "store"
    build_store(d)
    for name in INDEX_FILES:
        assert (d / "index" / name).stat().st_size > HEADER_BYTES, name
    return d, answers(d)


def _damaged_copy(template: Path, dest: Path, name: str, how: str, at: int) -> Path:
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("LOCK"))
    f = dest / "index" / name
    if how == "delete":
        f.unlink()
    elif how == "truncate":
        os.truncate(f, at)
    else:
        raw = bytearray(f.read_bytes())
        raw[at] ^= 0xA5
        f.write_bytes(bytes(raw))
    return dest


def _check(template: tuple[Path, dict[str, Any]], tmp: Path, name: str, how: str,
           offsets: list[int]) -> None:
    src, want = template
    for at in offsets:
        d = _damaged_copy(src, tmp / f"{name}-{how}-{at}", name, how, at)
        assert answers(d) == want, f"{name} {how} at {at}: answers differ after the rebuild"
        assert answers(d) == want, f"{name} {how} at {at}: answers differ on the second open"
        shutil.rmtree(d)


@pytest.mark.parametrize("name", INDEX_FILES)
def test_a_deleted_index_file_is_rebuilt_and_every_query_answers_as_before(
        template: tuple[Path, dict[str, Any]], tmp_path: Path, name: str) -> None:
    _check(template, tmp_path, name, "delete", [0])


def test_both_index_files_deleted_are_rebuilt_and_every_query_answers_as_before(
        template: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    d = shutil.copytree(template[0], tmp_path / "both", ignore=shutil.ignore_patterns("LOCK"))
    shutil.rmtree(d / "index")
    assert answers(d) == template[1]


@pytest.mark.parametrize("name", INDEX_FILES)
def test_an_index_file_truncated_at_any_length_is_rebuilt_and_answers_as_before(
        template: tuple[Path, dict[str, Any]], tmp_path: Path, name: str) -> None:
    size = (template[0] / "index" / name).stat().st_size
    _check(template, tmp_path, name, "truncate", list(range(0, size, 3)))


@pytest.mark.parametrize("name", INDEX_FILES)
def test_an_index_header_with_any_byte_changed_is_rebuilt_and_answers_as_before(
        template: tuple[Path, dict[str, Any]], tmp_path: Path, name: str) -> None:
    _check(template, tmp_path, name, "flip", list(range(HEADER_BYTES)))


def test_a_stream_index_body_with_any_byte_changed_answers_as_before(
        template: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    size = (template[0] / "index" / "streams.idx").stat().st_size
    _check(template, tmp_path, "streams.idx", "flip", list(range(HEADER_BYTES, size)))


def test_a_stream_index_directory_and_names_with_any_byte_changed_answer_as_before(
        template: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    # The layout of checkpoint.pyx: slots (a power of two >= 2n, at least 8, u32 each), the slot
    # CRC table (u32 per 16384 slots, padded to 8 B), the chunk table (16 B per 1024
    # streams), the directory (32 B per stream), then the names.
    raw = (template[0] / "index" / "streams.idx").read_bytes()
    n_streams = int.from_bytes(raw[40:48], "little")
    names_bytes = int.from_bytes(raw[48:52], "little")
    slots = 8
    while slots < 2 * n_streams:
        slots *= 2
    chunks = (n_streams + 1023) // 1024
    crc_table = (4 * ((slots + 16383) // 16384) + 7) // 8 * 8
    end = HEADER_BYTES + 4 * slots + crc_table + 16 * chunks + 32 * n_streams + names_bytes
    assert end < len(raw)  # positions follow
    _check(template, tmp_path, "streams.idx", "flip", list(range(HEADER_BYTES, end)))


def test_a_position_index_body_with_any_byte_changed_answers_as_before(
        template: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    size = (template[0] / "index" / "positions.idx").stat().st_size
    _check(template, tmp_path, "positions.idx", "flip", list(range(HEADER_BYTES, size)))
