"""The bad input table: every public entry point gets wrong types, empty, huge, negative, NaN and
Unicode edge cases (lone surrogates, NUL, very long names). Each must raise its specific
ChronologError subclass and leave the store exactly as it was (same head, same segment bytes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import chronolog as cl
from chronolog.errors import (
    ChronologError,
    EventTooLargeError,
    InvalidArgumentError,
    InvalidEventError,
    InvalidStreamNameError,
    StoreNotFoundError,
)

MAX_EVENT_BYTES = 4096
Call = Callable[[cl.EventStore, Path], Any]


def _core_bug(why: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"core bug: {why}")


def E(data: bytes = b"{}", type: str = "T", **kw: Any) -> cl.NewEvent:
    return cl.NewEvent(type, data, **kw)


def _open(**options: Any) -> Call:
    def call(store: cl.EventStore, path: Path) -> Any:
        return cl.EventStore.open(path.parent / "other", **options)
    return call


# (id, call, expected error, marks)
CASES: list[Any] = [
    # ---- EventStore.open options
    pytest.param(_open(durability="bogus"), InvalidArgumentError, id="open-durability-unknown"),
    pytest.param(_open(durability=""), InvalidArgumentError, id="open-durability-empty"),
    pytest.param(_open(durability=1), InvalidArgumentError, id="open-durability-int"),
    pytest.param(_open(max_segment_bytes=0), InvalidArgumentError, id="open-segment-zero"),
    pytest.param(_open(max_segment_bytes=1 << 40), InvalidArgumentError, id="open-segment-huge"),
    pytest.param(_open(max_segment_bytes=-1), InvalidArgumentError, id="open-segment-negative"),
    pytest.param(_open(max_segment_bytes=math.nan), InvalidArgumentError, id="open-segment-nan"),
    pytest.param(_open(max_event_bytes=1), InvalidArgumentError, id="open-event-bytes-tiny"),
    pytest.param(_open(max_event_bytes=1 << 70), InvalidArgumentError, id="open-event-bytes-huge"),
    pytest.param(_open(flush_interval_ms=0), InvalidArgumentError, id="open-flush-zero"),
    pytest.param(_open(flush_interval_ms=True), InvalidArgumentError, id="open-flush-bool"),
    pytest.param(_open(flush_interval_ms=math.inf), InvalidArgumentError, id="open-flush-inf"),
    pytest.param(_open(readonly=True), StoreNotFoundError, id="open-readonly-missing"),
    pytest.param(_open(io="not a FileIO"), InvalidArgumentError, id="open-io-wrong-type"),
    # ---- NewEvent
    pytest.param(lambda s, p: cl.NewEvent("", b""), InvalidEventError, id="newevent-type-empty"),
    pytest.param(lambda s, p: cl.NewEvent("x" * 256, b""), InvalidEventError, id="newevent-type-long"),
    pytest.param(lambda s, p: cl.NewEvent("\ud800", b""), InvalidEventError, id="newevent-type-surrogate"),
    pytest.param(lambda s, p: cl.NewEvent(1, b""), InvalidEventError, id="newevent-type-int"),  # type: ignore[arg-type]
    pytest.param(lambda s, p: cl.NewEvent(None, b""), InvalidEventError, id="newevent-type-none"),  # type: ignore[arg-type]
    pytest.param(lambda s, p: cl.NewEvent("T", "text"), InvalidEventError, id="newevent-data-str"),
    pytest.param(lambda s, p: cl.NewEvent("T", 5), InvalidEventError, id="newevent-data-int"),
    pytest.param(lambda s, p: cl.NewEvent("T", b"", metadata=1.5), InvalidEventError, id="newevent-meta-float"),
    pytest.param(lambda s, p: cl.NewEvent("T", b"", id="not-a-uuid"), InvalidEventError, id="newevent-id-str"),
    pytest.param(lambda s, p: cl.NewEvent("T", b"", id=b"short"), InvalidEventError, id="newevent-id-short"),
    # ---- append
    pytest.param(lambda s, p: s.append("", [E()]), InvalidStreamNameError, id="append-stream-empty"),
    pytest.param(lambda s, p: s.append(None, [E()]), InvalidStreamNameError, id="append-stream-none"),
    pytest.param(lambda s, p: s.append(7, [E()]), InvalidStreamNameError, id="append-stream-int"),
    pytest.param(lambda s, p: s.append(b"bytes", [E()]), InvalidStreamNameError, id="append-stream-bytes"),
    pytest.param(lambda s, p: s.append("a\x00b", [E()]), InvalidStreamNameError, id="append-stream-nul"),
    pytest.param(lambda s, p: s.append("\udcff", [E()]), InvalidStreamNameError, id="append-stream-surrogate"),
    pytest.param(lambda s, p: s.append("x" * 1025, [E()]), InvalidStreamNameError, id="append-stream-1025-bytes"),
    pytest.param(lambda s, p: s.append("é" * 513, [E()]), InvalidStreamNameError, id="append-stream-1026-utf8-bytes"),
    pytest.param(lambda s, p: s.append("x" * 10**6, [E()]), InvalidStreamNameError, id="append-stream-huge"),
    pytest.param(lambda s, p: s.append("a", []), InvalidArgumentError, id="append-no-events"),
    pytest.param(lambda s, p: s.append("a", [b"raw"]), InvalidEventError, id="append-event-bytes"),
    pytest.param(lambda s, p: s.append("a", [E(), None]), InvalidEventError, id="append-event-none-second"),
    pytest.param(lambda s, p: s.append("a", "notalist"), InvalidEventError, id="append-events-str"),
    pytest.param(lambda s, p: s.append("a", None), InvalidEventError, id="append-events-none"),
    pytest.param(lambda s, p: s.append("a", [E(b"x" * MAX_EVENT_BYTES)]), EventTooLargeError, id="append-event-too-large"),
    pytest.param(lambda s, p: s.append("a", [E(), E(b"x" * MAX_EVENT_BYTES)]), EventTooLargeError, id="append-second-event-too-large"),
    pytest.param(lambda s, p: s.append("a", [E()], expected_version=-3), InvalidArgumentError, id="append-expected--3"),
    pytest.param(lambda s, p: s.append("a", [E()], expected_version=1.5), InvalidArgumentError, id="append-expected-float"),
    pytest.param(lambda s, p: s.append("a", [E()], expected_version=math.nan), InvalidArgumentError, id="append-expected-nan"),
    pytest.param(lambda s, p: s.append("a", [E()], expected_version="0"), InvalidArgumentError, id="append-expected-str"),
    pytest.param(lambda s, p: s.append("a", [E()], expected_version=True), InvalidArgumentError, id="append-expected-bool"),
    pytest.param(lambda s, p: s.append("a", [E()], expected_version=2**80), InvalidArgumentError, id="append-expected-huge"),
    # ---- append_batch
    pytest.param(lambda s, p: s.append_batch([], [], []), InvalidArgumentError, id="batch-empty"),
    pytest.param(lambda s, p: s.append_batch(["a", "b"], ["T"], [b"", b""]), InvalidArgumentError, id="batch-lengths-differ"),
    pytest.param(lambda s, p: s.append_batch("ab", ["T", "T"], [b"", b""]), InvalidEventError, id="batch-streams-str"),
    pytest.param(lambda s, p: s.append_batch([""], ["T"], [b""]), InvalidStreamNameError, id="batch-stream-empty"),
    pytest.param(lambda s, p: s.append_batch(["a\x00"], ["T"], [b""]), InvalidStreamNameError, id="batch-stream-nul"),
    pytest.param(lambda s, p: s.append_batch(["\ud800"], ["T"], [b""]), InvalidStreamNameError, id="batch-stream-surrogate"),
    pytest.param(lambda s, p: s.append_batch(["x" * 2000], ["T"], [b""]), InvalidStreamNameError, id="batch-stream-long"),
    pytest.param(lambda s, p: s.append_batch([None], ["T"], [b""]), InvalidStreamNameError, id="batch-stream-none"),
    pytest.param(lambda s, p: s.append_batch(["a"], [""], [b""]), InvalidEventError, id="batch-type-empty"),
    pytest.param(lambda s, p: s.append_batch(["a"], ["T"], [1]), InvalidEventError, id="batch-data-int"),
    pytest.param(lambda s, p: s.append_batch(["a"], ["T"], [None]), InvalidEventError, id="batch-data-none"),
    pytest.param(lambda s, p: s.append_batch(["a"], ["T"], [b"x" * MAX_EVENT_BYTES]), EventTooLargeError, id="batch-too-large"),
    pytest.param(lambda s, p: s.append_batch(["a"], ["T"], [b""], ids=[b"short"]), InvalidEventError, id="batch-id-short"),
    pytest.param(lambda s, p: s.append_batch(["a"], ["T"], [b""], expected_versions={"a": "x"}), InvalidArgumentError, id="batch-expected-str"),
    pytest.param(lambda s, p: s.append_batch(["a"], ["T"], [b""], expected_versions={"a": math.nan}), InvalidArgumentError, id="batch-expected-nan"),
    pytest.param(lambda s, p: s.append_batch(["a"], ["T"], [b""], expected_versions=[1]), InvalidArgumentError, id="batch-expected-list"),
    pytest.param(lambda s, p: s.append_batch(["a"], ["T"], [b""], expected_versions={"": 0}), InvalidStreamNameError, id="batch-expected-empty-name"),
    # ---- reads
    pytest.param(lambda s, p: s.read_stream(""), InvalidStreamNameError, id="read-stream-empty"),
    pytest.param(lambda s, p: s.read_stream("a\x00"), InvalidStreamNameError, id="read-stream-nul"),
    pytest.param(lambda s, p: s.read_stream("\ud800"), InvalidStreamNameError, id="read-stream-surrogate"),
    pytest.param(lambda s, p: s.read_stream("x" * 5000), InvalidStreamNameError, id="read-stream-long"),
    pytest.param(lambda s, p: s.read_stream(3), InvalidStreamNameError, id="read-stream-int"),
    pytest.param(lambda s, p: s.read_stream("a", -1), InvalidArgumentError, id="read-stream-from-negative"),
    pytest.param(lambda s, p: s.read_stream("a", math.nan), InvalidArgumentError, id="read-stream-from-nan"),
    pytest.param(lambda s, p: s.read_stream("a", to_version=-2), InvalidArgumentError, id="read-stream-to-negative"),
    pytest.param(lambda s, p: s.read_stream("a", limit=-1), InvalidArgumentError, id="read-stream-limit-negative"),
    pytest.param(lambda s, p: s.read_stream("a", limit="5"), InvalidArgumentError, id="read-stream-limit-str"),
    pytest.param(lambda s, p: s.read_all(-1), InvalidArgumentError, id="read-all-from-negative"),
    pytest.param(lambda s, p: s.read_all(1.0), InvalidArgumentError, id="read-all-from-float"),
    pytest.param(lambda s, p: s.read_all(limit=-1), InvalidArgumentError, id="read-all-limit-negative"),
    pytest.param(lambda s, p: s.read_all(backwards=True, from_position=math.inf), InvalidArgumentError, id="read-all-from-inf"),
    pytest.param(lambda s, p: s.stream_version(""), InvalidStreamNameError, id="version-empty"),
    pytest.param(lambda s, p: s.stream_version(None), InvalidStreamNameError, id="version-none"),
    pytest.param(lambda s, p: s.stream_version("\udfff"), InvalidStreamNameError, id="version-surrogate"),
    pytest.param(lambda s, p: s.stream_version(5), InvalidStreamNameError, id="version-int"),
    pytest.param(lambda s, p: s.streams(5), InvalidArgumentError, id="streams-prefix-int"),
    pytest.param(lambda s, p: s.streams("\ud800"), InvalidArgumentError, id="streams-prefix-surrogate"),
    # ---- waits (NaN compares false to every deadline: it would wait forever) and filters (a
    # single str iterates as its characters: it would match nothing)
    pytest.param(lambda s, p: s.wait_for(99, timeout=math.nan), InvalidArgumentError, id="wait-timeout-nan"),
    pytest.param(lambda s, p: s.wait_for(99, timeout=True), InvalidArgumentError, id="wait-timeout-bool"),
    pytest.param(lambda s, p: s.wait_for(99, timeout=-0.5), InvalidArgumentError, id="wait-timeout-negative"),
    pytest.param(lambda s, p: s.subscribe(timeout=math.nan), InvalidArgumentError, id="subscribe-timeout-nan"),
    pytest.param(lambda s, p: s.subscribe(timeout="1"), InvalidArgumentError, id="subscribe-timeout-str"),
    pytest.param(lambda s, p: s.subscribe(timeout=0.1).next(math.nan), InvalidArgumentError, id="subscription-next-nan"),
    pytest.param(lambda s, p: s.subscribe(timeout=0.1).take(False), InvalidArgumentError, id="subscription-take-bool"),
    pytest.param(lambda s, p: s.subscribe(types="T"), InvalidArgumentError, id="subscribe-types-str"),
    pytest.param(lambda s, p: s.scan_table(types="T"), InvalidArgumentError, id="scan-types-str"),
    pytest.param(lambda s, p: s.scan_table(streams="a"), InvalidArgumentError, id="scan-streams-str"),
    pytest.param(lambda s, p: s.scan_table(streams=[b"a"]), InvalidArgumentError, id="scan-streams-bytes-name"),
    pytest.param(lambda s, p: s.scan(types=b"T"), InvalidArgumentError, id="scan-types-bytes"),
]


def _snapshot(path: Path) -> dict[str, bytes]:
    return {n: (path / n).read_bytes() for n in sorted(os.listdir(path)) if n.endswith(".seg")}


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[cl.EventStore, Path]:
    path = tmp_path / "store"
    store = cl.EventStore.open(path, durability="os", max_event_bytes=MAX_EVENT_BYTES)
    store.append("a", [E(b"1"), E(b"2")])
    store.append_batch(["b", "a"], ["T", "T"], [b"3", b"4"])
    return store, path


@pytest.mark.parametrize(("call", "error"), CASES)
def test_bad_input_raises_its_specific_error_and_changes_nothing(
        seeded: tuple[cl.EventStore, Path], call: Call, error: type[ChronologError]) -> None:
    store, path = seeded
    head, segments, names = store.head, _snapshot(path), store.streams()
    with pytest.raises(error):
        result = call(store, path)
        if hasattr(result, "__next__"):
            next(result)
        if isinstance(result, cl.EventStore):
            result.close()
    assert issubclass(error, ChronologError)
    assert _snapshot(path) == segments
    with cl.EventStore.open(path, readonly=True) as again:
        assert again.head == head == 4
        assert again.streams() == names
    store.close()


def test_an_open_refused_for_a_bad_option_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        cl.EventStore.open(tmp_path / "new", durability="bogus")
    assert not (tmp_path / "new").exists()
