"""File permissions of created stores and behaviour on symlinked or hostile store directories
(docs/security.md)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import chronolog as cl


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            out[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return out


def test_a_new_store_is_readable_by_its_owner_only(tmp_path: Path, umask_022: None) -> None:
    root = tmp_path / "store"
    with cl.EventStore.open(root, durability="fsync", max_segment_bytes=4096) as store:
        for i in range(20):
            store.append(f"s-{i % 3}", [cl.NewEvent("T", b"x" * 400)])
    modes = _modes(root)
    assert len([n for n in modes if n.endswith(".seg")]) >= 2
    assert {n for n in modes if n.startswith("index/")} >= {"index/positions.idx", "index/streams.idx"}
    dirs = {n: m for n, m in modes.items() if (root / n).is_dir()}
    files = {n: m for n, m in modes.items() if not (root / n).is_dir()}
    assert set(dirs.values()) == {0o700}, dirs
    assert set(files.values()) == {0o600}, files


def test_a_store_reached_through_a_symlinked_directory_opens_and_reads(tmp_path: Path) -> None:
    real = tmp_path / "real"
    with cl.EventStore.open(real, durability="os") as store:
        store.append("a", [cl.NewEvent("T", b"1")])
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    with cl.EventStore.open(tmp_path / "link", durability="os") as store:
        assert [e.data for e in store.read_all()] == [b"1"]
        store.append("a", [cl.NewEvent("T", b"2")])
    with cl.EventStore.open(real, readonly=True) as store:
        assert store.head == 2


def test_a_directory_of_unrelated_files_is_not_taken_for_a_store(tmp_path: Path) -> None:
    d = tmp_path / "junk"
    d.mkdir()
    (d / "chronolog.store").write_bytes(b"#!/bin/sh\necho pwned\n")
    with pytest.raises(cl.CorruptionError):
        cl.EventStore.open(d, readonly=True)
    with pytest.raises(cl.CorruptionError):
        cl.EventStore.open(d)


def test_a_segment_of_another_store_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        with cl.EventStore.open(d, durability="os") as s:
            s.append("x", [cl.NewEvent("T", b"1")])
    (b / "00000000000000000000.seg").write_bytes((a / "00000000000000000000.seg").read_bytes())
    with pytest.raises(cl.CorruptionError):
        cl.EventStore.open(b, readonly=True)


def test_a_symlink_planted_at_an_index_temporary_file_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with cl.EventStore.open(root, durability="os") as s:
        s.append("a", [cl.NewEvent("T", b"1")])
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (root / "index" / "streams.idx.tmp").symlink_to(victim)
    with cl.EventStore.open(root, durability="os") as s:
        s.append("a", [cl.NewEvent("T", b"2")])
    assert victim.read_bytes() == b"precious"


_PLANT = {"fifo": os.mkfifo, "directory": os.mkdir, "device": lambda p: os.symlink("/dev/zero", p)}


@pytest.mark.parametrize("kind", sorted(_PLANT))
@pytest.mark.parametrize("readonly", [True, False])
@pytest.mark.parametrize("name", ["00000000000000000000.seg", "chronolog.store", "LOCK",
                                  "index/positions.idx", "index/streams.idx", "index/visible"])
def test_something_else_standing_where_a_store_keeps_a_file_never_hangs_the_open(
        tmp_path: Path, name: str, readonly: bool, kind: str,
        open_in_thread: Callable[..., object]) -> None:
    """A FIFO, a directory or a device where the store keeps a file: an open of it (even
    O_RDONLY of a FIFO) used to block forever, or raised a bare OSError. The store's data
    (segments, its header; the writer's LOCK) is refused with CorruptionError; an index file
    is derived data: readers rebuild, and the writer replaces what stands in the way of its
    visibility mark (unless it is a directory: never removed)."""
    d = tmp_path / "s"
    with cl.EventStore.open(d, durability="os") as s:
        s.append("x", [cl.NewEvent("T", b"1")])
    os.unlink(d / name)
    _PLANT[kind](str(d / name))
    got = open_in_thread(d, readonly=readonly, durability="os")
    if isinstance(got, cl.EventStore):
        with got as s:
            if not readonly:
                s.append("y", [cl.NewEvent("T", b"2")])
            got = s.head
    refused = name in ("00000000000000000000.seg", "chronolog.store") or (
        not readonly and (name == "LOCK" or (name == "index/visible" and kind == "directory")))
    # (readers take no lock: a reader never opens LOCK)
    if refused:
        assert isinstance(got, cl.CorruptionError), got
        assert "not a regular file" in str(got) and got.path.endswith(name)
    else:
        assert got == (1 if readonly else 2), got
