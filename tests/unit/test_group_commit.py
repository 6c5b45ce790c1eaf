"""Group commit in durability "fsync" (docs/design.md, "Group commit"): concurrent appenders
share fdatasyncs, waiters are woken one at a time (a baton passed by the thread about to give
up the GIL), and a waiter whose baton is never passed still returns."""

from __future__ import annotations

import threading
from pathlib import Path

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
