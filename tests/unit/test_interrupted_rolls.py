"""A signal handler that raises (Ctrl-C's KeyboardInterrupt) can fire wherever the core runs
Python code, and a segment roll runs some between its steps. An interrupted roll must not leave
a store that later appends damage (a new segment on disk this handle does not know, then an
append into the old one: a gap every later open refused) nor a handle that cannot close (a
checkpoint thread that never started, joined). The writer fail-stops; the store reopens whole.
These tests raise the interrupt from the Python functions the roll calls, deterministically."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import chronolog as cl
from chronolog.errors import StoreFailedError


def _interrupt_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str,
                    when: Callable[..., bool]) -> list[bool]:
    """Make owner.name raise KeyboardInterrupt the first time `when(*args)` holds."""
    real = getattr(owner, name)
    fired: list[bool] = []

    def wrapper(*args: Any, **kw: Any) -> Any:
        if not fired and when(*args):
            fired.append(True)
            raise KeyboardInterrupt("Ctrl-C inside the roll")
        return real(*args, **kw)

    monkeypatch.setattr(owner, name, wrapper)
    return fired


def _segments(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("*.seg"))


POINTS: dict[str, Callable[[pytest.MonkeyPatch, Path], list[bool]]] = {
    # after the new segment file was created and synced, before the handle lists it
    "directory sync": lambda mp, path: _interrupt_once(
        mp, os, "fsencode", lambda p: os.path.abspath(p) == str(path)),
    # while the new segment's name is made, before it is created
    "segment path": lambda mp, path: _interrupt_once(
        mp, os.path, "join", lambda *a: str(a[-1]).endswith(".seg")),
    # the background checkpoint's thread, whose start() never returns
    "checkpoint thread": lambda mp, path: _interrupt_once(
        mp, threading.Thread, "start", lambda t: t.name == "chronolog-checkpoint"),
}


@pytest.fixture(params=["os", "fsync"])
def durability(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


@pytest.mark.parametrize("point", list(POINTS))
def test_an_interrupted_roll_fail_stops_the_writer_and_the_store_reopens_whole(
        store_path: Path, monkeypatch: pytest.MonkeyPatch, point: str, durability: str) -> None:
    store = cl.EventStore.open(store_path, durability=durability, max_segment_bytes=4096)
    for _ in range(3):
        store.append("big", [cl.NewEvent("E", b"x" * 1000)])
    fired = POINTS[point](monkeypatch, store_path)
    with pytest.raises(KeyboardInterrupt):
        store.append("big", [cl.NewEvent("E", b"x" * 1000)])  # needs a roll
    monkeypatch.undo()
    assert fired
    acked = store.head
    # Before: an append fitting the old segment was acknowledged there, behind a new segment
    # on disk, and the store never opened again ('a gap between segments').
    with pytest.raises(StoreFailedError, match="a segment roll was interrupted by KeyboardInterrupt"):
        store.append("small", [cl.NewEvent("E", b"y")])
    store.close()  # releases everything (a never-started checkpoint thread is not joined)

    with cl.EventStore.open(store_path, durability=durability, max_segment_bytes=4096) as again:
        assert again.head == acked
        assert [e.data for e in again.read_all()][:3] == [b"x" * 1000] * 3
        for _ in range(4):  # and it rolls again
            again.append("big", [cl.NewEvent("E", b"x" * 1000)])
        assert again.verify()["ok"] and again.head == acked + 4
    assert len(_segments(store_path)) >= 3


def test_a_checkpoint_job_whose_thread_never_started_is_cancelled_not_joined() -> None:
    from chronolog._core.checkpoint import CheckpointJob
    from chronolog._core.fileio import FileIO

    job = CheckpointJob(FileIO(), 0)
    job.thread = threading.Thread(target=job.run)  # start() never got through
    assert job.wait() is False and job.cancelled
    job.thread.start()  # should it run after all, it does nothing
    job.thread.join()
    assert job.done and job.error is None


def test_the_group_commit_lock_is_taken_back_through_an_interrupted_acquire() -> None:
    # A blocking acquire in the main thread returns without the lock when a signal handler
    # raises; a sync leader then left `syncing` set (every later sync waited for it), and a
    # waiter's `with` released a lock it did not hold.
    from chronolog._core.commit import acquire_through

    class Interrupted:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.tries = 0

        def acquire(self) -> bool:
            self.tries += 1
            if self.tries <= 2:
                raise KeyboardInterrupt("Ctrl-C while waiting for the lock")
            return self.lock.acquire()

    lock = Interrupted()
    pending = acquire_through(lock)
    assert isinstance(pending, KeyboardInterrupt) and lock.lock.locked() and lock.tries == 3
