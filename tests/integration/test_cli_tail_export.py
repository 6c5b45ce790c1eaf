"""`chronolog tail` (follow a store as JSON lines) and `chronolog export` (events to Parquet)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_cli import run_cli, small_store

import chronolog as cl


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


# ---------------------------------------------------------------- tail

def test_tail_from_a_position_prints_the_history_as_dump_does_then_stops_when_idle(tmp_path, capsys):
    small_store(tmp_path / "s")
    code, out, _ = run_cli(capsys, "tail", tmp_path / "s", "--from", "1", "--idle", "0.2")
    assert code == 0
    _, dumped, _ = run_cli(capsys, "dump", tmp_path / "s", "--from", "1")
    assert out == dumped and [e["position"] for e in _lines(out)] == [1, 2, 3, 4]


def test_tail_prints_only_events_appended_while_it_runs_by_default(tmp_path, capsys, monkeypatch):
    small_store(tmp_path / "s")
    store = cl.EventStore.open(tmp_path / "s", durability="os")
    subscribed = threading.Event()
    subscribe = cl.EventStore.subscribe

    def spy(self: cl.EventStore, *a: object, **kw: object) -> object:
        sub = subscribe(self, *a, **kw)
        subscribed.set()
        return sub

    monkeypatch.setattr(cl.EventStore, "subscribe", spy)

    def later() -> None:
        subscribed.wait(30)
        for i in range(3):
            store.append(f"late-{i}", [cl.NewEvent("Late", b'{"i": %d}' % i)])

    writer = threading.Thread(target=later)
    writer.start()
    try:
        code, out, _ = run_cli(capsys, "tail", tmp_path / "s", "--limit", "3", "--idle", "20")
    finally:
        writer.join()
        store.close()
    assert code == 0
    assert [(e["position"], e["stream"], e["data"]) for e in _lines(out)] == [
        (5, "late-0", '{"i": 0}'), (6, "late-1", '{"i": 1}'), (7, "late-2", '{"i": 2}')]


def test_tail_last_n_and_a_type_filter(tmp_path, capsys):
    small_store(tmp_path / "s")
    _, out, _ = run_cli(capsys, "tail", tmp_path / "s", "--last", "2", "--idle", "0.1")
    assert [e["position"] for e in _lines(out)] == [3, 4]
    _, out, _ = run_cli(capsys, "tail", tmp_path / "s", "--from", "0", "--type", "Paid",
                        "--idle", "0.1")
    assert [(e["position"], e["type"]) for e in _lines(out)] == [(2, "Paid"), (3, "Paid")]


@pytest.mark.parametrize("argv,message", [
    (["--from", "1", "--last", "1"], "give --from or --last, not both"),
    (["--idle", "nan"], "--idle must be a number of seconds >= 0"),
    (["--from", "-1"], "--from must be >= 0"),
])
def test_tail_refuses_bad_options_with_a_message(tmp_path, capsys, argv, message):
    small_store(tmp_path / "s")
    code, out, err = run_cli(capsys, "tail", tmp_path / "s", *argv)
    assert code == 1 and message in err and out == ""


def test_tail_in_another_process_follows_the_writer(tmp_path):
    # The second event is appended only after the child printed the first: it was followed.
    small_store(tmp_path / "s")
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        child = subprocess.Popen(
            [sys.executable, "-c", "from chronolog.cli.main import main; raise SystemExit(main())",
             "tail", str(tmp_path / "s"), "--from", "5", "--limit", "2", "--idle", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            store.append("order-9", [cl.NewEvent("Placed", b"{}")])
            first = child.stdout.readline() if child.stdout else ""
            store.append("order-9", [cl.NewEvent("Paid", b"{}")])
            rest, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == 0, err
    assert [(e["position"], e["type"], e["version"]) for e in _lines(first + rest)] == [
        (5, "Placed", 0), (6, "Paid", 1)]


# ---------------------------------------------------------------- export

def test_export_writes_every_event_with_the_scan_columns(tmp_path, capsys):
    small_store(tmp_path / "s")
    code, out, _ = run_cli(capsys, "export", tmp_path / "s", tmp_path / "e.parquet")
    assert code == 0 and "exported 5 events" in out
    with cl.EventStore.open(tmp_path / "s", readonly=True) as store:
        assert pq.read_table(tmp_path / "e.parquet").equals(store.scan_table())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.parquet", "s"]


def test_export_of_a_range_filtered_with_some_columns_equals_that_scan(tmp_path, capsys):
    small_store(tmp_path / "s")
    code, _, _ = run_cli(capsys, "export", tmp_path / "s", tmp_path / "e.parquet", "--from", "1",
                         "--to", "4", "--type", "Paid", "--type", "Shipped",
                         "--columns", "position,stream,type", "--compression", "none")
    assert code == 0
    table = pq.read_table(tmp_path / "e.parquet")
    with cl.EventStore.open(tmp_path / "s", readonly=True) as store:
        assert table.equals(store.scan_table(1, 4, types=["Paid", "Shipped"],
                                             columns=["position", "stream", "type"]))
    assert table.column("position").to_pylist() == [2, 3]


def test_export_replaces_an_existing_file_and_reports_json(tmp_path, capsys):
    small_store(tmp_path / "s")
    (tmp_path / "e.parquet").write_bytes(b"old")
    code, out, _ = run_cli(capsys, "export", tmp_path / "s", tmp_path / "e.parquet", "--json")
    figures = json.loads(out)
    assert code == 0 and figures["events"] == 5
    assert figures["bytes"] == (tmp_path / "e.parquet").stat().st_size
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 5


@pytest.mark.parametrize("out,message", [("missing-dir/e.parquet", "does not exist; create it"),
                                         ("s", "is a directory")])
def test_export_refuses_an_output_it_cannot_write(tmp_path, capsys, out, message):
    small_store(tmp_path / "s")
    code, _, err = run_cli(capsys, "export", tmp_path / "s", tmp_path / out)
    assert code == 1 and message in err


def test_an_export_that_fails_midway_leaves_the_old_file_and_no_scratch_file(
        tmp_path, capsys, monkeypatch):
    small_store(tmp_path / "s")
    (tmp_path / "e.parquet").write_bytes(b"the previous export")

    def full(self: object, table: object, *a: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    code, _, err = run_cli(capsys, "export", tmp_path / "s", tmp_path / "e.parquet")
    assert code == 1 and "No space left on device" in err and "left as it was" in err
    assert (tmp_path / "e.parquet").read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.parquet", "s"]


def test_an_export_of_a_damaged_store_reports_the_corruption_and_writes_nothing(tmp_path, capsys):
    ends = small_store(tmp_path / "s")
    seg = Path(tmp_path / "s" / "00000000000000000000.seg")
    raw = bytearray(seg.read_bytes())
    raw[ends[0] + 60] ^= 0xFF  # the second frame's body
    seg.write_bytes(bytes(raw))
    code, _, err = run_cli(capsys, "export", tmp_path / "s", tmp_path / "e.parquet")
    assert code == 1 and "corruption" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


@pytest.mark.parametrize("command", ["dump", "tail"])
def test_damage_found_while_printing_is_reported_as_corruption_not_as_an_output_failure(
        tmp_path, capsys, command):
    # CorruptionError is an OSError too: dump took it for its output failing.
    ends = small_store(tmp_path / "s")
    seg = Path(tmp_path / "s" / "00000000000000000000.seg")
    raw = bytearray(seg.read_bytes())
    raw[ends[0] + 60] ^= 0xFF
    seg.write_bytes(bytes(raw))
    argv = ["--from", "0"] + (["--idle", "0.1"] if command == "tail" else [])
    code, _, err = run_cli(capsys, command, tmp_path / "s", *argv)
    assert code == 1 and "corruption in" in err and "cannot write" not in err


def test_export_batches_are_sized_by_bytes_so_memory_does_not_grow_with_event_size(
        tmp_path, capsys, monkeypatch):
    # 65,536 rows per batch whatever their size took 3 GB for 1 MiB events; rows per batch
    # now come from the mean event size (here scaled down: 8 KiB per batch, ~1 KiB events).
    from chronolog.cli import export as export_cli

    monkeypatch.setattr(export_cli, "EXPORT_BATCH_BYTES", 8 << 10)
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        store.append_batch(["s"] * 200, ["T"] * 200, [bytes([i % 256]) * 1000 for i in range(200)])
    code, _, _ = run_cli(capsys, "export", tmp_path / "s", tmp_path / "e.parquet")
    meta = pq.ParquetFile(tmp_path / "e.parquet").metadata
    rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert code == 0 and sum(rows) == 200
    assert max(rows) <= 8 and len(rows) >= 25


def test_export_through_a_symlink_replaces_the_file_it_names_and_keeps_the_link(tmp_path, capsys):
    small_store(tmp_path / "s")
    (tmp_path / "real.parquet").write_bytes(b"old")
    (tmp_path / "link.parquet").symlink_to(tmp_path / "real.parquet")
    code, _, _ = run_cli(capsys, "export", tmp_path / "s", tmp_path / "link.parquet")
    assert code == 0 and (tmp_path / "link.parquet").is_symlink()
    assert pq.read_table(tmp_path / "real.parquet").num_rows == 5


def test_export_refuses_an_output_that_is_not_a_regular_file(tmp_path, capsys):
    small_store(tmp_path / "s")
    os.mkfifo(tmp_path / "pipe")
    code, _, err = run_cli(capsys, "export", tmp_path / "s", tmp_path / "pipe")
    assert code == 1 and "not a regular file" in err
    assert (tmp_path / "pipe").is_fifo()
