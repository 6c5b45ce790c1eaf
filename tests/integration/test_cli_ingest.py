"""`chronolog ingest`: what it refuses, what it reports, and how a stopped ingest resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import chronolog as cl
from chronolog.cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def event(i: int, **extra: object) -> bytes:
    return json.dumps({"stream": f"s-{i % 7}", "type": "T", "data": {"i": i}, **extra}).encode() + b"\n"


def stored(path: Path) -> list[cl.RecordedEvent]:
    with cl.EventStore.open(path, readonly=True) as store:
        return list(store.read_all())


# ---------------------------------------------------------------- encoding

def test_ingest_refuses_a_latin1_stream_name_naming_the_line_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "latin1.ndjson"
    src.write_bytes(event(0) + b'{"stream": "caf\xe9", "type": "T", "data": {}}\n')
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 1
    assert f"{src} line 2: byte 0xe9 in a string is not UTF-8" in err
    assert "nothing was written" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_ingest_refuses_non_utf8_bytes_inside_a_data_object(tmp_path, capsys):
    src = tmp_path / "latin1.ndjson"
    src.write_bytes(event(0) + event(1) + b'{"stream": "a", "type": "T", "data": {"x": "caf\xe9"}}\n')
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 1
    assert f"{src} line 3: byte 0xe9 in data is not UTF-8" in err
    assert not (tmp_path / "s").exists()


def test_ingest_skips_a_utf8_byte_order_mark_at_the_start_of_the_file(tmp_path, capsys):
    src = tmp_path / "bom.ndjson"
    src.write_bytes(b"\xef\xbb\xbf" + event(0) + event(1))
    code, out, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert (code, err) == (0, "")
    assert "ingested 2 events" in out
    assert [e.stream for e in stored(tmp_path / "s")] == ["s-0", "s-1"]


def test_ingest_refuses_a_byte_order_mark_after_the_first_line(tmp_path, capsys):
    src = tmp_path / "bom.ndjson"
    src.write_bytes(event(0) + b"\xef\xbb\xbf" + event(1))
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 1 and "line 2: not valid JSON" in err
