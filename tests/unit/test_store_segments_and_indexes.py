"""Segments roll at max_segment_bytes and reads cross them; the index files are derived:
deleting, truncating, corrupting or swapping them and reopening gives identical results."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import chronolog as cl

SEGMENT_BYTES = 4096


def _fill(store: cl.EventStore, appends: int = 60) -> None:
    """Several streams, single and batch appends, enough bytes for several 4 KiB segments."""
    for i in range(appends):
        if i % 3 == 0:
            store.append_batch(
                [f"s-{i % 5}", f"s-{(i + 1) % 5}"],
                ["Batch", "Batch"],
                [b"b" * (i % 40), b"c" * 90],
                metadatas=[b"m", b""],
            )
        else:
            store.append(f"s-{i % 5}", [cl.NewEvent("One", b"x" * (50 + i), metadata=b"%d" % i)])


def _snapshot(store: cl.EventStore, as_tuples) -> dict[str, object]:
    """Everything a reader can observe, for exact before/after comparisons."""
    streams = store.streams()
    return {
        "head": store.head,
        "streams": streams,
        "versions": {s: store.stream_version(s) for s in streams},
        "all": as_tuples(store.read_all()),
        "backwards": as_tuples(store.read_all(backwards=True)),
        "by_stream": {s: as_tuples(store.read_stream(s)) for s in streams},
    }


@pytest.fixture
def rolled(open_store) -> cl.EventStore:
    s = open_store(max_segment_bytes=SEGMENT_BYTES)
    _fill(s)
    return s


def _segments(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".seg"))


def test_the_active_segment_rolls_at_max_segment_bytes(
    rolled: cl.EventStore, store_path: Path
) -> None:
    names = _segments(store_path)
    assert len(names) >= 3
    assert rolled.stats()["segments"] == len(names)
    for name in names[:-1]:
        assert os.path.getsize(store_path / name) <= SEGMENT_BYTES


def test_segment_names_are_their_first_positions(rolled: cl.EventStore, store_path: Path) -> None:
    firsts = [int(n[:20]) for n in _segments(store_path)]
    assert firsts[0] == 0
    assert firsts == sorted(firsts)
    events = {e.position: e for e in rolled.read_all()}
    assert all(p in events for p in firsts)


def test_reads_across_segments_are_dense_and_complete(rolled: cl.EventStore) -> None:
    events = list(rolled.read_all())
    assert [e.position for e in events] == list(range(rolled.head))
    for stream in rolled.streams():
        assert [e.version for e in rolled.read_stream(stream)] == list(
            range(rolled.stream_version(stream) + 1)
        )


def test_read_stream_backwards_across_segments_mirrors_forwards(rolled: cl.EventStore) -> None:
    forwards = rolled.read_stream("s-1")
    assert rolled.read_stream("s-1", backwards=True) == forwards[::-1]


def test_an_append_larger_than_a_segment_gets_a_segment_of_its_own(
    open_store, store_path: Path
) -> None:
    s = open_store(max_segment_bytes=SEGMENT_BYTES)
    s.append("a", [cl.NewEvent("T", b"x" * 100)])
    s.append("a", [cl.NewEvent("T", b"y" * 10000)])
    s.append("a", [cl.NewEvent("T", b"z" * 100)])
    assert [len(e.data) for e in s.read_stream("a")] == [100, 10000, 100]
    assert len(_segments(store_path)) == 3


def test_verify_is_ok_across_segments(rolled: cl.EventStore) -> None:
    report = rolled.verify()
    assert report["ok"] is True
    assert report["events"] == rolled.head
    assert report["segments"] >= 3


def test_reopen_gives_identical_results(rolled: cl.EventStore, open_store, as_tuples) -> None:
    before = _snapshot(rolled, as_tuples)
    rolled.close()
    assert _snapshot(open_store(max_segment_bytes=SEGMENT_BYTES), as_tuples) == before


def test_appends_after_reopen_continue_positions_and_versions(
    rolled: cl.EventStore, open_store
) -> None:
    head, version = rolled.head, rolled.stream_version("s-2")
    rolled.close()
    s = open_store(max_segment_bytes=SEGMENT_BYTES)
    assert s.append("s-2", [cl.NewEvent("T", b"")]) == cl.AppendResult(head, head, version + 2)
    assert s.verify()["ok"] is True


def test_deleting_the_index_files_and_reopening_gives_identical_results(
    rolled: cl.EventStore, open_store, store_path: Path, as_tuples
) -> None:
    before = _snapshot(rolled, as_tuples)
    rolled.close()
    for name in os.listdir(store_path / "index"):
        os.unlink(store_path / "index" / name)
    s = open_store(max_segment_bytes=SEGMENT_BYTES)
    assert _snapshot(s, as_tuples) == before
    assert s.verify()["ok"] is True


def test_deleting_the_index_directory_and_reopening_gives_identical_results(
    rolled: cl.EventStore, open_store, store_path: Path, as_tuples
) -> None:
    before = _snapshot(rolled, as_tuples)
    rolled.close()
    shutil.rmtree(store_path / "index")
    assert _snapshot(open_store(max_segment_bytes=SEGMENT_BYTES), as_tuples) == before


def test_a_closed_store_has_index_files(rolled: cl.EventStore, store_path: Path) -> None:
    rolled.close()
    assert sorted(os.listdir(store_path / "index")) == ["positions.idx", "streams.idx", "visible"]


def _damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated-half":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "truncated-by-one":
        path.write_bytes(raw[:-1])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\xde\xad\xbe\xef" * 64)
    elif how == "extended":
        path.write_bytes(raw + b"\x00" * 24)
    else:
        # A bit flip at a byte offset: "header" (the magic), "middle" (the entries),
        # "entry-high-byte" (a high byte of an entry, so it points far out of range: the
        # first entry of positions.idx, the last stream position of streams.idx).
        wild = 64 + 6 if path.name == "positions.idx" else len(raw) - 2
        at = {
            "bit-flip-header": 3,
            "bit-flip-middle": len(raw) // 2,
            "bit-flip-entry-high-byte": wild,
        }[how]
        flipped = bytearray(raw)
        flipped[at] ^= 0x10
        path.write_bytes(bytes(flipped))


# Damage to the header or the length of an index file. A bit flip inside the entries is
# checked in a child process: a wild entry once crashed the interpreter (SIGBUS/SIGSEGV).
HEADER_DAMAGE = [
    "truncated-half",
    "truncated-by-one",
    "empty",
    "garbage",
    "bit-flip-header",
    "extended",
]


@pytest.mark.parametrize("how", HEADER_DAMAGE)
@pytest.mark.parametrize("index_file", ["positions.idx", "streams.idx"])
def test_a_damaged_index_file_is_rebuilt_with_identical_results(
    rolled: cl.EventStore, open_store, store_path: Path, as_tuples, index_file: str, how: str
) -> None:
    before = _snapshot(rolled, as_tuples)
    rolled.close()
    _damage(store_path / "index" / index_file, how)
    s = open_store(max_segment_bytes=SEGMENT_BYTES)
    assert _snapshot(s, as_tuples) == before
    assert s.verify()["ok"] is True
    head = s.head
    assert s.append("s-0", [cl.NewEvent("T", b"")]).first_position == head


_CHILD = """
import sys
import chronolog as cl
sys.path.insert(0, sys.argv[2])
from conftest import event_tuple
s = cl.EventStore.open(sys.argv[1], durability="os", max_segment_bytes=4096)
streams = s.streams()
print(repr([s.head, streams, [s.stream_version(n) for n in streams],
            [event_tuple(e) for e in s.read_all()],
            [[event_tuple(e) for e in s.read_stream(n)] for n in streams]]))
print(s.verify()["ok"])
"""


@pytest.mark.parametrize("how", ["bit-flip-middle", "bit-flip-entry-high-byte"])
@pytest.mark.parametrize("index_file", ["positions.idx", "streams.idx"])
def test_an_index_file_with_a_flipped_entry_is_rebuilt_with_identical_results(
    rolled: cl.EventStore, store_path: Path, as_tuples, index_file: str, how: str
) -> None:
    streams = rolled.streams()
    expected = repr(
        [
            rolled.head,
            streams,
            [rolled.stream_version(n) for n in streams],
            as_tuples(rolled.read_all()),
            [as_tuples(rolled.read_stream(n)) for n in streams],
        ]
    )
    rolled.close()
    _damage(store_path / "index" / index_file, how)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(store_path), str(Path(__file__).parents[1])],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.splitlines() == [expected, "True"]


def test_a_stale_index_from_an_earlier_close_catches_up(
    rolled: cl.EventStore, open_store, store_path: Path, tmp_path: Path, as_tuples
) -> None:
    rolled.close()
    shutil.copytree(store_path / "index", tmp_path / "old-index")
    s = open_store(max_segment_bytes=SEGMENT_BYTES)
    _fill(s, appends=20)
    before = _snapshot(s, as_tuples)
    s.close()
    shutil.rmtree(store_path / "index")
    shutil.copytree(tmp_path / "old-index", store_path / "index")
    s2 = open_store(max_segment_bytes=SEGMENT_BYTES)
    assert _snapshot(s2, as_tuples) == before
    assert s2.verify()["ok"] is True


def test_index_files_of_another_store_are_not_trusted(
    rolled: cl.EventStore, open_store, store_path: Path, tmp_path: Path, as_tuples
) -> None:
    before = _snapshot(rolled, as_tuples)
    rolled.close()
    other = open_store(tmp_path / "other", max_segment_bytes=SEGMENT_BYTES)
    for i in range(30):
        other.append(f"z-{i % 3}", [cl.NewEvent("Z", b"q" * 120)])
    other.close()
    for name in ("positions.idx", "streams.idx"):
        shutil.copy(tmp_path / "other" / "index" / name, store_path / "index" / name)
    assert _snapshot(open_store(max_segment_bytes=SEGMENT_BYTES), as_tuples) == before


def test_checkpoint_then_reopen_gives_identical_results(open_store, as_tuples) -> None:
    s = open_store(max_segment_bytes=SEGMENT_BYTES)
    _fill(s, appends=10)
    s.checkpoint()
    _fill(s, appends=10)
    before = _snapshot(s, as_tuples)
    s.close()
    assert _snapshot(open_store(max_segment_bytes=SEGMENT_BYTES), as_tuples) == before


def test_reopen_with_another_max_segment_bytes_reads_the_same_events(
    rolled: cl.EventStore, open_store, as_tuples
) -> None:
    before = _snapshot(rolled, as_tuples)
    rolled.close()
    s = open_store(max_segment_bytes=1 << 20)
    assert _snapshot(s, as_tuples) == before
