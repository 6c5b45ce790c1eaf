"""The command line on a full disk: one line naming the path, the OS error and what to do,
exit 1, no traceback; and `repair --salvage` that cannot copy leaves nothing behind."""

from __future__ import annotations

import errno
import os

import chronolog as cl
from chronolog.cli.main import main


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
