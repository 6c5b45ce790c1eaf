"""Snapshots of aggregate state: the policy, the per-class state codec, snapshot streams
("$snapshot-<stream>") and bulk snapshots (one Arrow IPC file per aggregate class)."""

from __future__ import annotations

import hashlib
import os
import typing
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from chronolog._core.events import NewEvent
from chronolog._core.log import STREAM_NAME_MAX_BYTES
from chronolog.domain.aggregate import Aggregate, _table
from chronolog.domain.errors import EventDefinitionError
from chronolog.domain.upcasting import Upcasters
from chronolog.errors import InvalidArgumentError
from chronolog.store import ANY, EventStore

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "SNAPSHOT_PREFIX",
    "SNAPSHOT_TYPE",
    "BulkSnapshot",
    "SnapshotPolicy",
    "SnapshotStreams",
    "StateCodec",
]

SNAPSHOT_PREFIX = "$snapshot-"
SNAPSHOT_TYPE = "$snapshot"
_RESERVED = ("id", "version")


class SnapshotPolicy(msgspec.Struct, frozen=True):
    """When to snapshot an aggregate: after every `every` events (per aggregate).

    Example:
        >>> p = SnapshotPolicy(every=50)
        >>> p.is_due(48, 50), p.is_due(50, 52)
        (True, False)
    """

    every: int

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise InvalidArgumentError(f"SnapshotPolicy.every must be an int >= 1, got {self.every!r}")

    def is_due(self, old_version: int, new_version: int) -> bool:
        """True when a save that moved the aggregate from old_version to new_version crossed
        a multiple of `every` events."""
        return (new_version + 1) // self.every != (old_version + 1) // self.every


class StateCodec:
    """How one aggregate class's state becomes bytes and back: compact JSON of its public
    attributes, restored to the types annotated on the class.

    The fingerprint (a hash of the annotated field names and types, and of the event types
    the class applies with their schema versions) and the class's
    `snapshot_version` travel with each snapshot. A snapshot whose version differs is upcast
    by the registered snapshot upcasters, or ignored; one whose version matches but whose
    fingerprint does not (fields changed without a version bump) is ignored. Either way the
    repository falls back to replaying events: a snapshot never yields wrong state.

    Invariants:
        - a snapshot is written only if it restores to equal state (checked at write time);
          state that cannot round-trip (an unannotated Decimal, an object without __eq__)
          is not snapshotted and a warning says which class.

    Thread-safety: immutable after construction.

    Example:
        >>> class Counter(Aggregate):
        ...     total: int = 0
        >>> c = StateCodec(Counter)
        >>> agg = Counter("c"); agg.total = 4; agg.version = 3
        >>> c.restore("c", 3, c.encode(agg)).total
        4
    """

    def __init__(self, cls: type[Aggregate]) -> None:
        self.cls = cls
        self.name = cls.__name__
        self.version: int = cls.snapshot_version
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise EventDefinitionError(f"{cls.__name__}.snapshot_version must be an int >= 1")
        hints = typing.get_type_hints(cls)
        self.types: dict[str, Any] = {
            k: t for k, t in hints.items()
            if k not in _RESERVED and not k.startswith("_") and typing.get_origin(t) is not ClassVar
            and t is not ClassVar}
        # The event types the class applies, with their schema versions: an event class
        # bumped to a new version (with an upcaster) may replay to other state.
        events = sorted((name, codec.schema_version) for name, (codec, _) in
                        _table(cls).by_type.items())
        spec = repr((sorted((k, repr(t)) for k, t in self.types.items()), events)).encode()
        self.fingerprint = hashlib.blake2b(spec, digest_size=8).hexdigest()
        self.metadata_prefix = b'{"v":%d,"f":"%s","at":' % (self.version, self.fingerprint.encode())
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder().decode
        self._warned = False

    @staticmethod
    def state_of(agg: Aggregate) -> dict[str, Any]:
        """The aggregate's state: its public attributes except id and version."""
        return {k: v for k, v in vars(agg).items() if k not in _RESERVED and not k.startswith("_")}

    def encode(self, agg: Aggregate) -> bytes | None:
        """The snapshot payload, or None when the state would not restore exactly."""
        state = self.state_of(agg)
        try:
            data = self._encode(state)
            ok = self.state_of(self.restore(agg.id, agg.version, data)) == state
        except (TypeError, ValueError, msgspec.MsgspecError):
            ok = False
        if ok:
            return data
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.name}: state does not round-trip through JSON, no snapshot written; "
                "annotate its attributes at class level with their types", RuntimeWarning,
                stacklevel=3)
        return None

    def metadata(self, at_version: int) -> bytes:
        """The metadata of a snapshot taken at `at_version`: {"v":..,"f":..,"at":..}."""
        return self.metadata_prefix + b"%d}" % at_version

    def accept(self, version: int, fingerprint: str, raw: dict[str, Any],
               upcasters: Upcasters | None) -> dict[str, Any] | None:
        """The state to restore from a stored snapshot, or None to ignore the snapshot."""
        if version == self.version:
            return raw if fingerprint == self.fingerprint else None
        if upcasters is None or version > self.version:
            return None
        return upcasters.upcast_snapshot(self.name, raw, version, self.version)

    def restore(self, id: Any, version: int, data: bytes | dict[str, Any]) -> Aggregate:
        """A new aggregate built from snapshot state (bytes or the decoded dict).

        Raises:
            msgspec.ValidationError: a field does not convert to its annotated type.
            ValueError: the snapshot lacks an attribute a new instance has (the class
                gained it since): the snapshot is not usable.
        """
        raw = self._decode(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        agg = self.cls(id)
        state = agg.__dict__
        # An attribute the class sets in __init__ that the snapshot does not hold: the class
        # changed since it was taken (an unannotated attribute, which the fingerprint cannot
        # see), and its value now would be the initial one, not the replayed one.
        unknown = [k for k in self.state_of(agg) if k not in raw]
        if unknown:
            raise ValueError(f"{self.name} snapshot lacks the attributes {unknown}")
        for k, v in raw.items():
            t = self.types.get(k)
            state[k] = v if t is None else msgspec.convert(v, t, strict=False)
        agg.version = version
        return agg


class SnapshotStreams:
    """Snapshots kept as events of system streams "$snapshot-<aggregate stream>", type
    "$snapshot", in the same store as the events (or in a separate store you pass).

    Each snapshot event's metadata is {"v": snapshot_version, "f": fingerprint, "at":
    aggregate version}; its data is the state as compact JSON. Projections that scan every
    event skip streams starting with "$".

    Thread-safety: as safe as the store (appends are serialised by the store).

    Example:
        >>> snaps = SnapshotStreams(store)  # doctest: +SKIP
        >>> snaps.write(codec, order, Order.stream_name(order.id))  # doctest: +SKIP
        True
    """

    def __init__(self, store: EventStore, upcasters: Upcasters | None = None) -> None:
        self.store = store
        self.upcasters = upcasters
        self._meta = msgspec.json.Decoder(dict[str, Any]).decode

    @staticmethod
    def stream_of(stream: str) -> str | None:
        """The snapshot stream of the aggregate stream `stream`, or None when that name would
        be over the limit of a stream name (an aggregate stream within 10 bytes of it: such an
        aggregate is never snapshotted and always replayed)."""
        name = SNAPSHOT_PREFIX + stream
        return name if len(name.encode("utf-8", "surrogatepass")) <= STREAM_NAME_MAX_BYTES else None

    def write(self, codec: StateCodec, agg: Aggregate, stream: str) -> bool:
        """Append a snapshot of `agg` (saved, no pending events); False when not snapshottable
        (its state does not round-trip, or its stream's name leaves no room for the prefix)."""
        snap_stream = self.stream_of(stream)
        if snap_stream is None:
            return False
        data = codec.encode(agg)
        if data is None:
            return False
        self.store.append(snap_stream, [NewEvent(SNAPSHOT_TYPE, data, codec.metadata(agg.version))], ANY)
        return True

    def latest(self, codec: StateCodec, id: Any, stream: str,
               max_version: int | None = None) -> Aggregate | None:
        """The aggregate restored from its newest usable snapshot at or below max_version."""
        snap_stream = self.stream_of(stream)
        if snap_stream is None:
            return None
        top = self.store.stream_version(snap_stream)
        while top is not None and top >= 0:
            chunk = self.store.read_stream(snap_stream, top, backwards=True, limit=16)
            for rec in chunk:
                meta = self._meta(rec.metadata)
                at = meta.get("at", -1)
                if max_version is not None and at > max_version:
                    continue
                agg = self._restore(codec, id, at, meta, rec.data)
                if agg is not None:
                    return agg
                # An unusable snapshot: older ones are no better; replay from the start.
                return None
            top = chunk[-1].version - 1 if chunk else -1
        return None

    def _restore(self, codec: StateCodec, id: Any, at: int, meta: dict[str, Any],
                 data: bytes) -> Aggregate | None:
        try:
            raw = msgspec.json.decode(data)
            state = codec.accept(int(meta.get("v", 0)), str(meta.get("f", "")), raw, self.upcasters)
            return None if state is None else codec.restore(id, at, state)
        except (msgspec.MsgspecError, TypeError, ValueError):
            return None


class BulkSnapshot:
    """The state of every aggregate of one class as of a store position, in one Arrow IPC
    file: columns `id` (string), `stream` (string), `version` (int64), `state` (binary,
    compact JSON); schema metadata `chronolog.class`, `chronolog.snapshot_version`,
    `chronolog.fingerprint` and `chronolog.position` (the state includes exactly the events
    at positions below it).

    Thread-safety: read-only after open; safe to share.

    Example:
        >>> bulk = BulkSnapshot.open("orders.arrow")  # doctest: +SKIP
        >>> bulk.position  # doctest: +SKIP
        1000
    """

    @staticmethod
    def schema() -> pa.Schema:
        """The file's columns (before its metadata): id, stream, version, state.

        Example:
            >>> BulkSnapshot.schema().names
            ['id', 'stream', 'version', 'state']
        """
        import pyarrow as pa  # (not at `import chronolog`: only bulk snapshots need it)

        return pa.schema([("id", pa.string()), ("stream", pa.string()), ("version", pa.int64()),
                          ("state", pa.binary())])

    def __init__(self, table: pa.Table, path: str) -> None:
        self.path = path
        meta = table.schema.metadata or {}
        self.class_name = meta.get(b"chronolog.class", b"").decode()
        self.snapshot_version = int(meta.get(b"chronolog.snapshot_version", b"0"))
        self.fingerprint = meta.get(b"chronolog.fingerprint", b"").decode()
        self.position = int(meta.get(b"chronolog.position", b"0"))
        self._versions = table.column("version").to_pylist()
        self._states = table.column("state")
        self._rows = {s: i for i, s in enumerate(table.column("stream").to_pylist())}

    @classmethod
    def write(cls, path: str | os.PathLike[str], codec: StateCodec, rows: list[tuple[str, str, int, bytes]],
              position: int) -> str:
        """Write rows (id, stream, version, state) atomically (temp file, fsync, rename)."""
        import pyarrow as pa

        path = os.fspath(path)
        ids, streams, versions, states = (list(c) for c in zip(*rows)) if rows else ([], [], [], [])
        table = pa.table([pa.array(ids, pa.string()), pa.array(streams, pa.string()),
                          pa.array(versions, pa.int64()), pa.array(states, pa.binary())],
                         schema=cls.schema().with_metadata({
                             "chronolog.class": codec.name,
                             "chronolog.snapshot_version": str(codec.version),
                             "chronolog.fingerprint": codec.fingerprint,
                             "chronolog.position": str(position)}))
        tmp = path + ".tmp"
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return path

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> BulkSnapshot:
        """Read a bulk snapshot file (memory-mapped)."""
        import pyarrow as pa

        path = os.fspath(path)
        with pa.memory_map(path) as src:
            table = pa.ipc.open_file(src).read_all()
        return cls(table, path)

    def __len__(self) -> int:
        return len(self._rows)

    def find(self, stream: str) -> tuple[int, bytes] | None:
        """(version, state bytes) of the aggregate in `stream`, or None."""
        i = self._rows.get(stream)
        if i is None:
            return None
        return self._versions[i], self._states[i].as_py()

    def restore(self, codec: StateCodec, id: Any, stream: str, upcasters: Upcasters | None,
                max_version: int | None = None) -> Aggregate | None:
        """The aggregate restored from this file, or None (absent, too new, unusable)."""
        hit = self.find(stream)
        if hit is None or codec.name != self.class_name:
            return None
        version, data = hit
        if max_version is not None and version > max_version:
            return None
        try:
            state = codec.accept(self.snapshot_version, self.fingerprint,
                                 msgspec.json.decode(data), upcasters)
            return None if state is None else codec.restore(id, version, state)
        except (msgspec.MsgspecError, TypeError, ValueError):
            return None
