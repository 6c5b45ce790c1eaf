"""Timeouts of wait_for and subscriptions: infinity means wait forever (as None does), and a
finite one still ends the wait; bad values are refused (tests/unit/test_bad_input.py)."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

import chronolog as cl


def test_wait_for_with_an_infinite_timeout_waits_until_the_event_arrives(tmp_path: Path) -> None:
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        later = threading.Timer(0.2, lambda: store.append("a", [cl.NewEvent("T", b"")]))
        later.start()
        try:
            assert store.wait_for(0, timeout=math.inf) is True
        finally:
            later.join()
        assert store.wait_for(1, timeout=0.05) is False


def test_a_subscription_with_an_infinite_timeout_delivers_what_follows(tmp_path: Path) -> None:
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        sub = store.subscribe(types=["T"], timeout=math.inf)
        later = threading.Timer(0.2, lambda: store.append_batch(["a", "b"], ["U", "T"], [b"", b"2"]))
        later.start()
        try:
            event = sub.next(math.inf)
        finally:
            later.join()
        assert event is not None and (event.stream, event.type, event.data) == ("b", "T", b"2")
        assert sub.next(0.05) is None
        sub.close()


@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "reader"])
@pytest.mark.parametrize("timeout", [1e10, 1e308], ids=["1e10", "1e308"])
def test_a_timeout_longer_than_any_wait_waits_until_the_event_arrives(
        tmp_path: Path, readonly: bool, timeout: float) -> None:
    # Waits take at most threading.TIMEOUT_MAX (and poll() ~24.8 days): a longer finite
    # timeout raised a raw OverflowError once it had to wait. It now means forever.
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        follower = cl.EventStore.open(tmp_path / "s", readonly=True) if readonly else store
        later = threading.Timer(0.2, lambda: store.append("a", [cl.NewEvent("T", b"")]))
        later.start()
        try:
            assert follower.wait_for(0, timeout=timeout) is True
            sub = follower.subscribe(0, timeout=timeout)
            event = sub.next(timeout)
            assert event is not None and event.position == 0
            sub.close()
        finally:
            later.join()
            if readonly:
                follower.close()
