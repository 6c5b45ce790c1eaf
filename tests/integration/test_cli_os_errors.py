"""The command line on a full disk: one line naming the path, the OS error and what to do,
exit 1, no traceback; and `repair --salvage` that cannot copy leaves nothing behind."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

import chronolog as cl
from chronolog.cli.main import main
from chronolog.errors import StoreFailedError


def _no_space(path: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_init_on_a_full_disk_prints_one_line_naming_the_path_and_exits_1(tmp_path, capsys, monkeypatch):
    from chronolog.cli import store_info

    def open_fails(path: object, *a: object, **k: object) -> cl.EventStore:
        raise _no_space(path)
    monkeypatch.setattr(store_info.EventStore, "open", open_fails)
    assert main(["init", str(tmp_path / "new")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"chronolog: error: '{tmp_path / 'new'}': No space left on device (ENOSPC); "
                   "`chronolog init` stopped: free space on that disk and run the command again\n")


def test_ingest_into_a_new_store_on_a_full_disk_prints_one_line_and_exits_1(tmp_path, capsys, monkeypatch):
    from chronolog.cli import ingest
    src = tmp_path / "e.ndjson"
    src.write_text('{"stream": "a", "type": "T", "data": {}}\n')

    def open_fails(path: object, *a: object, **k: object) -> cl.EventStore:
        raise _no_space(path)
    monkeypatch.setattr(ingest.EventStore, "open", open_fails)
    assert main(["ingest", str(tmp_path / "new"), str(src)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"'{tmp_path / 'new'}': No space left on device (ENOSPC)" in err


def _damaged_store(path: Path) -> Path:
    with cl.EventStore.open(path, max_segment_bytes=4096) as s:
        for i in range(40):
            s.append(f"order-{i % 4}", [cl.NewEvent("T", b"%03d" % i + b"x" * 197)])
    first = min(path.glob("*.seg"))
    raw = bytearray(first.read_bytes())
    raw[64 + 324 + 100] ^= 0x01  # a sealed segment's second frame
    first.write_bytes(bytes(raw))
    return first


def _copy_runs_out_of_space(src: str, dst: str, *a: object, **k: object) -> str:
    with open(dst, "wb") as f:
        f.write(b"\0" * 100)  # part of the copy made it to disk
    raise _no_space(dst)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != "LOCK"}


def test_salvage_that_cannot_copy_the_newest_segment_removes_the_partial_copy_and_changes_nothing(
        tmp_path, monkeypatch):
    path = tmp_path / "s"
    _damaged_store(path)
    before = _tree(path)
    monkeypatch.setattr(shutil, "copyfile", _copy_runs_out_of_space)
    with pytest.raises(StoreFailedError) as info:
        cl.repair(path, salvage=True)
    assert info.value.cause.errno == errno.ENOSPC
    assert "changed nothing" in str(info.value) and "Free space" in str(info.value)
    assert list(path.glob("salvage-*")) == []
    assert _tree(path) == before


def test_salvage_after_a_failed_copy_runs_again_once_there_is_space(tmp_path, capsys, monkeypatch):
    path = tmp_path / "s"
    _damaged_store(path)
    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", _copy_runs_out_of_space)
        assert main(["repair", str(path), "--salvage"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("chronolog: error: repair --salvage changed nothing") and err.count("\n") == 1
    newest = max(path.glob("*.seg"))
    size = newest.stat().st_size
    assert main(["repair", str(path), "--salvage"]) == 0
    (aside,) = path.glob("salvage-*")
    assert (aside / f"{newest.name}.before-repair").stat().st_size == size


def test_salvage_that_finds_a_writer_in_the_way_leaves_no_salvage_directory(tmp_path, monkeypatch):
    """A writer opening the store between salvage's check and its lock: StoreLockedError, and
    the salvage directory it had begun (holding its first log line) goes too."""
    import importlib

    repair_module = importlib.import_module("chronolog.repair")  # (cl.repair is the function)

    path = tmp_path / "s"
    _damaged_store(path)
    before = _tree(path)

    def locked(p: object) -> int:
        raise cl.StoreLockedError(str(p))
    monkeypatch.setattr(repair_module, "take_lock", locked)
    with pytest.raises(cl.StoreLockedError):
        repair_module._salvage(str(path), cl.CorruptionError(str(path), 0, "found"))
    assert list(path.glob("salvage-*")) == []
    assert _tree(path) == before
