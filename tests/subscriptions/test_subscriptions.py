"""Subscriptions (acceptance 2): catch-up then live, exactly once and in order, with
concurrent appenders in a thread or another process; close() from another thread; asyncio;
wait_for."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import chronolog as cl
from chronolog.errors import InvalidArgumentError

GENEROUS_S = 20.0  # a bound for "promptly" that no healthy run gets near


def _append_one_by_one(store: cl.EventStore, n: int, *, pause_s: float = 0.0) -> None:
    for i in range(n):
        store.append(f"s-{i % 5}", [cl.NewEvent(f"T{i % 3}", b"%d" % i)])
        if pause_s:
            time.sleep(pause_s)


def _collect(sub: Any, until: int) -> list[int]:
    seen: list[int] = []
    for event in sub:
        seen.append(event.position)
        if event.position >= until:
            break
    return seen


@pytest.mark.parametrize("start", [0, 7, 30, 55])
def test_subscription_yields_every_event_once_in_order_while_a_thread_appends(
        store: cl.EventStore, subscribe: Any, start: int) -> None:
    _append_one_by_one(store, 30)
    sub = subscribe(store, start, timeout=GENEROUS_S, batch_size=4)
    writer = threading.Thread(target=_append_one_by_one, args=(store, 30), kwargs={"pause_s": 0.0005})
    writer.start()
    try:
        seen = _collect(sub, 59)
    finally:
        writer.join()
        sub.close()
    assert seen == list(range(start, 60))


def test_subscription_yields_every_event_once_while_another_process_appends(
        open_store: Any, store_path: Path, subscribe: Any) -> None:
    writer = open_store()
    _append_one_by_one(writer, 5)
    writer.close()
    script = textwrap.dedent(f"""
        import time, chronolog as cl
        with cl.EventStore.open({str(store_path)!r}, durability="os", max_segment_bytes=4096) as s:
            for i in range(200):
                s.append_batch(["p-%d" % (i % 7)] * 3, ["T"] * 3, [b"x" * 40] * 3)
                if i % 20 == 0:
                    time.sleep(0.002)
    """)
    reader = open_store(readonly=True)
    sub = subscribe(reader, 2, timeout=GENEROUS_S, batch_size=50)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        seen = _collect(sub, 5 + 600 - 1)
    finally:
        proc.wait(timeout=60)
        sub.close()
    assert proc.returncode == 0
    assert seen == list(range(2, 605))


def test_a_readonly_subscription_gets_each_fsync_append_without_a_later_write(
        open_store: Any, store_path: Path, subscribe: Any) -> None:
    """In "fsync" mode another process's append becomes visible when the writer publishes
    index/visible after its fdatasync, not when its frame is written: the subscription must
    wake for that too, or the last append waits for a write that never comes."""
    open_store().close()
    script = textwrap.dedent(f"""
        import sys, time, chronolog as cl
        with cl.EventStore.open({str(store_path)!r}, durability="fsync") as s:
            for i in range(6):
                s.append("f", [cl.NewEvent("T", b"%d" % i)])
                time.sleep(0.02)
            print("appended", flush=True)
            sys.stdin.readline()
    """)
    reader = open_store(readonly=True)
    sub = subscribe(reader, 0, timeout=3 * GENEROUS_S)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        started = time.monotonic()
        seen = _collect(sub, 5)
        # (Without a wake-up for the mark, the last append came with the timeout's last look.)
        assert time.monotonic() - started < GENEROUS_S
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == b"appended\n"
        proc.stdin.close()
        proc.wait(timeout=60)
        sub.close()
    assert seen == list(range(6))


def test_close_from_another_thread_ends_a_blocked_iteration(
        store: cl.EventStore, subscribe: Any) -> None:
    sub = subscribe(store)
    threading.Timer(0.05, sub.close).start()
    started = time.monotonic()
    assert list(sub) == []
    assert time.monotonic() - started < GENEROUS_S


def test_close_from_another_thread_ends_a_blocked_readonly_iteration(
        store: cl.EventStore, open_store: Any, subscribe: Any) -> None:
    reader = open_store(readonly=True)
    sub = subscribe(reader)
    threading.Timer(0.05, sub.close).start()
    assert list(sub) == []


def test_subscription_with_a_timeout_stops_when_nothing_new_arrives(
        store: cl.EventStore, subscribe: Any) -> None:
    _append_one_by_one(store, 3)
    sub = subscribe(store, timeout=0.05)
    assert [e.position for e in sub] == [0, 1, 2]
    _append_one_by_one(store, 2)
    assert [e.position for e in sub] == [3, 4]


def test_subscription_filters_by_type_and_stream_prefix(
        store: cl.EventStore, subscribe: Any) -> None:
    store.append_batch(["a-1", "b-1", "a-2", "a-1", "ab-9"], ["X", "X", "Y", "X", "X"],
                       [b"0", b"1", b"2", b"3", b"4"])
    sub = subscribe(store, types=["X"], stream_prefix="a-", timeout=0.05, batch_size=1)
    assert [e.position for e in sub] == [0, 3]


def test_subscription_with_batches_yields_record_batches_covering_each_event_once(
        store: cl.EventStore, subscribe: Any) -> None:
    _append_one_by_one(store, 23)
    sub = subscribe(store, 1, batches=True, batch_size=5, timeout=0.05, types=["T0", "T1"])
    batches = list(sub)
    assert all(isinstance(b, pa.RecordBatch) and b.num_rows <= 5 for b in batches)
    positions = [p for b in batches for p in b.column("position").to_pylist()]
    assert positions == [p for p in range(1, 23) if p % 3 != 2]


def test_subscription_iteration_from_two_threads_at_once_is_refused(
        store: cl.EventStore, subscribe: Any) -> None:
    sub = subscribe(store)
    t = threading.Thread(target=lambda: sub.next(GENEROUS_S))
    t.start()
    time.sleep(0.05)
    try:
        with pytest.raises(RuntimeError, match="one thread at a time"):
            sub.next(0)
    finally:
        sub.close()
        t.join()


def test_subscription_with_a_negative_position_raises_invalid_argument(
        store: cl.EventStore, subscribe: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        subscribe(store, -1)


def test_async_subscription_yields_history_then_live_appends(
        store: cl.EventStore, subscribe_async: Any) -> None:
    _append_one_by_one(store, 3)

    async def main() -> list[int]:
        sub = subscribe_async(store, timeout=GENEROUS_S)
        seen: list[int] = []
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, _append_one_by_one, store, 4)
        async with sub:
            async for event in sub:
                seen.append(event.position)
                if event.position == 6:
                    break
        return seen

    assert asyncio.run(main()) == list(range(7))


def test_async_subscription_close_ends_a_pending_step(
        store: cl.EventStore, subscribe_async: Any) -> None:
    async def main() -> list[Any]:
        sub = subscribe_async(store)
        asyncio.get_running_loop().call_later(0.05, sub.close)
        return [e async for e in sub]

    assert asyncio.run(asyncio.wait_for(main(), GENEROUS_S)) == []


def test_wait_for_returns_true_once_the_position_is_visible(
        store: cl.EventStore, open_store: Any, wait_for: Any) -> None:
    reader = open_store(readonly=True)
    threading.Timer(0.05, _append_one_by_one, args=(store, 3)).start()
    assert wait_for(reader, 2, GENEROUS_S) is True
    assert reader.head >= 3


def test_wait_for_returns_false_after_the_timeout(store: cl.EventStore, wait_for: Any) -> None:
    _append_one_by_one(store, 2)
    assert wait_for(store, 1, 0) is True
    assert wait_for(store, 2, 0.02) is False


@pytest.mark.parametrize("how", ["subscribe", "wait_for"])
def test_closing_a_read_only_handle_ends_its_blocked_waits_with_store_closed(
        store: cl.EventStore, open_store: Any, how: str) -> None:
    # A reader waits on inotify, not on its store's notifier: its close once woke nothing,
    # and the wait went on until some writer touched the directory.
    from chronolog.errors import StoreClosedError
    reader = open_store(readonly=True)
    ended: list[BaseException] = []

    def wait() -> None:
        try:
            if how == "subscribe":
                reader.subscribe(0).next(None)
            else:
                reader.wait_for(5, timeout=None)
        except BaseException as exc:  # noqa: BLE001 (what ended it is the finding)
            ended.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)  # a failure must not hang the run
    waiter.start()
    time.sleep(0.1)
    reader.close()
    waiter.join(GENEROUS_S)
    assert not waiter.is_alive(), "the wait went on after its handle was closed"
    assert [type(e) for e in ended] == [StoreClosedError]


def test_a_readers_watch_made_before_the_index_directory_existed_watches_it_once_made(
        tmp_path: Path) -> None:
    # In "fsync" mode an append becomes visible by a rewrite of index/visible. The index
    # directory is derived data: a reader opened while it was missing never watched it, and
    # learnt of an acknowledged append only when the writer closed (or wrote again).
    from chronolog._wakeup import DirectoryWatch

    watch = DirectoryWatch(str(tmp_path))
    try:
        (tmp_path / "index").mkdir()
        watch.wait(GENEROUS_S)  # its creation, in the watched directory, wakes the reader
        watch.drain()  # which looks at the log again: from here on index/ is watched too
        (tmp_path / "index" / "visible").write_bytes(b"mark")
        started = time.monotonic()
        watch.wait(5.0)
        assert time.monotonic() - started < 2.0
    finally:
        watch.close()


def test_closing_the_store_ends_a_blocked_subscription_with_store_closed(
        store: cl.EventStore, subscribe: Any) -> None:
    from chronolog.errors import StoreClosedError
    sub = subscribe(store)
    threading.Timer(0.05, store.close).start()
    with pytest.raises(StoreClosedError):
        sub.next(GENEROUS_S)


def test_subscriptions_dropped_without_close_leave_no_descriptors_open(
        store: cl.EventStore, open_store: Any) -> None:
    # A reader's subscription watches the directory (inotify and a wake-up pipe); one dropped
    # without close() (`for e in sub: break`) kept three descriptors open for good.
    import gc
    import os

    store.append("a", [cl.NewEvent("T", b"x")])
    reader = open_store(readonly=True)
    for _ in range(5):  # warm: whatever the first subscription loads once
        next(iter(reader.subscribe(0, timeout=0.01)))
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        for _event in reader.subscribe(0, timeout=0.01):
            break
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before + 2
