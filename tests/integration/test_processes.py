"""Several processes on one store: one writer (a second gets StoreLockedError at once, never a
hang), and read-only processes that follow the writer and only ever see whole appends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import chronolog as cl

HANG_GUARD_SECONDS = 5.0  # a refused open must come back well within this (it must not block)
WAIT_SECONDS = 60.0  # generous bound for child processes on a loaded machine (hang guard)

TRY_OPEN = """
import sys, time
import chronolog as cl
t = time.monotonic()
try:
    cl.EventStore.open(sys.argv[1])
    print("opened", time.monotonic() - t)
except cl.StoreLockedError as exc:
    print("locked", time.monotonic() - t, exc.path)
"""

HOLD = """
import sys
import chronolog as cl
store = cl.EventStore.open(sys.argv[1], durability="os")
store.append("held", [cl.NewEvent("Held", b"1")])
print("R", flush=True)
for line in sys.stdin:  # each line: append one more event and say so; EOF: close and exit
    store.append("held", [cl.NewEvent("Held", line.strip().encode())])
    print("A", flush=True)
store.close()
"""

# Batch k holds k % 5 + 1 events, every one tagged with k; half of them through append_batch
# over several streams. Halfway it stops until the parent says "go" (a guaranteed live view).
TAIL_WRITER = """
import json, sys, time
import chronolog as cl
path, batches, durability = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with cl.EventStore.open(path, durability=durability, max_segment_bytes=16384) as store:
    print("R", flush=True)
    for k in range(batches):
        if k == batches // 2:
            print("H", store.head, flush=True)
            sys.stdin.readline()
        n = k % 5 + 1
        datas = [json.dumps({"batch": k, "i": i, "n": n}).encode() + b" " * (k * 37 % 400)
                 for i in range(n)]
        if k % 2:
            store.append_batch([f"tail-{(k + i) % 7}" for i in range(n)], ["Tagged"] * n, datas)
        else:
            store.append(f"tail-{k % 7}", [cl.NewEvent("Tagged", d) for d in datas])
        if k % 16 == 0:
            time.sleep(0.001)  # let the reader in between appends now and then
print("D", flush=True)
"""


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _expect_line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(prefix):
        proc.kill()
        _, err = proc.communicate(timeout=WAIT_SECONDS)
        raise AssertionError(f"expected {prefix!r} from the child, got {line!r}; stderr:\n{err}")
    return line


def _finish(proc: subprocess.Popen[str]) -> None:
    try:
        _, err = proc.communicate(timeout=WAIT_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err


def test_a_second_writer_in_another_process_gets_store_locked_error_at_once(tmp_path: Path) -> None:
    with cl.EventStore.open(tmp_path / "s", durability="os"):
        out = subprocess.run(
            [sys.executable, "-c", TRY_OPEN, str(tmp_path / "s")],
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
            check=False,
        )
    assert out.returncode == 0, out.stderr
    verdict, elapsed, where = out.stdout.split()
    assert verdict == "locked"
    assert float(elapsed) < HANG_GUARD_SECONDS  # hang check: the open must not wait for the lock
    assert where == str((tmp_path / "s").resolve())


def test_opening_a_store_that_another_process_writes_raises_store_locked_error_at_once(
    tmp_path: Path, open_in_thread: Callable[..., Any],
) -> None:
    holder = _spawn(HOLD, str(tmp_path / "s"))
    try:
        _expect_line(holder, "R")
        result = open_in_thread(tmp_path / "s")
        assert isinstance(result, cl.StoreLockedError), result
    finally:
        _finish(holder)  # closes its stdin: the holder closes the store and exits


def test_a_second_writer_in_the_same_process_gets_store_locked_error_at_once(
    tmp_path: Path, open_in_thread: Callable[..., Any],
) -> None:
    with cl.EventStore.open(tmp_path / "s", durability="os"):
        result = open_in_thread(tmp_path / "s")
        assert isinstance(result, cl.StoreLockedError), result


def test_a_refused_open_leaves_the_writer_holding_the_lock(tmp_path: Path, open_in_thread: Callable[..., Any]) -> None:
    # (POSIX record locks would be dropped when the refused open closes its descriptor.)
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        assert isinstance(open_in_thread(tmp_path / "s"), cl.StoreLockedError)
        out = subprocess.run(
            [sys.executable, "-c", TRY_OPEN, str(tmp_path / "s")],
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
            check=False,
        )
        assert out.stdout.startswith("locked"), out.stdout + out.stderr
        store.append("still-mine", [cl.NewEvent("Kept", b"x")])
        assert store.head == 1


def test_a_writer_killed_with_kill_9_leaves_no_lock_behind(tmp_path: Path, open_in_thread: Callable[..., Any]) -> None:
    holder = _spawn(HOLD, str(tmp_path / "s"))
    try:
        _expect_line(holder, "R")
        assert holder.stdin is not None
        holder.stdin.write("second\n")
        holder.stdin.flush()
        _expect_line(holder, "A")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=WAIT_SECONDS)
    result = open_in_thread(tmp_path / "s", durability="os")
    assert isinstance(result, cl.EventStore), result
    with result as store:
        assert [e.data for e in store.read_all()] == [b"1", b"second"]


def test_a_reader_process_may_open_while_another_process_writes(tmp_path: Path) -> None:
    holder = _spawn(HOLD, str(tmp_path / "s"))
    try:
        _expect_line(holder, "R")
        with cl.EventStore.open(tmp_path / "s", readonly=True) as reader:
            assert [e.data for e in reader.read_all()] == [b"1"]
            assert holder.stdin is not None
            holder.stdin.write("two\n")
            holder.stdin.flush()
            _expect_line(holder, "A")
            assert [e.data for e in reader.read_all()] == [b"1", b"two"]
    finally:
        _finish(holder)  # closes its stdin: the holder closes the store and exits


def _batch_ends(batches: int) -> set[int]:
    ends, head = {0}, 0
    for k in range(batches):
        head += k % 5 + 1
        ends.add(head)
    return ends


def _check_whole_batches(events: list[cl.RecordedEvent], start: int) -> None:
    """Events from position `start` (a batch boundary) form whole batches, in order."""
    expect_batch = None
    for j, e in enumerate(events):
        assert e.position == start + j, f"position {e.position}, expected {start + j}"
        tag = json.loads(e.data.split(b"}")[0] + b"}")
        if expect_batch is not None and tag["i"] > 0:
            assert tag["batch"] == expect_batch, (
                f"event of batch {tag['batch']} inside batch {expect_batch}"
            )
        if tag["i"] == 0:
            expect_batch = tag["batch"]
        assert tag["n"] == tag["batch"] % 5 + 1
        if j == 0:
            assert tag["i"] == 0, f"the read starts inside batch {tag['batch']}"
    if events:
        last = json.loads(events[-1].data.split(b"}")[0] + b"}")
        assert last["i"] == last["n"] - 1, (
            f"the read ends inside batch {last['batch']} (a partial append)"
        )


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_a_reader_process_following_a_writer_process_sees_only_whole_appends_in_order(
    tmp_path: Path, durability: str,
) -> None:
    """In "fsync" mode the writer sizes its active segment ahead of its frames and cuts it
    back at each roll (every 16 KiB here): the reader never reads past what was published."""
    batches = 900
    total = max(_batch_ends(batches))
    ends = _batch_ends(batches)
    path = tmp_path / "s"
    cl.EventStore.open(path, durability="os").close()  # exists before the reader opens it
    reader = cl.EventStore.open(path, readonly=True)
    writer = _spawn(TAIL_WRITER, str(path), str(batches), durability)
    seen: list[cl.RecordedEvent] = []
    heads: set[int] = set()
    try:
        _expect_line(writer, "R")
        half = int(_expect_line(writer, "H").split()[1])
        deadline = time.monotonic() + WAIT_SECONDS  # hang guard, not a timing assertion
        released = False
        while len(seen) < total:
            assert time.monotonic() < deadline, f"the reader saw {len(seen)} of {total} events"
            head = reader.head
            assert head in ends, f"the reader's head {head} is inside an append"
            heads.add(head)
            fresh = list(reader.read_all(from_position=len(seen)))
            _check_whole_batches(fresh, len(seen))
            seen.extend(fresh)
            if not released:
                assert len(seen) <= half
                if len(seen) == half:  # the writer is parked: this view is of a live store
                    assert writer.stdin is not None
                    writer.stdin.write("go\n")
                    writer.stdin.flush()
                    released = True
        _expect_line(writer, "D")
        _finish(writer)
        assert 0 < half < total and half in heads
        tags = [json.loads(e.data.split(b"}")[0] + b"}")["batch"] for e in seen]
        assert tags == sorted(tags) and tags[-1] == batches - 1
        for stream in reader.streams("tail-"):
            by_stream = reader.read_stream(stream)
            assert [e.version for e in by_stream] == list(range(len(by_stream)))
            assert by_stream == [e for e in seen if e.stream == stream]
        assert reader.verify()["ok"]
        assert reader.stats()["segments"] > 1  # the reader followed the writer across rolls
    finally:
        reader.close()
        if writer.poll() is None:
            writer.kill()
            writer.communicate()


# Single events whose frames are 4,064 bytes: two fill 8,128 bytes after the 64-byte segment
# header and a third does not fit in 12,255, so every sealed segment ends at 8,192, a page
# boundary, while the writer ("fsync" mode) had sized the file to 12,255: each roll cuts away
# the page that starts where a reader would look for the next frame.
PAGE_WRITER = """
import sys
import chronolog as cl
path, n = sys.argv[1], int(sys.argv[2])
with cl.EventStore.open(path, durability="fsync", max_segment_bytes=12255) as store:
    print("R", flush=True)
    for i in range(n):
        store.append("p", [cl.NewEvent("T", b"%06d" % i + b"x" * 3940)])
print("D", flush=True)
"""

PAGE_READER = """
import sys
import chronolog as cl
path, n = sys.argv[1], int(sys.argv[2])
seen = 0
with cl.EventStore.open(path, readonly=True) as store:
    while seen < n:
        for e in store.read_all(from_position=seen):
            assert e.position == seen and e.data[:6] == b"%06d" % seen, (e.position, seen)
            seen += 1
print("read", seen, flush=True)
"""


def test_a_reader_process_never_touches_the_page_a_roll_cuts_away(tmp_path: Path) -> None:
    """In "fsync" mode the writer sizes its active segment ahead and cuts it back to its last
    frame at each roll; here every cut removes a whole page, right where a reader reaching the
    segment's end would look for the next frame. A reader that touched it would die of SIGBUS;
    it stops at the visibility mark and checks the file's size after reading the mark, so it
    reads every event, in order."""
    n = 400
    path = tmp_path / "s"
    cl.EventStore.open(path, durability="fsync").close()  # exists before the reader opens it
    reader = _spawn(PAGE_READER, str(path), str(n))
    writer = _spawn(PAGE_WRITER, str(path), str(n))
    try:
        _expect_line(writer, "R")
        _expect_line(writer, "D")
        _finish(writer)
        assert _expect_line(reader, "read").split() == ["read", str(n)]
        _finish(reader)
    finally:
        for proc in (reader, writer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    sealed = sorted(path.glob("*.seg"))[:-1]
    assert len(sealed) >= n // 2 - 1
    assert {seg.stat().st_size for seg in sealed} == {8192}


CUT_READER = """
import sys, time
import chronolog as cl
path, seconds, n, what = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with cl.EventStore.open(path, readonly=True) as store:
    print("R", flush=True)
    end, refreshes = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        if what == "verify":
            assert store.verify()["ok"]
        assert store.refresh() == n
        refreshes += 1
print("read", refreshes, flush=True)
"""


@pytest.mark.parametrize("what", ["refresh", "verify"])
def test_a_reader_process_survives_a_torn_tail_cut_under_it(tmp_path: Path, what: str) -> None:
    """A writer in "os" mode that crashed mid-append leaves a torn tail, and the next writer's
    open cuts it. A reader refreshing meanwhile looks at the torn frame (here: a 1 MiB frame
    whose header checks and whose body does not) and must not read it through its mapping: a
    page cut away under a read is SIGBUS. The cut is repeated here, thousands of times, while
    the reader refreshes; before readers checked new frames through a copy, it died within a
    second. verify() looks at the tail past the last frame the same way (through a copy)."""
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os") as store:
        for i in range(5):
            store.append("a", [cl.NewEvent("T", b"%d" % i * 100)])
    seg = max(path.glob("*.seg"))
    end = seg.stat().st_size
    shutil.copytree(path / "index", tmp_path / "index-before")
    with cl.EventStore.open(path, durability="os") as store:
        store.append("a", [cl.NewEvent("T", os.urandom(1 << 20))])
    frame = bytearray(seg.read_bytes()[end:])
    os.truncate(seg, end)
    frame[len(frame) // 2] ^= 0xFF
    # The crashed writer never checkpointed its torn frame: the index is the one before it
    # (a checkpoint past the cut would make the cut a loss, which verify reports).
    shutil.rmtree(path / "index")
    shutil.copytree(tmp_path / "index-before", path / "index")
    reader = _spawn(CUT_READER, str(path), "2.0", "5", what)
    fd = os.open(seg, os.O_WRONLY)
    cuts = 0
    try:
        _expect_line(reader, "R")
        while reader.poll() is None and cuts < 100_000:
            os.pwrite(fd, frame, end)
            time.sleep(0.0002)
            os.ftruncate(fd, end)
            cuts += 1
        out, err = reader.communicate(timeout=WAIT_SECONDS)
        assert reader.returncode == 0, (reader.returncode, err[-2000:])
        assert out.startswith("read ") and int(out.split()[1]) > 0
        assert cuts > 500
    finally:
        os.close(fd)
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    with cl.EventStore.open(path, readonly=True) as after:
        assert after.head == 5 and after.verify()["ok"]

FORK_GUARD = """
import os, sys
import chronolog as cl
from chronolog.errors import ForkedWriterError
path, durability = sys.argv[1], sys.argv[2]
store = cl.EventStore.open(path, durability=durability)
store.append("x", [cl.NewEvent("T", b"parent-0")])
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    refused = []
    for name, call in [("append", lambda: store.append("y", [cl.NewEvent("T", b"child")])),
                       ("append_batch", lambda: store.append_batch(["y"], ["T"], [b"child"])),
                       ("checkpoint", store.checkpoint)]:
        try:
            call()
        except ForkedWriterError as exc:
            refused.append(name if exc.owner == os.getppid() else "another owner")
    os.read(r, 1)  # the parent has appended since the fork
    store.close()  # must not sync, checkpoint or cut anything of the parent's
    print("refused", ",".join(refused), flush=True)
    os._exit(0)
os.close(r)
for i in range(3):
    store.append("x", [cl.NewEvent("T", b"parent-%d" % (i + 1))])
os.write(w, b"g")
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
with cl.EventStore.open(path, readonly=True) as reader:  # the parent still writes
    print("reader", ",".join(e.data.decode() for e in reader.read_all()))
store.append("x", [cl.NewEvent("T", b"parent-4")])
store.close()
with cl.EventStore.open(path, readonly=True) as reader:
    print("reopened", ",".join(e.data.decode() for e in reader.read_all()))
"""


@pytest.mark.parametrize("durability", ["os", "fsync", "interval"])
def test_a_forked_child_cannot_write_through_the_inherited_writer(
        tmp_path: Path, durability: str) -> None:
    """A child forked from a writer shares its descriptors and its idea of the log's end.
    Before, the child's append was acknowledged and then overwritten by the parent's next one
    (both wrote at the same offset), and the child's close hid or cut what the parent appended
    after the fork. Now every write through the inherited handle raises ForkedWriterError and
    its close lets go of its copies only."""
    out = subprocess.run([sys.executable, "-c", FORK_GUARD, str(tmp_path / "s"), durability],
                         capture_output=True, text=True, timeout=WAIT_SECONDS, check=False)
    assert out.returncode == 0, out.stderr
    parent = "parent-0,parent-1,parent-2,parent-3"
    assert out.stdout.splitlines() == [
        "refused append,append_batch,checkpoint", "child 0", f"reader {parent}",
        f"reopened {parent},parent-4"]


@pytest.mark.parametrize("durability", ["os", "interval", "fsync"])
def test_a_readers_verify_while_a_writer_appends_and_rolls_reports_no_damage(
        tmp_path: Path, durability: str) -> None:
    """Frames a writer appended after the reader's last refresh are whole but past what the
    reader indexed: verify once took the first for a torn frame and every later one for a
    power loss's leftovers, and said "damage" about a healthy store (about half the reports
    in "os" mode). They are skipped as whole frames now; a frame caught half-written in the
    reader's copy with a whole one after it is looked at again."""
    import threading

    path = tmp_path / "s"
    stop = threading.Event()
    with cl.EventStore.open(path, durability=durability, max_segment_bytes=65536) as w:
        w.append("w", [cl.NewEvent("W", b"w" * 200)])

        def write() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                if i % 5 == 0:
                    w.append_batch([f"b-{i % 7}"] * 20, ["B"] * 20, [b"b" * 100] * 20)
                else:
                    w.append(f"w-{i % 13}", [cl.NewEvent("W", b"w" * 200)])
                if i % 10 == 0:
                    time.sleep(0.001)

        t = threading.Thread(target=write)
        t.start()
        reports = []
        try:
            with cl.EventStore.open(path, readonly=True) as r:
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    reports.append(r.verify())
        finally:
            stop.set()
            t.join()
    assert [r["problems"] for r in reports if not r["ok"]] == []
    assert len(reports) > 10


READER_THREADS_CLOSE = r"""
import random, sys, threading, time
import chronolog as cl
from chronolog.errors import StoreClosedError
random.seed(int(sys.argv[2]))
r = cl.EventStore.open(sys.argv[1], readonly=True)
errors = []
def work(k):
    while True:
        try:
            if k == 0: r.verify()
            elif k == 1: sum(1 for _ in r.read_all(from_position=max(0, r.head - 2000)))
            elif k == 2: r.read_stream("s-3")
            elif k == 3: r.streams(); r.stats()
            elif k == 4: sum(b.num_rows for b in r.scan(from_position=max(0, r.head - 3000)))
            else: r.refresh()
        except StoreClosedError:
            return
        except Exception as exc:
            errors.append(f"{k}: {type(exc).__name__}: {exc}")
            return
threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(6)]
for t in threads: t.start()
time.sleep(random.uniform(0.05, 0.3))
r.close()
for t in threads: t.join(15)
print(sum(t.is_alive() for t in threads), errors)
"""


def _writer_thread(path: Path, stop: Any, ready: Any) -> None:
    with cl.EventStore.open(path, durability="os", max_segment_bytes=32768) as w:
        i = 0
        while not stop.is_set():
            w.append(f"s-{i % 17}", [cl.NewEvent("E", f"p={i}".encode() + b" " * 100)])
            i += 1
            if i == 200:
                ready.set()
            if i % 10 == 0:
                time.sleep(0.0005)


def test_threads_sharing_a_reader_handle_follow_a_writer_across_segment_rolls(tmp_path: Path) -> None:
    """Reads refresh a read-only handle by themselves; two threads' refreshes once both
    attached the writer's next segment, and from then on every call raised 'a gap between
    segments'. Refreshes now take the handle's lock."""
    import threading

    path = tmp_path / "s"
    stop, ready = threading.Event(), threading.Event()
    writer = threading.Thread(target=_writer_thread, args=(path, stop, ready))
    writer.start()
    errors: list[str] = []
    wrong = 0

    def read(r: cl.EventStore) -> None:
        nonlocal wrong
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                head = r.refresh()
                for ev in r.read_all(from_position=max(0, head - 50)):
                    wrong += not ev.data.startswith(f"p={ev.position} ".encode())
            except Exception as exc:  # noqa: BLE001 (every failure is the finding)
                errors.append(f"{type(exc).__name__}: {exc}")
                return

    try:
        assert ready.wait(30)
        with cl.EventStore.open(path, readonly=True) as r:
            readers = [threading.Thread(target=read, args=(r,)) for _ in range(4)]
            for t in readers:
                t.start()
            for t in readers:
                t.join()
            rolled = len(list(path.glob("*.seg")))
    finally:
        stop.set()
        writer.join()
    assert errors == [] and wrong == 0
    assert rolled > 3


def test_closing_a_reader_handle_under_its_threads_raises_store_closed_and_never_crashes(
        tmp_path: Path) -> None:
    """verify, reads, scans and refreshes on 6 threads of a reader handle while the writer
    rolls segments, and the handle closed at a random moment: each thread ends with
    StoreClosedError. A refresh waiting for another's lock once ran on what close had freed
    (a segfault), and verify reading the tail through a closed descriptor raised EBADF."""
    import threading

    path = tmp_path / "s"
    stop, ready = threading.Event(), threading.Event()
    writer = threading.Thread(target=_writer_thread, args=(path, stop, ready))
    writer.start()
    try:
        assert ready.wait(30)
        for seed in range(6):
            proc = subprocess.run([sys.executable, "-c", READER_THREADS_CLOSE, str(path), str(seed)],
                                  capture_output=True, text=True, timeout=WAIT_SECONDS, check=False)
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert proc.stdout.strip() == "0 []", proc.stdout
    finally:
        stop.set()
        writer.join()
