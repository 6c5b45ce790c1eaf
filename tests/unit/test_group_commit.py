"""Group commit in durability "fsync" (docs/design.md, "Group commit"): concurrent appenders
share fdatasyncs, waiters are woken one at a time (a baton passed by the thread about to give
up the GIL), and a waiter whose baton is never passed still returns."""

from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path

import pytest

import chronolog as cl
from chronolog._core.fileio import FileIO
from chronolog.errors import StoreFailedError


def _append_from_threads(store: cl.EventStore, threads: int, per_thread: int) -> list[BaseException]:
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                store.append(f"t-{k}", [cl.NewEvent("E", b"%d/%d" % (k, i))])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert not w.is_alive(), "an appender never returned"
    return errors


def test_concurrent_appenders_share_fdatasyncs(store_path: Path) -> None:
    io = FileIO()
    with cl.EventStore.open(store_path, durability="fsync", io=io) as store:
        before = io.counts["fsync"]
        assert _append_from_threads(store, threads=8, per_thread=40) == []
        syncs = io.counts["fsync"] - before
        assert store.head == 320
        for k in range(8):
            assert [e.data for e in store.read_stream(f"t-{k}")] == [b"%d/%d" % (k, i) for i in range(40)]
    # Eight threads keep several appends waiting on each fdatasync.
    assert syncs < 320 // 2, f"{syncs} fdatasyncs for 320 appends: no group commit"


def test_every_waiter_returns_when_no_thread_appends_after_it(store_path: Path) -> None:
    """Each thread appends once and leaves: a waiter covered by another's fdatasync gets no
    baton from a thread coming back, and must wake by itself."""
    with cl.EventStore.open(store_path, durability="fsync") as store:
        for round_ in range(15):
            assert _append_from_threads(store, threads=10, per_thread=1) == []
            assert store.head == 10 * (round_ + 1)
        positions = [e.position for e in store.read_all()]
    assert positions == list(range(150))


@pytest.mark.parametrize("spin_ns", [
    pytest.param(60_000_000_000, id="a-spin-longer-than-the-wait"),
    pytest.param(1_000_000, id="a-spin-that-runs-out-then-a-sleep"),
    pytest.param(0, id="no-spin")])
def test_a_waiter_returns_only_once_a_sync_covers_it_whether_it_spins_or_sleeps(
        store_path: Path, spin_ns: int) -> None:
    """Waiters spin before they sleep (docs/design.md, "Group commit"): a spin that outlasts
    the wait (ended by the baton, or by the look at the end of a slice when no thread comes
    back to pass it), a spin that runs out (the waiter then sleeps) and no spin all return
    once, after the fdatasync that covers the append, never before it."""
    io = FileIO()
    outcome: list[object] = []
    with cl.EventStore.open(store_path, durability="fsync", io=io) as store:
        store._log.spin_ns = spin_ns
        leader, waiters, release = _waiters_behind_a_held_sync(store, io, 6, outcome)
        # The waiters wrote after the held sync began: none may return, spinning or asleep.
        leader.join(0.3)
        assert outcome == [] and leader.is_alive()
        release.set()
        for t in [leader, *waiters]:
            t.join(20)  # a spin of 60 s that nothing ended fails here
            assert not t.is_alive(), "an appender never returned"
        assert len(outcome) == 7 and all(isinstance(r, cl.AppendResult) for r in outcome)
        assert store.head == 8
        assert sorted(e.data for e in store.read_all()) == sorted([b"0", b"L"] + [b"%d" % k for k in range(6)])
    with cl.EventStore.open(store_path, readonly=True) as again:
        assert again.head == 8


def test_a_failed_group_fdatasync_fails_every_waiter(store_path: Path) -> None:
    io = FileIO()
    with cl.EventStore.open(store_path, durability="fsync", io=io) as store:
        store.append("warm", [cl.NewEvent("E", b"0")])
        io.inject("fsync", after=0, persistent=True)
        errors = _append_from_threads(store, threads=6, per_thread=3)
        io.clear()
        # Every thread met the failure (no thread hung, none was told its append is durable).
        assert len(errors) == 6
        assert all(isinstance(e, StoreFailedError) for e in errors)
        assert store.head == 1
    with cl.EventStore.open(store_path, durability="fsync") as again:
        assert [e.data for e in again.read_all()] == [b"0"]


def _hold_first_sync_of(thread_name: str, io: FileIO, after_write_to: str | None = None,
                        ) -> tuple[threading.Event, threading.Event]:
    """Trace hook: the first fsync/fdatasync completed in thread `thread_name` (after it wrote
    a frame to a file whose name ends with `after_write_to`, when given) signals `synced`,
    then waits for `release` before the log sees it return."""
    synced, release = threading.Event(), threading.Event()
    previous = io.trace
    armed = [after_write_to is None]

    def trace(op: str, path: object, offset: int, data: object) -> None:
        if previous is not None:
            previous(op, path, offset, data)
        if threading.current_thread().name != thread_name or synced.is_set():
            return
        if op == "write" and after_write_to is not None and str(path).endswith(after_write_to) \
                and offset > 0:  # a frame, not the segment's header
            armed[0] = True
        elif op == "fsync" and armed[0]:
            synced.set()
            assert release.wait(30), "never released"

    io.trace = trace
    return synced, release


def _append_with_a_failing_write(store: cl.EventStore, io: FileIO, stream: str) -> None:
    io.inject("write", after=0)
    with pytest.raises(StoreFailedError):
        store.append(stream, [cl.NewEvent("E", b"fails")])


def _waiters_behind_a_held_sync(store: cl.EventStore, io: FileIO, n: int, outcome: list[object]
                                 ) -> tuple[threading.Thread, list[threading.Thread], threading.Event]:
    """After one warm-up append, a leader whose fdatasync is held and `n` appenders queued
    behind it (each appends b"%d" % k to stream w-k): (leader, waiters, the held sync's
    release)."""
    store.append("warm", [cl.NewEvent("E", b"0")])
    synced, release = _hold_first_sync_of("leader", io)
    leader = _append_in_thread(store, "leader", "lead", b"L", outcome)
    assert synced.wait(30), "the leader never synced"
    waiters = [_append_in_thread(store, f"w-{k}", f"w-{k}", b"%d" % k, outcome) for k in range(n)]
    return leader, waiters, release


def _append_in_thread(store: cl.EventStore, name: str, stream: str, data: bytes,
                      outcome: list[object]) -> threading.Thread:
    def run() -> None:
        try:
            outcome.append(store.append(stream, [cl.NewEvent("E", data)]))
        except StoreFailedError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_an_append_whose_sync_overlaps_a_failed_write_is_not_acknowledged(store_path: Path) -> None:
    """A write error cuts every unsynced frame (their appenders have not been answered).
    An fdatasync already under way when it happens covered frames that are now cut: its
    appenders must get StoreFailedError, never a result for an event the store lost."""
    io = FileIO()
    outcome: list[object] = []
    with cl.EventStore.open(store_path, durability="fsync", io=io) as store:
        store.append("warm", [cl.NewEvent("E", b"0")])
        synced, release = _hold_first_sync_of("leader", io)
        leader = _append_in_thread(store, "leader", "a", b"in flight", outcome)
        assert synced.wait(30), "the leader never synced"
        _append_with_a_failing_write(store, io, "b")
        release.set()
        leader.join(30)
        assert not leader.is_alive()
        io.trace = None
        io.clear()
    acknowledged = [r for r in outcome if isinstance(r, cl.AppendResult)]
    with cl.EventStore.open(store_path, durability="fsync") as again:
        stored = [e.data for e in again.read_all()]
    assert stored == [b"0"] + ([b"in flight"] if acknowledged else [])
    assert not acknowledged, "the leader's append was acknowledged, though the failed write cut it"


def test_a_failed_write_after_a_roll_cuts_the_unsynced_frames_of_the_new_segment(
        store_path: Path) -> None:
    """The roll waits for the sync of the segment it seals (a's, held), then b writes into the
    new segment and leads its sync (held); a write error meanwhile cuts every unsynced frame
    of the new segment, and no append that raised is found after a reopen."""
    io = FileIO()
    outcome_a: list[object] = []
    outcome_b: list[object] = []
    payload = b"x" * 1500  # two frames fill a 4 KiB segment; the third rolls
    with cl.EventStore.open(store_path, durability="fsync", io=io, max_segment_bytes=4096) as store:
        store.append("warm", [cl.NewEvent("E", payload)])
        synced_a, release_a = _hold_first_sync_of("a", io)
        a = _append_in_thread(store, "a", "a", payload, outcome_a)
        assert synced_a.wait(30), "a never synced"
        # b's append rolls: the roll waits for a's sync (which covers the sealed segment), then
        # b writes into the new segment and leads its sync, held here.
        second_segment = f"{store.head + 1:020d}.seg"
        synced_b, release_b = _hold_first_sync_of("b", io, after_write_to=second_segment)
        b = _append_in_thread(store, "b", "b", payload, outcome_b)
        b.join(0.05)  # b's roll most likely waits for a's sync now (the same outcome if not)
        release_a.set()
        a.join(30)
        assert synced_b.wait(30), "b never led the new segment's sync"
        _append_with_a_failing_write(store, io, "c")
        release_b.set()
        b.join(30)
        assert not a.is_alive() and not b.is_alive()
        io.trace = None
        io.clear()
    assert isinstance(outcome_a[0], cl.AppendResult)  # a's frame is in the sealed segment
    assert isinstance(outcome_b[0], StoreFailedError)
    with cl.EventStore.open(store_path, durability="fsync") as again:
        assert [e.stream for e in again.read_all()] == ["warm", "a"]


def test_a_roll_in_fsync_mode_syncs_only_the_cut_back_to_the_last_frame(
        store_path: Path) -> None:
    """The roll seals the active segment through the group commit (one sync of a segment at a
    time): when every append was synced, sealing adds one fdatasync, of its cut back to the
    last frame (in "fsync" mode a segment is sized ahead of its frames), and the new
    segment's header is synced. Every append is still durable and readable after the rolls,
    and each sealed segment ends at its last frame."""
    io = FileIO()
    segment_syncs: list[str] = []

    def trace(op: str, path: object, offset: int, data: object) -> None:
        if op == "fsync" and str(path).endswith(".seg"):
            segment_syncs.append(str(path))

    payload = b"x" * 1500  # two frames fill a 4 KiB segment
    io.trace = trace  # from the open on, so that every descriptor's path is known
    with cl.EventStore.open(store_path, durability="fsync", io=io, max_segment_bytes=4096) as store:
        del segment_syncs[:]
        for i in range(10):
            store.append("s", [cl.NewEvent("E", payload + b"%d" % i)])
        io.trace = None
        segments = sorted(store_path.glob("*.seg"))
        # Open, the newest segment is sized ahead: verify counts the frames' bytes, as stats.
        assert segments[-1].stat().st_size > 64 + 2 * 1600
        assert store.verify()["bytes"] == store.stats()["bytes"] < sum(
            s.stat().st_size for s in segments)
    rolls = len(segments) - 1
    assert rolls == 4
    # One fdatasync per append, one of each sealed segment's cut, one fsync of each new
    # segment's header.
    assert len(segment_syncs) == 10 + 2 * rolls, segment_syncs
    with cl.EventStore.open(store_path, durability="fsync") as again:
        assert [e.data for e in again.read_all()] == [payload + b"%d" % i for i in range(10)]
        report = again.verify()  # (a sealed segment with bytes after its last frame fails)
        assert report["ok"] and report["bytes"] == sum(s.stat().st_size for s in segments)


def _payload_ending_segment_at(tmp: Path, end: int) -> bytes:
    """A payload whose single-event frame ends the first segment exactly at `end`."""
    with cl.EventStore.open(tmp, durability="os") as probe:
        probe.append("warm", [cl.NewEvent("E", b"")])
        overhead = probe.stats()["bytes"]
    return b"0" * (end - overhead)


def test_a_handle_that_cut_frames_at_a_page_boundary_reads_only_what_is_left(
        store_path: Path, tmp_path: Path) -> None:
    """The fail-stop cut ends the file on a page boundary, below frames this handle wrote:
    its stats and verify stop at the cut (reading its mapping past the file's end would kill
    the process with SIGBUS), and verify checks what was acknowledged."""
    io = FileIO()
    outcome: list[object] = []
    warm = _payload_ending_segment_at(tmp_path / "probe", 8192)
    with cl.EventStore.open(store_path, durability="fsync", io=io) as store:
        store.append("warm", [cl.NewEvent("E", warm)])
        assert store.stats()["bytes"] == 8192
        synced, release = _hold_first_sync_of("leader", io)
        leader = _append_in_thread(store, "leader", "a", b"a" * 20_000, outcome)
        assert synced.wait(30), "the leader never synced"
        _append_with_a_failing_write(store, io, "b")
        release.set()
        leader.join(30)
        io.trace = None
        io.clear()
        assert isinstance(outcome[0], StoreFailedError)
        assert os.path.getsize(min(store_path.glob("*.seg"))) == 8192
        assert store.stats()["frames"] == 1
        assert store.stats()["streams"] == 1  # "a" was cut: it counts no more than it lists
        assert store.streams() == ["warm"]
        report = store.verify()
        assert report["ok"] and report["events"] == 1, report
        assert "stopped accepting writes" in report["notes"][0]["reason"]


# ---------------------------------------------------------------- what readers see


def test_a_reader_sees_an_fsync_append_only_once_its_sync_returned(store_path: Path) -> None:
    """Readers (other handles, other processes) see what the writer acknowledged: an append
    whose frame is whole in the file but whose fdatasync has not returned stays invisible."""
    io = FileIO()
    outcome: list[object] = []
    with cl.EventStore.open(store_path, durability="fsync", io=io) as store:
        store.append("warm", [cl.NewEvent("E", b"0")])
        with cl.EventStore.open(store_path, readonly=True) as reader:
            assert reader.head == 1
            synced, release = _hold_first_sync_of("leader", io)
            leader = _append_in_thread(store, "leader", "a", b"in flight", outcome)
            assert synced.wait(30), "the leader never synced"
            assert reader.refresh() == 1
            assert reader.stream_version("a") is None
            release.set()
            leader.join(30)
            assert isinstance(outcome[0], cl.AppendResult)
            assert reader.refresh() == 2
            assert [e.data for e in reader.read_stream("a")] == [b"in flight"]


def test_a_reader_never_sees_the_frames_a_fail_stop_cut(store_path: Path, tmp_path: Path) -> None:
    """A failed write cuts the unsynced frames (never acknowledged): a reader had not seen
    them, so it reads on without an error, and sees the next writer's appends in their place.
    (Before the visibility mark, it indexed them, then found them gone: CorruptionError, or
    SIGBUS reading its mapping past the file's new end.)"""
    io = FileIO()
    outcome: list[object] = []
    warm = _payload_ending_segment_at(tmp_path / "probe", 8192)
    store = cl.EventStore.open(store_path, durability="fsync", io=io)
    store.append("warm", [cl.NewEvent("E", warm)])
    with cl.EventStore.open(store_path, readonly=True) as reader:
        synced, release = _hold_first_sync_of("leader", io)
        leader = _append_in_thread(store, "leader", "a", b"a" * 20_000, outcome)
        assert synced.wait(30), "the leader never synced"
        assert reader.refresh() == 1
        _append_with_a_failing_write(store, io, "b")
        release.set()
        leader.join(30)
        io.trace = None
        io.clear()
        store.close()
        assert isinstance(outcome[0], StoreFailedError)
        assert os.path.getsize(min(store_path.glob("*.seg"))) == 8192
        assert [e.stream for e in reader.read_all()] == ["warm"]
        assert reader.verify()["ok"]
        with cl.EventStore.open(store_path, durability="fsync") as again:
            again.append("c", [cl.NewEvent("E", b"after")])
        assert [(e.position, e.stream) for e in reader.read_all()] == [(0, "warm"), (1, "c")]


@pytest.mark.parametrize("durability", ["os", "interval"])
def test_a_reader_sees_appends_acknowledged_before_any_sync(store_path: Path, durability: str) -> None:
    """In "os" and "interval" modes an append is acknowledged once written: readers see it
    before any fdatasync."""
    io = FileIO()
    with cl.EventStore.open(store_path, durability=durability, io=io, flush_interval_ms=60_000) as store, \
            cl.EventStore.open(store_path, readonly=True) as reader:
        syncs = io.counts["fsync"]
        store.append("a", [cl.NewEvent("E", b"1")])
        assert reader.refresh() == 1
        assert io.counts["fsync"] == syncs


def test_a_failed_visibility_mark_delays_readers_and_fails_nothing(store_path: Path) -> None:
    io = FileIO()
    with cl.EventStore.open(store_path, durability="fsync", io=io) as store, \
            cl.EventStore.open(store_path, readonly=True) as reader:
        io.inject("publish", after=0)
        result = store.append("a", [cl.NewEvent("E", b"1")])
        assert result.last_position == 0
        assert reader.refresh() == 0  # the mark still says 0
        store.append("a", [cl.NewEvent("E", b"2")])
        assert reader.refresh() == 2


def test_a_reader_reads_no_byte_past_the_mark(store_path: Path) -> None:
    """Past the mark nothing is acknowledged, and the writer's fail-stop may be cutting it
    (reading a page cut away is SIGBUS): a reader stops at the mark without checking the
    frame there. Here that frame is made to check but claim the wrong first position: a
    reader that parsed it raised CorruptionError."""
    from chronolog._core.crc import crc32c
    with cl.EventStore.open(store_path, durability="fsync") as store:
        store.append_batch(["a", "b", "a"], ["E"] * 3, [b"1", b"2", b"3"])
        store.append("a", [cl.NewEvent("E", b"4")])
    (store_path / "index" / "visible").write_bytes(struct.pack("<QQ", 3, 3 ^ 0x564953494245314C))
    seg = min(store_path.glob("*.seg"))
    raw = bytearray(seg.read_bytes())
    second = 64 + 64 + struct.unpack_from("<I", raw, 64 + 4)[0]  # past the first frame
    assert struct.unpack_from("<Q", raw, second + 16)[0] == 3
    struct.pack_into("<Q", raw, second + 16, 7)
    struct.pack_into("<I", raw, second + 52, crc32c(bytes(raw[second:second + 52])))
    seg.write_bytes(bytes(raw))
    for name in ("positions.idx", "streams.idx"):
        (store_path / "index" / name).unlink()
    with cl.EventStore.open(store_path, readonly=True) as reader:
        assert reader.head == 3
        assert reader.refresh() == 3
        assert [e.data for e in reader.read_stream("a")] == [b"1", b"3"]


@pytest.mark.parametrize("mark", [None, b"", b"\x07" * 16, "3"])
def test_without_a_mark_that_checks_a_reader_sees_every_complete_frame(
        store_path: Path, mark: bytes | str | None) -> None:
    """index/visible is derived: missing (a store written before it), cut short or damaged,
    a new reader reads every complete frame, as readers did before the mark; a mark that
    checks bounds what it reads (here with no checkpoint: every frame is in the tail)."""
    with cl.EventStore.open(store_path, durability="fsync") as store:
        store.append_batch(["a", "b", "a"], ["E"] * 3, [b"1", b"2", b"3"])
        store.append("a", [cl.NewEvent("E", b"4")])
    for name in ("positions.idx", "streams.idx"):
        (store_path / "index" / name).unlink()
    visible = store_path / "index" / "visible"
    if mark is None:
        visible.unlink()
    elif isinstance(mark, str):
        value = int(mark)
        visible.write_bytes(struct.pack("<QQ", value, value ^ 0x564953494245314C))
    else:
        visible.write_bytes(mark)
    with cl.EventStore.open(store_path, readonly=True) as reader:
        if isinstance(mark, str):
            assert reader.head == 3
            assert [e.data for e in reader.read_stream("a")] == [b"1", b"3"]
        else:
            assert reader.head == 4
            assert [e.data for e in reader.read_stream("a")] == [b"1", b"3", b"4"]


@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_in_fsync_mode_the_active_segment_is_sized_ahead_with_zeros_no_reader_sees(
        store_path: Path, durability: str) -> None:
    """In "fsync" mode the writer extends its active segment past its frames (zeros, reserved
    blocks: an append's fdatasync then records no new size, a third quicker). Nothing reads
    them as events or as a torn tail; closed, the segment ends at its last frame again. In
    other modes the file's size is always its frames' end."""
    seg = store_path / "00000000000000000000.seg"
    with cl.EventStore.open(store_path, durability=durability) as store:
        for i in range(3):
            store.append("s", [cl.NewEvent("E", b"event %d" % i)])
        size_open = seg.stat().st_size
        with cl.EventStore.open(store_path, readonly=True) as reader:
            assert [e.data for e in reader.read_all()] == [b"event 0", b"event 1", b"event 2"]
            for report in (store.verify(), reader.verify()):
                assert report["ok"] and report["notes"] == [], report
        store.append("s", [cl.NewEvent("E", b"event 3")])
        if durability == "fsync":
            assert seg.stat().st_size == size_open  # (within what was sized ahead)
    size = seg.stat().st_size
    if durability == "fsync":
        assert size_open >= 1 << 20 > size  # four small frames: cut back at close
    else:
        assert size_open < size < 4096
    with cl.EventStore.open(store_path, durability=durability) as again:
        assert [e.data for e in again.read_all()] == [b"event %d" % i for i in range(4)]
        assert again.verify()["ok"]


def test_a_failed_cut_of_a_segment_being_sealed_in_fsync_mode_fail_stops_and_loses_nothing(
        store_path: Path) -> None:
    """A segment sized ahead must be cut back to its last frame before it is sealed (a sealed
    segment with zeros after its last frame would not open). When that ftruncate fails the
    store fail-stops before the next segment exists; the reopened store has every
    acknowledged append, and its next roll works."""
    import errno
    io = FileIO()
    payload = b"x" * 1500  # two frames fill a 4 KiB segment
    store = cl.EventStore.open(store_path, durability="fsync", io=io, max_segment_bytes=4096)
    for i in range(2):
        store.append("s", [cl.NewEvent("E", payload + b"%d" % i)])
    io.inject("truncate", after=0, errno=errno.EIO)
    with pytest.raises(StoreFailedError):
        store.append("s", [cl.NewEvent("E", payload + b"2")])
    with pytest.raises(StoreFailedError):
        store.append("s", [cl.NewEvent("E", payload + b"3")])
    store.close()
    assert [p.name for p in sorted(store_path.glob("*.seg"))] == ["00000000000000000000.seg"]
    with cl.EventStore.open(store_path, durability="fsync", max_segment_bytes=4096) as again:
        assert [e.data for e in again.read_all()] == [payload + b"0", payload + b"1"]
        again.append("s", [cl.NewEvent("E", payload + b"2")])
        assert again.verify()["ok"]
    with cl.EventStore.open(store_path, readonly=True) as reader:
        assert [e.data for e in reader.read_all()] == [payload + b"%d" % i for i in range(3)]
        assert reader.stats()["segments"] == 2
    assert list(store_path.glob("*.torn-*")) == []


def test_spins_that_get_the_cpu_back_late_back_off_doubling_up_to_two_seconds_and_reset_after_a_good_spin(
        store_path: Path) -> None:
    """A spinning waiter whose sched_yield comes back later than `spin_late_ns` (another
    process runs on its CPU for whole slices) ends its spin and sleeps, and waiters stop
    spinning for a back-off that doubles at each such spin, up to 2 s; a spin that gets its
    baton brings it back to 50 ms. Every append still returns once its sync covers it."""
    io = FileIO()
    outcome: list[object] = []
    with cl.EventStore.open(store_path, durability="fsync", io=io) as store:
        log = store._log
        assert log.spin_backoff == 50_000_000 and log.spin_off_until == 0
        log.spin_ns = 60_000_000_000  # every waiter spins (a fixed spin ignores the back-off)
        log.spin_late_ns = 0  # every look comes "late"
        leader, waiters, release = _waiters_behind_a_held_sync(store, io, 7, outcome)
        deadline = time.monotonic() + 20
        while log.spin_backoff < 2_000_000_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Seven late spins: 50 ms doubled to 100, 200, 400, 800, 1600 ms, then held at 2 s.
        assert log.spin_backoff == 2_000_000_000
        assert log.spin_off_until > time.monotonic_ns()
        assert outcome == [] and leader.is_alive()  # a late spin sleeps, it never returns early
        release.set()
        for t in [leader, *waiters]:
            t.join(20)
            assert not t.is_alive(), "an appender never returned"
        assert len(outcome) == 8 and all(isinstance(r, cl.AppendResult) for r in outcome)
        # Spins that are never late: one that ends with its baton resets the back-off.
        log.spin_late_ns = 1 << 62
        for _ in range(50):
            ths = [_append_in_thread(store, f"r-{k}", f"r-{k}", b"r", outcome) for k in range(8)]
            for t in ths:
                t.join(20)
            if log.spin_backoff == 50_000_000:
                break
        assert log.spin_backoff == 50_000_000
        assert store.head == 9 + len(outcome) - 8
