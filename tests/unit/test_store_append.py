"""EventStore.append: the AppendResult, every expected_version form, and the refusals of
invariant 7 (bad input changes nothing on disk)."""

from __future__ import annotations

import pytest

import chronolog as cl
from chronolog.errors import (
    EventTooLargeError,
    InvalidArgumentError,
    InvalidEventError,
    InvalidStreamNameError,
    WrongExpectedVersionError,
)


def test_append_returns_positions_and_next_version(store: cl.EventStore, ev) -> None:
    assert store.append("a", [ev(), ev()]) == cl.AppendResult(0, 1, 2)
    assert store.append("b", [ev()]) == cl.AppendResult(2, 2, 1)
    assert store.append("a", [ev()]) == cl.AppendResult(3, 3, 3)


def test_append_accepts_a_single_new_event(store: cl.EventStore, ev) -> None:
    assert store.append("a", ev()) == cl.AppendResult(0, 0, 1)


def test_append_accepts_a_tuple_and_a_generator(store: cl.EventStore, ev) -> None:
    store.append("a", (ev(), ev()))
    store.append("a", (ev() for _ in range(3)))
    assert store.stream_version("a") == 4


def test_append_of_no_events_is_refused(store: cl.EventStore) -> None:
    with pytest.raises(InvalidArgumentError):
        store.append("a", [])
    assert store.head == 0


# ---------------------------------------------------------------- expected versions


def test_append_with_any_succeeds_on_a_new_and_an_existing_stream(store: cl.EventStore, ev) -> None:
    store.append("a", [ev()], expected_version=cl.ANY)
    store.append("a", [ev()], expected_version=cl.ANY)
    assert store.stream_version("a") == 1


def test_append_with_no_stream_creates_the_stream(store: cl.EventStore, ev) -> None:
    assert store.append("a", [ev()], expected_version=cl.NO_STREAM).next_version == 1


def test_append_with_no_stream_on_an_existing_stream_is_refused(store: cl.EventStore, ev) -> None:
    store.append("a", [ev(), ev()])
    with pytest.raises(WrongExpectedVersionError) as info:
        store.append("a", [ev()], expected_version=cl.NO_STREAM)
    assert info.value.actual == 1
    assert info.value.stream == "a"


def test_append_with_stream_exists_on_an_existing_stream_succeeds(store: cl.EventStore, ev) -> None:
    store.append("a", [ev()])
    assert store.append("a", [ev()], expected_version=cl.STREAM_EXISTS).next_version == 2


def test_append_with_stream_exists_on_a_missing_stream_is_refused(store: cl.EventStore, ev) -> None:
    with pytest.raises(WrongExpectedVersionError) as info:
        store.append("a", [ev()], expected_version=cl.STREAM_EXISTS)
    assert info.value.actual is None


def test_append_with_the_current_version_succeeds(store: cl.EventStore, ev) -> None:
    store.append("a", [ev(), ev()])
    assert store.append("a", [ev()], expected_version=1) == cl.AppendResult(2, 2, 3)


@pytest.mark.parametrize("expected", [0, 2, 5])
def test_append_with_a_wrong_int_version_is_refused_with_the_actual_version(
    store: cl.EventStore, ev, expected: int
) -> None:
    store.append("a", [ev(), ev()])
    with pytest.raises(WrongExpectedVersionError) as info:
        store.append("a", [ev()], expected_version=expected)
    assert info.value.actual == 1
    assert info.value.expected == expected


def test_append_with_int_version_on_a_missing_stream_is_refused(store: cl.EventStore, ev) -> None:
    with pytest.raises(WrongExpectedVersionError) as info:
        store.append("a", [ev()], expected_version=0)
    assert info.value.actual is None


def test_append_with_stale_expected_version_writes_nothing(
    store: cl.EventStore, ev, disk_state, as_tuples
) -> None:
    store.append("a", [ev(), ev()])
    store.append("b", [ev()])
    before_disk, before_events = disk_state(), as_tuples(store.read_all())
    for expected in (0, 7, cl.NO_STREAM):
        with pytest.raises(WrongExpectedVersionError):
            store.append("a", [ev(data=b"late")], expected_version=expected)
    with pytest.raises(WrongExpectedVersionError):
        store.append("c", [ev()], expected_version=cl.STREAM_EXISTS)
    assert store.head == 3
    assert store.stream_version("a") == 1
    assert store.stream_version("c") is None
    assert disk_state() == before_disk
    assert as_tuples(store.read_all()) == before_events


def test_wrong_expected_version_error_is_a_value_error(store: cl.EventStore, ev) -> None:
    with pytest.raises(ValueError):
        store.append("a", [ev()], expected_version=3)


def test_a_refused_append_leaves_the_store_usable(store: cl.EventStore, ev) -> None:
    with pytest.raises(WrongExpectedVersionError):
        store.append("a", [ev()], expected_version=3)
    assert store.append("a", [ev()], expected_version=cl.NO_STREAM) == cl.AppendResult(0, 0, 1)


@pytest.mark.parametrize("expected", [-3, -5, 1.5, True, False, "x", None, 1 << 62])
def test_a_bad_expected_version_is_refused_as_invalid_argument(
    store: cl.EventStore, ev, disk_state, expected: object
) -> None:
    before = disk_state()
    with pytest.raises(InvalidArgumentError):
        store.append("a", [ev()], expected_version=expected)  # type: ignore[arg-type]
    assert store.head == 0
    assert disk_state() == before


# ---------------------------------------------------------------- validation (invariant 7)


BAD_STREAM_NAMES = {
    "empty": "",
    "over-1024-utf8-bytes": "é" * 513,  # 1026 bytes of UTF-8, 513 characters
    "nul": "a\x00b",
    "lone-surrogate": "a\ud800b",
}


@pytest.mark.parametrize("name", list(BAD_STREAM_NAMES.values()), ids=list(BAD_STREAM_NAMES))
def test_a_bad_stream_name_is_refused_and_writes_nothing(
    store: cl.EventStore, ev, disk_state, name: str
) -> None:
    before = disk_state()
    with pytest.raises(InvalidStreamNameError):
        store.append(name, [ev()])
    assert store.head == 0
    assert store.streams() == []
    assert disk_state() == before


@pytest.mark.parametrize("name", [None, 7, b"bytes"], ids=["none", "int", "bytes"])
def test_a_stream_name_that_is_not_a_str_is_refused(
    store: cl.EventStore, ev, disk_state, name: object
) -> None:
    before = disk_state()
    with pytest.raises(InvalidStreamNameError):
        store.append(name, [ev()])  # type: ignore[arg-type]
    assert store.head == 0
    assert disk_state() == before


def test_a_stream_name_of_exactly_1024_utf8_bytes_is_accepted(store: cl.EventStore, ev) -> None:
    name = "é" * 512
    store.append(name, [ev()])
    assert store.read_stream(name)[0].stream == name


def test_stream_version_of_a_bad_name_raises_invalid_stream_name(store: cl.EventStore) -> None:
    with pytest.raises(InvalidStreamNameError):
        store.stream_version("")


def test_an_event_over_max_event_bytes_is_refused_and_writes_nothing(
    open_store, ev, disk_state
) -> None:
    s = open_store(max_event_bytes=1024)
    s.append("a", [ev(data=b"x" * 100)])
    before = disk_state()
    with pytest.raises(EventTooLargeError) as info:
        s.append("a", [ev(data=b"x" * 100), ev(data=b"x" * 2000)])
    assert info.value.limit == 1024
    assert info.value.size > 1024
    assert s.head == 1
    assert disk_state() == before


def test_an_event_just_under_max_event_bytes_is_accepted(open_store, ev) -> None:
    s = open_store(max_event_bytes=1024)
    s.append("a", [ev(data=b"x" * 900)])
    assert len(s.read_stream("a")[0].data) == 900


def test_str_data_is_refused_as_invalid_event() -> None:
    with pytest.raises(InvalidEventError):
        cl.NewEvent("T", "not bytes")  # type: ignore[arg-type]


def test_an_object_that_is_not_a_new_event_is_refused_and_writes_nothing(
    store: cl.EventStore, ev, disk_state
) -> None:
    before = disk_state()
    with pytest.raises(InvalidEventError):
        store.append("a", [ev(), {"type": "T", "data": b""}])  # type: ignore[list-item]
    assert store.head == 0
    assert disk_state() == before


@pytest.mark.parametrize("type_name", ["", "x" * 256], ids=["empty", "over-255-bytes"])
def test_a_bad_event_type_is_refused(type_name: str) -> None:
    with pytest.raises(InvalidEventError):
        cl.NewEvent(type_name, b"")


def test_invalid_event_error_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        cl.NewEvent("T", 123)  # type: ignore[arg-type]


def test_every_refusal_leaves_head_streams_and_files_unchanged(
    store: cl.EventStore, ev, disk_state, as_tuples
) -> None:
    store.append("a", [ev()])
    before = (store.head, store.streams(), disk_state(), as_tuples(store.read_all()))
    refusals = [
        lambda: store.append("", [ev()]),
        lambda: store.append("a\x00", [ev()]),
        lambda: store.append("a", [ev()], expected_version=-3),
        lambda: store.append("a", [ev()], expected_version=cl.NO_STREAM),
        lambda: store.append("a", []),
        lambda: store.append_batch(["a", ""], ["T", "T"], [b"", b""]),
        lambda: store.append_batch(["a", "b"], ["T", "T"], [b"", b""], expected_versions={"b": 0}),
    ]
    for refuse in refusals:
        with pytest.raises(cl.ChronologError):
            refuse()
    assert (store.head, store.streams(), disk_state(), as_tuples(store.read_all())) == before
