"""Large frames (512 KiB and more, uncompressed) are written by a pipeline: a helper thread
pwrites each finished chunk of the body while the next is encoded, and the header goes last
(csrc/chl_wpipe.h). Blocks are reserved ahead of the active segment's end (fallocate, a
hint). These tests hold both to the same results as the plain path."""

from __future__ import annotations

import errno
import gc
import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import chronolog as cl
from chronolog._core.fileio import FileIO
from chronolog.errors import StoreFailedError


def _columns(first: int, n: int, size: int = 300) -> tuple[list[str], list[str], list[bytes]]:
    streams = [f"s-{(first + i) % 37}" for i in range(n)]
    types = [f"T{(first + i) % 3}" for i in range(n)]
    datas = [(first + i).to_bytes(4, "little") * (size // 4 + (first + i) % 13) for i in range(n)]
    return streams, types, datas


def _expected(batches: list[tuple[list[str], list[str], list[bytes]]]) -> list[tuple[str, str, bytes]]:
    return [(s, t, d) for streams, types, datas in batches for s, t, d in zip(streams, types, datas)]


@pytest.mark.parametrize("durability", ["os", "fsync", "interval"])
def test_large_batches_read_back_exactly_as_appended_in_every_durability_mode(
        open_store, store_path: Path, durability: str) -> None:
    s = open_store(durability=durability)
    batches = [_columns(k * 3000, 3000) for k in range(4)]  # ~1 MB frames
    for b in batches:
        s.append_batch(*b)
    got = [(e.stream, e.type, e.data) for e in s.read_all()]
    assert got == _expected(batches)
    assert [e.position for e in s.read_all()] == list(range(12000))
    assert s.verify()["ok"] is True
    s.close()
    with cl.EventStore.open(store_path, durability="os") as again:
        assert [(e.stream, e.type, e.data) for e in again.read_all()] == got
        assert again.verify()["ok"] is True


def test_a_large_frame_reads_and_scans_as_the_same_events_written_in_small_frames(
        open_store, tmp_path: Path, as_tuples) -> None:
    # Timestamps differ per append, so compare everything else: reads, the narrow scan (which
    # reads the region the pipelined encoder wrote) and every CRC via verify().
    big = open_store(tmp_path / "big")
    small = open_store(tmp_path / "small")
    cols = _columns(0, 5000)
    big.append_batch(*cols)
    for i in range(0, 5000, 500):  # frames of ~170 KB: the plain path
        small.append_batch(cols[0][i:i + 500], cols[1][i:i + 500], cols[2][i:i + 500])
    a = [t[:6] for t in as_tuples(big.read_all())]
    b = [t[:6] for t in as_tuples(small.read_all())]
    assert a == b
    cols3 = ["position", "stream", "type"]
    narrow_a = [row for b in big.scan(columns=cols3) for row in b.to_pylist()]
    narrow_b = [row for b in small.scan(columns=cols3) for row in b.to_pylist()]
    assert narrow_a == narrow_b and len(narrow_a) == 5000
    assert big.verify()["ok"] is True


def test_large_batches_across_segment_rolls_read_back_in_order(open_store, store_path: Path) -> None:
    s = open_store(max_segment_bytes=3 << 20)
    batches = [_columns(k * 2500, 2500) for k in range(6)]  # ~0.9 MB each: rolls every 3
    for b in batches:
        s.append_batch(*b)
    assert s.stats()["segments"] >= 2
    assert [(e.stream, e.type, e.data) for e in s.read_all()] == _expected(batches)
    assert s.verify()["ok"] is True


def test_an_injected_write_fault_on_a_large_frame_fails_stop_before_any_byte(
        open_store, store_path: Path) -> None:
    io = FileIO()
    s = open_store(io=io)
    first = _columns(0, 3000)
    s.append_batch(*first)
    size = os.path.getsize(store_path / "00000000000000000000.seg")
    io.inject("write", after=0, errno=errno.EIO)
    with pytest.raises(StoreFailedError):
        s.append_batch(*_columns(3000, 3000))
    assert os.path.getsize(store_path / "00000000000000000000.seg") == size
    with pytest.raises(StoreFailedError):
        s.append_batch(*_columns(6000, 3000))
    s.close()
    with cl.EventStore.open(store_path, durability="os") as again:
        assert [(e.stream, e.type, e.data) for e in again.read_all()] == _expected([first])


_FAILS_MID_FRAME = """
import os, resource, signal, sys
import chronolog as cl
from chronolog.errors import StoreFailedError
sys.path.insert(0, sys.argv[2])
from test_store_large_frames import _columns
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
path = sys.argv[1]
store = cl.EventStore.open(path, durability=sys.argv[3])
first = _columns(0, 3000)
store.append_batch(*first)
store.close()  # closed, the segment ends at its last frame ("fsync" mode sizes it ahead)
store = cl.EventStore.open(path, durability=sys.argv[3])
seg = os.path.join(path, "00000000000000000000.seg")
size = os.path.getsize(seg)
# The next frame (about 1 MiB) fails past its first 600 KiB: in the helper's pwrite.
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 600_000, resource.RLIM_INFINITY))
try:
    store.append_batch(*_columns(3000, 3000))
except StoreFailedError as exc:
    print("failed:", exc.__cause__.errno == 27)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("head", store.head, "events", store.stats()["events"], "streams", store.stats()["streams"],
      "read", len(list(store.read_all())), "s-5", store.stream_version("s-5"))
print("cut", os.path.getsize(seg) == size)
store.close()
with cl.EventStore.open(path, durability="os") as again:
    print("reopened", [(e.stream, e.type, e.data) for e in again.read_all()] ==
          [(s, t, d) for s, t, d in zip(*first)])
"""


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_a_large_frame_that_fails_while_its_helper_writes_shows_nothing_of_it(
        tmp_path: Path, durability: str) -> None:
    """The appender indexes a piped frame while the helper writes its last chunks; when the
    helper's pwrite fails (here past RLIMIT_FSIZE, in a child process), the store fail-stops
    with head, reads, versions and stats as before the append, the frame cut."""
    out = subprocess.run([sys.executable, "-c", _FAILS_MID_FRAME, str(tmp_path / "s"),
                          str(Path(__file__).parent), durability],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "failed: True", "head 3000 events 3000 streams 37 read 3000 s-5 80", "cut True",
        "reopened True"]


def test_a_large_frame_counts_as_one_write_op(open_store) -> None:
    io = FileIO()
    s = open_store(io=io)
    s.append_batch(*_columns(0, 3000))
    before = io.counts["write"]
    s.append_batch(*_columns(3000, 3000))
    assert io.counts["write"] == before + 1


def test_a_traced_large_frame_is_one_write_of_the_whole_frame(open_store, store_path: Path) -> None:
    io = FileIO()
    writes: list[tuple[int, bytes]] = []
    io.trace = lambda op, path, offset, data: writes.append((offset, data)) \
        if op == "write" and str(path).endswith(".seg") else None
    s = open_store(io=io)
    s.append_batch(*_columns(0, 3000))
    offset, data = writes[-1]
    with open(store_path / "00000000000000000000.seg", "rb") as f:
        f.seek(offset)
        assert f.read(len(data)) == data
    assert len(data) > 512 * 1024
    assert data[:4] == b"CHLF"


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_failed_block_reservations_change_nothing(open_store, store_path: Path, durability: str) -> None:
    io = FileIO()
    io.inject("allocate", after=0, errno=errno.ENOSPC, persistent=True)
    s = open_store(io=io, durability=durability)
    batches = [_columns(0, 3000), _columns(3000, 10)]
    for b in batches:
        s.append_batch(*b)
    s.append("solo", [cl.NewEvent("T", b"x")])
    assert io.counts["allocate"] >= 1
    got = [(e.stream, e.type, e.data) for e in s.read_all()]
    assert got == _expected(batches) + [("solo", "T", b"x")]
    assert s.verify()["ok"] is True


def test_blocks_are_reserved_ahead_of_the_active_segment_without_changing_its_size(
        open_store, store_path: Path) -> None:
    io = FileIO()
    s = open_store(io=io)
    s.append("a", [cl.NewEvent("T", b"x" * 100)])
    assert io.counts["allocate"] == 0  # a short session reserves nothing ("os" mode)
    s.append("a", [cl.NewEvent("T", b"x" * (256 << 10))])
    seg = store_path / "00000000000000000000.seg"
    st = os.stat(seg)
    assert io.counts["allocate"] == 1  # from 256 KiB written on
    assert st.st_size < 300 << 10  # the size is the bytes written, not the reservation
    assert st.st_blocks * 512 >= (1 << 20) + (256 << 10)  # reserved: a MiB ahead to begin with
    # Reservations grow with the segment: a few calls for many appends, none past the limit.
    for i in range(200):
        s.append_batch(*_columns(i * 100, 100))
    assert io.counts["allocate"] < 10
    assert os.stat(seg).st_blocks * 512 <= s._log.max_segment_bytes + 4096


def _disk_bytes(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def _page_rounded(n: int) -> int:
    return (n + 4095) & ~4095


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_closing_a_store_gives_back_the_blocks_reserved_past_the_active_segment(
        open_store, store_path: Path, durability: str) -> None:
    s = open_store(durability=durability)
    s.append("a", [cl.NewEvent("T", b"x" * 100)])
    s.append_batch(*_columns(0, 50))
    seg = store_path / "00000000000000000000.seg"
    if durability == "os":  # nothing reserved before the handle wrote 256 KiB
        assert _disk_bytes(seg) <= _page_rounded(os.stat(seg).st_size)
        s.append("b", [cl.NewEvent("T", b"y" * (256 << 10))])
    size_open = os.stat(seg).st_size
    assert _disk_bytes(seg) >= 1 << 20  # reserved while open
    s.close()
    size = os.stat(seg).st_size
    if durability == "fsync":
        assert size_open >= 1 << 20 > size  # sized ahead while open, cut back at close
    else:
        assert size_open == size
    assert _disk_bytes(seg) <= _page_rounded(size)
    # Reopened, it reads the same and reserves again as it grows.
    s2 = open_store(durability=durability)
    assert s2.head == (52 if durability == "os" else 51)
    s2.append("a", [cl.NewEvent("T", b"y")])
    if durability == "os":
        s2.append("c", [cl.NewEvent("T", b"z" * (256 << 10))])
    assert _disk_bytes(seg) >= 1 << 20
    assert [e.data for e in s2.read_stream("a")] == [b"x" * 100, b"y"]


_KILLED_HOLDER = """
import sys, time
import chronolog as cl
store = cl.EventStore.open(sys.argv[1], durability="os")
store.append_batch(["a"] * 50, ["T"] * 50, [b"x" * 6000] * 50)  # 300 KB: blocks reserved
print("ready", flush=True)
time.sleep(120)
"""


def test_a_writer_opened_after_a_kill_gives_back_the_blocks_the_killed_one_reserved(
        store_path: Path) -> None:
    """A writer killed with kill -9 never gives back the blocks it reserved past the active
    segment's end; the next writer does at open (before, only at its first roll or at a close
    after a write: opened and closed without writing, the reservation stayed)."""
    holder = subprocess.Popen([sys.executable, "-c", _KILLED_HOLDER, str(store_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        seg = store_path / "00000000000000000000.seg"
        assert _disk_bytes(seg) >= 1 << 20
    finally:
        holder.kill()
        holder.wait(60)
    with cl.EventStore.open(store_path, durability="os") as s:
        assert s.head == 50
        assert _disk_bytes(seg) <= _page_rounded(os.stat(seg).st_size)
    assert _disk_bytes(seg) <= _page_rounded(os.stat(seg).st_size)


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_a_sealed_segment_keeps_no_blocks_past_its_last_frame(
        open_store, store_path: Path, durability: str) -> None:
    s = open_store(durability=durability, max_segment_bytes=4 << 20)
    batches = [_columns(k * 4000, 4000) for k in range(9)]  # ~1.3 MB frames: 2 per segment
    for b in batches:
        s.append_batch(*b)
    segs = sorted(store_path.glob("*.seg"))
    assert len(segs) >= 4
    for seg in segs[:-1]:
        size = os.stat(seg).st_size
        assert size < 4 << 20
        assert _disk_bytes(seg) <= _page_rounded(size), seg.name
    if durability == "fsync":  # the active one is sized ahead of its frames: zeros
        with open(segs[-1], "rb") as f:
            f.seek(-4096, os.SEEK_END)
            assert f.read() == bytes(4096)
    else:  # the active one reserves blocks past its end
        assert _disk_bytes(segs[-1]) > _page_rounded(os.stat(segs[-1]).st_size)
    got = [(e.stream, e.type, e.data) for e in s.read_all()]
    assert got == _expected(batches)
    assert s.verify()["ok"] is True


def _writebacks(durability: str, store_path: Path, open_store, batch: int) -> list[tuple[int, int]]:
    io = FileIO()
    seen: list[tuple[int, int]] = []
    io.trace = lambda op, path, offset, data: seen.append((offset, data)) \
        if op == "writeback" and str(path).endswith("00000000000000000000.seg") else None
    s = open_store(io=io, durability=durability)
    total = 0
    i = 0
    while total < 20 << 20:
        cols = _columns(i, batch)
        s.append_batch(*cols)
        total += sum(len(d) for d in cols[2])
        i += batch
    return seen


@pytest.mark.parametrize("batch", [3000, 40])  # pipelined frames, and plain ones
def test_outside_fsync_mode_writeback_of_the_active_segment_is_started_every_mib(
        open_store, store_path: Path, batch: int) -> None:
    seen = _writebacks("os", store_path, open_store, batch)
    assert len(seen) >= 2
    assert seen[0][0] == 0
    for (a, n), (b, _) in itertools.pairwise(seen):
        assert a + n == b  # contiguous: every byte asked for once
    for a, n in seen:
        assert n >= 1 << 20 and (a + n) % 4096 == 0
    assert len(seen) >= 15  # (20 MiB appended)


def test_a_short_session_on_a_reopened_segment_reserves_nothing_and_asks_for_no_writeback(
        open_store, store_path: Path) -> None:
    # What the segment held at open was synced by the open: no hint covers it again, and the
    # reservation follows what this handle writes, not the segment (it was 32 MiB at once).
    s = open_store()
    for i in range(12):
        s.append_batch(*_columns(i * 1000, 1000))
    s.close()
    seg = store_path / "00000000000000000000.seg"
    size_open = os.stat(seg).st_size
    assert size_open > 3 << 20
    io = FileIO()
    seen: list[int] = []
    io.trace = lambda op, path, offset, data: seen.append(offset) \
        if op == "writeback" and str(path).endswith(seg.name) else None
    s = open_store(io=io)
    s.append("a", [cl.NewEvent("T", b"x" * 100)])
    assert seen == []
    assert _disk_bytes(seg) <= _page_rounded(size_open) + 8192
    assert io.counts["allocate"] == 0
    while os.stat(seg).st_size < size_open + (3 << 20):
        s.append_batch(*_columns(0, 100))
    assert seen and seen[0] == size_open & ~4095
    s.close()
    assert _disk_bytes(seg) <= _page_rounded(os.stat(seg).st_size) + 4096  # (+ an extent block)


def test_in_fsync_mode_no_writeback_is_asked_for(open_store, store_path: Path) -> None:
    assert _writebacks("fsync", store_path, open_store, 3000) == []


def test_the_narrow_region_tells_apart_types_that_share_their_first_and_last_bytes(
        open_store) -> None:
    # The region numbers a frame's types by comparing name keys (the first and last 8
    # bytes, and the length), which decide alone up to 16 bytes; longer names that agree on
    # both ends must still be told apart by their middle.
    types = ["E", "F", "EE", "Ev1", "Ev2", "Evt1", "Evt2", "ABCDEFGH", "ABCDEFGI",
             "ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOQ", "ABCDEFGHIJKLMNOPQ",
             "ABCDEFGH-one-12345678", "ABCDEFGH-two-12345678", "ABCDEFGH-one-12345678"]
    s = open_store()
    n = 3000
    names = [types[(i * 7) % len(types)] for i in range(n)]
    s.append_batch([f"s-{i % 40}" for i in range(n)], names, [b"d%d" % i for i in range(n)])
    s.append_batch(["one"] * 3, ["ABCDEFGH-two-12345678", "E", "ABCDEFGH-one-12345678"],
                   [b"a", b"b", b"c"])
    want = names + ["ABCDEFGH-two-12345678", "E", "ABCDEFGH-one-12345678"]
    assert [e.type for e in s.read_all()] == want
    scanned = [row["type"] for b in s.scan(columns=["position", "type"]) for row in b.to_pylist()]
    assert scanned == want


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_the_helper_thread_serves_every_frame_and_ends_with_the_store(tmp_path: Path) -> None:
    """One helper thread per writing store, kept from its first large frame (or writeback
    hint) to close: no thread per frame left behind, none after close or after the handle is
    dropped unclosed."""
    before = _threads()
    s = cl.EventStore.open(tmp_path / "s", durability="os")
    for k in range(6):
        s.append_batch(*_columns(k * 3000, 3000))
    assert _threads() <= before + 1
    s.close()
    assert _threads() == before
    for k in range(3):  # dropped without close: its thread ends with it
        s = cl.EventStore.open(tmp_path / f"dropped-{k}", durability="os")
        s.append_batch(*_columns(0, 3000))
        del s
        gc.collect()
    assert _threads() == before
    with cl.EventStore.open(tmp_path / "s", readonly=True) as r:
        assert r.head == 6 * 3000


_FORKED = """
import gc, os, sys
import chronolog as cl
from chronolog.errors import ForkedWriterError
sys.path.insert(0, sys.argv[2])
from test_store_large_frames import _columns
path = sys.argv[1]
store = cl.EventStore.open(path, durability=sys.argv[3])
store.append_batch(*_columns(0, 3000))  # a large frame: this process's helper thread runs
pid = os.fork()
if pid == 0:
    try:
        store.append_batch(*_columns(3000, 3000))
    except ForkedWriterError:
        pass
    store.close()  # lets go of the inherited pipeline without joining the parent's thread
    with cl.EventStore.open(path + "-child", durability="os") as own:
        own.append_batch(*_columns(0, 3000))  # its own store, its own helper thread
        assert own.head == 3000
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
pid = os.fork()
if pid == 0:  # dropping the inherited handle does not wait for the parent's thread either
    del store
    gc.collect()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
store.append_batch(*_columns(3000, 3000))  # the parent's helper still serves it
store.close()
with cl.EventStore.open(path, readonly=True) as r:
    print("read", [(e.stream, e.type, e.data) for e in r.read_all()] ==
          [(s, t, d) for s, t, d in zip(*_columns(0, 3000))] +
          [(s, t, d) for s, t, d in zip(*_columns(3000, 3000))])
"""


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_a_forked_child_never_waits_for_the_parents_helper_thread(
        tmp_path: Path, durability: str) -> None:
    """After fork() the child has no helper thread (the parent's locks may even have been held
    at the fork): closing or dropping the inherited writer lets go of its pipeline without
    joining the parent's thread (that hung), a store the child opens gets a thread of its own,
    and the parent's thread goes on serving the parent."""
    out = subprocess.run([sys.executable, "-c", _FORKED, str(tmp_path / "s"),
                          str(Path(__file__).parent), durability],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["child 0", "child 0", "read True"]


def test_an_interval_sync_while_a_large_frame_is_being_written_does_not_show_it(
        open_store) -> None:
    """A piped frame is indexed while its helper still writes it: a sync that runs then (here
    the interval thread's, called from inside the frame's write) covers only the bytes before
    it, so it must not move head past the frame. Before the fix it did, and a reader then read
    the half-written frame, took it for a damaged index and waited for the writer's lock to
    rebuild every index."""
    io = FileIO()
    seen: list[tuple[int, list[int]]] = []
    s = open_store(durability="interval", flush_interval_ms=60_000, io=io)
    s.append_batch(*_columns(0, 3000))

    def trace(op: str, path: object, offset: int, data: object) -> None:
        if op == "write" and isinstance(data, bytes) and len(data) > 512 * 1024 and not seen:
            s._log.sync()  # what the interval thread does, at this moment
            read: list[int] = []
            reader = threading.Thread(target=lambda: read.append(sum(1 for _ in s.read_all())),
                                      daemon=True)
            reader.start()
            reader.join(10)
            seen.append((s.head, read))

    io.trace = trace
    s.append_batch(*_columns(3000, 3000))
    io.trace = None
    assert seen == [(3000, [3000])]
    assert s.head == 6000 and s.verify()["ok"] is True


def test_a_group_commit_led_while_a_large_frame_is_being_written_does_not_show_it(
        open_store) -> None:
    """In "fsync" mode head moves only with a sync that covered the events. Thread C leads a
    sync (held inside its fdatasync), thread B appends one event and waits for the next sync,
    then the main thread appends a large frame: while that frame is being written, C's sync
    ends and B leads the next one. B's sync covers C's and B's events, not the frame still
    being written, so head must stop before the frame."""
    io = FileIO()
    s = open_store(durability="fsync", io=io)
    s.append_batch(*_columns(0, 3000))
    c_holds, c_may_go, b_wrote, b_synced = (threading.Event() for _ in range(4))
    seen: list[int] = []

    def trace(op: str, path: object, offset: int, data: object) -> None:
        me = threading.current_thread().name
        if op == "fsync" and me == "C" and not c_holds.is_set():
            c_holds.set()
            c_may_go.wait(10)
        elif op == "write" and me == "B":
            b_wrote.set()
        elif op == "publish" and me == "B":
            b_synced.set()
        elif op == "write" and isinstance(data, bytes) and len(data) > 512 * 1024 and not seen:
            c_may_go.set()
            b_synced.wait(10)
            seen.append(s.head)

    io.trace = trace
    c = threading.Thread(target=lambda: s.append("c", [cl.NewEvent("T", b"c")]), name="C")
    c.start()
    assert c_holds.wait(10)
    b = threading.Thread(target=lambda: s.append("b", [cl.NewEvent("T", b"b")]), name="B")
    b.start()
    assert b_wrote.wait(10)
    s.append_batch(*_columns(3000, 3000))
    c.join(10)
    b.join(10)
    io.trace = None
    assert b_synced.is_set()
    assert seen == [3002]  # the first 3000 events, C's and B's; not the frame being written
    assert s.head == 6002 and s.verify()["ok"] is True


@pytest.mark.parametrize("durability", ["os", "fsync", "interval"])
def test_verify_while_another_thread_writes_a_large_frame_finds_nothing_wrong(
        open_store, durability: str) -> None:
    """verify() and stats() from another thread while a large frame is being written (here
    from inside its write) see the store as it was before that append: the frame is indexed
    already but not all written, and it is not taken for a damaged index."""
    io = FileIO()
    seen: list[tuple[bool, list[object], int]] = []
    s = open_store(durability=durability, io=io)
    s.append_batch(*_columns(0, 3000))

    def trace(op: str, path: object, offset: int, data: object) -> None:
        if op == "write" and isinstance(data, bytes) and len(data) > 512 * 1024 and not seen:
            report = s.verify()
            seen.append((report["ok"], report["problems"], s.stats()["events"]))

    io.trace = trace
    s.append_batch(*_columns(3000, 3000))
    io.trace = None
    assert seen == [(True, [], 3000)]
    assert s.verify()["ok"] is True and s.stats()["events"] == 6000


def test_an_append_over_the_largest_frame_is_refused_with_split_it_as_the_remedy(open_store) -> None:
    # Four 1 GiB events (zero pages: nothing is touched before the refusal). Raising
    # max_event_bytes cannot help a whole append, so the message must not suggest it.
    import numpy as np
    import pyarrow as pa

    s = open_store(max_event_bytes=1 << 30)
    s.append("s", [cl.NewEvent("T", b"first")])
    size = (1 << 30) - 48 - 1 - 1  # a record of exactly 1 GiB (the body adds 4 bytes of offset each)
    zeros = np.zeros(4 * size, dtype=np.uint8)
    datas = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), 4, [None, pa.py_buffer(np.arange(5, dtype=np.int64) * size), pa.py_buffer(zeros)])
    big = bytes(size)
    for append in (lambda: s.append_batch(["s"] * 4, ["T"] * 4, datas),
                   lambda: s.append("s", [cl.NewEvent("T", big)] * 4)):
        with pytest.raises(cl.EventTooLargeError, match="the append is 4294967312 bytes, over the "
                           "limit of 4026531840 bytes; nothing was written. A whole append is one "
                           "frame and no option raises that limit: split it") as info:
            append()
        assert "max_event_bytes" not in str(info.value)
    assert s.head == 1 and s.verify()["ok"]


_KEEPS = """
import sys, tempfile
import pyarrow as pa
import chronolog as cl
def anon():  # MiB of anonymous memory (the heap, malloc's mappings) the process holds
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) // 1024
n = 300_000
streams = pa.array([f"s-{i % 100}" for i in range(n)], pa.large_string())
types = pa.array(["T"] * n, pa.large_string())
datas = pa.array([b"x" * 230] * n, pa.large_binary())
with cl.EventStore.open(tempfile.mkdtemp() + "/s", durability=sys.argv[1],
                        compression=None if sys.argv[2] == "none" else "zstd") as s:
    s.append_batch(streams[:10], types[:10], datas[:10])
    events = [cl.NewEvent("T", b"x" * 230) for _ in range(n)] if sys.argv[3] == "append" else None
    before = anon()
    if events is None:
        s.append_batch(streams, types, datas)  # one frame of ~80 MB
    else:
        s.append("s-7", events)
    after = anon()
    assert s.read_stream("s-7", 2999, limit=1)[0].data == b"x" * 230
print(after - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
@pytest.mark.parametrize("durability,compression,call", [
    ("os", "none", "append_batch"), ("fsync", "none", "append_batch"), ("os", "zstd", "append_batch"),
    ("os", "none", "append")])
def test_one_large_append_does_not_keep_its_frame_buffer(durability: str, compression: str,
                                                         call: str) -> None:
    """An append_batch of 300,000 events (a frame of ~80 MB) kept a buffer of the frame's size,
    and its per-event scratch, for the life of the handle (one of 3M events: ~740 MB, close()
    included). What stays after it is the index's growth (~15 MB here)."""
    out = subprocess.run([sys.executable, "-c", _KEEPS, durability, compression, call],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout) < 50, f"{out.stdout.strip()} MiB kept after the append"
