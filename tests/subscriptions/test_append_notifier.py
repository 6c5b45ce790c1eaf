"""AppendNotifier: the in-process wake-up of subscriptions and the close gate of scans."""

from __future__ import annotations

import threading
import time

import pytest

import chronolog as cl
from chronolog import subscriptions as subs
from chronolog.errors import StoreClosedError


def test_notify_wakes_a_subscription_waiting_on_the_notifier(store: cl.EventStore) -> None:
    notifier = subs.AppendNotifier(store.path)
    sub = subs.subscribe(store._log, notifier, 0, timeout=20.0)

    def append_then_notify() -> None:
        store.append("s", [cl.NewEvent("T", b"1")])
        notifier.notify()

    threading.Timer(0.05, append_then_notify).start()
    assert sub.next(20.0).position == 0
    sub.close()


def test_a_waiter_without_notify_sleeps_until_its_timeout(store: cl.EventStore) -> None:
    notifier = subs.AppendNotifier(store.path)
    assert notifier.wait(lambda: False, 0.02) is False


def test_close_of_the_notifier_waits_for_a_reading_block_in_progress() -> None:
    notifier = subs.AppendNotifier("x")
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def reader() -> None:
        with notifier.reading():
            inside.set()
            release.wait(20.0)
            order.append("read done")

    t = threading.Thread(target=reader)
    t.start()
    inside.wait(20.0)
    threading.Timer(0.05, release.set).start()
    notifier.close()
    order.append("closed")
    t.join()
    assert order == ["read done", "closed"]


def test_reading_after_close_raises_store_closed() -> None:
    notifier = subs.AppendNotifier("x")
    notifier.close()
    with pytest.raises(StoreClosedError), notifier.reading():
        pass


def test_close_of_the_notifier_ends_a_blocked_subscription(store: cl.EventStore) -> None:
    notifier = subs.AppendNotifier(store.path)
    sub = subs.subscribe(store._log, notifier, 0)
    threading.Timer(0.05, notifier.close).start()
    started = time.monotonic()
    with pytest.raises(StoreClosedError):
        sub.next(None)
    assert time.monotonic() - started < 20.0


def test_scan_with_a_closed_notifier_raises_store_closed(store: cl.EventStore) -> None:
    from chronolog import scan as scan_mod
    store.append("s", [cl.NewEvent("T", b"1")])
    notifier = subs.AppendNotifier(store.path)
    notifier.close()
    with pytest.raises(StoreClosedError):
        list(scan_mod.scan(store._log, notifier=notifier))


