"""Fail-stop: after an injected write or fsync error (chronolog._core.fileio.FileIO) the append
raises StoreFailedError, so does every later one, and a reopen holds the acknowledged events."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

import chronolog as cl
from chronolog._core.fileio import FileIO
from chronolog.errors import StoreFailedError


def _append_until_failure(
    store: cl.EventStore, limit: int = 20
) -> tuple[list[bytes], bytes, StoreFailedError]:
    """Append one event at a time until one fails; return (acknowledged datas, failed data,
    the error)."""
    acknowledged: list[bytes] = []
    for i in range(limit):
        data = b"event-%d" % i
        try:
            store.append("s", [cl.NewEvent("T", data)])
        except StoreFailedError as exc:
            return acknowledged, data, exc
        acknowledged.append(data)
    raise AssertionError("the injected fault never fired")


def _reopened_datas(store_path: Path) -> list[bytes]:
    with cl.EventStore.open(store_path, durability="os") as s:
        assert s.verify()["ok"] is True
        return [e.data for e in s.read_all()]


@pytest.mark.parametrize(
    ("op", "durability"),
    [("write", "os"), ("write", "fsync"), ("write", "interval"), ("fsync", "fsync")],
)
def test_an_injected_io_error_fails_the_append_with_store_failed_error(
    open_store, op: str, durability: str
) -> None:
    io = FileIO()
    s = open_store(durability=durability, io=io)
    io.inject(op, after=2, errno=errno.EIO)
    acknowledged, _, exc = _append_until_failure(s)
    assert len(acknowledged) >= 1
    assert isinstance(exc.cause, OSError)
    assert exc.cause.errno == errno.EIO


@pytest.mark.parametrize("op", ["write", "fsync"])
def test_every_append_after_a_failure_raises_store_failed_error(open_store, op: str) -> None:
    io = FileIO()
    s = open_store(durability="fsync", io=io)
    io.inject(op, after=1, errno=errno.EIO)
    _append_until_failure(s)
    io.clear()
    for _ in range(3):
        with pytest.raises(StoreFailedError):
            s.append("s", [cl.NewEvent("T", b"again")])
    with pytest.raises(StoreFailedError):
        s.append_batch(["s"], ["T"], [b"again"])


def test_store_failed_error_carries_the_errno_of_the_cause(open_store) -> None:
    io = FileIO()
    s = open_store(io=io)
    io.inject("write", after=0, errno=errno.ENOSPC)
    with pytest.raises(StoreFailedError) as info:
        s.append("s", [cl.NewEvent("T", b"x")])
    assert info.value.cause.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_reopen_after_a_write_failure_holds_exactly_the_acknowledged_events(
    open_store, store_path: Path, durability: str
) -> None:
    io = FileIO()
    s = open_store(durability=durability, io=io)
    io.inject("write", after=3, errno=errno.EIO)
    acknowledged, _, _ = _append_until_failure(s)
    s.close()
    assert _reopened_datas(store_path) == acknowledged


def test_reopen_after_an_fsync_failure_holds_the_acknowledged_events_as_a_prefix(
    open_store, store_path: Path
) -> None:
    io = FileIO()
    s = open_store(durability="fsync", io=io)
    io.inject("fsync", after=3, errno=errno.EIO)
    acknowledged, failed, _ = _append_until_failure(s)
    s.close()
    stored = _reopened_datas(store_path)
    assert stored[: len(acknowledged)] == acknowledged
    assert stored[len(acknowledged) :] in ([], [failed])  # the failed append: whole or absent


def test_reopen_after_an_fsync_failure_holds_exactly_the_acknowledged_events(
    open_store, store_path: Path
) -> None:
    io = FileIO()
    s = open_store(durability="fsync", io=io)
    io.inject("fsync", after=3, errno=errno.EIO)
    acknowledged, _, _ = _append_until_failure(s)
    s.close()
    assert _reopened_datas(store_path) == acknowledged


def test_a_failure_while_rolling_a_segment_is_fail_stop(open_store, store_path: Path) -> None:
    io = FileIO()
    s = open_store(io=io, max_segment_bytes=4096)
    io.inject("open", after=0, errno=errno.EMFILE)
    acknowledged: list[bytes] = []
    with pytest.raises(StoreFailedError):
        for i in range(100):
            data = b"%03d" % i + b"x" * 200
            s.append("s", [cl.NewEvent("T", data)])
            acknowledged.append(data)
    with pytest.raises(StoreFailedError):
        s.append("s", [cl.NewEvent("T", b"again")])
    s.close()
    assert _reopened_datas(store_path) == acknowledged


def test_reads_still_work_after_a_failure(open_store) -> None:
    io = FileIO()
    s = open_store(io=io)
    io.inject("write", after=2, errno=errno.EIO)
    acknowledged, _, _ = _append_until_failure(s)
    assert [e.data for e in s.read_stream("s")] == acknowledged


def test_a_reopened_store_accepts_appends_after_a_failure(open_store, store_path: Path) -> None:
    io = FileIO()
    s = open_store(durability="fsync", io=io)
    io.inject("write", after=2, errno=errno.EIO)
    acknowledged, _, _ = _append_until_failure(s)
    s.close()
    s2 = open_store(durability="fsync")
    res = s2.append("s", [cl.NewEvent("T", b"after")])
    assert res == cl.AppendResult(len(acknowledged), len(acknowledged), len(acknowledged) + 1)


def test_after_an_fsync_failure_the_failed_append_is_not_visible_to_reads(open_store) -> None:
    io = FileIO()
    s = open_store(durability="fsync", io=io)
    io.inject("fsync", after=2, errno=errno.EIO)
    acknowledged, _, _ = _append_until_failure(s)
    assert s.head == len(acknowledged)
    assert [e.data for e in s.read_all()] == acknowledged
    assert s.stream_version("s") == len(acknowledged) - 1


def test_a_checkpoint_whose_sync_fails_fail_stops_the_store(open_store, store_path: Path) -> None:
    """The events a checkpoint covers are synced first; that sync failing is not one of the
    checkpoint's own (absorbed) errors: checkpoint() raises and so does every later append."""
    io = FileIO()
    s = open_store(durability="os", io=io)
    s.append("s", [cl.NewEvent("T", b"acknowledged")])
    io.inject("fsync", after=0, errno=errno.EIO)
    with pytest.raises(StoreFailedError) as failed:
        s.checkpoint()
    assert failed.value.cause.errno == errno.EIO
    with pytest.raises(StoreFailedError):
        s.append("s", [cl.NewEvent("T", b"refused")])
    io.clear()
    s.close()
    assert _reopened_datas(store_path) == [b"acknowledged"]


_OUT_OF_MEMORY_WHILE_INDEXING = """
import resource, sys
import chronolog as cl
from chronolog.errors import StoreFailedError
path, durability, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = cl.EventStore.open(path, durability=durability)
for _ in range(16):  # 65,536 events: the position index's array is full
    store.append_batch([f"s{i % 50}" for i in range(4096)], ["T"] * 4096, [b"x" * 100] * 4096)
batch = ([f"s{i % 50}" for i in range(n)], ["T"] * n, [b"y" * 100] * n)
one = [cl.NewEvent("T", b"y" * 100)]
size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
# Room for the append's own buffers (the same sizes as before), not for the index to grow.
resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 1024, resource.RLIM_INFINITY))
try:
    if n == 1:
        store.append("s1", one)
    else:
        store.append_batch(*batch)
    print("appended")
except StoreFailedError as exc:
    print("failed:", type(exc.__cause__).__name__)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("head", store.head)
store.close()
with cl.EventStore.open(path, durability="os") as again:
    print("reopened", again.head, again.verify()["ok"])
"""


@pytest.mark.parametrize("events", [1, 2000, 4096], ids=["append", "plain-frame", "piped-frame"])
@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_running_out_of_memory_while_indexing_a_written_frame_fail_stops_with_it_cut(
        tmp_path: Path, durability: str, events: int) -> None:
    """In a child process whose address space is capped once the append's buffers exist, the
    index cannot grow for the frame just written: the store fail-stops (StoreFailedError
    from MemoryError) and cuts the frame; the reopened store holds what came before. (Before,
    a bare MemoryError left the frame unindexed in the file, and a piped frame's helper
    thread waiting: the process then died in free() on close.)"""
    out = subprocess.run([sys.executable, "-c", _OUT_OF_MEMORY_WHILE_INDEXING,
                          str(tmp_path / "s"), durability, str(events)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["failed: MemoryError", "head 65536", "reopened 65536 True"]
