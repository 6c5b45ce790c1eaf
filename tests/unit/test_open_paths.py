"""What EventStore.open says about a path that cannot be a store, before it creates anything:
a file, a path through a file, an empty or non-str path, a directory it may not use; a store
whose header is gone while its segments remain (a new header would orphan them); and the
derived index/ replaced by something else (removed and rebuilt)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import chronolog as cl
from chronolog._core.fileio import FileIO
from chronolog.errors import InvalidArgumentError, StoreAccessError, StoreNotFoundError


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("case", ["file", "through-a-file"])
def test_a_path_that_is_or_goes_through_a_file_is_refused(tmp_path: Path, case: str,
                                                           readonly: bool) -> None:
    (tmp_path / "f").write_bytes(b"not a store")
    path = tmp_path / "f" if case == "file" else tmp_path / "f" / "sub"
    with pytest.raises(InvalidArgumentError, match="is a file, not a directory" if case == "file"
                       else "a part of it is a file"):
        cl.EventStore.open(path, readonly=readonly)
    assert _listing(tmp_path) == ["f"] and (tmp_path / "f").read_bytes() == b"not a store"


@pytest.mark.parametrize("path,message", [
    ("", "got ''"), (None, "got NoneType"), (7, "got int"), (b"/tmp/x", "decode it with os.fsdecode"),
])
def test_a_path_that_is_not_a_non_empty_str_is_refused(path: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        cl.EventStore.open(path)


def test_a_directory_the_process_may_not_look_into_is_an_access_error_not_a_missing_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s"
    cl.EventStore.open(path, durability="os").close()
    real_stat = os.stat

    def stat(p: Any, *a: Any, **kw: Any) -> os.stat_result:
        if os.fspath(p) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(p, *a, **kw)

    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(StoreAccessError, match="permission denied on") as info:
        cl.EventStore.open(path, readonly=True)
    assert info.value.denied == str(path)


def test_a_segment_the_process_may_not_open_is_an_access_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os") as s:
        s.append("a", [cl.NewEvent("T", b"")])
    io = FileIO()
    io.inject("open", after=0, errno=errno.EACCES)
    for readonly in (True, False):
        io.inject("open", after=0, errno=errno.EACCES)
        with pytest.raises(StoreAccessError) as info:
            cl.EventStore.open(path, readonly=readonly, io=io)
        assert info.value.denied.endswith(".seg")
    with cl.EventStore.open(path) as s:  # the refused writer released the lock
        assert s.head == 1


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_whose_header_is_gone_while_segments_remain_is_refused_and_left_as_it_is(
        tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os") as s:
        s.append("a", [cl.NewEvent("T", b"1")])
    header = (path / "chronolog.store").read_bytes()
    (path / "chronolog.store").unlink()
    before = _listing(path)
    with pytest.raises(cl.CorruptionError, match="the store header is missing, but 1 segment"):
        cl.EventStore.open(path, readonly=readonly)
    assert not (path / "chronolog.store").exists()
    assert set(_listing(path)) - set(before) <= {"LOCK"}
    (path / "chronolog.store").write_bytes(header)  # restored from a backup: all is there
    with cl.EventStore.open(path, readonly=True) as r:
        assert [e.data for e in r.read_all()] == [b"1"]


def test_an_empty_directory_is_still_a_new_store_and_a_missing_one_still_not_found(
        tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        cl.EventStore.open(tmp_path / "missing", readonly=True)
    (tmp_path / "empty").mkdir()
    with cl.EventStore.open(tmp_path / "empty", durability="os") as s:
        assert s.append("a", [cl.NewEvent("T", b"")]).first_position == 0


@pytest.mark.parametrize("what", ["file", "symlink"])
def test_an_index_that_is_not_a_directory_is_removed_and_rebuilt(tmp_path: Path, what: str) -> None:
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os") as s:
        s.append_batch(["a", "b", "a"], ["T"] * 3, [b"1", b"2", b"3"])
    shutil.rmtree(path / "index")
    if what == "file":
        (path / "index").write_bytes(b"junk")
    else:
        (tmp_path / "elsewhere").mkdir()
        (path / "index").symlink_to(tmp_path / "elsewhere")
    with cl.EventStore.open(path, durability="os") as s:
        assert [e.data for e in s.read_stream("a")] == [b"1", b"3"]
    assert (path / "index").is_dir() and not (path / "index").is_symlink()
    if what == "symlink":
        assert list((tmp_path / "elsewhere").iterdir()) == []


def test_compact_of_a_directory_without_a_store_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        cl.compact(tmp_path / "nothing-here")
    assert not (tmp_path / "nothing-here").exists()
