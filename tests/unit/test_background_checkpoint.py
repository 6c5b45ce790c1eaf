"""The index checkpoint of a segment roll is written by a background thread (docs/design.md,
"Index checkpoints in the background"): the appender goes on at once, the next append (or a
checkpoint, a rebuild, close) adopts what it wrote, and a failed one loses nothing."""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import chronolog as cl
from chronolog._core.fileio import FileIO

SEGMENT_BYTES = 8192


class _Ops:
    """A FileIO trace that remembers every operation with the name of the thread making it."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, str, str]] = []

    def __call__(self, op: str, path: str | None, offset: int, data: object) -> None:
        self.ops.append((op, os.path.basename(path or ""), threading.current_thread().name))

    def on_index_files(self) -> list[tuple[str, str, str]]:
        return [o for o in self.ops if o[1].startswith(("positions.idx", "streams.idx"))]


def _append_until_roll(store: cl.EventStore, path: Path) -> int:
    """Append one event at a time until a second segment exists; returns how many were
    appended (the roll happened in the last one)."""
    n = 0
    while len([p for p in os.listdir(path) if p.endswith(".seg")]) < 2:
        store.append(f"s-{n % 7}", [cl.NewEvent("E", b"x" * 300, metadata=b"%d" % n)])
        n += 1
    return n


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the background checkpoint did not finish"
        time.sleep(0.005)


def _index_count(path: Path) -> int:
    """The count in positions.idx's header (the positions it covers)."""
    return struct.unpack_from("<Q", path.read_bytes(), 32)[0]


def _first_position_of_newest_segment(path: Path) -> int:
    return int(max(p for p in os.listdir(path) if p.endswith(".seg"))[:-4])


def _hold_the_first_checkpoint(entered: threading.Event, gate: threading.Event,
                               trace: _Ops | None = None) -> Callable[[str, str | None, int, object], None]:
    """A FileIO trace that holds the checkpoint thread at its first operation on
    streams.idx.tmp (its snapshot taken, nothing written yet) until `gate` is set."""

    def hold(op: str, path: str | None, offset: int, data: object) -> None:
        if trace is not None:
            trace(op, path, offset, data)
        if (threading.current_thread().name == "chronolog-checkpoint" and not entered.is_set()
                and os.path.basename(path or "") == "streams.idx.tmp"):
            entered.set()
            assert gate.wait(30)

    return hold


def _contents(store: cl.EventStore, as_tuples: Callable[..., list[tuple[object, ...]]]
              ) -> tuple[list[tuple[object, ...]], dict[str, list[tuple[object, ...]]]]:
    """Every event, and every stream's events, as tuples."""
    return (as_tuples(store.read_all()),
            {s: as_tuples(store.read_stream(s)) for s in store.streams()})


def _renames_of_streams_idx(trace: _Ops) -> int:
    return sum(1 for o in trace.ops if o[:2] == ("rename", "streams.idx.tmp"))


def test_a_roll_writes_the_index_checkpoint_from_a_background_thread(store_path: Path) -> None:
    io = FileIO()
    trace = _Ops()
    io.trace = trace
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES,
                            io=io) as store:
        _append_until_roll(store, store_path)
        idx = store_path / "index"
        _wait_for(lambda: _renames_of_streams_idx(trace) == 1)  # its last step
        on_index = trace.on_index_files()
        assert on_index, "no checkpoint was written at the roll"
        assert {o[2] for o in on_index} == {"chronolog-checkpoint"}
        assert ("rename", "streams.idx.tmp", "chronolog-checkpoint") in on_index
        # It covers exactly the sealed segment's events.
        assert _index_count(idx / "positions.idx") == _first_position_of_newest_segment(store_path)


def test_reads_are_the_same_before_and_after_the_checkpoint_is_adopted(
        store_path: Path, as_tuples) -> None:
    io = FileIO()
    trace = _Ops()
    io.trace = trace
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES,
                            io=io) as store:
        for roll in range(1, 4):
            while _renames_of_streams_idx(trace) < roll - 1:
                time.sleep(0.005)
            segments = len([p for p in os.listdir(store_path) if p.endswith(".seg")])
            while len([p for p in os.listdir(store_path) if p.endswith(".seg")]) == segments:
                store.append(f"s-{store.head % 7}", [cl.NewEvent("E", b"y" * 200)])
            # Right after the roll the stream index reads from the previous checkpoint and
            # the deltas, while the checkpoint thread builds and writes the new one.
            before = {s: as_tuples(store.read_stream(s)) for s in store.streams()}
            all_before = as_tuples(store.read_all())
            _wait_for(lambda roll=roll: _renames_of_streams_idx(trace) == roll and not any(
                t.name == "chronolog-checkpoint" for t in threading.enumerate()))
            store.append("late", [cl.NewEvent("L", b"after %d" % roll)])  # adopts it
            after = {s: as_tuples(store.read_stream(s)) for s in store.streams()}
            assert after.pop("late")[-1][4] == b"after %d" % roll
            before.pop("late", None)
            assert after == before
            assert as_tuples(store.read_all())[:-1] == all_before
            assert store.verify()["ok"]
        contents = _contents(store, as_tuples)
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES) as again:
        assert _contents(again, as_tuples) == contents



def test_appends_made_while_the_checkpoint_is_built_stay_after_it_is_adopted(
        store_path: Path, as_tuples) -> None:
    """The checkpoint thread builds the stream index's file from a snapshot taken at the
    roll; appends go on meanwhile (to streams of the snapshot, to a stream interned with no
    events before it, to streams new since), and adoption keeps exactly those in memory."""
    io = FileIO()
    entered, gate = threading.Event(), threading.Event()
    io.trace = _hold_the_first_checkpoint(entered, gate)
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES,
                            io=io) as store:
        with pytest.raises(cl.WrongExpectedVersionError):
            store.append("ghost", [cl.NewEvent("G", b"refused")], expected_version=3)
        n = _append_until_roll(store, store_path)
        assert entered.wait(20), "the roll started no checkpoint"
        # The job is held before it writes: these appends come after its snapshot (few
        # bytes: no second roll, which would wait for the job).
        for i in range(6):
            store.append(f"s-{i % 7}", [cl.NewEvent("D", b"during %d" % i)])
        store.append("ghost", [cl.NewEvent("G", b"g0")], expected_version=cl.NO_STREAM)
        store.append("new", [cl.NewEvent("N", b"n0"), cl.NewEvent("N", b"n1")])
        store.append_batch(["s-1", "new", "s-2", "s-1"], ["B"] * 4, [b"b0", b"b1", b"b2", b"b3"])
        assert len([p for p in os.listdir(store_path) if p.endswith(".seg")]) == 2
        streams = {s: as_tuples(store.read_stream(s)) for s in store.streams()}
        everything = as_tuples(store.read_all())
        assert len(everything) == n + 6 + 1 + 2 + 4
        gate.set()
        _wait_for(lambda: not any(t.name == "chronolog-checkpoint" for t in threading.enumerate()))
        assert store.stream_version("ghost") == 0  # (an append's first step adopts the job)
        store.append("after", [cl.NewEvent("A", b"a")], expected_version=cl.NO_STREAM)
        assert [store.stream_version(s) for s in ("s-1", "new", "ghost")] == [
            len(streams["s-1"]) - 1, 2, 0]
        got = {s: as_tuples(store.read_stream(s)) for s in store.streams()}
        assert got.pop("after")[0][4] == b"a"
        assert got == streams
        assert as_tuples(store.read_all())[:-1] == everything
        assert store.verify()["ok"]
        final = {s: as_tuples(store.read_stream(s)) for s in store.streams()}
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES) as again:
        assert {s: as_tuples(again.read_stream(s)) for s in again.streams()} == final
        assert again.verify()["ok"]


def test_a_roll_does_not_wait_for_the_previous_rolls_checkpoint(store_path: Path,
                                                                 as_tuples) -> None:
    """While one roll's checkpoint is still being written, later rolls skip theirs instead
    of waiting for it in the appender's path; the first roll after it ends writes them all."""
    io = FileIO()
    trace = _Ops()
    entered, gate = threading.Event(), threading.Event()
    io.trace = _hold_the_first_checkpoint(entered, gate, trace)
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES,
                            io=io) as store:
        _append_until_roll(store, store_path)
        assert entered.wait(20), "the roll started no checkpoint"
        appender = threading.Thread(
            target=lambda: [store.append(f"s-{i % 7}", [cl.NewEvent("E", b"z" * 300)])
                            for i in range(100)])  # ~4 more rolls of 8 KiB
        appender.start()
        appender.join(20)
        waited = appender.is_alive()
        gate.set()  # (never leave the job held, whatever happened)
        appender.join()
        assert not waited, "a roll waited for the previous roll's checkpoint"
        assert len([p for p in os.listdir(store_path) if p.endswith(".seg")]) >= 5
        assert _renames_of_streams_idx(trace) == 0  # the skipped rolls wrote nothing
        _wait_for(lambda: _renames_of_streams_idx(trace) == 1 and not any(
            t.name == "chronolog-checkpoint" for t in threading.enumerate()))
        # The next roll adopts the held job and checkpoints everything through itself.
        before = _first_position_of_newest_segment(store_path)
        while _first_position_of_newest_segment(store_path) == before:
            store.append("late", [cl.NewEvent("L", b"y" * 300)])
        _wait_for(lambda: _renames_of_streams_idx(trace) == 2 and not any(
            t.name == "chronolog-checkpoint" for t in threading.enumerate()))
        store.append("adopt", [cl.NewEvent("A", b"a")])
        assert _index_count(store_path / "index" / "positions.idx") == \
            _first_position_of_newest_segment(store_path)
        assert store.verify()["ok"]
        contents = _contents(store, as_tuples)
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES) as again:
        assert _contents(again, as_tuples) == contents

@pytest.mark.parametrize("op", ["open", "write", "fsync", "rename"])
def test_a_failed_background_checkpoint_loses_nothing_and_leaves_no_temporary_file(
        store_path: Path, as_tuples, op: str) -> None:
    io = FileIO()
    trace = _Ops()
    armed: list[int] = []
    appender_idle = threading.Event()

    def arm_in_the_checkpoint_thread(o: str, path: str | None, offset: int, data: object) -> None:
        trace(o, path, offset, data)
        # At the checkpoint's first operation, once the rolling append has returned, make
        # every later `op` fail (the test appends nothing until the fault is cleared).
        if not armed and threading.current_thread().name == "chronolog-checkpoint":
            assert appender_idle.wait(20)
            armed.append(io.counts[op])
            io.inject(op, after=0, persistent=True)

    io.trace = arm_in_the_checkpoint_thread
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES,
                            io=io) as store:
        n = _append_until_roll(store, store_path)
        appender_idle.set()
        _wait_for(lambda: bool(armed) and not any(
            t.name == "chronolog-checkpoint" for t in threading.enumerate()))
        assert io.counts[op] > armed[0], f"no {op} failed in the checkpoint"
        io.clear()
        assert not [f for f in os.listdir(store_path / "index") if f.endswith(".tmp")]
        store.append("after", [cl.NewEvent("A", b"still writable")])
        got = as_tuples(store.read_all())
        assert len(got) == n + 1 and got[-1][4] == b"still writable"
        assert store.verify()["ok"]
        streams = {s: as_tuples(store.read_stream(s)) for s in store.streams()}
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES) as again:
        assert as_tuples(again.read_all()) == got
        assert {s: as_tuples(again.read_stream(s)) for s in again.streams()} == streams



def test_a_checkpoint_after_a_failed_one_keeps_every_position_of_a_large_stream_index(
        store_path: Path) -> None:
    """A failed checkpoint leaves its image (anonymous memory) as the stream index's base.
    The next checkpoint copies from that base; past 8 MiB of positions it used to drop the
    base's pages as if they were a file's, and the rest of the copy read zeros: streams read
    as empty, before and after a reopen (1.1M events: more than 8 MiB of positions)."""
    import pyarrow as pa

    n, n_streams = 1_100_000, 100
    io = FileIO()
    with cl.EventStore.open(store_path, durability="os", io=io) as store:
        store.append_batch(pa.array([f"s-{i % n_streams}" for i in range(n)]),
                           pa.array(["E"] * n), pa.array([b"%d" % i for i in range(n)]))
        store.checkpoint()
        store.append("x", [cl.NewEvent("E", b"x")])
        io.inject("rename", after=0, persistent=True)
        store.checkpoint()  # fails (absorbed): the image stays the base
        io.clear()
        store.append("y", [cl.NewEvent("E", b"y")])
        store.checkpoint()
        for k in (0, n_streams - 1):
            got = [e.data for e in store.read_stream(f"s-{k}", limit=2)]
            assert got == [b"%d" % k, b"%d" % (k + n_streams)]
        assert store.stream_version(f"s-{n_streams - 1}") == n // n_streams - 1
    with cl.EventStore.open(store_path, durability="os") as again:
        assert [again.stream_version(f"s-{k}") for k in range(n_streams)] == \
            [n // n_streams - 1] * n_streams
        last = list(again.read_stream(f"s-{n_streams - 1}", backwards=True, limit=1))
        assert last[0].data == b"%d" % (n - 1)
        assert again.verify()["ok"]

def test_readers_in_other_threads_see_consistent_indexes_across_background_checkpoints(
        store_path: Path, as_tuples) -> None:
    """Rolls every few appends, each with its checkpoint written, adopted and replaced while
    four threads read streams and the whole log."""
    stop = threading.Event()
    problems: list[str] = []
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES) as store:
        def reader(k: int) -> None:
            while not stop.is_set():
                start = max(0, store.head - 200)
                every = list(store.read_all(start))
                positions = [e.position for e in every]
                if positions != list(range(start, start + len(positions))):
                    problems.append(f"reader {k}: read_all not dense")
                for name in {e.stream for e in every[-50:]}:
                    versions = [e.version for e in store.read_stream(name)]
                    if versions != list(range(len(versions))):
                        problems.append(f"reader {k}: {name} versions not dense")

        threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)  # the appender gets the GIL back soon after each release
        for t in threads:
            t.start()
        try:
            for i in range(1000):
                if i % 5 == 0:
                    store.append_batch([f"b-{i % 11}", f"b-{(i + 3) % 11}"], ["B", "B"],
                                       [b"z" * 150, b"w" * 90])
                else:
                    store.append(f"s-{i % 13}", [cl.NewEvent("E", b"v" * 120)])
        finally:
            stop.set()
            for t in threads:
                t.join()
            sys.setswitchinterval(interval)
        assert not problems, problems[:5]
        assert len([p for p in os.listdir(store_path) if p.endswith(".seg")]) > 20
        assert store.verify()["ok"]
        everything = as_tuples(store.read_all())
    with cl.EventStore.open(store_path, durability="os", max_segment_bytes=SEGMENT_BYTES) as again:
        assert as_tuples(again.read_all()) == everything
