"""`chronolog ingest`: what it refuses, what it reports, and how a stopped ingest resumes."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import uuid
from pathlib import Path

import pytest

import chronolog as cl
from chronolog.cli.main import main
from chronolog.errors import StoreFailedError


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


# ---------------------------------------------------------------- a stopped ingest and --skip

def fail_on_append(n: int, exc: BaseException, monkeypatch: pytest.MonkeyPatch, *,
                   after_commit: bool = False) -> None:
    """The n-th append_batch raises `exc`: before it writes, or once it has committed."""
    real = cl.EventStore.append_batch
    calls = []

    def append_batch(self: cl.EventStore, *a: object, **k: object) -> cl.AppendResult:
        calls.append(1)
        if len(calls) == n and not after_commit:
            raise exc
        res = real(self, *a, **k)
        if len(calls) == n:
            raise exc
        return res
    monkeypatch.setattr(cl.EventStore, "append_batch", append_batch)


def resume_command(err: str) -> list[str]:
    match = re.search(r"resume with `chronolog (ingest [^`]*)`", err)
    assert match, err
    return shlex.split(match[1])


def test_ingest_stopped_by_a_full_disk_says_which_lines_are_stored_and_resumes_with_skip(
        tmp_path, capsys, monkeypatch):
    src = tmp_path / "e.ndjson"
    src.write_bytes(b"".join(event(i) for i in range(25_000)))
    store = tmp_path / "s"
    with monkeypatch.context() as m:
        fail_on_append(3, StoreFailedError(str(store), OSError(errno.ENOSPC, "No space left on device")), m)
        code, _, err = run_cli(capsys, "ingest", store, src)
    assert code == 1 and err.count("\n") == 1
    assert (f"{src} line 20001: ingest stopped: the store stopped accepting writes ([Errno 28] No "
            "space left on device); free space or fix the cause; lines 1..20000 (20,000 events, "
            "positions 0..19999) were appended; the lines from 20001 on are not in the store; "
            f"resume with `chronolog ingest {store} {src} --skip 20000`") in err
    assert len(stored(store)) == 20_000
    code, out, _ = run_cli(capsys, *resume_command(err))
    assert code == 0 and "ingested 5,000 events (positions 20,000..24,999)" in out
    assert [json.loads(e.data)["i"] for e in stored(store)] == list(range(25_000))


def test_ingest_interrupted_before_a_batch_is_written_exits_130_and_counts_what_is_stored(
        tmp_path, capsys, monkeypatch):
    src = tmp_path / "e.ndjson"
    src.write_bytes(b"".join(event(i) for i in range(25_000)))
    with monkeypatch.context() as m:
        fail_on_append(2, KeyboardInterrupt(), m)
        code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 130
    assert (f"chronolog: error: {src} line 10001: ingest stopped: interrupted; lines 1..10000 "
            "(10,000 events, positions 0..9999) were appended") in err
    assert resume_command(err)[-2:] == ["--skip", "10000"]
    assert len(stored(tmp_path / "s")) == 10_000


def test_ingest_interrupted_just_after_a_batch_committed_counts_that_batch(
        tmp_path, capsys, monkeypatch):
    src = tmp_path / "e.ndjson"
    src.write_bytes(b"".join(event(i) for i in range(25_000)))
    with monkeypatch.context() as m:
        fail_on_append(2, KeyboardInterrupt(), m, after_commit=True)
        code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 130
    assert "lines 1..20000 (20,000 events, positions 0..19999) were appended" in err
    assert len(stored(tmp_path / "s")) == 20_000
    assert run_cli(capsys, *resume_command(err))[0] == 0
    assert [json.loads(e.data)["i"] for e in stored(tmp_path / "s")] == list(range(25_000))


def test_ingest_with_skip_neither_checks_nor_appends_the_skipped_lines(tmp_path, capsys):
    src = tmp_path / "e.ndjson"
    src.write_bytes(b"not json\n" + event(1) + b"\n" + event(3))
    code, out, _ = run_cli(capsys, "ingest", tmp_path / "s", src, "--skip", "1")
    assert code == 0 and "ingested 2 events" in out
    assert [json.loads(e.data)["i"] for e in stored(tmp_path / "s")] == [1, 3]


@pytest.mark.parametrize(("skip", "message"), [
    ("3", "--skip 3: {src} has 2 lines; nothing was written"),
    ("-1", "--skip must be 0 or more lines, got -1"),
])
def test_ingest_refuses_a_skip_past_the_end_of_the_file_or_below_zero(tmp_path, capsys, skip, message):
    src = tmp_path / "e.ndjson"
    src.write_bytes(event(0) + event(1))
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src, "--skip", skip)
    assert (code, err) == (1, "chronolog: error: " + message.format(src=src) + "\n")
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- stdin

def test_ingest_of_stdin_is_refused_saying_why_and_how_to_work_around_it(tmp_path, capsys):
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", "-")
    assert code == 1
    assert "'-' is stdin, and ingest reads FILE twice" in err and "write the events to a file first" in err
    assert not (tmp_path / "s").exists()


def test_ingest_of_a_named_pipe_is_refused_before_it_is_read(tmp_path, capsys):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)  # opening it to read would block: the refusal must come first
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", fifo)
    assert code == 1 and f"'{fifo}' is a pipe, and ingest reads FILE twice" in err


def test_a_batch_the_store_recognises_by_its_ids_is_reported_as_not_written(tmp_path, capsys):
    """A re-run is recognised from line 1's id; when line 1 has none, a later batch whose
    events all carry ids can still be taken by the store for a retry of its last append to
    their stream: it writes nothing and returns that append's positions, which the summary
    once counted as appended."""
    n = 10_001  # two batches: lines 1..10000 (line 1 without an id) and line 10001 alone
    ids = [None] + [str(uuid.UUID(int=i)) for i in range(2, n + 1)]
    lines = [json.dumps({"stream": "t" if i == n else "s", "type": "T", "data": {"i": i},
                         **({"id": ids[i - 1]} if ids[i - 1] else {})}) for i in range(1, n + 1)]
    src = tmp_path / "e.ndjson"
    src.write_text("\n".join(lines) + "\n")
    assert run_cli(capsys, "ingest", tmp_path / "s", src)[0] == 0
    code, out, _ = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 0
    flat = " ".join(out.split())
    assert "lines 10001..10001 (1 event, positions 10000..10000) were already in the store: " \
           "the store recognised their ids" in flat, flat
    assert "ingested 10,000 events (positions 10,001..20,000)" in flat, flat
    events = stored(tmp_path / "s")
    assert len(events) == 20_001 and [e.stream for e in events].count("t") == 1
