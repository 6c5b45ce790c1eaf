"""Reads: read_stream (inclusive bounds, backwards, limit), read_all (from_position, backwards,
limit) and the fields of RecordedEvent."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest

import chronolog as cl
from chronolog.errors import CorruptionError, InvalidArgumentError, InvalidStreamNameError


@pytest.fixture
def filled(store: cl.EventStore) -> cl.EventStore:
    """Stream "a" has versions 0..5 at positions 0,1,3,4,6,7; "b" has 0..2 at 2,5,8."""
    for i in range(3):
        store.append(
            "a", [cl.NewEvent("A", b"a%d" % (2 * i)), cl.NewEvent("A", b"a%d" % (2 * i + 1))]
        )
        store.append("b", [cl.NewEvent("B", b"b%d" % i)])
    return store


def _versions(events: list[cl.RecordedEvent]) -> list[int]:
    return [e.version for e in events]


def test_read_stream_returns_every_event_of_the_stream_in_version_order(filled) -> None:
    events = filled.read_stream("a")
    assert _versions(events) == [0, 1, 2, 3, 4, 5]
    assert [e.position for e in events] == [0, 1, 3, 4, 6, 7]
    assert [e.data for e in events] == [b"a0", b"a1", b"a2", b"a3", b"a4", b"a5"]
    assert {e.stream for e in events} == {"a"}


def test_read_stream_of_a_missing_stream_is_empty(filled) -> None:
    assert filled.read_stream("nope") == []


def test_read_stream_from_version_is_inclusive(filled) -> None:
    assert _versions(filled.read_stream("a", 3)) == [3, 4, 5]


def test_read_stream_to_version_is_inclusive(filled) -> None:
    assert _versions(filled.read_stream("a", 1, to_version=3)) == [1, 2, 3]


def test_read_stream_with_equal_bounds_reads_one_event(filled) -> None:
    assert _versions(filled.read_stream("a", 2, to_version=2)) == [2]


def test_read_stream_past_the_end_is_empty(filled) -> None:
    assert filled.read_stream("a", 6) == []
    assert filled.read_stream("a", 10, to_version=20) == []


def test_read_stream_with_to_version_past_the_end_stops_at_the_last(filled) -> None:
    assert _versions(filled.read_stream("a", 4, to_version=100)) == [4, 5]


def test_read_stream_with_from_above_to_is_empty(filled) -> None:
    assert filled.read_stream("a", 4, to_version=2) == []


def test_read_stream_with_limit_stops_after_limit_events(filled) -> None:
    assert _versions(filled.read_stream("a", 1, limit=2)) == [1, 2]
    assert filled.read_stream("a", limit=0) == []


def test_read_stream_backwards_starts_at_the_last_event(filled) -> None:
    assert _versions(filled.read_stream("a", backwards=True)) == [5, 4, 3, 2, 1, 0]


def test_read_stream_backwards_from_version_down_to_version_inclusive(filled) -> None:
    assert _versions(filled.read_stream("a", 4, to_version=1, backwards=True)) == [4, 3, 2, 1]


def test_read_stream_backwards_from_past_the_end_starts_at_the_last(filled) -> None:
    assert _versions(filled.read_stream("a", 99, backwards=True)) == [5, 4, 3, 2, 1, 0]


def test_read_stream_backwards_with_limit_reads_the_latest(filled) -> None:
    assert _versions(filled.read_stream("a", backwards=True, limit=2)) == [5, 4]


def test_read_stream_backwards_of_a_missing_stream_is_empty(filled) -> None:
    assert filled.read_stream("nope", backwards=True) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"from_version": -1},
        {"to_version": -1},
        {"limit": -1},
        {"from_version": 1.5},
        {"limit": True},
    ],
)
def test_read_stream_with_a_negative_or_non_int_bound_is_invalid_argument(filled, kwargs) -> None:
    with pytest.raises(InvalidArgumentError):
        filled.read_stream("a", **kwargs)


def test_read_stream_of_an_invalid_name_is_invalid_stream_name(filled) -> None:
    with pytest.raises(InvalidStreamNameError):
        filled.read_stream("")


def test_read_all_returns_every_event_in_position_order(filled) -> None:
    events = list(filled.read_all())
    assert [e.position for e in events] == list(range(9))
    assert [(e.stream, e.version) for e in events][:3] == [("a", 0), ("a", 1), ("b", 0)]


def test_read_all_from_position_is_inclusive(filled) -> None:
    assert [e.position for e in filled.read_all(6)] == [6, 7, 8]


def test_read_all_from_past_the_head_is_empty(filled) -> None:
    assert list(filled.read_all(9)) == []
    assert list(filled.read_all(1000)) == []


def test_read_all_with_limit_stops_after_limit_events(filled) -> None:
    assert [e.position for e in filled.read_all(2, limit=3)] == [2, 3, 4]
    assert list(filled.read_all(limit=0)) == []


def test_read_all_backwards_starts_at_the_last_event(filled) -> None:
    assert [e.position for e in filled.read_all(backwards=True)] == list(range(8, -1, -1))


def test_read_all_backwards_from_position_is_inclusive(filled) -> None:
    assert [e.position for e in filled.read_all(3, backwards=True)] == [3, 2, 1, 0]


def test_read_all_backwards_from_past_the_head_starts_at_the_last(filled) -> None:
    assert [e.position for e in filled.read_all(50, backwards=True, limit=2)] == [8, 7]


def test_read_all_backwards_of_an_empty_store_is_empty(store: cl.EventStore) -> None:
    assert list(store.read_all(backwards=True)) == []


def test_read_all_over_more_than_one_chunk_is_dense(store: cl.EventStore) -> None:
    store.append_batch(["s"] * 5000, ["T"] * 5000, [b""] * 5000)
    assert [e.position for e in store.read_all()] == list(range(5000))
    assert [e.position for e in store.read_all(backwards=True)] == list(range(4999, -1, -1))
    assert [e.position for e in store.read_all(4000, backwards=True, limit=4100)] == list(
        range(4000, -1, -1)
    )


@pytest.mark.parametrize("kwargs", [{"from_position": -1}, {"limit": -2}, {"from_position": "0"}])
def test_read_all_with_a_negative_or_non_int_argument_is_invalid_argument(filled, kwargs) -> None:
    with pytest.raises(InvalidArgumentError):
        list(filled.read_all(**kwargs))


def test_recorded_event_carries_every_field_as_appended(store: cl.EventStore) -> None:
    event_id = uuid.uuid4()
    store.append("x", [cl.NewEvent("Seed", b"")])
    before = time.time_ns()
    store.append(
        "order-7", [cl.NewEvent("OrderPlaced", b'{"amount": 3.5}', metadata=b"m", id=event_id)]
    )
    after = time.time_ns()
    (e,) = store.read_stream("order-7")
    assert e.position == 1
    assert e.stream == "order-7"
    assert e.version == 0
    assert e.type == "OrderPlaced"
    assert e.data == b'{"amount": 3.5}'
    assert e.metadata == b"m"
    assert isinstance(e.timestamp, int)
    assert before <= e.timestamp <= after
    assert e.id == event_id
    assert isinstance(e.id, uuid.UUID)
    assert e.id_bytes == event_id.bytes


def test_recorded_event_without_id_has_id_none_and_empty_metadata(store: cl.EventStore) -> None:
    store.append("a", [cl.NewEvent("T", b"d")])
    (e,) = store.read_stream("a")
    assert e.id is None
    assert e.id_bytes is None
    assert e.metadata == b""


def test_read_stream_and_read_all_return_equal_events(filled) -> None:
    by_stream = filled.read_stream("b")
    by_position = [e for e in filled.read_all() if e.stream == "b"]
    assert by_stream == by_position


def test_recorded_event_keeps_empty_and_binary_payloads(store: cl.EventStore) -> None:
    payloads = [b"", b"\x00", bytes(range(256)), b"x" * 70000]
    store.append("a", [cl.NewEvent("T", p) for p in payloads])
    assert [e.data for e in store.read_stream("a")] == payloads


def test_unicode_stream_and_type_names_round_trip(store: cl.EventStore) -> None:
    store.append("заказ-7 🚀", [cl.NewEvent("Événement", b"")])
    (e,) = store.read_stream("заказ-7 🚀")
    assert (e.stream, e.type) == ("заказ-7 🚀", "Événement")
    assert store.streams() == ["заказ-7 🚀"]


def test_recorded_event_cannot_be_built_by_hand() -> None:
    with pytest.raises(TypeError):
        cl.RecordedEvent()


@pytest.mark.parametrize("backwards", [False, True])
def test_read_stream_of_a_long_stream_spread_over_many_frames_matches_read_all(
        store: cl.EventStore, backwards: bool) -> None:
    # 120 events of "long" each in its own frame among other streams, payloads from 0 bytes to
    # several pages: every window of the read pipeline (which runs 20 events ahead) is used.
    sizes = [0, 1, 63, 64, 65, 200, 4095, 4096, 9000]
    for i in range(120):
        store.append_batch(["long", f"other-{i}", "long" if i % 3 else f"x-{i}"], ["T", "U", "T"],
                           [bytes([i]) * sizes[i % len(sizes)], b"o", b"%d" % i])
    expected = [(e.position, e.version, e.data) for e in store.read_all() if e.stream == "long"]
    assert len(expected) == 200
    windows = [(0, 199, None), (0, 199, 7), (5, 150, None), (19, 41, 21), (199, 199, None),
               (0, 0, None), (3, 199, 1)]
    for lo, hi, limit in windows:
        if backwards:
            got = store.read_stream("long", hi, to_version=lo, backwards=True, limit=limit)
            want = expected[lo:hi + 1][::-1][:limit]
        else:
            got = store.read_stream("long", lo, to_version=hi, limit=limit)
            want = expected[lo:hi + 1][:limit]
        assert [(e.position, e.version, e.data) for e in got] == want, (lo, hi, limit)


def _long_stream(store: cl.EventStore) -> list[tuple[int, int, bytes]]:
    for i in range(60):
        store.append_batch(["long", f"o-{i}"], ["T", "U"], [b"long-%d" % i * (i % 7 + 1), b"o"])
    return [(e.position, e.version, e.data) for e in store.read_stream("long")]


def test_a_reopened_store_reads_a_stream_the_same_the_first_time_and_after(
        open_store: Any) -> None:
    # The handle that wrote the events knows each record's offset; a reopened one finds
    # them through the frames on first read (and remembers them): same answers every time.
    s = open_store()
    written = _long_stream(s)
    s.close()
    r = open_store(readonly=True)
    for _ in range(3):
        assert [(e.position, e.version, e.data) for e in r.read_stream("long")] == written
        assert [e.data for e in r.read_stream("long", backwards=True, limit=5)] == \
            [d for _, _, d in written[::-1][:5]]


def test_a_record_damaged_under_a_live_writer_is_reported_never_returned(
        open_store: Any, store_path: Any) -> None:
    s = open_store()
    written = _long_stream(s)
    seg = min(store_path.glob("*.seg"))
    raw = seg.read_bytes()
    at = raw.index(b"long-30long-30")  # inside the data of version 30
    fd = os.open(seg, os.O_WRONLY)
    try:
        os.pwrite(fd, b"X", at + 3)
    finally:
        os.close(fd)
    with pytest.raises(CorruptionError):
        s.read_stream("long")
    assert [(e.position, e.version, e.data) for e in s.read_stream("long", to_version=29)] == \
        written[:30]
