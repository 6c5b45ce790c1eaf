"""The log against its oracle: a Hypothesis state machine runs appends (single and batch, with
and without expected versions and ids, retries of earlier appends), reads, close/reopen and
index deletion against a pure-Python in-memory model, and compares after every step.

Segments are 4 KiB so they roll often. The default run is short; `-m slow` runs many more.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import chronolog as cl

ANY, NO_STREAM, STREAM_EXISTS = int(cl.ANY), int(cl.NO_STREAM), int(cl.STREAM_EXISTS)
SEGMENT_BYTES = 4096

STREAM_NAMES = ["a", "b", "order-1", "Ωmega-🚀", "x" * 300]
TYPES = ["Created", "Updated", "Ünïcode"]
EXPECTATIONS = ["none", "any", "no_stream", "stream_exists", "current", "wrong"]

payloads = st.one_of(st.binary(max_size=200), st.binary(min_size=1000, max_size=5000))
metadatas = st.one_of(st.just(b""), st.binary(max_size=30))
event_specs = st.tuples(st.sampled_from(TYPES), payloads, metadatas)


# ---------------------------------------------------------------------------- the oracle


@dataclass(frozen=True)
class ModelEvent:
    """One stored event as the model sees it (position is its index in ModelLog.events)."""

    stream: str
    version: int
    type: str
    data: bytes
    metadata: bytes
    id: uuid.UUID | None
    timestamp: int


class ModelWrongVersion(Exception):
    """The model's WrongExpectedVersionError: the stream and its actual version."""

    def __init__(self, stream: str, actual: int | None) -> None:
        super().__init__(stream, actual)
        self.stream = stream
        self.actual = actual


@dataclass
class ModelLog:
    """A pure-Python log: a list of events and each stream's positions by version."""

    events: list[ModelEvent] = field(default_factory=list)
    streams: dict[str, list[int]] = field(default_factory=dict)  # insertion = first appearance

    def count(self, stream: str) -> int:
        return len(self.streams.get(stream, ()))

    def version(self, stream: str) -> int | None:
        n = self.count(stream)
        return n - 1 if n else None

    @staticmethod
    def holds(expected: int, count: int) -> bool:
        if expected == ANY:
            return True
        if expected == NO_STREAM:
            return count == 0
        if expected == STREAM_EXISTS:
            return count > 0
        return count > 0 and count - 1 == expected

    def retry_result(
        self, streams: list[str], ids: list[uuid.UUID | None], expected_first: int
    ) -> cl.AppendResult | bool | None:
        """docs/idempotency.md: the original result, False (a partial repeat) or None."""
        if any(i is None for i in ids):
            return None
        first = streams[0]
        count = self.count(first)
        n, n_first = len(streams), streams.count(first)
        if count == 0:
            return None
        if expected_first >= NO_STREAM:
            if count - 1 <= expected_first:
                return None
            v0 = expected_first + 1
        else:
            if count < n_first:
                return None
            v0 = count - n_first
        p0 = self.streams[first][v0]
        if self.events[p0].id != ids[0]:
            return None
        if p0 + n > len(self.events):
            return False
        for i in range(n):
            e = self.events[p0 + i]
            if e.id != ids[i] or e.stream != streams[i]:
                return False
        single = len(set(streams)) == 1
        return cl.AppendResult(
            p0, p0 + n - 1, self.events[p0 + n - 1].version + 1 if single else None
        )

    def plan(
        self, streams: list[str], ids: list[uuid.UUID | None], expected: dict[str, int]
    ) -> cl.AppendResult | None:
        """What an append would do: the original result of a retry, or None to write it.
        Raises ModelWrongVersion when it is refused."""
        retry = self.retry_result(streams, ids, expected.get(streams[0], ANY))
        if retry is False:
            raise ModelWrongVersion(streams[0], self.version(streams[0]))
        if retry is not None:
            return retry
        for name, code in expected.items():
            if not self.holds(code, self.count(name)):
                raise ModelWrongVersion(name, self.version(name))
        return None

    def write(
        self,
        streams: list[str],
        specs: list[tuple[str, bytes, bytes]],
        ids: list[uuid.UUID | None],
        timestamp: int,
    ) -> cl.AppendResult:
        first = len(self.events)
        for (etype, data, meta), stream, eid in zip(specs, streams, ids):
            positions = self.streams.setdefault(stream, [])
            self.events.append(
                ModelEvent(stream, len(positions), etype, data, meta, eid, timestamp)
            )
            positions.append(len(self.events) - 1)
        single = len(set(streams)) == 1
        return cl.AppendResult(
            first, len(self.events) - 1, self.count(streams[0]) if single else None
        )


def _observed(e: cl.RecordedEvent) -> tuple[Any, ...]:
    return (e.position, e.stream, e.version, e.type, e.data, e.metadata, e.id, e.timestamp)


def _modelled(position: int, e: ModelEvent) -> tuple[Any, ...]:
    return (position, e.stream, e.version, e.type, e.data, e.metadata, e.id, e.timestamp)


# ---------------------------------------------------------------------------- the machine


@dataclass(frozen=True)
class PastAppend:
    """A successful append with ids, kept so a rule can retry it."""

    streams: tuple[str, ...]
    specs: tuple[tuple[str, bytes, bytes], ...]
    ids: tuple[uuid.UUID | None, ...]
    expected: tuple[tuple[str, int], ...]
    single: bool


class LogMachine(RuleBasedStateMachine):
    """EventStore vs ModelLog, compared after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="chronolog-sm-")
        self.path = os.path.join(self.dir, "store")
        self.model = ModelLog()
        self.history: list[PastAppend] = []
        self.next_id = 1
        self.store = self._open()

    def _open(self) -> cl.EventStore:
        return cl.EventStore.open(self.path, durability="os", max_segment_bytes=SEGMENT_BYTES)

    def teardown(self) -> None:
        try:
            self.store.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def _fresh_ids(self, n: int, mode: str) -> list[uuid.UUID | None]:
        ids: list[uuid.UUID | None] = []
        for i in range(n):
            if mode == "none" or (mode == "mixed" and i % 2 == 1):
                ids.append(None)
            else:
                ids.append(uuid.UUID(int=self.next_id))
                self.next_id += 1
        return ids

    def _expected_code(self, stream: str, how: str, wrong_by: int) -> int | None:
        current = self.model.version(stream)
        if how == "none":
            return None
        if how == "any":
            return ANY
        if how == "no_stream":
            return NO_STREAM
        if how == "stream_exists":
            return STREAM_EXISTS
        if how == "current":
            return NO_STREAM if current is None else current
        # "wrong": an int version that does not match (any int is wrong for a missing stream)
        if current is None:
            return max(0, wrong_by)
        return current + wrong_by if current + wrong_by >= 0 else current + 1

    def _run(
        self,
        streams: list[str],
        specs: list[tuple[str, bytes, bytes]],
        ids: list[uuid.UUID | None],
        expected: dict[str, int],
        single: bool,
        remember: bool,
    ) -> None:
        """Run one append against the store and the model and compare the outcomes."""
        try:
            planned = self.model.plan(streams, ids, expected)
            refusal = None
        except ModelWrongVersion as exc:
            planned, refusal = None, exc
        before = time.time_ns()
        try:
            if single:
                events = [cl.NewEvent(t, d, metadata=m, id=i) for (t, d, m), i in zip(specs, ids)]
                got = self.store.append(
                    streams[0], events, expected_version=expected.get(streams[0], ANY)
                )
            else:
                got = self.store.append_batch(
                    streams,
                    [s[0] for s in specs],
                    [s[1] for s in specs],
                    metadatas=[s[2] for s in specs],
                    ids=ids if any(i is not None for i in ids) else None,
                    expected_versions=expected or None,
                )
        except cl.WrongExpectedVersionError as exc:
            assert refusal is not None, f"store refused ({exc}), the model would append"
            assert (exc.stream, exc.actual) == (refusal.stream, refusal.actual)
            return
        after = time.time_ns()
        assert refusal is None, f"store appended {got}, the model refuses {refusal.args}"
        if planned is not None:  # an idempotent retry: the original result, nothing written
            assert got == planned
            return
        written = list(self.store.read_all(got.first_position, limit=len(streams)))
        stamps = {e.timestamp for e in written}
        assert len(stamps) == 1
        stamp = stamps.pop()
        assert before <= stamp <= after
        assert got == self.model.write(streams, specs, ids, stamp)
        if remember and all(i is not None for i in ids):
            self.history.append(
                PastAppend(
                    tuple(streams), tuple(specs), tuple(ids), tuple(expected.items()), single
                )
            )

    # ------------------------------------------------------------------ rules: appends

    @initialize()
    def start_empty(self) -> None:
        assert self.store.head == 0

    @rule(
        stream=st.sampled_from(STREAM_NAMES),
        specs=st.lists(event_specs, min_size=1, max_size=4),
        how=st.sampled_from(EXPECTATIONS),
        wrong_by=st.sampled_from([1, 2, -1]),
        id_mode=st.sampled_from(["all", "all", "none", "mixed"]),
    )
    def append(
        self,
        stream: str,
        specs: list[tuple[str, bytes, bytes]],
        how: str,
        wrong_by: int,
        id_mode: str,
    ) -> None:
        code = self._expected_code(stream, how, wrong_by)
        expected = {} if code is None else {stream: code}
        self._run(
            [stream] * len(specs),
            specs,
            self._fresh_ids(len(specs), id_mode),
            expected,
            single=True,
            remember=True,
        )

    @rule(
        rows=st.lists(
            st.tuples(st.sampled_from(STREAM_NAMES), event_specs), min_size=1, max_size=8
        ),
        checks=st.lists(
            st.tuples(
                st.sampled_from(STREAM_NAMES),
                st.sampled_from(EXPECTATIONS[1:]),
                st.sampled_from([1, 2, -1]),
            ),
            max_size=3,
        ),
        id_mode=st.sampled_from(["all", "all", "none", "mixed"]),
    )
    def append_batch(
        self,
        rows: list[tuple[str, tuple[str, bytes, bytes]]],
        checks: list[tuple[str, str, int]],
        id_mode: str,
    ) -> None:
        expected: dict[str, int] = {}
        for stream, how, wrong_by in checks:
            code = self._expected_code(stream, how, wrong_by)
            assert code is not None
            expected[stream] = code
        streams = [r[0] for r in rows]
        self._run(
            streams,
            [r[1] for r in rows],
            self._fresh_ids(len(rows), id_mode),
            expected,
            single=False,
            remember=True,
        )

    @precondition(lambda self: self.history)
    @rule(
        pick=st.integers(min_value=0),
        variant=st.sampled_from(["same", "same", "any", "prefix", "extended", "as-batch"]),
    )
    def retry_an_earlier_append(self, pick: int, variant: str) -> None:
        past = self.history[pick % len(self.history)]
        streams, specs, ids = list(past.streams), list(past.specs), list(past.ids)
        expected = dict(past.expected)
        single = past.single
        if variant == "any":
            expected = {}
        elif variant == "prefix" and len(streams) > 1:
            streams, specs, ids = streams[:-1], specs[:-1], ids[:-1]
        elif variant == "extended":
            streams.append(streams[-1])
            specs.append(("Created", b"extra", b""))
            ids.extend(self._fresh_ids(1, "all"))
        elif variant == "as-batch":
            single = False
        if single and len(set(streams)) > 1:
            single = False
        self._run(streams, specs, ids, expected, single=single, remember=False)

    # ------------------------------------------------------------------ rules: reads

    @rule(
        stream=st.sampled_from(STREAM_NAMES + ["never-written"]),
        lo=st.one_of(st.none(), st.integers(0, 12)),
        hi=st.one_of(st.none(), st.integers(0, 12)),
        backwards=st.booleans(),
        limit=st.one_of(st.none(), st.integers(0, 5)),
    )
    def read_stream(
        self, stream: str, lo: int | None, hi: int | None, backwards: bool, limit: int | None
    ) -> None:
        positions = self.model.streams.get(stream, [])
        versions = range(len(positions))
        if backwards:
            top = len(positions) - 1 if lo is None else min(lo, len(positions) - 1)
            bottom = 0 if hi is None else hi
            want = [v for v in reversed(versions) if bottom <= v <= top]
        else:
            bottom = 0 if lo is None else lo
            top = len(positions) - 1 if hi is None else hi
            want = [v for v in versions if bottom <= v <= top]
        if limit is not None:
            want = want[:limit]
        got = self.store.read_stream(stream, lo, to_version=hi, backwards=backwards, limit=limit)
        assert [_observed(e) for e in got] == [
            _modelled(positions[v], self.model.events[positions[v]]) for v in want
        ]

    @rule(
        start=st.one_of(st.none(), st.integers(0, 60)),
        backwards=st.booleans(),
        limit=st.one_of(st.none(), st.integers(0, 10)),
    )
    def read_all(self, start: int | None, backwards: bool, limit: int | None) -> None:
        head = len(self.model.events)
        if backwards:
            top = head - 1 if start is None else min(start, head - 1)
            want = list(range(top, -1, -1))
        else:
            want = list(range(0 if start is None else start, head))
        if limit is not None:
            want = want[:limit]
        got = list(self.store.read_all(start, backwards=backwards, limit=limit))
        assert [_observed(e) for e in got] == [_modelled(p, self.model.events[p]) for p in want]

    # ------------------------------------------------------------------ rules: lifecycle

    @rule(how=st.sampled_from(["plain", "delete-index", "checkpoint-first", "verify-only"]))
    def reopen(self, how: str) -> None:
        if how == "verify-only":
            report = self.store.verify()
            assert report["ok"], report["problems"]
            assert report["events"] == len(self.model.events)
            return
        if how == "checkpoint-first":
            self.store.checkpoint()
        self.store.close()
        if how == "delete-index":
            index = os.path.join(self.path, "index")
            for name in os.listdir(index):
                os.unlink(os.path.join(index, name))
        self.store = self._open()

    # ------------------------------------------------------------------ the comparison

    @invariant()
    def store_matches_the_model(self) -> None:
        assert self.store.head == len(self.model.events)
        # Compared as sets: the order of streams() is a known core bug (a refused batch
        # fixes the order of its new streams; see test_streams_order_ignores_refused_appends
        # in tests/unit/test_store_lifecycle.py). Compare lists once that is fixed.
        assert sorted(self.store.streams()) == sorted(self.model.streams)
        for name in STREAM_NAMES + ["never-written"]:
            assert self.store.stream_version(name) == self.model.version(name)
        assert [_observed(e) for e in self.store.read_all()] == [
            _modelled(p, e) for p, e in enumerate(self.model.events)
        ]
        for name, positions in self.model.streams.items():
            assert [(e.position, e.version) for e in self.store.read_stream(name)] == [
                (p, v) for v, p in enumerate(positions)
            ]


_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


class TestLogStateMachine(LogMachine.TestCase):  # type: ignore[name-defined,misc]
    """The default run: a modest number of short programs."""

    settings = settings(max_examples=40, stateful_step_count=30, **_COMMON)


@pytest.mark.slow
class TestLogStateMachineSlow(LogMachine.TestCase):  # type: ignore[name-defined,misc]
    """`pytest -m slow`: many more and longer programs."""

    settings = settings(max_examples=1500, stateful_step_count=80, **_COMMON)


class FsyncLogMachine(LogMachine):
    """The same machine in "fsync" mode: the active segment is sized ahead of its frames
    (zeros), cut back at every roll (4 KiB segments: often) and close, and recovered from
    whatever the deleted indexes leave."""

    def _open(self) -> cl.EventStore:
        return cl.EventStore.open(self.path, durability="fsync", max_segment_bytes=SEGMENT_BYTES)


class TestFsyncLogStateMachine(FsyncLogMachine.TestCase):  # type: ignore[name-defined,misc]
    """The default run in "fsync" mode: short programs (an fdatasync per append)."""

    settings = settings(max_examples=40, stateful_step_count=30, **_COMMON)


@pytest.mark.slow
class TestFsyncLogStateMachineSlow(FsyncLogMachine.TestCase):  # type: ignore[name-defined,misc]
    """`pytest -m slow`: many more and longer programs in "fsync" mode."""

    settings = settings(max_examples=1000, stateful_step_count=80, **_COMMON)


# ---------------------------------------------------------------------------- with compression

# Payloads zstd can shrink (the base machine's random bytes mostly store uncompressed).
compressible_payloads = st.lists(
    st.sampled_from([b'{"order": ', b'"sku-17"', b', "qty": 3', b"}", b"lorem ipsum ", b"\x00"]),
    min_size=1,
    max_size=120,
).map(b"".join)
compressible_specs = st.tuples(st.sampled_from(TYPES), compressible_payloads, metadatas)


class CompressedLogMachine(LogMachine):
    """The same machine over a zstd store with 1 KiB blocks (frames of many blocks), plus
    compressible appends, dictionary training, reopening with the other codec and offline
    compaction (cl.compact) to either codec: the model is unchanged by all of these."""

    def __init__(self) -> None:
        self.compression: str | None = "zstd"
        super().__init__()

    def _open(self) -> cl.EventStore:
        return cl.EventStore.open(
            self.path,
            durability="os",
            max_segment_bytes=SEGMENT_BYTES,
            compression=self.compression,
            compression_block_bytes=1024,
        )

    def _dictionaries(self) -> list[str]:
        return sorted(n for n in os.listdir(self.path) if n.endswith(".dict"))

    @rule(
        stream=st.sampled_from(STREAM_NAMES),
        specs=st.lists(compressible_specs, min_size=1, max_size=12),
        id_mode=st.sampled_from(["all", "none", "mixed"]),
    )
    def append_compressible(
        self, stream: str, specs: list[tuple[str, bytes, bytes]], id_mode: str
    ) -> None:
        ids = self._fresh_ids(len(specs), id_mode)
        self._run([stream] * len(specs), specs, ids, {}, single=True, remember=True)

    @rule(
        rows=st.lists(
            st.tuples(st.sampled_from(STREAM_NAMES), compressible_specs), min_size=1, max_size=20
        ),
        id_mode=st.sampled_from(["all", "none", "mixed"]),
    )
    def append_batch_compressible(
        self, rows: list[tuple[str, tuple[str, bytes, bytes]]], id_mode: str
    ) -> None:
        streams = [r[0] for r in rows]
        ids = self._fresh_ids(len(rows), id_mode)
        self._run(streams, [r[1] for r in rows], ids, {}, single=False, remember=True)

    @rule(sample_events=st.integers(1, 400), dict_bytes=st.sampled_from([1024, 4096]))
    def train_dictionary(self, sample_events: int, dict_bytes: int) -> None:
        before = self._dictionaries()
        if self.compression is None:
            with pytest.raises(cl.errors.InvalidArgumentError):
                self.store.train_dictionary(sample_events, dict_bytes=dict_bytes)
            assert self._dictionaries() == before
            return
        try:
            dict_id = self.store.train_dictionary(sample_events, dict_bytes=dict_bytes)
        except cl.errors.InvalidArgumentError:  # zstd could not train on so few events
            assert self._dictionaries() == before
            return
        assert dict_id == len(before) + 1
        assert self._dictionaries() == [*before, f"zstd-{dict_id:08d}.dict"]

    @rule(compression=st.sampled_from([None, "zstd"]))
    def reopen_with_a_codec(self, compression: str | None) -> None:
        self.store.close()
        self.compression = compression
        self.store = self._open()

    @rule(compression=st.sampled_from([None, "zstd"]), use_dictionary=st.booleans())
    def compact(self, compression: str | None, use_dictionary: bool) -> None:
        self.store.close()
        cl.compact(self.path, compression=compression, use_dictionary=use_dictionary)
        self.store = self._open()
        report = self.store.verify()
        assert report["ok"], report["problems"]


class TestCompressedLogStateMachine(CompressedLogMachine.TestCase):  # type: ignore[name-defined,misc]
    """The default run with compression: short programs (the added time stays small)."""

    settings = settings(max_examples=40, stateful_step_count=30, **_COMMON)


@pytest.mark.slow
class TestCompressedLogStateMachineSlow(CompressedLogMachine.TestCase):  # type: ignore[name-defined,misc]
    """`pytest -m slow`: many more and longer programs with compression."""

    settings = settings(max_examples=800, stateful_step_count=80, **_COMMON)
