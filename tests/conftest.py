"""Shared fixtures: stores in tmp_path (closed at teardown) and small helpers to compare them.

Stores default to durability="os" for speed; tests that are about fsync ask for it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import chronolog as cl


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """The directory of the store under test (not created yet)."""
    return tmp_path / "store"


@pytest.fixture
def open_store(store_path: Path) -> Iterator[Callable[..., cl.EventStore]]:
    """A factory: open_store(**options) opens the store at store_path (durability "os" unless
    given); every handle it made is closed at teardown."""
    handles: list[cl.EventStore] = []

    def _open(path: Path | None = None, **options: Any) -> cl.EventStore:
        options.setdefault("durability", "os")
        handle = cl.EventStore.open(path if path is not None else store_path, **options)
        handles.append(handle)
        return handle

    yield _open
    for handle in reversed(handles):
        handle.close()


@pytest.fixture
def store(open_store: Callable[..., cl.EventStore]) -> cl.EventStore:
    """A fresh, empty, writable store (durability "os")."""
    return open_store()


def event_tuple(e: cl.RecordedEvent) -> tuple[Any, ...]:
    """Every field of a RecordedEvent as a plain tuple (for exact comparisons)."""
    return (e.position, e.stream, e.version, e.type, e.data, e.metadata, e.timestamp, e.id)


@pytest.fixture
def as_tuples() -> Callable[[Iterable[cl.RecordedEvent]], list[tuple[Any, ...]]]:
    """as_tuples(events) -> [event_tuple(e), ...]."""
    return lambda events: [event_tuple(e) for e in events]


@pytest.fixture
def disk_state(store_path: Path) -> Callable[[], dict[str, int]]:
    """disk_state() -> {file name: size} of the store's segment files (the primary data)."""

    def _state() -> dict[str, int]:
        return {
            n: os.path.getsize(store_path / n)
            for n in sorted(os.listdir(store_path))
            if n.endswith(".seg")
        }

    return _state


@pytest.fixture
def ev() -> Callable[..., cl.NewEvent]:
    """ev(type="Happened", data=b"{}", **kw) -> NewEvent, to keep tests short."""

    def _ev(type: str = "Happened", data: bytes = b"{}", **kw: Any) -> cl.NewEvent:
        return cl.NewEvent(type, data, **kw)

    return _ev


HANG_GUARD_SECONDS = 5.0  # an open (even a refused one) must come back well within this


def _open_in_thread(path: Path, **kwargs: Any) -> BaseException | cl.EventStore:
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(cl.EventStore.open(path, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(HANG_GUARD_SECONDS)
    assert not t.is_alive(), f"EventStore.open blocked for more than {HANG_GUARD_SECONDS} s"
    return box[0]


@pytest.fixture
def open_in_thread() -> Callable[..., BaseException | cl.EventStore]:
    """EventStore.open(path, **kwargs) in a thread: the store, or the exception it raised; an
    open that blocks fails the test instead of hanging the suite."""
    return _open_in_thread
