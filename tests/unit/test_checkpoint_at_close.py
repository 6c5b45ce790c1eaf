"""Close writes the index checkpoints unless only a short tail followed the last one: at most
256 events and 4 MiB, all in the newest segment, and at most 1/256 of the streams and
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


def test_close_writes_the_checkpoint_past_256_events_and_not_at_256(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    # 4,096 streams of 16 events: a tail of 257 is under 1/256 of them and under 4 MiB, so
    # only the event limit decides.
    names = _checkpointed(open_store, 4096, per_stream=16)
    assert not _close_rewrites(open_store, store_path,
                               lambda s: s.append_batch(names[:256], ["W"] * 256, [b""] * 256))
    r = open_store(readonly=True)
    assert r.head == 16 * 4096 + 256 and r.stream_version(names[255]) == 16
    assert _close_rewrites(open_store, store_path,
                           lambda s: s.append(names[0], [cl.NewEvent("W", b"")]))
    r.refresh()
    assert r.stream_version(names[0]) == 17
