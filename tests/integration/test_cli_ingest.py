"""`chronolog ingest`: what it refuses, what it reports, and how a stopped ingest resumes."""

from __future__ import annotations

import json
import uuid
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


# ---------------------------------------------------------------- a file that changes between the passes

def open_after(change, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `change()` when ingest opens the store: after pass 1 checked the file."""
    from chronolog.cli import ingest
    real_open = ingest.EventStore.open

    def changed_then_open(*a: object, **k: object) -> cl.EventStore:
        change()
        return real_open(*a, **k)
    monkeypatch.setattr(ingest.EventStore, "open", changed_then_open)


def test_ingest_appends_only_the_lines_it_checked_when_the_file_grows_meanwhile(
        tmp_path, capsys, monkeypatch):
    src = tmp_path / "live.ndjson"
    src.write_bytes(b"".join(event(i) for i in range(25_000)))

    def producer_writes_half_a_line() -> None:
        with open(src, "ab") as f:
            f.write(b'{"stream": "s-1", "type": "T", "da')
    open_after(producer_writes_half_a_line, monkeypatch)
    code, out, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert (code, err) == (0, "")
    assert "grew by 34 bytes after it was checked; they were not ingested (they follow line 25000)" in out
    assert "ingested 25,000 events (positions 0..24,999)" in out
    events = stored(tmp_path / "s")
    assert [json.loads(e.data)["i"] for e in events] == list(range(25_000))


def test_ingest_stopped_by_a_line_changed_after_the_check_says_which_lines_are_in_the_store(
        tmp_path, capsys, monkeypatch):
    src = tmp_path / "e.ndjson"
    lines = [event(i) for i in range(25_000)]
    src.write_bytes(b"".join(lines))

    def line_15000_is_rewritten() -> None:
        bad = b'{"stream": "a"}'.ljust(len(lines[14_999]) - 1) + b"\n"  # same length, in place
        with open(src, "r+b") as f:
            f.seek(sum(map(len, lines[:14_999])))
            f.write(bad)
    open_after(line_15000_is_rewritten, monkeypatch)
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 1
    assert f"{src} line 15000: ingest stopped: not a valid event" in err
    assert "(the file changed after it was checked)" in err
    assert ("lines 1..10000 (10,000 events, positions 0..9999) were appended; the lines "
            "from 10001 on are not in the store") in err
    assert "nothing was written" not in err
    assert [json.loads(e.data)["i"] for e in stored(tmp_path / "s")] == list(range(10_000))


# ---------------------------------------------------------------- fields and ids

def test_ingest_refuses_an_unknown_field_naming_it_and_the_fields_it_knows(tmp_path, capsys):
    src = tmp_path / "e.ndjson"
    src.write_bytes(event(0) + event(1, metdata={"user": "u1"}))
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 1
    assert (f"{src} line 2: unknown field 'metdata' (the fields are: stream, type, data, "
            "metadata, id); nothing was written") in err
    assert not (tmp_path / "s").exists()


def test_ingest_refuses_an_id_that_is_not_a_uuid(tmp_path, capsys):
    src = tmp_path / "e.ndjson"
    src.write_bytes(event(0, id="order-7"))
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 1 and f"{src} line 1: id must be a UUID string" in err
    assert not (tmp_path / "s").exists()


def with_id(i: int) -> bytes:
    return event(i, id=str(uuid.UUID(int=i + 1)))


def test_ingest_stores_the_id_of_each_line_that_has_one(tmp_path, capsys):
    src = tmp_path / "e.ndjson"
    src.write_bytes(with_id(0) + event(1) + with_id(2))
    assert run_cli(capsys, "ingest", tmp_path / "s", src)[0] == 0
    assert [e.id for e in stored(tmp_path / "s")] == [uuid.UUID(int=1), None, uuid.UUID(int=3)]


def test_rerunning_an_ingest_of_lines_with_ids_writes_nothing_again(tmp_path, capsys):
    src = tmp_path / "e.ndjson"
    src.write_bytes(b"".join(with_id(i) for i in range(25_000)))  # three batches, 7 streams
    assert run_cli(capsys, "ingest", tmp_path / "s", src)[0] == 0
    code, out, _ = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 0
    assert ("lines 1..25000 (25,000 events, positions 0..24999) were already in the store, "
            "recognised by their ids; they were not written again") in out
    assert "ingested" not in out
    assert len(stored(tmp_path / "s")) == 25_000


def test_rerunning_a_stopped_ingest_of_lines_with_ids_appends_only_the_lines_not_stored(
        tmp_path, capsys):
    lines = [with_id(i) for i in range(25_000)]
    (tmp_path / "first.ndjson").write_bytes(b"".join(lines[:10_000]))  # what a stopped run stored
    assert run_cli(capsys, "ingest", tmp_path / "s", tmp_path / "first.ndjson")[0] == 0
    src = tmp_path / "e.ndjson"
    src.write_bytes(b"".join(lines))
    code, out, _ = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 0
    assert "lines 1..10000 (10,000 events, positions 0..9999) were already in the store" in out
    assert "ingested 15,000 events (positions 10,000..24,999)" in out
    events = stored(tmp_path / "s")
    assert [e.id for e in events] == [uuid.UUID(int=i + 1) for i in range(25_000)]
    assert [json.loads(e.data)["i"] for e in events] == list(range(25_000))


def test_rerunning_an_ingest_of_lines_without_ids_appends_them_again(tmp_path, capsys):
    src = tmp_path / "e.ndjson"
    src.write_bytes(event(0) + event(1))
    assert run_cli(capsys, "ingest", tmp_path / "s", src)[0] == 0
    code, out, _ = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 0 and "ingested 2 events (positions 2..3)" in out
    assert len(stored(tmp_path / "s")) == 4
