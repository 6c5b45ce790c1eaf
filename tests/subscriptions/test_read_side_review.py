"""What an outside review of the read side found: a close() from another thread during a read
of a compressed store (the decode runs without the GIL on the mapping close() unmaps); async
subscription steps that are cancelled; arguments taken by their truth or iterated when they
are not lists; a second thread on a one-thread object."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import chronolog as cl
from chronolog.errors import ConcurrentUseError, InvalidArgumentError

# A zstd store of one large frame; for 12 rounds a thread reads events of it (read_all or
# read_stream: each decodes a block of it) while the main thread closes the handle.
_CLOSE_DURING_READ = """
import faulthandler, os, sys, threading, time
import chronolog as cl
faulthandler.enable()
path, how, ro = sys.argv[1], sys.argv[2], sys.argv[3] == "ro"
opts = dict(durability="os", compression="zstd", compression_block_bytes=1 << 24)
with cl.EventStore.open(path, **opts) as w:
    w.append_batch(["s"] * 20000, ["T"] * 20000, [os.urandom(64) * 16] * 20000)
ends = []
for _ in range(12):
    h = cl.EventStore.open(path, readonly=ro, **opts)
    started = threading.Event()
    def read():
        try:
            while True:
                if how == "read_all":
                    next(iter(h.read_all(19990)))
                else:  # (two blocks in turn: a block just decoded may be kept)
                    h.read_stream("s", 19990, limit=1)
                    h.read_stream("s", 5, limit=1)
                started.set()
        except cl.errors.StoreClosedError:
            ends.append("closed")
        except BaseException as exc:
            ends.append(type(exc).__name__)
        started.set()
    t = threading.Thread(target=read)
    t.start()
    started.wait(30)
    time.sleep(0.02)
    h.close()
    t.join()
print(" ".join(ends))
"""


@pytest.mark.parametrize("how", ["read_all", "read_stream"])
@pytest.mark.parametrize("ro", ["rw", "ro"])
def test_close_during_a_read_of_a_compressed_store_raises_store_closed_and_never_crashes(
        tmp_path: Path, how: str, ro: str) -> None:
    """The review's repro died with SIGSEGV on its first round, on writer and reader handles."""
    out = subprocess.run([sys.executable, "-c", _CLOSE_DURING_READ, str(tmp_path / "s"), how, ro],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["closed"] * 12


def test_an_async_step_timed_out_or_cancelled_leaves_the_subscription_open(
        tmp_path: Path) -> None:
    """asyncio.wait_for timing out (or a task cancelled) closed the subscription: the next
    step ended the `async for` as if the log were done, and later events never came."""
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        store.append("order-1", [cl.NewEvent("Placed", b"{}")])

        async def main() -> list[int]:
            sub = store.subscribe_async(0)
            got = [(await sub.__anext__()).position]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(sub.__anext__(), 0.2)
            store.append("order-1", [cl.NewEvent("Paid", b"{}")])
            got.append((await asyncio.wait_for(sub.__anext__(), 30)).position)
            task = asyncio.ensure_future(sub.__anext__())
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            store.append_batch(["order-2"] * 3, ["Placed"] * 3, [b"{}"] * 3)
            for _ in range(3):
                got.append((await asyncio.wait_for(sub.__anext__(), 30)).position)
            sub.close()
            with pytest.raises(StopAsyncIteration):
                await sub.__anext__()
            return got

        assert asyncio.run(main()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("columns", [5, "position", b"position", [b"position"]])
def test_scan_columns_that_are_not_a_list_of_names_are_refused(
        tmp_path: Path, columns: object) -> None:
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        store.append("a", [cl.NewEvent("T", b"{}")])
        with pytest.raises(InvalidArgumentError, match="columns must"):
            store.scan_table(columns=columns)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="columns must"):
            next(store.scan(columns=columns))  # type: ignore[arg-type]
        assert store.scan_table(columns=["position"]).column_names == ["position"]


def test_flags_must_be_true_or_false(tmp_path: Path) -> None:
    """backwards="no" read backwards and batches="no" yielded Arrow batches."""
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        store.append("a", [cl.NewEvent("T", b"{}")] * 2)
        for call in (lambda: list(store.read_all(backwards="no")),  # type: ignore[arg-type]
                     lambda: store.read_stream("a", backwards="no"),  # type: ignore[arg-type]
                     lambda: store.subscribe(batches="no"),  # type: ignore[arg-type]
                     lambda: store.subscribe_async(batches=1)):  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentError, match="must be True or False"):
                call()
        assert [e.version for e in store.read_stream("a", backwards=True)] == [1, 0]


def test_a_second_thread_on_one_subscription_gets_a_chronolog_error(tmp_path: Path) -> None:
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        sub = store.subscribe(0, timeout=5)
        inside = threading.Event()
        errors: list[BaseException] = []

        def first() -> None:
            inside.set()
            sub.take(5)  # blocks: nothing appended

        t = threading.Thread(target=first)
        t.start()
        inside.wait(5)
        for _ in range(100):  # until the first thread is inside take()
            try:
                sub.take(0)
            except ConcurrentUseError as exc:
                errors.append(exc)
                break
            threading.Event().wait(0.01)
        sub.close()
        t.join()
        assert errors and isinstance(errors[0], cl.ChronologError)
        assert "give each thread a subscription of its own" in str(errors[0])


# ---------------------------------------------------------------- one large frame, read in chunks

@pytest.mark.parametrize("compression", [None, "zstd"])
def test_reading_one_large_frame_in_chunks_checks_it_once(tmp_path: Path, compression: str | None) -> None:
    """read_all reads 4,096 events a call and a subscription a chunk a fetch: each call checked
    the body CRC of (or decoded) the whole frame again, so one append_batch of 1M events took
    3.2 s to read_all and 12.6 s to page through 1,000 at a time (the scaling review)."""
    with cl.EventStore.open(tmp_path / "s", durability="os", compression=compression) as store:
        n = 20_000
        store.append_batch([f"s-{i % 7}" for i in range(n)], ["T"] * n, [b"%06d" % i for i in range(n)])
        log = store._log
        before = log.seq_checks
        assert [e.data for e in store.read_all()] == [b"%06d" % i for i in range(n)]
        assert log.seq_checks - before == 1  # five chunks, one frame, one check
        before = log.seq_checks
        got = []
        while len(got) < n:  # paging, as a KurrentDB-style reader does
            got += list(store.read_all(len(got), limit=1000))
        assert [e.position for e in got] == list(range(n)) and log.seq_checks - before == 0
        sub = store.subscribe(0, timeout=0, batch_size=1000)
        assert sum(1 for _ in sub) == n and log.seq_checks - before == 0


def test_a_filtered_subscription_catches_up_through_one_scan(tmp_path: Path, monkeypatch) -> None:
    """A filtered (or batched) subscription made a new scan per fetch, each checking the large
    frame whole again; it goes on with the same scan now."""
    import chronolog.subscriptions as subs

    made: list[int] = []
    real = subs.make_scanner

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(subs, "make_scanner", counting)
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        n = 20_000
        store.append_batch(["s"] * n, ["A", "B"] * (n // 2), [b"{}"] * n)
        for batches in (False, True):
            made.clear()
            sub = store.subscribe(0, types=["A"], timeout=0, batch_size=1000, batches=batches)
            got = list(sub)
            count = sum(b.num_rows for b in got) if batches else len(got)
            positions = [p for b in got for p in b.column("position").to_pylist()] if batches \
                else [e.position for e in got]
            assert count == n // 2 and positions == list(range(0, n, 2))
            assert len(made) <= 3, len(made)  # (one for the catch-up; one for the filter check)
