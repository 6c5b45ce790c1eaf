"""EventStore.append_batch: columns as lists, numpy arrays and Arrow arrays; expected_versions
checked before anything is written; the refusals of invariant 7."""

from __future__ import annotations

import re
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import chronolog as cl
from chronolog.errors import (
    EventTooLargeError,
    InvalidArgumentError,
    InvalidEventError,
    InvalidStreamNameError,
    WrongExpectedVersionError,
)

STREAMS = ["order-1", "cart-9", "order-1", "order-2"]
TYPES = ["Placed", "Added", "Paid", "Placed"]
DATAS = [b'{"n": 1}', b"", b'{"n": 3}', b"\x00\x01binary\xff"]
METAS = [b"m1", b"", b"m3", b"m4"]
IDS = [uuid.UUID(int=(i + 1) << 8 | 0x5A) for i in range(4)]  # no trailing NUL byte (numpy S16)


def _stored(store: cl.EventStore) -> list[tuple[Any, ...]]:
    return [
        (e.position, e.stream, e.version, e.type, e.data, e.metadata, e.id)
        for e in store.read_all()
    ]


EXPECTED = [
    (0, "order-1", 0, "Placed", b'{"n": 1}', b"m1", IDS[0]),
    (1, "cart-9", 0, "Added", b"", b"", IDS[1]),
    (2, "order-1", 1, "Paid", b'{"n": 3}', b"m3", IDS[2]),
    (3, "order-2", 0, "Placed", b"\x00\x01binary\xff", b"m4", IDS[3]),
]

COLUMN_FORMS = {
    "lists": lambda: (STREAMS, TYPES, DATAS, METAS, IDS),
    "tuples-and-bytes-ids": lambda: (
        tuple(STREAMS),
        tuple(TYPES),
        tuple(DATAS),
        tuple(METAS),
        [u.bytes for u in IDS],
    ),
    "numpy-object": lambda: (
        np.array(STREAMS, dtype=object),
        np.array(TYPES, dtype=object),
        np.array(DATAS, dtype=object),
        np.array(METAS, dtype=object),
        np.array(IDS, dtype=object),
    ),
    "numpy-unicode-and-bytes": lambda: (
        np.array(STREAMS),
        np.array(TYPES),
        np.array(DATAS, dtype=object),
        np.array(METAS),
        np.array([u.bytes for u in IDS], dtype="S16"),
    ),
    "arrow-string-binary": lambda: (
        pa.array(STREAMS, pa.string()),
        pa.array(TYPES, pa.string()),
        pa.array(DATAS, pa.binary()),
        pa.array(METAS, pa.binary()),
        pa.array([u.bytes for u in IDS], pa.binary(16)),
    ),
    "arrow-large": lambda: (
        pa.array(STREAMS, pa.large_string()),
        pa.array(TYPES, pa.large_string()),
        pa.array(DATAS, pa.large_binary()),
        pa.array(METAS, pa.large_binary()),
        pa.array([u.bytes for u in IDS], pa.binary()),
    ),
    "arrow-dictionary": lambda: (
        pa.array(STREAMS).dictionary_encode(),
        pa.array(TYPES).dictionary_encode(),
        pa.array(DATAS, pa.binary()).dictionary_encode(),
        pa.array(METAS, pa.binary()).dictionary_encode(),
        pa.array([u.bytes for u in IDS], pa.binary(16)),
    ),
    "arrow-chunked": lambda: (
        pa.chunked_array([STREAMS[:1], STREAMS[1:]]),
        pa.chunked_array([TYPES[:3], TYPES[3:]]),
        pa.chunked_array([DATAS[:2], DATAS[2:]], pa.binary()),
        pa.chunked_array([METAS], pa.binary()),
        pa.chunked_array([[u.bytes for u in IDS]], pa.binary(16)),
    ),
    "arrow-views": lambda: (  # what Polars' to_arrow() hands over
        pa.array(STREAMS, pa.string_view()),
        pa.array(TYPES, pa.string_view()),
        pa.array(DATAS, pa.binary_view()),
        pa.array(METAS, pa.binary_view()),
        pa.array([u.bytes for u in IDS], pa.binary_view()),
    ),
    "arrow-sliced": lambda: (
        pa.array(["x"] + STREAMS)[1:],
        pa.array(["x"] + TYPES)[1:],
        pa.array([b"x"] + DATAS)[1:],
        pa.array([b"x"] + METAS)[1:],
        pa.array([bytes(16)] + [u.bytes for u in IDS], pa.binary(16))[1:],
    ),
}


@pytest.mark.parametrize("form", list(COLUMN_FORMS), ids=list(COLUMN_FORMS))
def test_append_batch_stores_every_column_form_identically(store: cl.EventStore, form: str) -> None:
    streams, types, datas, metas, ids = COLUMN_FORMS[form]()
    res = store.append_batch(streams, types, datas, metadatas=metas, ids=ids)
    assert res == cl.AppendResult(0, 3, None)
    assert _stored(store) == EXPECTED


def test_append_batch_without_metadata_or_ids_stores_empty_metadata_and_no_id(
    store: cl.EventStore,
) -> None:
    store.append_batch(STREAMS, TYPES, DATAS)
    assert [(e.metadata, e.id) for e in store.read_all()] == [(b"", None)] * 4


def test_append_batch_with_some_null_ids_stores_none_for_those(store: cl.EventStore) -> None:
    ids = [IDS[0], None, IDS[2], None]
    store.append_batch(STREAMS, TYPES, DATAS, ids=ids)
    assert [e.id for e in store.read_all()] == ids


def test_append_batch_with_arrow_null_ids_stores_none_for_those(store: cl.EventStore) -> None:
    ids = pa.array([IDS[0].bytes, None, None, IDS[3].bytes], pa.binary(16))
    store.append_batch(STREAMS, TYPES, DATAS, ids=ids)
    assert [e.id for e in store.read_all()] == [IDS[0], None, None, IDS[3]]


def test_append_batch_to_one_stream_returns_its_next_version(store: cl.EventStore, ev) -> None:
    store.append("a", [ev()])
    assert store.append_batch(["a", "a"], ["T", "T"], [b"", b""]) == cl.AppendResult(1, 2, 3)


def test_append_batch_continues_the_versions_of_existing_streams(store: cl.EventStore, ev) -> None:
    store.append("order-1", [ev(), ev()])
    store.append_batch(STREAMS, TYPES, DATAS)
    assert [(e.stream, e.version) for e in store.read_all()][2:] == [
        ("order-1", 2),
        ("cart-9", 0),
        ("order-1", 3),
        ("order-2", 0),
    ]


def test_append_batch_is_one_frame(store: cl.EventStore) -> None:
    store.append_batch(STREAMS, TYPES, DATAS)
    assert store.verify()["frames"] == 1


def test_append_batch_events_share_one_timestamp(store: cl.EventStore) -> None:
    store.append_batch(STREAMS, TYPES, DATAS)
    assert len({e.timestamp for e in store.read_all()}) == 1


# ---------------------------------------------------------------- expected versions


def test_append_batch_with_holding_expected_versions_succeeds(store: cl.EventStore, ev) -> None:
    store.append("order-1", [ev()])
    store.append_batch(
        STREAMS,
        TYPES,
        DATAS,
        expected_versions={"order-1": 0, "cart-9": cl.NO_STREAM, "order-2": cl.ANY},
    )
    assert store.stream_version("order-1") == 2


def test_append_batch_with_one_wrong_expected_version_writes_nothing(
    store: cl.EventStore, ev, disk_state
) -> None:
    store.append("order-1", [ev()])
    before = disk_state()
    with pytest.raises(WrongExpectedVersionError) as info:
        store.append_batch(
            STREAMS,
            TYPES,
            DATAS,
            expected_versions={"order-1": 0, "cart-9": cl.NO_STREAM, "order-2": cl.STREAM_EXISTS},
        )
    assert info.value.stream == "order-2"
    assert info.value.actual is None
    assert store.head == 1
    assert store.streams() == ["order-1"]
    assert disk_state() == before


def test_append_batch_checks_expected_versions_of_streams_not_in_the_batch(
    store: cl.EventStore, ev, disk_state
) -> None:
    store.append("guard", [ev(), ev()])
    before = disk_state()
    with pytest.raises(WrongExpectedVersionError) as info:
        store.append_batch(STREAMS, TYPES, DATAS, expected_versions={"guard": 0})
    assert info.value.actual == 1
    assert store.head == 2
    assert disk_state() == before
    store.append_batch(STREAMS, TYPES, DATAS, expected_versions={"guard": 1})
    assert store.head == 6


def test_append_batch_with_a_bad_expected_version_value_is_invalid_argument(
    store: cl.EventStore,
) -> None:
    with pytest.raises(InvalidArgumentError):
        store.append_batch(STREAMS, TYPES, DATAS, expected_versions={"order-1": -3})
    assert store.head == 0


def test_append_batch_with_expected_versions_not_a_mapping_is_invalid_argument(
    store: cl.EventStore,
) -> None:
    with pytest.raises(InvalidArgumentError):
        store.append_batch(STREAMS, TYPES, DATAS, expected_versions=[("order-1", 0)])  # type: ignore[arg-type]
    assert store.head == 0


# ---------------------------------------------------------------- refusals


def _refused(
    store: cl.EventStore, disk_state, exc: type[BaseException], *args: Any, **kwargs: Any
) -> None:
    before = disk_state()
    with pytest.raises(exc):
        store.append_batch(*args, **kwargs)
    assert store.head == 0
    assert store.streams() == []
    assert disk_state() == before


def test_append_batch_of_no_events_is_refused(store: cl.EventStore, disk_state) -> None:
    _refused(store, disk_state, InvalidArgumentError, [], [], [])


def test_append_batch_with_columns_of_different_lengths_is_refused(
    store: cl.EventStore, disk_state
) -> None:
    _refused(store, disk_state, InvalidArgumentError, ["a", "b"], ["T"], [b"", b""])
    _refused(store, disk_state, InvalidArgumentError, ["a", "b"], ["T", "T"], [b""])
    _refused(store, disk_state, InvalidArgumentError, ["a"], ["T"], [b""], metadatas=[b"", b""])
    _refused(store, disk_state, InvalidArgumentError, ["a"], ["T"], [b""], ids=[None, None])


@pytest.mark.parametrize("name", ["", "é" * 513, "a\x00b"], ids=["empty", "too-long", "nul"])
def test_append_batch_with_a_bad_stream_name_anywhere_is_refused(
    store: cl.EventStore, disk_state, name: str
) -> None:
    _refused(store, disk_state, InvalidStreamNameError, ["ok", name], ["T", "T"], [b"", b""])


@pytest.mark.parametrize("arrow", [False, True], ids=["lists", "arrow"])
@pytest.mark.parametrize("where", [0, 1, 37, 999])
def test_a_nul_byte_in_one_stream_name_of_many_is_reported_at_its_event(
    store: cl.EventStore, disk_state, where: int, arrow: bool
) -> None:
    # One search covers every name of the batch; the error must still name the right one.
    names = [f"stream-{i}" for i in range(1000)]
    names[where] = names[where][:3] + "\x00" + names[where][3:]
    streams: Any = pa.array(names, pa.large_string()) if arrow else names
    before = disk_state()
    with pytest.raises(InvalidStreamNameError, match=rf"'str\\x00eam-{where}'"):
        store.append_batch(streams, ["T"] * 1000, [b""] * 1000)
    assert store.head == 0
    assert disk_state() == before


def test_append_batch_with_a_lone_surrogate_stream_name_is_refused(
    store: cl.EventStore, disk_state
) -> None:
    _refused(store, disk_state, InvalidStreamNameError, ["ok", "a\ud800"], ["T", "T"], [b"", b""])


def test_append_batch_with_a_non_str_stream_is_refused(store: cl.EventStore, disk_state) -> None:
    _refused(store, disk_state, InvalidStreamNameError, ["ok", 7], ["T", "T"], [b"", b""])


def test_append_batch_with_a_non_str_stream_in_an_arrow_column_is_refused(
        store: cl.EventStore, disk_state) -> None:
    _refused(store, disk_state, InvalidEventError, pa.array([1, 2]), ["T", "T"], [b"", b""])


def test_append_batch_with_integer_datas_is_refused(store: cl.EventStore, disk_state) -> None:
    _refused(store, disk_state, InvalidEventError, ["a"], ["T"], pa.array([1], pa.int64()))


def test_append_batch_with_a_single_str_instead_of_a_column_is_refused(
    store: cl.EventStore, disk_state
) -> None:
    _refused(store, disk_state, InvalidEventError, "a", ["T"], [b""])


@pytest.mark.parametrize("type_name", ["", "x" * 256], ids=["empty", "over-255-bytes"])
def test_append_batch_with_a_bad_event_type_is_refused(
    store: cl.EventStore, disk_state, type_name: str
) -> None:
    _refused(store, disk_state, InvalidEventError, ["a", "a"], ["T", type_name], [b"", b""])


def test_append_batch_with_null_data_is_refused(store: cl.EventStore, disk_state) -> None:
    _refused(
        store,
        disk_state,
        InvalidEventError,
        ["a", "a"],
        ["T", "T"],
        pa.array([b"", None], pa.binary()),
    )


def test_append_batch_with_an_id_of_the_wrong_size_is_refused(
    store: cl.EventStore, disk_state
) -> None:
    _refused(store, disk_state, InvalidEventError, ["a"], ["T"], [b""], ids=[b"short"])


def test_append_batch_with_an_event_over_max_event_bytes_is_refused(open_store, disk_state) -> None:
    s = open_store(max_event_bytes=1024)
    _refused(s, disk_state, EventTooLargeError, ["a", "b"], ["T", "T"], [b"x" * 10, b"x" * 2000])


@pytest.mark.parametrize("with_ids", [False, True], ids=["no-ids", "ids"])
@pytest.mark.parametrize("where", ["data", "metadata"])
def test_append_batch_takes_an_event_of_exactly_max_event_bytes_and_refuses_one_byte_more(
    open_store, disk_state, with_ids: bool, where: str
) -> None:
    # A record is 48 header bytes, 16 for an id, then stream, type, metadata and data.
    s = open_store(max_event_bytes=1024)
    room = 1024 - 48 - (16 if with_ids else 0) - len("order-1") - len("Placed")

    def batch(extra: int) -> dict[str, Any]:
        big, empty = [b"x" * 10, b"y" * (room + extra)], [b"", b""]
        cols: dict[str, Any] = ({"datas": big, "metadatas": empty} if where == "data"
                                else {"datas": empty, "metadatas": big})
        if with_ids:
            cols["ids"] = [uuid.uuid4(), uuid.uuid4()]
        return cols

    _refused(s, disk_state, EventTooLargeError, ["order-0", "order-1"], ["Placed", "Placed"],
             **batch(1))
    s.append_batch(["order-0", "order-1"], ["Placed", "Placed"], **batch(0))
    stored = list(s.read_all())
    assert [len(e.data) + len(e.metadata) for e in stored] == [10, room]
    assert s.verify()["ok"]


def test_append_batch_refuses_a_stream_name_one_byte_over_the_limit_after_valid_events(
    store: cl.EventStore, disk_state
) -> None:
    streams = ["a" * 1024] * 3 + ["b" * 1025]
    _refused(store, disk_state, InvalidStreamNameError, pa.array(streams, pa.large_string()),
             ["T"] * 4, [b""] * 4)
    store.append_batch(streams[:3], ["T"] * 3, [b""] * 3)
    assert store.stream_version("a" * 1024) == 2


def test_append_batch_refusal_leaves_no_trace_in_a_later_append(store: cl.EventStore) -> None:
    with pytest.raises(WrongExpectedVersionError):
        store.append_batch(
            ["a", "b", "a"], ["T", "T", "T"], [b"", b"", b""], expected_versions={"b": 3}
        )
    store.append_batch(["b", "a"], ["T", "T"], [b"", b""])
    assert [(e.stream, e.version) for e in store.read_all()] == [("b", 0), ("a", 0)]


KIND_CASES = {
    "bytes-stream": (lambda n: ([b"s"] * n, ["T"] * n, [b"x"] * n, None),
                     InvalidStreamNameError, "a stream name must be a str, got bytes"),
    "bytes-type": (lambda n: (["s"] * n, ["T"] * (n - 1) + [b"T"], [b"x"] * n, None),
                   InvalidEventError, r"event \d+: the event type must be a str, got bytes"),
    "str-data": (lambda n: (["s"] * n, ["T"] * n, [b"x"] * (n - 1) + ["x"], None),
                 InvalidEventError, r"event \d+: data must be bytes, got str"),
    "str-metadata": (lambda n: (["s"] * n, ["T"] * n, [b"x"] * n, ["m"] * n),
                     InvalidEventError, "event 0: metadata must be bytes, got str"),
    "int-data": (lambda n: (["s"] * n, ["T"] * n, [b"x"] * (n - 1) + [7], None),
                 InvalidEventError, r"event \d+: data must be bytes, got int"),
}


@pytest.mark.parametrize("n", [2, 300], ids=["short-lists", "arrow-path"])
@pytest.mark.parametrize("case", list(KIND_CASES), ids=list(KIND_CASES))
def test_a_value_of_the_wrong_kind_is_refused_alike_in_short_and_long_batches(
        store: cl.EventStore, disk_state, case: str, n: int) -> None:
    # Lists of up to 256 events are encoded from the objects, longer ones through Arrow: the
    # two must refuse the same input with the same error (Arrow would convert it silently).
    make, error, message = KIND_CASES[case]
    streams, types, datas, metas = make(n)
    before = disk_state()
    with pytest.raises(error, match=message):
        store.append_batch(streams, types, datas, metadatas=metas)
    assert store.head == 0
    assert disk_state() == before


@pytest.mark.parametrize("n", [2, 300], ids=["short-lists", "arrow-path"])
def test_bytearray_and_memoryview_payloads_are_taken_in_short_and_long_batches(
        store: cl.EventStore, n: int) -> None:
    datas: list[Any] = [bytearray(b"a")] * (n - 1) + [memoryview(b"b")]
    store.append_batch(["s"] * n, ["T"] * n, datas, metadatas=[memoryview(b"m")] * n)
    events = list(store.read_stream("s"))
    assert [e.data for e in events[-2:]] == [b"a", b"b"] and events[0].metadata == b"m"


def test_a_numpy_column_of_the_wrong_kind_is_refused(store: cl.EventStore, disk_state) -> None:
    before = disk_state()
    with pytest.raises(InvalidEventError, match="datas must hold bytes, got a numpy array of dtype <U1"):
        store.append_batch(np.array(["s"] * 300), np.array(["T"] * 300), np.array(["x"] * 300))
    with pytest.raises(InvalidEventError, match="streams must hold str, got a numpy array of dtype"):
        store.append_batch(np.array([b"s"] * 300), np.array(["T"] * 300), np.array([b"x"] * 300))
    assert store.head == 0 and disk_state() == before


@pytest.mark.parametrize("column", ["datas", "metadatas"])
@pytest.mark.parametrize("values", [np.arange(300), np.arange(300, dtype=np.float64),
                                    np.ones(300, dtype=bool), np.arange(300).astype("datetime64[s]")],
                         ids=["int64", "float64", "bool", "datetime64"])
def test_a_numeric_numpy_column_is_refused_not_stored_as_its_element_bytes(
        store: cl.EventStore, disk_state, column: str, values: Any) -> None:
    # pyarrow converts such an array to binary values holding each element's raw bytes.
    before = disk_state()
    kw = {"metadatas": values} if column == "metadatas" else {}
    datas = values if column == "datas" else [b"x"] * 300
    with pytest.raises(InvalidEventError, match=re.escape(f"{column} must hold bytes, got a numpy array of dtype {values.dtype}")):
        store.append_batch(np.array(["s"] * 300), np.array(["T"] * 300), datas, **kw)
    with pytest.raises(InvalidEventError, match="streams must hold str, got a numpy array of dtype int64"):
        store.append_batch(np.arange(300), ["T"] * 300, [b"x"] * 300)
    assert store.head == 0 and disk_state() == before


@pytest.mark.parametrize("n", [2, 300], ids=["short-lists", "arrow-path"])
def test_an_id_that_is_not_a_uuid_but_has_bytes_is_refused_alike_in_short_and_long_batches(
        store: cl.EventStore, disk_state, n: int) -> None:
    class UuidLike:  # another library's UUID type: NewEvent refuses it too
        bytes = bytes(range(16))

    before = disk_state()
    with pytest.raises(InvalidEventError, match="a UUID string or None, got"):
        store.append_batch(["s"] * n, ["T"] * n, [b""] * n, ids=[UuidLike()] * n)
    assert store.head == 0 and disk_state() == before


@pytest.mark.parametrize("n", [2, 300], ids=["short-lists", "arrow-path"])
def test_an_oversized_event_without_an_id_in_a_batch_with_ids_is_reported_at_its_own_size(
        open_store, n: int) -> None:
    s = open_store(max_event_bytes=4096)
    ids: list[Any] = [uuid.UUID(int=i + 1) for i in range(n)]
    ids[1] = None
    datas = [b""] * n
    datas[1] = b"x" * (4097 - 48 - 1 - 1)  # a 4,097-byte record: header, stream "s", type "T"
    with pytest.raises(EventTooLargeError, match="event 1 is 4097 bytes") as info:
        s.append_batch(["s"] * n, ["T"] * n, datas, ids=ids)
    assert info.value.size == 4097 and s.head == 0


@pytest.mark.parametrize("n", [2, 300], ids=["short-lists", "arrow-path"])
def test_append_batch_takes_uuid_strings_as_ids_as_new_event_does(store: cl.EventStore, n: int) -> None:
    ids = [uuid.UUID(int=i + 1) for i in range(n)]
    store.append_batch(["s"] * n, ["T"] * n, [b""] * n, ids=[str(u) for u in ids])
    assert [e.id for e in store.read_stream("s")] == ids
    with pytest.raises(InvalidEventError, match="a UUID string or None, got 'nope'"):
        store.append_batch(["s"] * n, ["T"] * n, [b""] * n, ids=["nope"] * n)
