"""The `chronolog` command line, subcommand by subcommand, on small stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import chronolog as cl
from chronolog.cli.main import NOT_AVAILABLE, main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def fill(path: Path, batches: list[list[tuple[str, str, bytes]]]) -> list[int]:
    """Append each batch as one append_batch; return the segment size after each (= where
    the next frame starts)."""
    ends = []
    with cl.EventStore.open(path, durability="os") as store:
        for batch in batches:
            streams, types, datas = zip(*batch)
            store.append_batch(list(streams), list(types), list(datas))
            ends.append(os.path.getsize(path / "00000000000000000000.seg"))
    return ends


def small_store(path: Path) -> list[int]:
    return fill(path, [
        [("order-1", "Placed", b'{"n": 0}'), ("order-2", "Placed", b'{"n": 1}')],
        [("order-1", "Paid", b'{"n": 2}')],
        [("order-2", "Paid", b'{"n": 3}'), ("order-1", "Shipped", b'{"n": 4}')],
    ])


# ---------------------------------------------------------------- init and info

def test_init_creates_a_store_that_opens_with_no_events(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "init", tmp_path / "s")
    assert code == 0
    assert "created" in out
    with cl.EventStore.open(tmp_path / "s", readonly=True) as store:
        assert store.head == 0


def test_init_on_an_existing_store_keeps_its_events(tmp_path, capsys):
    small_store(tmp_path / "s")
    code, out, _ = run_cli(capsys, "init", tmp_path / "s")
    assert code == 0
    assert "already exists (5 events)" in out
    with cl.EventStore.open(tmp_path / "s", readonly=True) as store:
        assert store.head == 5


def test_info_json_reports_events_streams_and_segment_bytes(tmp_path, capsys):
    small_store(tmp_path / "s")
    code, out, _ = run_cli(capsys, "info", tmp_path / "s", "--json")
    info = json.loads(out)
    assert code == 0
    assert (info["events"], info["streams"], info["segments"]) == (5, 2, 1)
    assert info["bytes"] == os.path.getsize(tmp_path / "s" / "00000000000000000000.seg")
    assert info["format_version"] == 3


def test_info_table_shows_the_event_count(tmp_path, capsys):
    fill(tmp_path / "s", [[(f"s-{i % 7}", "T", b"x") for i in range(1234)]])
    code, out, _ = run_cli(capsys, "info", tmp_path / "s")
    assert code == 0
    assert "events (head)" in out and "1,234" in out


def test_info_on_a_directory_without_a_store_exits_1_and_says_so(tmp_path, capsys):
    code, out, err = run_cli(capsys, "info", tmp_path)
    assert code == 1
    assert "no Chronolog store" in err
    assert out == ""


# ---------------------------------------------------------------- verify

def test_verify_of_a_sound_store_exits_0(tmp_path, capsys):
    small_store(tmp_path / "s")
    code, out, _ = run_cli(capsys, "verify", tmp_path / "s")
    assert code == 0
    assert "OK" in out


def test_verify_of_a_flipped_byte_exits_1_naming_segment_and_frame_offset(tmp_path, capsys):
    ends = small_store(tmp_path / "s")
    seg = tmp_path / "s" / "00000000000000000000.seg"
    raw = bytearray(seg.read_bytes())
    raw[ends[0] + 60] ^= 0xFF  # inside the second frame's body
    seg.write_bytes(bytes(raw))
    code, out, _ = run_cli(capsys, "verify", tmp_path / "s", "--json")
    report = json.loads(out)
    assert code == 1
    assert report["ok"] is False
    assert report["problems"][0]["segment"] == "00000000000000000000.seg"
    assert report["problems"][0]["offset"] == ends[0]


def test_verify_table_output_names_the_first_problem(tmp_path, capsys):
    ends = small_store(tmp_path / "s")
    seg = tmp_path / "s" / "00000000000000000000.seg"
    raw = bytearray(seg.read_bytes())
    raw[ends[1] + 60] ^= 0x01  # inside the third frame's body
    seg.write_bytes(bytes(raw))
    code, out, _ = run_cli(capsys, "verify", tmp_path / "s")
    assert code == 1
    assert f"segment 00000000000000000000.seg at offset {ends[1]}" in out


def test_verify_finds_damage_in_the_newest_segment_after_the_index_is_deleted(tmp_path, capsys):
    ends = small_store(tmp_path / "s")
    seg = tmp_path / "s" / "00000000000000000000.seg"
    raw = bytearray(seg.read_bytes())
    raw[ends[0] + 60] ^= 0xFF
    seg.write_bytes(bytes(raw))
    for name in os.listdir(tmp_path / "s" / "index"):
        os.unlink(tmp_path / "s" / "index" / name)
    code, _, _ = run_cli(capsys, "verify", tmp_path / "s", "--json")
    assert code == 1


# ---------------------------------------------------------------- dump

def test_dump_prints_every_event_as_a_json_line_in_position_order(tmp_path, capsys):
    small_store(tmp_path / "s")
    code, out, _ = run_cli(capsys, "dump", tmp_path / "s")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [e["position"] for e in lines] == [0, 1, 2, 3, 4]
    assert lines[2] == {**lines[2], "stream": "order-1", "version": 1, "type": "Paid",
                        "data": '{"n": 2}', "metadata": "", "id": None}


def test_dump_of_one_stream_starts_at_from_version_and_stops_at_limit(tmp_path, capsys):
    small_store(tmp_path / "s")
    code, out, _ = run_cli(capsys, "dump", tmp_path / "s", "--stream", "order-1",
                           "--from", "1", "--limit", "1")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [(e["stream"], e["version"], e["type"]) for e in lines] == [("order-1", 1, "Paid")]


def test_dump_from_a_position_with_a_limit_prints_that_window(tmp_path, capsys):
    small_store(tmp_path / "s")
    _, out, _ = run_cli(capsys, "dump", tmp_path / "s", "--from", "3", "--limit", "5")
    assert [json.loads(line)["position"] for line in out.splitlines()] == [3, 4]


def test_dump_shows_data_that_is_not_utf8_as_base64(tmp_path, capsys):
    fill(tmp_path / "s", [[("bin-1", "Blob", b"\xff\x00\xfe")]])
    _, out, _ = run_cli(capsys, "dump", tmp_path / "s")
    event = json.loads(out)
    assert "data" not in event
    assert event["data_base64"] == "/wD+"


def test_dump_with_a_negative_limit_exits_1_with_a_message(tmp_path, capsys):
    small_store(tmp_path / "s")
    code, _, err = run_cli(capsys, "dump", tmp_path / "s", "--limit", "-1")
    assert code == 1
    assert "--limit must be >= 0" in err


def test_dump_into_a_full_output_exits_1_with_a_message_not_a_traceback(tmp_path):
    fill(tmp_path / "s", [[("a", "T", b"x" * 200)] * 2000])
    with open("/dev/full", "w") as full:  # (Linux: every write fails with ENOSPC)
        done = subprocess.run([sys.executable, "-m", "chronolog.cli.main", "dump", str(tmp_path / "s")],
                              stdout=full, stderr=subprocess.PIPE, text=True, check=False)
    assert (done.returncode, done.stderr.strip()) == (
        1, "chronolog: error: cannot write the dump to its output: No space left on device")


@pytest.mark.parametrize("make", ["file", "empty-name"])
def test_init_of_a_path_that_cannot_be_a_store_exits_1_with_a_message(tmp_path, capsys, make):
    path = tmp_path / "f"
    path.write_text("x")
    code, _, err = run_cli(capsys, "init", path if make == "file" else "")
    assert code == 1
    assert ("is a file, not a directory" if make == "file" else "path must name") in err
    assert path.read_text() == "x"


# ---------------------------------------------------------------- ingest

def write_ndjson(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_ingest_appends_every_line_in_file_order(tmp_path, capsys):
    src = write_ndjson(tmp_path / "in.ndjson", [
        {"stream": "cart-1", "type": "Added", "data": {"sku": "A", "qty": 2}},
        {"stream": "cart-2", "type": "Added", "data": "plain text", "metadata": {"by": "me"}},
        {"stream": "cart-1", "type": "Removed", "data": {"sku": "A"}},
    ])
    code, out, _ = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 0
    assert "ingested 3 events" in out
    with cl.EventStore.open(tmp_path / "s", readonly=True) as store:
        events = list(store.read_all())
    assert [(e.stream, e.version, e.type) for e in events] == [
        ("cart-1", 0, "Added"), ("cart-2", 0, "Added"), ("cart-1", 1, "Removed")]
    assert json.loads(events[0].data) == {"sku": "A", "qty": 2}
    assert events[1].data == b"plain text"
    assert json.loads(events[1].metadata) == {"by": "me"}
    assert events[2].metadata == b""


def test_ingest_with_one_bad_line_writes_nothing_and_names_the_line(tmp_path, capsys):
    rows: list[object] = [{"stream": "a", "type": "T", "data": {}}] * 5
    rows.append({"stream": "a", "type": "T"})  # no data
    src = write_ndjson(tmp_path / "in.ndjson", rows)
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 1
    assert "line 6" in err and "nothing was written" in err
    assert not (tmp_path / "s").exists()


def test_ingest_refuses_a_line_that_is_not_json(tmp_path, capsys):
    src = write_ndjson(tmp_path / "in.ndjson", ['{"stream": "a", "type": "T", "data": {}}',
                                                 "{oops"])
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 1
    assert "line 2: not valid JSON" in err


def test_ingest_refuses_a_number_as_data(tmp_path, capsys):
    src = write_ndjson(tmp_path / "in.ndjson", [{"stream": "a", "type": "T", "data": 3}])
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 1
    assert "data must be a JSON object, array or string" in err


def test_ingest_appends_10001_lines_as_two_atomic_batches(tmp_path, capsys):
    src = write_ndjson(tmp_path / "in.ndjson",
                       [{"stream": f"s-{i % 13}", "type": "T", "data": {"i": i}}
                        for i in range(10_001)])
    code, _, _ = run_cli(capsys, "ingest", tmp_path / "s", src)
    assert code == 0
    with cl.EventStore.open(tmp_path / "s", readonly=True) as store:
        report = store.verify()
    assert (report["events"], report["frames"]) == (10_001, 2)


def test_ingest_of_a_missing_file_exits_1(tmp_path, capsys):
    code, _, err = run_cli(capsys, "ingest", tmp_path / "s", tmp_path / "nope.ndjson")
    assert code == 1
    assert "nope.ndjson" in err


# ---------------------------------------------------------------- demo

def test_demo_of_2000_events_runs_every_core_step_and_passes(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "demo", "--events", "2000", "--path", tmp_path / "d",
                           "--json")
    run = json.loads(out)
    steps = {s["name"].split(" ")[0]: s for s in run["steps"]}
    assert code == 0 and run["ok"] is True
    assert {"ingest", "close", "reopen", "replay", "stream", "verify"} <= set(steps)
    assert steps["ingest"]["events"] == steps["replay"]["events"] == 2000
    assert steps["verify"]["events"] == 2000


def test_demo_keeps_its_store_at_path_with_the_workload_in_it(tmp_path, capsys):
    run_cli(capsys, "demo", "--events", "2000", "--streams", "10", "--path", tmp_path / "d",
            "--json")
    with cl.EventStore.open(tmp_path / "d", readonly=True) as store:
        assert store.head == 2000
        assert len(store.streams()) == 10
        first = json.loads(next(iter(store.read_all())).data)
    assert first["seq"] == 0


def test_demo_exports_an_order_read_model_that_matches_the_events(tmp_path, capsys):
    import pyarrow.parquet as pq

    code, _, _ = run_cli(capsys, "demo", "--events", "3000", "--streams", "40", "--path",
                         tmp_path / "d", "--json")
    assert code == 0
    model = {r["order"]: r for r in pq.read_table(f"{tmp_path / 'd'}.orders.parquet").to_pylist()}
    expected: dict[str, list[int]] = {}
    with cl.EventStore.open(tmp_path / "d", readonly=True) as store:
        for e in store.read_all():
            p = json.loads(e.data)
            row = expected.setdefault(e.stream, [0, -1, 0])
            row[0] += 1
            row[1] = max(row[1], e.version)
            row[2] += p["quantity"] * p["price_cents"]
    assert {k: [r["events"], r["last_version"], r["revenue_cents"]] for k, r in model.items()} \
        == expected


def test_demo_table_output_ends_with_ok(capsys):
    code, out, _ = run_cli(capsys, "demo", "--events", "2000")
    assert code == 0
    assert "replay (read_all)" in out
    assert "OK: every check held" in out


def test_demo_refuses_a_directory_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "demo", "--events", "10", "--path", tmp_path / "d")
    assert code == 1
    assert "not empty" in err
    assert os.listdir(tmp_path / "d") == ["keep.txt"]


# ---------------------------------------------------------------- usage

@pytest.mark.parametrize("command", sorted(NOT_AVAILABLE))
@pytest.mark.parametrize("rest", [["whatever"], ["--help"], []])
def test_a_command_not_built_yet_exits_2_saying_so(command, rest, capsys):
    """With any arguments: `project --help` once said "unrecognized arguments: --help"."""
    code, out, err = run_cli(capsys, command, *rest)
    assert code == 2
    assert "not available yet" in err
    assert out == ""


def test_an_unknown_command_is_a_usage_error(capsys):
    code, _, err = run_cli(capsys, "frobnicate")
    assert code == 2
    assert "invalid choice" in err


def test_demo_writes_a_parquet_file_of_every_event_when_the_store_can_scan(tmp_path, capsys,
                                                                            monkeypatch):
    import pyarrow.parquet as pq

    from chronolog import scan as scan_module

    if not hasattr(cl.EventStore, "scan"):  # the hook the demo uses once EventStore.scan exists
        monkeypatch.setattr(cl.EventStore, "scan",
                            lambda self, **kw: scan_module.scan(self._log, **kw), raising=False)
    code, out, _ = run_cli(capsys, "demo", "--events", "2000", "--path", tmp_path / "d",
                           "--json")
    run = json.loads(out)
    assert code == 0 and run["skipped"] == []
    table = pq.read_table(tmp_path / "d.events.parquet")
    assert table.num_rows == 2000
    assert table.column("position").to_pylist() == list(range(2000))


# ---------------------------------------------------------------- tools/dump_segment.py

DUMP_SEGMENT = Path(__file__).resolve().parents[2] / "tools" / "dump_segment.py"


def run_dump_segment(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DUMP_SEGMENT), *map(str, argv)], check=False,
                          capture_output=True, text=True, timeout=60)


def test_dump_segment_lists_every_frame_of_a_sound_segment_and_exits_0(tmp_path):
    ends = small_store(tmp_path / "s")
    proc = run_dump_segment(tmp_path / "s" / "00000000000000000000.seg", "--records")
    assert proc.returncode == 0, proc.stderr
    assert f"frame @{ends[0]} .. {ends[1]}: positions 2..2 (1 events" in proc.stdout
    assert proc.stdout.count("CRC ok):") == 5  # one line per record
    assert proc.stdout.rstrip().endswith("3 frames, 5 events: all checks hold")


def test_dump_segment_flags_a_bad_body_crc_and_exits_1(tmp_path):
    ends = small_store(tmp_path / "s")
    seg = tmp_path / "s" / "00000000000000000000.seg"
    raw = bytearray(seg.read_bytes())
    raw[ends[0] + 60] ^= 0xFF
    seg.write_bytes(bytes(raw))
    proc = run_dump_segment(seg)
    assert proc.returncode == 1
    assert f"frame @{ends[0]} .. {ends[1]}" in proc.stdout
    assert "body CRC BAD" in proc.stdout


def test_dump_segment_reports_a_narrow_region_and_a_damaged_one(tmp_path):
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        store.append_batch([f"s-{i % 4}" for i in range(70)], ["T"] * 70, [b"x"] * 70)
    seg = tmp_path / "s" / "00000000000000000000.seg"
    proc = run_dump_segment(seg, "--records")
    assert proc.returncode == 0, proc.stdout
    assert "4 streams, 1 types, 2-byte stream index, ok" in proc.stdout
    assert proc.stdout.count("CRC ok):") == 70
    raw = bytearray(seg.read_bytes())
    raw[64 + 56 + 20] ^= 0x01  # a stream index of the region
    seg.write_bytes(bytes(raw))
    proc = run_dump_segment(seg)
    assert proc.returncode == 1
    assert "2-byte stream index, BAD" in proc.stdout


def test_ingest_into_a_path_that_cannot_be_a_store_is_refused_before_the_file_is_read(
        tmp_path, capsys, monkeypatch):
    (tmp_path / "not-a-dir").write_text("x")
    events = tmp_path / "e.ndjson"
    events.write_text('{"stream": "a", "type": "T", "data": {}}\n')
    from chronolog.cli import ingest
    read = []
    monkeypatch.setattr(ingest, "_lines", lambda *a: read.append(a) or iter(()))
    code, _, err = run_cli(capsys, "ingest", tmp_path / "not-a-dir", events)
    assert code == 1 and "is a file, not a directory" in err and read == []
