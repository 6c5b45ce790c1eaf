"""Close writes the index checkpoints unless only a short tail followed the last one: one whose
estimated cost to the next open (200 ns per event, 12.5 µs per directory chunk and slot block
of the checkpoint its streams' lookups check: at most two per stream, at most every one) is
within the budget (6.5 ms), of at most 4 MiB, all in the newest segment, and at most 1/256 of
the streams and events the checkpoint would rewrite. The next open indexes such a tail from
the segment, so every handle (writer or reader) answers exactly as if it had been written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import chronolog as cl


def _stamp(store_path: Path) -> tuple[int, int]:
    """Identity of the stream checkpoint (a new one is renamed into place: a new inode)."""
    st = (store_path / "index" / "streams.idx").stat()
    return st.st_ino, st.st_mtime_ns


def _checkpointed(open_store: Callable[..., cl.EventStore], n_streams: int,
                  per_stream: int = 1) -> list[str]:
    """A closed store of n_streams streams of per_stream small events, all checkpointed."""
    names = [f"s-{i:06d}" for i in range(n_streams)]
    s = open_store()
    for _ in range(per_stream):
        s.append_batch(names, ["T"] * n_streams, [b"x"] * n_streams)
    s.checkpoint()
    s.close()
    return names


def _close_rewrites(open_store: Callable[..., cl.EventStore], store_path: Path,
                    append: Callable[[cl.EventStore], Any]) -> bool:
    """Whether closing a fresh handle after `append(handle)` rewrote the stream checkpoint."""
    before = _stamp(store_path)
    s = open_store()
    append(s)
    s.close()
    return _stamp(store_path) != before


def _view(s: cl.EventStore, names: list[str]) -> dict[str, Any]:
    return {"head": s.head,
            "versions": [s.stream_version(n) for n in names],
            "events": [[(e.position, e.version, e.data) for e in s.read_stream(n)] for n in names]}


def test_a_few_appends_to_a_large_store_leave_the_checkpoint_and_every_handle_sees_them(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    names = _checkpointed(open_store, 2000)
    before = _stamp(store_path)
    touched = [names[0], names[1999], "brand-new"]
    for round_ in range(3):  # the tail grows over three open/append/close cycles
        s = open_store()
        for name in touched:
            s.append(name, [cl.NewEvent("W", b"%d" % round_)])
        want = _view(s, touched + names[1:4])
        s.close()
        assert _stamp(store_path) == before, "close rewrote the stream checkpoint for a short tail"
        for options in ({}, {"readonly": True}):
            h = open_store(**options)
            assert _view(h, touched + names[1:4]) == want
            h.close()
    assert want["versions"][:3] == [3, 3, 2]
    assert open_store(readonly=True).verify()["ok"] is True


def test_close_writes_the_checkpoint_when_the_tail_is_over_a_256th_of_it(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    names = _checkpointed(open_store, 500)  # 500 streams + 500 events: 1/256 of it is 3.9
    assert not _close_rewrites(open_store, store_path,
                               lambda s: s.append_batch(names[:3], ["W"] * 3, [b"w"] * 3))
    assert _close_rewrites(open_store, store_path,
                           lambda s: s.append(names[3], [cl.NewEvent("W", b"w")]))
    s = open_store()
    assert [s.stream_version(n) for n in names[:5]] == [1, 1, 1, 1, 0]


def test_close_writes_the_checkpoint_when_the_tail_holds_over_4_mib(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    names = _checkpointed(open_store, 2000)
    big = cl.NewEvent("Big", b"b" * (1 << 20))
    # 4 events, 4 MiB of data plus their headers
    assert _close_rewrites(open_store, store_path, lambda s: s.append(names[5], [big] * 4))
    assert open_store().stream_version(names[5]) == 4


def test_a_tail_of_a_thousand_events_on_a_few_streams_is_left_to_the_next_open(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    # 4,096 streams of 64 events: 1,000 events are under 1/256 of them and under 4 MiB, and
    # on five streams they cost an open ~0.3 ms by the estimate (the rule of 256 events
    # before wrote the checkpoint).
    names = _checkpointed(open_store, 4096, per_stream=64)
    five = [names[i] for i in (0, 1000, 2000, 3000, 4095)]
    assert not _close_rewrites(open_store, store_path,
                               lambda s: s.append_batch(five * 200, ["W"] * 1000, [b"w"] * 1000))
    for options in ({}, {"readonly": True}):
        h = open_store(**options)
        assert h.head == 64 * 4096 + 1000
        assert [h.stream_version(n) for n in five + names[1:3]] == [263] * 5 + [63, 63]
        assert [e.data for e in h.read_stream(five[2], 63)] == [b"x"] + [b"w"] * 200
        h.close()
    assert open_store(readonly=True).verify()["ok"] is True


def _budget(ns: int, append: Callable[[cl.EventStore], Any]) -> Callable[[cl.EventStore], Any]:
    """`append` in a handle whose close weighs the tail against a budget of `ns`."""
    def run(s: cl.EventStore) -> None:
        s._log.close_tail_budget_ns = ns  # type: ignore[attr-defined]
        append(s)
    return run


def test_the_tail_estimate_counts_its_events_and_the_checks_its_streams_need(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    # 4,096 streams: 4 directory chunks and 1 slot block (8,192 slots) a lookup may check.
    names = _checkpointed(open_store, 4096, per_stream=16)

    def events(*streams: str) -> Callable[[cl.EventStore], Any]:
        return lambda s: s.append_batch(list(streams), ["W"] * len(streams), [b""] * len(streams))

    one = 2 * 12_500  # a stream's lookup: its chunk and its slot block
    # 10 events on one stream: 10 x 200 ns + 25 µs, exactly the budget: left.
    assert not _close_rewrites(open_store, store_path, _budget(10 * 200 + one, events(*[names[7]] * 10)))
    # One more event (the tail is now 11): 200 ns over it.
    assert _close_rewrites(open_store, store_path, _budget(10 * 200 + one, events(names[7])))
    # 10 events on two streams: two streams' checks, over that budget ...
    two = events(*[names[7]] * 5, *[names[9]] * 5)
    assert _close_rewrites(open_store, store_path, _budget(10 * 200 + one, two))
    # ... and within one that counts them.
    assert not _close_rewrites(open_store, store_path, _budget(10 * 200 + 2 * one, two))
    s = open_store()
    s.checkpoint()
    s.close()
    # 10 events on 10 streams need at most every piece (5), not 20.
    assert not _close_rewrites(open_store, store_path,
                               _budget(10 * 200 + 5 * 12_500, events(*names[100:110])))
    # In one handle: two streams, a checkpoint, then one stream: only the last counts.
    s = open_store()
    s._log.close_tail_budget_ns = 10 * 200 + one  # type: ignore[attr-defined]
    two(s)
    s.checkpoint()
    before = _stamp(store_path)
    events(*[names[9]] * 10)(s)
    s.close()
    assert _stamp(store_path) == before
    h = open_store(readonly=True)
    assert [h.stream_version(n) for n in (names[7], names[9], names[100], names[109])] == [41, 40, 16, 16]
    assert h.verify()["ok"] is True
