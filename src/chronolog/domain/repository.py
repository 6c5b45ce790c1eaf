"""The repository: loads aggregates from their streams (through snapshots, a bulk snapshot
or an LRU cache) and saves their pending events atomically with optimistic concurrency."""

from __future__ import annotations

import copy
import os
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from chronolog._core.events import AppendResult, NewEvent, RecordedEvent
from chronolog.domain.aggregate import Aggregate, _table
from chronolog.domain.errors import AggregateNotFoundError, UnknownEventTypeError, UpcastError
from chronolog.domain.events import EventCodec, codec_of
from chronolog.domain.snapshots import BulkSnapshot, SnapshotPolicy, SnapshotStreams, StateCodec
from chronolog.domain.upcasting import Upcasters
from chronolog.errors import ChronologError, InvalidArgumentError
from chronolog.store import EventStore

__all__ = ["Repository", "append_aggregates"]

A = TypeVar("A", bound=Aggregate)

_META_CACHE_MAX = 4096
# Events read per step when an aggregate is replayed (Repository._chunks).
REPLAY_CHUNK = 4096


def append_aggregates(store: EventStore, aggregates: Sequence[Aggregate],
                      ids: Callable[[int], uuid.UUID] | None = None,
                      extra: Sequence[tuple[str, NewEvent, int]] = ()) -> AppendResult | None:
    """Append the pending events of every aggregate (and `extra` events, each with its
    expected version) in ONE store call, each stream expecting the version it was loaded at.

    Event ids: `ids(i)` for the i-th event when given (commands make them deterministic),
    otherwise a uuid4 drawn at the first save attempt and kept with the pending event, so
    that saving the same aggregate again after an ambiguous failure is idempotent.

    Returns None when there was nothing to append. Pending events are cleared only after the
    store acknowledged the append.

    Raises:
        WrongExpectedVersionError: a stream moved since the aggregate was loaded (nothing
            was written).
        InvalidArgumentError: two different aggregate objects for the same stream.

    Example:
        >>> append_aggregates(store, [order])  # doctest: +SKIP
        AppendResult(first_position=0, last_position=0, next_version=1)
    """
    streams: list[str] = []
    types: list[str] = []
    datas: list[bytes] = []
    metas: list[bytes] = []
    new_ids: list[bytes] = []
    expected: dict[str, int] = {}
    seen: dict[str, Aggregate] = {}
    index = 0
    for agg in aggregates:
        pending = agg._pending
        if not pending:
            continue
        stream = type(agg).stream_name(agg.id)
        other = seen.get(stream)
        if other is not None:
            if other is agg:
                continue
            raise InvalidArgumentError(
                f"two different aggregate objects for stream {stream!r} in one save; "
                "load it once and make every change on that object")
        seen[stream] = agg
        expected[stream] = agg.version - len(pending)
        kept = agg.__dict__.get("_event_ids")
        if kept is None or len(kept) != len(pending):
            kept = [uuid.uuid4().bytes for _ in pending]
            agg.__dict__["_event_ids"] = kept
        for j, (ev, data) in enumerate(pending):
            codec = codec_of(type(ev))
            streams.append(stream)
            types.append(codec.event_type)
            datas.append(data)  # (encoded and checked when it was triggered)
            metas.append(codec.metadata)
            new_ids.append(ids(index).bytes if ids is not None else kept[j])
            index += 1
    for stream, new, version in extra:
        streams.append(stream)
        types.append(new.type)
        datas.append(new.data)
        metas.append(new.metadata)
        new_ids.append(new.id.bytes if new.id is not None else uuid.uuid4().bytes)
        expected[stream] = version
    if not streams:
        return None
    if len(expected) == 1:
        stream, version = next(iter(expected.items()))
        result = store.append(stream, [NewEvent(t, d, m, i) for t, d, m, i
                                       in zip(types, datas, metas, new_ids)], version)
    else:
        result = store.append_batch(streams, types, datas, metadatas=metas, ids=new_ids,
                                    expected_versions=expected)
    for agg in seen.values():
        agg._pending = []
        agg.__dict__.pop("_event_ids", None)
    return result


class Repository(Generic[A]):
    """Loads and saves the aggregates of one class.

    get() replays the aggregate's stream, starting from the newest usable snapshot (its
    "$snapshot-" stream, or a bulk snapshot file) when snapshots are enabled, or from a cached
    copy fast-forwarded with the events after it when the cache is on. save() appends every
    pending event of every aggregate given in one atomic store call.

    Invariants:
        - a save that raises WrongExpectedVersionError wrote nothing, for every aggregate;
        - get() never returns state that differs from a full replay (snapshots that do not
          fit the class are ignored; cached copies are fast-forwarded, never trusted blindly);
        - events are upcast on read; nothing already stored is rewritten.

    Thread-safety: safe to share between threads when cache_size is 0; with a cache, guard
    it with your own lock (the LRU is not synchronised).

    Example:
        >>> # Order: the README's (place(customer) records an OrderPlaced)
        >>> repo = Repository(store, Order, snapshots=SnapshotPolicy(every=50))  # doctest: +SKIP
        >>> order = Order("7"); order.place("ada")  # doctest: +SKIP
        >>> repo.save(order)  # doctest: +SKIP
        AppendResult(first_position=0, last_position=0, next_version=1)
        >>> repo.get("7").version  # doctest: +SKIP
        0
    """

    def __init__(self, store: EventStore, aggregate: type[A], *,
                 snapshots: SnapshotPolicy | int | None = None,
                 snapshot_store: EventStore | None = None,
                 read_snapshots: bool | None = None,
                 upcasters: Upcasters | None = None,
                 cache_size: int = 0,
                 bulk_snapshot: BulkSnapshot | str | os.PathLike[str] | None = None) -> None:
        """Args:
            store: the event store.
            aggregate: the Aggregate subclass.
            snapshots: a SnapshotPolicy (or an int, every N events); default: the class's
                `snapshot_policy` attribute if any, else no automatic snapshots.
            snapshot_store: where the "$snapshot-" streams live (default: `store`).
            read_snapshots: whether get() looks for snapshots (default: when a policy is set
                or a bulk snapshot is given).
            upcasters: the Upcasters registry for events and snapshots.
            cache_size: keep up to this many aggregates in an LRU (0: no cache).
            bulk_snapshot: a BulkSnapshot (or its path) that get() may start from.
        """
        if not (isinstance(aggregate, type) and issubclass(aggregate, Aggregate)):
            raise InvalidArgumentError(f"aggregate must be an Aggregate subclass, got {aggregate!r}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise InvalidArgumentError(f"cache_size must be an int >= 0, got {cache_size!r}")
        if snapshots is None:
            snapshots = getattr(aggregate, "snapshot_policy", None)
        if isinstance(snapshots, int) and not isinstance(snapshots, bool):
            snapshots = SnapshotPolicy(every=snapshots)
        if snapshots is not None and not isinstance(snapshots, SnapshotPolicy):
            raise InvalidArgumentError(f"snapshots must be a SnapshotPolicy, an int or None, got {snapshots!r}")
        self.store = store
        self.aggregate = aggregate
        self.policy: SnapshotPolicy | None = snapshots
        self.upcasters = upcasters
        self.cache_size = cache_size
        self._cache: OrderedDict[str, A] = OrderedDict()
        self.bulk: BulkSnapshot | None = None
        if bulk_snapshot is not None:
            self.use_bulk_snapshot(bulk_snapshot)
        self._read_snapshots = read_snapshots
        self.state_codec = StateCodec(aggregate)
        self.snapshots = SnapshotStreams(snapshot_store or store, upcasters)
        self._dispatch: dict[str, tuple[bytes, Callable[[bytes], Any], Callable[[Any, Any], None], EventCodec]] | None = None
        self._meta_cache: dict[bytes, tuple[int, str]] = {}
        self._meta_decode = msgspec.json.Decoder(dict[str, Any]).decode

    # ------------------------------------------------------------------ reads

    @property
    def reads_snapshots(self) -> bool:
        """Whether get() looks for snapshots."""
        if self._read_snapshots is not None:
            return self._read_snapshots
        return self.policy is not None or self.bulk is not None

    def get(self, id: Any, *, at_version: int | None = None) -> A:
        """The aggregate with this id, as of its latest event (or as of `at_version`: the
        state after the event with that version).

        Raises:
            AggregateNotFoundError: the stream has no events (at or below at_version).
            UnknownEventTypeError: the stream holds an event type the class does not apply.
            UpcastError: an event's schema version cannot be brought up to date.

        Example:
            >>> repo.get("7", at_version=0).version  # doctest: +SKIP
            0
        """
        if at_version is not None and (isinstance(at_version, bool) or not isinstance(at_version, int)
                                       or at_version < 0):
            raise InvalidArgumentError(f"at_version must be an int >= 0 or None, got {at_version!r}")
        stream = self.aggregate.stream_name(id)
        if self.cache_size and at_version is None:
            return self._get_cached(id, stream)
        agg = self._load(id, stream, at_version)
        if agg is None:
            raise AggregateNotFoundError(stream, at_version)
        return agg

    def _load(self, id: Any, stream: str, at_version: int | None) -> A | None:
        agg: A | None = None
        if self.reads_snapshots:
            agg = self._from_snapshot(id, stream, at_version)
        if agg is None:
            chunks = self._chunks(stream, 0, at_version)
            first = next(chunks, None)
            if first is None:
                return None
            agg = self.aggregate(id)
            self._replay(agg, first)
        else:
            if at_version is not None and agg.version >= at_version:
                return agg
            chunks = self._chunks(stream, agg.version + 1, at_version)
        for chunk in chunks:
            self._replay(agg, chunk)
        return agg

    def _chunks(self, stream: str, first: int, at_version: int | None = None,
                before: int | None = None) -> Iterator[list[RecordedEvent]]:
        """The stream's events from version `first` (up to at_version; at positions below
        `before`), REPLAY_CHUNK at a time: an aggregate of a million events is replayed
        without holding them all (~300 bytes an event)."""
        while True:
            chunk = self.store.read_stream(stream, first, to_version=at_version, limit=REPLAY_CHUNK)
            if before is not None and chunk and chunk[-1].position >= before:
                chunk = [r for r in chunk if r.position < before]
                if chunk:
                    yield chunk
                return
            if not chunk:
                return
            yield chunk
            if len(chunk) < REPLAY_CHUNK:
                return
            first = chunk[-1].version + 1

    def _from_snapshot(self, id: Any, stream: str, at_version: int | None) -> A | None:
        best = self.snapshots.latest(self.state_codec, id, stream, at_version)
        if self.bulk is not None:
            other = self.bulk.restore(self.state_codec, id, stream, self.upcasters, at_version)
            if other is not None and (best is None or other.version > best.version):
                best = other
        return best  # type: ignore[return-value]

    def _get_cached(self, id: Any, stream: str) -> A:
        cached = self._cache.get(stream)
        if cached is None:
            cached = self._load(id, stream, None)
            if cached is None:
                raise AggregateNotFoundError(stream)
        else:
            # Fast-forward: only the events appended since the cached copy.
            for tail in self._chunks(stream, cached.version + 1):
                try:
                    self._replay(cached, tail)
                except BaseException:
                    # Some of the tail may be applied already: the copy is neither the old
                    # state nor the new one. Drop it; the next get() replays from scratch.
                    del self._cache[stream]
                    raise
        self._cache[stream] = cached
        self._cache.move_to_end(stream)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        # The cache owns its copy: callers mutate theirs freely.
        return copy.deepcopy(cached)

    def exists(self, id: Any) -> bool:
        """True when the aggregate's stream holds at least one event.

        Example:
            >>> repo.exists("7")  # doctest: +SKIP
            True
        """
        return self.store.stream_version(self.aggregate.stream_name(id)) is not None

    def _dispatch_table(self) -> dict[str, tuple[bytes, Callable[[bytes], Any], Callable[[Any, Any], None], EventCodec]]:
        table = _table(self.aggregate)
        apply = self.aggregate.apply
        out = {}
        for name, (codec, handler) in table.by_type.items():
            fn = apply if (table.overrides_apply or handler is None) else handler
            out[name] = (codec.metadata, codec.decode, fn, codec)
        self._dispatch = out
        return out

    def _replay(self, agg: A, records: list[RecordedEvent]) -> None:
        dispatch = self._dispatch or self._dispatch_table()
        for rec in records:
            entry = dispatch.get(rec.type)
            if entry is None:
                raise UnknownEventTypeError(self.aggregate.__name__, rec.type)
            meta, decode, fn, codec = entry
            if rec.metadata == meta:
                fn(agg, decode(rec.data))
            else:
                fn(agg, self._upcast(codec, rec))
        agg.version = records[-1].version

    def _upcast(self, codec: EventCodec, rec: RecordedEvent) -> Any:
        """Decode an event stored with other metadata than the class writes today."""
        info = self._meta_cache.get(rec.metadata)
        if info is None:
            try:
                meta = self._meta_decode(rec.metadata) if rec.metadata else {}
            except msgspec.MsgspecError:
                meta = {}
            info = (int(meta.get("v", 1)), str(meta.get("enc", "json")))
            if len(self._meta_cache) >= _META_CACHE_MAX:
                self._meta_cache.clear()
            self._meta_cache[rec.metadata] = info
        version, enc = info
        if version == codec.schema_version and enc == codec.encoding:
            return codec.decode(rec.data)
        raw = msgspec.msgpack.decode(rec.data) if enc == "msgpack" else msgspec.json.decode(rec.data)
        if version > codec.schema_version:
            raise UpcastError(codec.event_type, version, codec.schema_version,
                              "the stored payload is newer than this code")
        if version != codec.schema_version:
            if self.upcasters is None:
                raise UpcastError(codec.event_type, version, codec.schema_version,
                                  "no Upcasters registry was given to the repository")
            raw = self.upcasters.upcast_event(codec.event_type, raw, version, codec.schema_version)
        try:
            return codec.from_builtins(raw)
        except msgspec.MsgspecError as exc:
            raise UpcastError(codec.event_type, version, codec.schema_version,
                              f"the event at position {rec.position} (stream {rec.stream!r}, "
                              f"version {rec.version}) does not fit {codec.cls.__name__} after "
                              f"upcasting: {exc}; make the upcasters produce every field the "
                              "class declares") from None

    # ------------------------------------------------------------------ writes

    def save(self, *aggregates: A) -> AppendResult | None:
        """Append the pending events of every given aggregate in one atomic store call,
        each stream expecting the version the aggregate was loaded at; then write the
        snapshots the policy asks for.

        Returns:
            The store's AppendResult, or None when nothing was pending.

        Raises:
            WrongExpectedVersionError: some stream moved since its aggregate was loaded;
                nothing was written for any of them (reload and decide again).

        Example:
            >>> repo.save(order_a, order_b)  # doctest: +SKIP
        """
        for agg in aggregates:
            if not isinstance(agg, self.aggregate):
                raise InvalidArgumentError(
                    f"this repository saves {self.aggregate.__name__}, got {type(agg).__name__}")
        before = [(agg, agg.version - len(agg._pending)) for agg in aggregates]
        result = append_aggregates(self.store, aggregates)
        if result is not None:
            self.after_save(before)
        return result

    def after_save(self, before: Iterable[tuple[Aggregate, int]]) -> None:
        """Write the snapshots that became due. A snapshot failure never fails the save (its
        events are written by then: raising would tell the caller they were not); it is
        reported as a RuntimeWarning and get() replays from the previous snapshot."""
        if self.policy is None:
            return
        for agg, old_version in before:
            if self.policy.is_due(old_version, agg.version):
                try:
                    self.snapshot(agg)  # type: ignore[arg-type]
                except ChronologError as exc:
                    warnings.warn(f"the snapshot of {self.aggregate.stream_name(agg.id)!r} at "
                                  f"version {agg.version} was not written (the save was): {exc}",
                                  RuntimeWarning, stacklevel=3)

    def snapshot(self, agg: A) -> bool:
        """Write a snapshot of a saved aggregate now; False when its state cannot
        round-trip (see StateCodec) and no snapshot was written.

        Raises:
            InvalidArgumentError: the aggregate has unsaved events.

        Example:
            >>> repo.snapshot(repo.get("7"))  # doctest: +SKIP
            True
        """
        if agg._pending:
            raise InvalidArgumentError("save the aggregate before snapshotting it")
        return self.snapshots.write(self.state_codec, agg, self.aggregate.stream_name(agg.id))

    def snapshot_all(self, path: str | os.PathLike[str], *, position: int | None = None) -> BulkSnapshot:
        """Write the state of every aggregate of the class, as of the store position
        `position` (default: the head: every event so far), into one Arrow IPC file, and
        return it opened (pass it as bulk_snapshot= or to use_bulk_snapshot()).

        Aggregates whose state does not round-trip are left out (get replays them).

        Example:
            >>> repo.snapshot_all("orders.arrow").position  # doctest: +SKIP
            1000
        """
        head = self.store.head
        position = head if position is None else position
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= head:
            raise InvalidArgumentError(f"position must be an int in 0..{head}, got {position!r}")
        rows: list[tuple[str, str, int, bytes]] = []
        for stream in self.store.streams(self.aggregate.stream_prefix + "-"):
            id = self.aggregate.id_from_stream(stream)
            if self.aggregate.stream_name(id) != stream:
                continue
            chunks = self._chunks(stream, 0, before=position)
            first = next(chunks, None)
            if first is None:
                continue
            agg = self.aggregate(id)
            self._replay(agg, first)
            for chunk in chunks:
                self._replay(agg, chunk)
            data = self.state_codec.encode(agg)
            if data is not None:
                rows.append((str(id), stream, agg.version, data))
        BulkSnapshot.write(path, self.state_codec, rows, position)
        return BulkSnapshot.open(path)

    def use_bulk_snapshot(self, bulk: BulkSnapshot | str | os.PathLike[str] | None) -> None:
        """Let get() start from a bulk snapshot (None to stop).

        Example:
            >>> repo.use_bulk_snapshot("orders.arrow")  # doctest: +SKIP
        """
        self.bulk = bulk if (bulk is None or isinstance(bulk, BulkSnapshot)) else BulkSnapshot.open(bulk)

    def __repr__(self) -> str:
        return f"Repository({self.aggregate.__name__}, policy={self.policy}, cache_size={self.cache_size})"
