"""Appends from many threads of the writer process: dense positions and versions, nothing lost,
expected-version checks serialised."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import chronolog as cl

THREADS = 8


def _run_threads(target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def body(t: int) -> None:
        try:
            start.wait()
            target(t)
        except BaseException as exc:  # noqa: BLE001 -- re-raised by the main thread as a failure
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


@pytest.mark.parametrize(("durability", "per_thread"), [("os", 100), ("fsync", 15)])
def test_concurrent_appends_from_eight_threads_are_dense_and_complete(
    open_store, durability: str, per_thread: int
) -> None:
    s = open_store(durability=durability, max_segment_bytes=16384)
    results: dict[int, list[cl.AppendResult]] = {t: [] for t in range(THREADS)}

    def work(t: int) -> None:
        for i in range(per_thread):
            if i % 4 == 3:
                res = s.append_batch(
                    [f"t{t}", "shared"], ["B", "B"], [b"%d:%d" % (t, i), b"%d:%d" % (t, i)]
                )
            else:
                res = s.append(f"t{t}", [cl.NewEvent("S", b"%d:%d" % (t, i))])
            results[t].append(res)

    _run_threads(work)
    batches = sum(1 for i in range(per_thread) if i % 4 == 3)
    total = THREADS * (per_thread + batches)
    events = list(s.read_all())
    assert s.head == total
    assert [e.position for e in events] == list(range(total))
    for t in range(THREADS):
        mine = s.read_stream(f"t{t}")
        assert [e.version for e in mine] == list(range(per_thread))
        assert [e.data for e in mine] == [b"%d:%d" % (t, i) for i in range(per_thread)]
    assert [e.version for e in s.read_stream("shared")] == list(range(THREADS * batches))
    taken = sorted(
        p
        for rs in results.values()
        for r in rs
        for p in range(r.first_position, r.last_position + 1)
    )
    assert taken == list(range(total))
    assert s.verify()["ok"] is True


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_concurrent_appends_survive_reopen(open_store, durability: str, as_tuples) -> None:
    s = open_store(durability=durability)

    def work(t: int) -> None:
        for i in range(10):
            s.append(f"t{t}", [cl.NewEvent("S", b"%d" % i)])

    _run_threads(work)
    before = as_tuples(s.read_all())
    s.close()
    assert as_tuples(open_store(durability=durability).read_all()) == before


def test_concurrent_expected_version_appends_to_one_stream_never_fork_it(open_store) -> None:
    s = open_store()
    per_thread = 20

    def work(t: int) -> None:
        done = 0
        while done < per_thread:
            current = s.stream_version("counter")
            expected = cl.NO_STREAM if current is None else current
            try:
                s.append("counter", [cl.NewEvent("Inc", b"%d" % t)], expected_version=expected)
            except cl.WrongExpectedVersionError:
                continue
            done += 1

    _run_threads(work)
    events = s.read_stream("counter")
    assert [e.version for e in events] == list(range(THREADS * per_thread))
    assert sorted(e.data for e in events) == sorted(
        b"%d" % t for t in range(THREADS) for _ in range(per_thread)
    )
