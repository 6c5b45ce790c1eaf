"""Close writes the index checkpoints unless only a short tail followed the last one: at most
16,384 events and 4 MiB, all in the newest segment, and at most 1/64 of the streams and
events the checkpoint would rewrite. The next open indexes such a tail from the segment, so
every handle (writer or reader) answers exactly as if it had been written."""

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


def test_close_writes_the_checkpoint_when_the_tail_is_over_a_64th_of_it(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    names = _checkpointed(open_store, 100)  # 100 streams + 100 events: 1/64 of it is 3.125
    before = _stamp(store_path)
    s = open_store()
    s.append_batch(names[:3], ["W"] * 3, [b"w"] * 3)
    s.close()
    assert _stamp(store_path) == before
    s = open_store()
    s.append(names[3], [cl.NewEvent("W", b"w")])
    s.close()
    assert _stamp(store_path) != before
    s = open_store()
    assert [s.stream_version(n) for n in names[:5]] == [1, 1, 1, 1, 0]


def test_close_writes_the_checkpoint_when_the_tail_holds_over_4_mib(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    names = _checkpointed(open_store, 2000)
    big = cl.NewEvent("Big", b"b" * (1 << 20))
    s = open_store()
    s.append(names[5], [big] * 4)  # 4 events, 4 MiB of data plus their headers
    before = _stamp(store_path)
    s.close()
    assert _stamp(store_path) != before
    assert open_store().stream_version(names[5]) == 4


def test_close_writes_the_checkpoint_past_16384_events_and_not_at_16384(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    # 1,048,576 events in the checkpoint: a tail of 16,385 is under 1/64 of it and under
    # 4 MiB, so only the event limit decides.
    names = _checkpointed(open_store, 1 << 14, per_stream=64)
    before = _stamp(store_path)
    s = open_store()
    s.append_batch(names, ["W"] * len(names), [b""] * len(names))
    s.close()
    assert _stamp(store_path) == before
    s = open_store()
    assert s.head == (1 << 20) + (1 << 14) and s.stream_version(names[-1]) == 64
    s.append(names[0], [cl.NewEvent("W", b"")])
    s.close()
    assert _stamp(store_path) != before
    assert open_store(readonly=True).stream_version(names[0]) == 65
