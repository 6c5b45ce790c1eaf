"""Idempotent retries: re-appending events whose ids are stored at the same versions returns the
original AppendResult and writes nothing (docs/idempotency.md states the rule)."""

from __future__ import annotations

import uuid

import pytest

import chronolog as cl
from chronolog.errors import WrongExpectedVersionError


def _ids(n: int, start: int = 1) -> list[uuid.UUID]:
    return [uuid.UUID(int=start + i) for i in range(n)]


def _events(ids: list[uuid.UUID], tag: bytes = b"") -> list[cl.NewEvent]:
    return [cl.NewEvent("T", tag + str(i).encode(), id=u) for i, u in enumerate(ids)]


def test_retry_with_expected_version_returns_the_original_result_and_writes_nothing(
    store: cl.EventStore, ev, disk_state
) -> None:
    store.append("a", [ev()])
    ids = _ids(2)
    original = store.append("a", _events(ids), expected_version=0)
    before = disk_state()
    assert store.append("a", _events(ids), expected_version=0) == original
    assert store.head == 3
    assert disk_state() == before


def test_retry_with_no_stream_returns_the_original_result(store: cl.EventStore, disk_state) -> None:
    ids = _ids(3)
    original = store.append("a", _events(ids), expected_version=cl.NO_STREAM)
    before = disk_state()
    assert store.append("a", _events(ids), expected_version=cl.NO_STREAM) == original
    assert store.head == 3
    assert disk_state() == before


def test_retry_with_any_of_the_latest_append_returns_the_original_result(
    store: cl.EventStore, ev, disk_state
) -> None:
    store.append("a", [ev(), ev()])
    ids = _ids(2)
    original = store.append("a", _events(ids))
    store.append("other", [ev()])  # the head moves on; the stream does not
    before = disk_state()
    assert store.append("a", _events(ids), expected_version=cl.ANY) == original
    assert store.head == 5
    assert disk_state() == before


def test_retry_with_stream_exists_of_the_latest_append_returns_the_original_result(
    store: cl.EventStore, ev
) -> None:
    store.append("a", [ev()])
    ids = _ids(1)
    original = store.append("a", _events(ids), expected_version=cl.STREAM_EXISTS)
    assert store.append("a", _events(ids), expected_version=cl.STREAM_EXISTS) == original
    assert store.head == 2


def test_retry_with_expected_version_of_an_older_append_returns_its_result(
    store: cl.EventStore, ev
) -> None:
    first_ids, later_ids = _ids(2), _ids(2, start=100)
    first = store.append("a", _events(first_ids), expected_version=cl.NO_STREAM)
    store.append("a", _events(later_ids), expected_version=1)
    store.append("a", [ev()])
    assert store.append("a", _events(first_ids), expected_version=cl.NO_STREAM) == first
    assert store.head == 5


def test_retry_with_any_of_an_older_append_appends_the_events_again(
    store: cl.EventStore, ev
) -> None:
    ids = _ids(1)
    store.append("a", _events(ids))
    store.append("a", [ev()])
    res = store.append("a", _events(ids), expected_version=cl.ANY)
    assert res == cl.AppendResult(2, 2, 3)
    assert [e.id for e in store.read_stream("a")] == [ids[0], None, ids[0]]


def test_retry_returns_the_original_result_after_reopen(open_store) -> None:
    s = open_store()
    ids = _ids(2)
    original = s.append("a", _events(ids), expected_version=cl.NO_STREAM)
    s.close()
    s2 = open_store()
    assert s2.append("a", _events(ids), expected_version=cl.NO_STREAM) == original
    assert s2.head == 2


def test_retry_with_more_events_than_the_original_is_wrong_expected_version(
    store: cl.EventStore, disk_state
) -> None:
    ids = _ids(3)
    store.append("a", _events(ids[:2]), expected_version=cl.NO_STREAM)
    before = disk_state()
    with pytest.raises(WrongExpectedVersionError) as info:
        store.append("a", _events(ids), expected_version=cl.NO_STREAM)
    assert info.value.actual == 1
    assert store.head == 2
    assert disk_state() == before


def test_retry_whose_later_ids_differ_is_wrong_expected_version(
    store: cl.EventStore, disk_state
) -> None:
    ids = _ids(2)
    store.append("a", _events(ids), expected_version=cl.NO_STREAM)
    before = disk_state()
    with pytest.raises(WrongExpectedVersionError):
        store.append("a", _events([ids[0], uuid.UUID(int=999)]), expected_version=cl.NO_STREAM)
    assert store.head == 2
    assert disk_state() == before


def test_retry_with_fewer_events_than_the_original_is_wrong_expected_version_with_any(
    store: cl.EventStore,
) -> None:
    # ANY looks at the stream's last n events: [b, c] of [a, b, c] does not start with a.
    ids = _ids(3)
    store.append("a", _events(ids))
    with pytest.raises(WrongExpectedVersionError):
        store.append("a", _events([ids[1], uuid.UUID(int=999)]))
    assert store.head == 3


def test_retry_with_a_first_id_that_does_not_match_falls_back_to_the_expected_version_check(
    store: cl.EventStore,
) -> None:
    store.append("a", _events(_ids(2)), expected_version=cl.NO_STREAM)
    with pytest.raises(WrongExpectedVersionError) as info:
        store.append("a", _events(_ids(2, start=50)), expected_version=cl.NO_STREAM)
    assert info.value.actual == 1


def test_events_without_ids_are_never_treated_as_a_retry(store: cl.EventStore, ev) -> None:
    store.append("a", [ev(data=b"same")])
    assert store.append("a", [ev(data=b"same")]) == cl.AppendResult(1, 1, 2)


def test_an_append_with_some_ids_missing_is_never_treated_as_a_retry(
    store: cl.EventStore, ev
) -> None:
    ids = _ids(1)
    store.append("a", [cl.NewEvent("T", id=ids[0]), ev()])
    assert store.append("a", [cl.NewEvent("T", id=ids[0]), ev()]) == cl.AppendResult(2, 3, 4)


def test_the_same_ids_on_another_stream_are_a_new_append(store: cl.EventStore) -> None:
    ids = _ids(1)
    store.append("a", _events(ids))
    assert store.append("b", _events(ids)) == cl.AppendResult(1, 1, 1)


def test_recorded_event_ids_are_the_appended_uuids(store: cl.EventStore) -> None:
    ids = _ids(3)
    store.append("a", _events(ids))
    assert [e.id for e in store.read_stream("a")] == ids


# ---------------------------------------------------------------- append_batch retries


def test_batch_retry_returns_the_original_result_and_writes_nothing(
    store: cl.EventStore, ev, disk_state
) -> None:
    store.append("x", [ev()])
    ids = _ids(3)
    cols = (["a", "b", "a"], ["T", "T", "T"], [b"1", b"2", b"3"])
    original = store.append_batch(*cols, ids=ids)
    store.append("x", [ev()])
    before = disk_state()
    assert store.append_batch(*cols, ids=ids) == original
    assert original == cl.AppendResult(1, 3, None)
    assert store.head == 5
    assert disk_state() == before


def test_batch_retry_to_one_stream_returns_its_next_version(store: cl.EventStore) -> None:
    ids = _ids(2)
    original = store.append_batch(["a", "a"], ["T", "T"], [b"", b""], ids=ids)
    assert original.next_version == 2
    assert store.append_batch(["a", "a"], ["T", "T"], [b"", b""], ids=ids) == original


def test_batch_retry_with_expected_versions_returns_the_original_result(
    store: cl.EventStore, ev
) -> None:
    ids = _ids(2)
    cols = (["a", "b"], ["T", "T"], [b"", b""])
    original = store.append_batch(
        *cols, ids=ids, expected_versions={"a": cl.NO_STREAM, "b": cl.NO_STREAM}
    )
    store.append("a", [ev()])
    assert (
        store.append_batch(*cols, ids=ids, expected_versions={"a": cl.NO_STREAM, "b": cl.NO_STREAM})
        == original
    )
    assert store.head == 3


def test_batch_retry_with_a_changed_tail_is_wrong_expected_version(
    store: cl.EventStore, disk_state
) -> None:
    ids = _ids(2)
    store.append_batch(["a", "b"], ["T", "T"], [b"", b""], ids=ids)
    before = disk_state()
    with pytest.raises(WrongExpectedVersionError):
        store.append_batch(["a", "b"], ["T", "T"], [b"", b""], ids=[ids[0], uuid.UUID(int=77)])
    assert store.head == 2
    assert disk_state() == before


def test_batch_retry_with_a_stream_moved_to_another_event_is_wrong_expected_version(
    store: cl.EventStore,
) -> None:
    ids = _ids(2)
    store.append_batch(["a", "b"], ["T", "T"], [b"", b""], ids=ids)
    with pytest.raises(WrongExpectedVersionError):
        store.append_batch(["a", "c"], ["T", "T"], [b"", b""], ids=ids)
    assert store.head == 2


def test_batch_with_arrow_ids_is_detected_as_a_retry(store: cl.EventStore) -> None:
    import pyarrow as pa

    ids = pa.array([u.bytes for u in _ids(2)], pa.binary(16))
    original = store.append_batch(
        pa.array(["a", "b"]), pa.array(["T", "T"]), pa.array([b"", b""]), ids=ids
    )
    assert (
        store.append_batch(
            pa.array(["a", "b"]), pa.array(["T", "T"]), pa.array([b"", b""]), ids=ids
        )
        == original
    )
    assert store.head == 2


def test_single_append_retry_of_a_batch_to_one_stream_returns_the_original_result(
    store: cl.EventStore,
) -> None:
    ids = _ids(2)
    original = store.append_batch(["a", "a"], ["T", "T"], [b"0", b"1"], ids=ids)
    assert store.append("a", _events(ids)) == original
