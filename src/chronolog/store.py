"""EventStore: the public facade over the compiled log (validation, locking, durability)."""

from __future__ import annotations

import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import IntEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any

from chronolog import scan as _scan
from chronolog import subscriptions as _subs
from chronolog._args import UNBOUNDED, flag, int_option, non_negative, store_path
from chronolog._core import compact as _compact
from chronolog._core import reads as _reads
from chronolog._core import verify as _verify
from chronolog._core.batch import expected_code
from chronolog._core.events import AppendResult, NewEvent, RecordedEvent
from chronolog._core.fileio import FileIO
from chronolog._core.log import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_SEGMENT_BYTES,
    Log,
)
from chronolog._core.log import (
    FORMAT_VERSION_NUMBER as FORMAT_VERSION,
)
from chronolog._cpu import cpu_quota
from chronolog._lifetime import close_dropped, flush_loop, release, take_lock
from chronolog.errors import (
    ChronologError,
    CorruptionError,
    InvalidArgumentError,
    ResourceLimitError,
    StoreAccessError,
    StoreClosedError,
    StoreFailedError,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ANY", "NO_STREAM", "STREAM_EXISTS", "EventStore", "StreamState"]

# append_batch takes plain lists or tuples of at most this many events without building Arrow
# arrays (which cost more than the append itself for a few events, and import pyarrow).
_SHORT_BATCH = 256


def _short_lists(*columns: Any) -> bool:
    """True when every column is a plain list or tuple (or None) of at most _SHORT_BATCH."""
    for c in columns:
        if c is not None and not (type(c) in (list, tuple) and len(c) <= _SHORT_BATCH):
            return False
    return True

_READ_CHUNK = 4096


class StreamState(IntEnum):
    """The symbolic expected versions of an append (KurrentDB's stream states).

    Example:
        >>> int(StreamState.NO_STREAM)
        -1
    """

    NO_STREAM = -1
    ANY = -2
    STREAM_EXISTS = -4


ANY = StreamState.ANY
NO_STREAM = StreamState.NO_STREAM
STREAM_EXISTS = StreamState.STREAM_EXISTS


def _read_chunk(log: Log, notifier: _subs.AppendNotifier, lo: int, hi: int,
                backwards: bool) -> Iterator[RecordedEvent]:
    """The events of positions [lo, hi) (reversed when backwards), read at once. When one of
    them is damaged, the events before it in reading order are still delivered: the chunk is
    read again one event at a time, which yields those and then raises the CorruptionError at
    the damaged one (a read chunk by chunk must not hide the good events of its chunk)."""
    try:
        chunk = _read_positions(log, notifier, lo, hi, backwards)
    except CorruptionError:
        for p in (range(hi - 1, lo - 1, -1) if backwards else range(lo, hi)):
            yield from _read_positions(log, notifier, p, p + 1, False)
        return
    yield from chunk


def _read_positions(log: Log, notifier: _subs.AppendNotifier, lo: int, hi: int,
                    backwards: bool) -> list[RecordedEvent]:
    """read_positions with close() held off: a compressed frame is decoded without the GIL,
    from the segment's mapping, which close() unmaps (a close from another thread mid-read
    was a segfault)."""
    notifier.begin_read()
    try:
        return _reads.read_positions(log, lo, hi, backwards)
    finally:
        notifier.end_read()


class EventStore:
    """An embedded event store: a directory holding a segmented, checksummed append-only log.

    Open it with `EventStore.open(path)`. One process may write (it holds the store's lock);
    any number may open it read-only and follow the writer.

    Invariants:
        - positions are dense from 0; each stream's versions are dense from 0;
        - an append is atomic: after any crash all of its events are there or none;
        - an append that returned survives a process crash, and in durability "fsync" a
          power loss.

    Thread-safety: every method may be called from any thread; appends from several threads
    are serialised and share fsyncs (group commit).

    Example:
        >>> import chronolog as cl
        >>> with cl.EventStore.open(tmp_path / "shop", durability="os") as store:  # doctest: +SKIP
        ...     store.append("order-7", [cl.NewEvent("OrderPlaced", b'{"amount": 3.5}')])
        AppendResult(first_position=0, last_position=0, next_version=1)
    """

    def __init__(self, log: Log, lock_fd: int | None, flush_interval_ms: int) -> None:
        """Use EventStore.open(); this constructor is internal."""
        self._log = log
        self._closed = False
        self._stop = threading.Event()
        self._notifier = _subs.AppendNotifier(log.path)
        self._flusher: threading.Thread | None = None
        if log.durability == "interval" and not log.readonly:
            self._flusher = threading.Thread(
                target=flush_loop, args=(log, self._stop, flush_interval_ms / 1000.0),
                name=f"chronolog-flush:{log.path}", daemon=True)
            try:
                self._flusher.start()
            except RuntimeError as exc:  # no thread can be made: refuse, holding nothing
                release(log, lock_fd, self._notifier, self._stop, None)
                raise ResourceLimitError(log.path, "start the flush thread durability='interval' needs",
                                       exc, ", or open the store with durability='fsync' or "
                                       "'os', which need no thread of their own") from exc
        # Everything close() lets go of, held by a finalizer and not by self: a handle dropped
        # unclosed (or left open at exit) is closed like a file object, not left holding the
        # store's lock and descriptors for the rest of the process.
        self._finalizer = weakref.finalize(self, close_dropped, log, lock_fd, self._notifier,
                                           self._stop, self._flusher)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: str = "fsync",
        readonly: bool = False,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        flush_interval_ms: int = 200,
        io: FileIO | None = None,
        compression: str | None = None,
        compression_level: int = 1,
        compression_block_bytes: int = 32 * 1024,
    ) -> EventStore:
        """Open (creating when missing, unless readonly) the store at `path`.

        Args:
            path: the store directory.
            durability: "fsync" (default: fdatasync before each append returns, shared by
                concurrent appenders), "interval" (a background fdatasync every
                flush_interval_ms) or "os" (the page cache: survives a process crash, not a
                power loss).
            readonly: open without the write lock, to read and follow another writer.
            max_segment_bytes: the size at which the active segment rolls (default 256 MiB).
            max_event_bytes: the largest single event record (default 16 MiB).
            flush_interval_ms: the period of the "interval" durability mode.
            io: a FileIO (tests inject faults through it).
            compression: None (default) or "zstd": new appends are compressed per frame, in
                blocks of whole records (every reader handles both; see docs/compression.md).
            compression_level: the zstd level (1 = fast; up to 22; negative = faster).
            compression_block_bytes: decoded bytes per compressed block: a random read
                decodes one block (default 32 KiB, chosen by measurement).

        Raises:
            StoreLockedError: another writer holds the store (raised at once, never waits).
            StoreNotFoundError: readonly and there is no store at `path`.
            StoreAccessError: the process may not use the directory or a file in it.
            CorruptionError: a sealed segment (or the store header) fails its checks.
            InvalidArgumentError: an option is out of range.

        Example:
            >>> store = EventStore.open("data/shop")  # doctest: +SKIP
        """
        path = store_path(path)
        # Every option is checked before anything is created on disk.
        if durability not in ("fsync", "interval", "os"):
            raise InvalidArgumentError(
                f"durability must be 'fsync', 'interval' or 'os', got {durability!r}")
        int_option(flush_interval_ms, "flush_interval_ms", 1, 1 << 31)
        int_option(max_segment_bytes, "max_segment_bytes", 4096, 1 << 31)
        int_option(max_event_bytes, "max_event_bytes", 64, 1 << 30)
        if not isinstance(readonly, bool):
            raise InvalidArgumentError(f"readonly must be True or False, got {readonly!r}")
        if compression not in (None, "zstd"):
            raise InvalidArgumentError(f"compression must be None or 'zstd', got {compression!r}")
        int_option(compression_level, "compression_level", -(1 << 17), 22)
        int_option(compression_block_bytes, "compression_block_bytes", 1024, 1 << 24)
        if io is not None and not isinstance(io, FileIO):
            raise InvalidArgumentError(f"io must be a chronolog FileIO or None, got {type(io).__name__}")
        try:
            lock_fd = None if readonly else take_lock(path)
        except PermissionError as exc:
            raise StoreAccessError(os.path.abspath(path), exc) from exc
        try:
            log = Log(path, readonly=readonly, durability=durability,
                      max_segment_bytes=max_segment_bytes, max_event_bytes=max_event_bytes, io=io,
                      compression=compression, compression_level=compression_level,
                      compression_block_bytes=compression_block_bytes)
        except BaseException as exc:
            if lock_fd is not None:
                os.close(lock_fd)
            if isinstance(exc, PermissionError) and not isinstance(exc, ChronologError):
                raise StoreAccessError(os.path.abspath(path), exc) from exc
            raise
        if not readonly and durability == "fsync" and cpu_quota() is not None:
            log.spin_ns = 0  # group-commit waiters would spend the quota spinning (_cpu.py)
        return cls(log, lock_fd, flush_interval_ms)

    def close(self) -> None:
        """Sync, write the index checkpoints and release the store (idempotent).

        The checkpoints are left as they are when the events that followed the last one would
        cost the next open little to index (a few ms by an estimate from their count and their
        streams; at most 4 MiB, and a small share of the store): the next open indexes those
        from the segment, where rewriting the stream checkpoint would cost O(streams + events)
        at every close of a large store.

        A handle dropped without close (or still open at interpreter exit) is closed the same
        way when collected, with a ResourceWarning, as an unclosed file is.

        Example:
            >>> store.close()  # doctest: +SKIP
        """
        if self._closed:
            return
        self._closed = True
        held = self._finalizer.detach()
        if held is not None:
            release(*held[2])

    def __enter__(self) -> EventStore:  # noqa: PYI034 (Python 3.10 has no typing.Self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(f"an EventStore (of {self._log.path!r}) cannot be pickled or copied: it "
                        "holds the store's files and, when writing, its lock; pass the path "
                        "instead and open the store there (readonly=True to read beside the "
                        "writer)")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"head={self._log.head}"
        mode = "readonly" if self._log.readonly else self._log.durability
        return f"EventStore({self._log.path!r}, {mode}, {state})"

    def _reading(self) -> Log:
        if self._closed:
            raise StoreClosedError(self._log.path)
        if self._log.readonly:
            self._log.refresh()
        return self._log

    # ------------------------------------------------------------------ metadata

    @property
    def path(self) -> str:
        """The absolute path of the store directory."""
        return str(self._log.path)

    @property
    def readonly(self) -> bool:
        """True when this handle was opened with readonly=True."""
        return bool(self._log.readonly)

    @property
    def durability(self) -> str:
        """The durability mode: "fsync", "interval" or "os"."""
        return str(self._log.durability)

    @property
    def head(self) -> int:
        """The next position: the number of events in the store.

        Example:
            >>> store.head  # doctest: +SKIP
            0
        """
        return int(self._reading().head)

    def stream_version(self, stream: str) -> int | None:
        """The version of the stream's last event, or None when the stream does not exist.

        Raises:
            InvalidStreamNameError: the name is not a valid stream name.

        Example:
            >>> store.stream_version("order-7")  # doctest: +SKIP
            0
        """
        count = _reads.stream_count(self._reading(), stream)
        return count - 1 if count else None

    def streams(self, prefix: str = "") -> list[str]:
        """The names of the streams holding events (that start with `prefix`), in order of
        first appearance.

        Example:
            >>> store.streams("order-")  # doctest: +SKIP
            ['order-7']
        """
        if not isinstance(prefix, str):
            raise InvalidArgumentError(f"prefix must be a str, got {type(prefix).__name__}")
        try:
            prefix.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError("prefix must be valid Unicode (no lone surrogates)") from None
        return list(_reads.streams(self._reading(), prefix))

    def refresh(self) -> int:
        """Read-only handles: pick up what the writer appended; returns the new head.
        (Reads on a read-only handle refresh by themselves.)

        Example:
            >>> reader.refresh()  # doctest: +SKIP
            42
        """
        if self._closed:
            raise StoreClosedError(self._log.path)
        return int(self._log.refresh())

    def stats(self) -> dict[str, Any]:
        """Figures: events, streams, segments, bytes on disk, format version, durability.

        Example:
            >>> store.stats()["events"]  # doctest: +SKIP
            1
        """
        log = self._reading()
        segs = _reads.segment_info(log)
        frames, stored, raw, _ = _compact.frame_totals(log)
        return {
            "path": log.path,
            "events": int(log.head),
            "streams": int(_reads.stream_total(log)),
            "segments": len(segs),
            "bytes": int(sum(s[2] for s in segs)),
            "format_version": FORMAT_VERSION,
            "durability": log.durability,
            "readonly": bool(log.readonly),
            "max_segment_bytes": int(log.max_segment_bytes),
            "max_event_bytes": int(log.max_event_bytes),
            "compression": None if log.compressor is None else "zstd",
            "frames": frames,
            "stored_frame_bytes": stored,
            "decoded_frame_bytes": raw,
            "compression_ratio": (raw / stored) if stored else 1.0,
        }

    def train_dictionary(self, sample_events: int = 10_000, *, dict_bytes: int = 112_640) -> int:
        """Train a zstd dictionary on up to `sample_events` recorded events (spread over the
        store), store it durably as primary data (`zstd-<id>.dict`), and compress every new
        frame with it. Old frames stay readable (each names its dictionary). Returns its id.

        Raises:
            InvalidArgumentError: the store was opened without compression, or zstd could not
                train on the sample (too few events).
            ReadOnlyError: the store is read-only.
            StoreFailedError: the dictionary file could not be written (a full disk); nothing
                changed, and the store goes on appending.

        Example:
            >>> store = EventStore.open("data/shop", compression="zstd")  # doctest: +SKIP
            >>> store.train_dictionary(sample_events=20_000)  # doctest: +SKIP
            1
        """
        from chronolog._core.codec import train

        log = self._reading()
        log.check_writable()  # read-only, closed, failed or forked: nothing is written
        if log.compressor is None:
            raise InvalidArgumentError("train_dictionary needs compression: open the store with "
                                       "compression='zstd'")
        int_option(sample_events, "sample_events", 1, 1 << 30)
        int_option(dict_bytes, "dict_bytes", 1024, 1 << 24)
        with self._notifier.reading():  # (frames decoded without the GIL: see _read_positions)
            samples = _compact.sample_records(log, sample_events)
            # A new id above every id a frame names: a dictionary file lost (deleted, not yet
            # restored from a backup) must not have its id handed out again, or the frames
            # that used it could never be read, even with the backup back in place.
            named = int(_compact.frame_totals(log)[3])
        data = train(samples, dict_bytes)
        try:
            dict_id = int(log.dicts.add(data, log.io, named + 1))
        except OSError as exc:
            if isinstance(exc, ChronologError):
                raise
            raise StoreFailedError(log.path, exc, f"train_dictionary could not store the "
                                   f"dictionary ({exc}); nothing changed: new frames keep the "
                                   "dictionary they used. Fix the cause (free space) and train "
                                   "again") from exc
        _compact.use_dictionary(log, dict_id)
        return dict_id

    def verify(self) -> dict[str, Any]:
        """Check every frame and record on disk (CRCs, dense positions and versions) and the
        indexes against them. Returns a report: {"ok", "events", "frames", "segments",
        "bytes" (of the frames, as stats() counts them), "problems": [{"segment", "offset",
        "reason"}], first problem first, "notes": [the same shape: what was not checked or is
        worth knowing, not damage (e.g. frames a reader's handle has not refreshed to yet)]}.

        Example:
            >>> store.verify()["ok"]  # doctest: +SKIP
            True
        """
        log = self._reading()

        def check() -> dict[str, Any]:
            # Held off close() while it runs: a reader's verify reads the newest segment's
            # tail through its descriptor, without the GIL.
            with self._notifier.reading():
                return dict(_verify.verify(log))

        report = check()
        floor = int(log.durable_floor)
        if report["ok"] and report["events"] < floor:
            # Fewer events than the checkpoint found on open counts as synced: lost, unless
            # this reader lags the writer's visibility mark (a moment, at a roll).
            deadline = time.monotonic() + 0.5
            while log.readonly and log.head < floor and time.monotonic() < deadline:
                time.sleep(0.01)
                log.refresh()
            if log.head >= floor:
                return check()
            report["ok"] = False
            report["problems"] = [{"segment": None, "offset": None, "reason": (
                f"the segments hold {report['events']} events, but the index checkpoint "
                f"records {floor} as written to stable storage: {floor - report['events']} "
                "acknowledged events are missing (a segment deleted or truncated); the writer "
                "refuses to open it: restore it from a backup, or `chronolog repair --salvage`")}]
        return report

    # ------------------------------------------------------------------ appends

    def append(self, stream: str, events: Sequence[NewEvent] | NewEvent,
               expected_version: int = ANY) -> AppendResult:
        """Append events to one stream, atomically.

        Args:
            stream: the stream name (1..1024 bytes of UTF-8, no NUL).
            events: the NewEvents to append (at least one).
            expected_version: ANY, NO_STREAM, STREAM_EXISTS, or the version of the stream's
                last event.

        Returns:
            AppendResult(first_position, last_position, next_version). Re-appending events
            whose ids are already stored at the same versions returns the original result and
            writes nothing (see docs/idempotency.md).

        Raises:
            WrongExpectedVersionError: the stream is not where the append expected it.
            InvalidStreamNameError, InvalidEventError, EventTooLargeError: bad input.
            ReadOnlyError, StoreClosedError, StoreFailedError: the store cannot take writes.

        Example:
            >>> store.append("order-7", [NewEvent("OrderPlaced", b"{}")], expected_version=NO_STREAM)  # doctest: +SKIP
            AppendResult(first_position=0, last_position=0, next_version=1)
        """
        if self._closed:
            raise StoreClosedError(self._log.path)
        res = self._log.append(stream, events, expected_code(expected_version), time.time_ns())
        self._notifier.notify()
        return res

    def append_batch(
        self,
        streams: Sequence[str] | pa.Array,
        types: Sequence[str] | pa.Array,
        datas: Sequence[bytes] | pa.Array,
        *,
        metadatas: Sequence[bytes] | pa.Array | None = None,
        ids: Sequence[uuid.UUID | bytes | None] | pa.Array | None = None,
        expected_versions: Mapping[str, int] | None = None,
    ) -> AppendResult:
        """Append many events over many streams as one atomic unit: the ingestion fast path.

        The columns are parallel sequences (lists, numpy arrays or Arrow arrays); Arrow input
        is encoded in the compiled core without a Python object per event. Arrow strings and
        bytes may be plain, large, view (as Polars hands them over) or dictionary-encoded;
        numpy arrays hold str (streams, types) or bytes (datas, metadatas), or are object
        arrays: a numeric array is refused, not stored as its elements' raw bytes.

        Args:
            streams: the stream of each event.
            types: the event type of each event.
            datas: the payload of each event (bytes).
            metadatas: optional metadata of each event.
            ids: optional event ids (uuid.UUID, 16 bytes, a UUID string or None each).
            expected_versions: stream -> ANY/NO_STREAM/STREAM_EXISTS/version, all checked
                before anything is written.

        Returns:
            AppendResult; next_version is None when the batch touched several streams.

        Raises:
            WrongExpectedVersionError: an expectation failed (nothing written).
            InvalidStreamNameError, InvalidEventError, EventTooLargeError,
            InvalidArgumentError: bad input (nothing written).

        Example:
            >>> store.append_batch(["a-1", "b-2"], ["Made", "Made"], [b"{}", b"{}"])  # doctest: +SKIP
            AppendResult(first_position=0, last_position=1, next_version=None)
        """
        if self._closed:
            raise StoreClosedError(self._log.path)
        codes: dict[str, int] | None = None
        if expected_versions:
            if not isinstance(expected_versions, Mapping):
                raise InvalidArgumentError("expected_versions must be a mapping of stream -> expected version")
            codes = {k: expected_code(v) for k, v in expected_versions.items()}
        if _short_lists(streams, types, datas, metadatas, ids):
            # Building Arrow arrays costs more than the append itself for a few events.
            res = self._log.append_lists(
                list(streams), list(types), list(datas),
                None if metadatas is None else list(metadatas),
                None if ids is None else list(ids), codes, time.time_ns())
            self._notifier.notify()
            return res
        from chronolog import _batch_input  # (imports pyarrow: not at `import chronolog`)

        res = self._log.append_columns(*_batch_input.as_arrays(streams, types, datas, metadatas, ids),
                                       codes, time.time_ns())
        self._notifier.notify()
        return res

    # ------------------------------------------------------------------ reads

    def read_stream(self, stream: str, from_version: int | None = None, *,
                    to_version: int | None = None, backwards: bool = False,
                    limit: int | None = None) -> list[RecordedEvent]:
        """The events of one stream, by version (inclusive bounds).

        Forwards, versions from_version (default 0) up to to_version (default: the last).
        Backwards, from from_version (default: the last) down to to_version (default 0).
        A stream that does not exist reads as an empty list.

        Raises:
            InvalidStreamNameError: the name is not a valid stream name.
            InvalidArgumentError: a negative version or limit.
            CorruptionError: a record read fails its checksum.

        Example:
            >>> [e.version for e in store.read_stream("order-7")]  # doctest: +SKIP
            [0, 1, 2]
        """
        log = self._reading()
        lim = non_negative(limit, "limit", default=UNBOUNDED)
        if flag(backwards, "backwards"):
            hi = non_negative(from_version, "from_version", default=UNBOUNDED - 1) + 1
            lo = non_negative(to_version, "to_version", default=0)
        else:
            lo = non_negative(from_version, "from_version", default=0)
            hi = non_negative(to_version, "to_version", default=UNBOUNDED - 1) + 1
        self._notifier.begin_read()  # (close() held off: see _read_positions)
        try:
            return _reads.read_stream(log, stream, lo, hi, backwards, lim)  # a new list each call
        finally:
            self._notifier.end_read()

    def read_all(self, from_position: int | None = None, *, backwards: bool = False,
                 limit: int | None = None) -> Iterator[RecordedEvent]:
        """Every event in position order (or reversed), as an iterator read in chunks.

        Forwards from from_position (default 0); backwards from from_position (default: the
        last) down to 0.

        Raises:
            InvalidArgumentError: a negative position or limit.
            CorruptionError: a record read fails its checksum.

        Example:
            >>> [e.position for e in store.read_all(limit=2)]  # doctest: +SKIP
            [0, 1]
        """
        log = self._reading()
        lim = non_negative(limit, "limit", default=UNBOUNDED)
        head = int(log.head)
        if flag(backwards, "backwards"):
            start = min(non_negative(from_position, "from_position", default=head - 1), head - 1)
            return self._read_back(log, start, lim)
        start = non_negative(from_position, "from_position", default=0)
        return self._read_fwd(log, start, head, lim)

    def _read_fwd(self, log: Log, start: int, head: int, limit: int) -> Iterator[RecordedEvent]:
        end = min(head, start + limit)
        p = start
        while p < end:
            yield from _read_chunk(log, self._notifier, p, min(end, p + _READ_CHUNK), False)
            p += _READ_CHUNK

    def _read_back(self, log: Log, start: int, limit: int) -> Iterator[RecordedEvent]:
        stop = start + 1
        lowest = max(0, stop - limit)
        while stop > lowest:
            lo = max(lowest, stop - _READ_CHUNK)
            yield from _read_chunk(log, self._notifier, lo, stop, True)
            stop = lo

    # ------------------------------------------------------------------ the columnar read side

    def scan(self, from_position: int = 0, to_position: int | None = None, *,
             types: Iterable[str] | None = None, streams: Iterable[str] | None = None,
             stream_prefix: str | None = None, batch_size: int = _scan.DEFAULT_BATCH_SIZE,
             columns: Iterable[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Replay positions from_position <= p < to_position as Arrow RecordBatches, built in
        the compiled core with no Python object per event.

        Columns (all by default, in this order; `columns=` picks a subset and skips the
        work for the rest): position uint64, stream string, version uint64, type
        dictionary<int32, string>, timestamp timestamp[ns, UTC], data binary, metadata
        binary, id fixed_size_binary(16) (null when the event has no id). Filters (types,
        exact streams, a stream prefix) are applied in the core before anything is copied.
        The range ends at the head when the scan starts; no append is ever seen in part.

        Raises:
            InvalidArgumentError: a negative position, batch_size < 1, an unknown column.
            CorruptionError: a frame fails its checks (before any of its events is returned).

        Example:
            >>> for batch in store.scan(types=["OrderPlaced"], columns=["stream", "data"]):  # doctest: +SKIP
            ...     print(batch.num_rows)
        """
        return _scan.scan(self._reading(), from_position, to_position, types=types,
                          streams=streams, stream_prefix=stream_prefix, batch_size=batch_size,
                          columns=columns, notifier=self._notifier)

    def scan_table(self, from_position: int = 0, to_position: int | None = None, *,
                   types: Iterable[str] | None = None, streams: Iterable[str] | None = None,
                   stream_prefix: str | None = None, batch_size: int = _scan.DEFAULT_BATCH_SIZE,
                   columns: Iterable[str] | None = None) -> pa.Table:
        """The whole scan as one pyarrow.Table (see scan).

        Example:
            >>> import duckdb  # doctest: +SKIP
            >>> events = store.scan_table(columns=["stream", "type"])  # doctest: +SKIP
            >>> duckdb.sql("select type, count(*) from events group by type").fetchall()  # doctest: +SKIP
        """
        return _scan.scan_table(self._reading(), from_position, to_position, types=types,
                                streams=streams, stream_prefix=stream_prefix,
                                batch_size=batch_size, columns=columns, notifier=self._notifier)

    def subscribe(self, from_position: int = 0, *, types: Iterable[str] | None = None,
                  stream_prefix: str | None = None,
                  batch_size: int = _subs.DEFAULT_SUBSCRIBE_BATCH, batches: bool = False,
                  timeout: float | None = None) -> _subs.Subscription[Any]:
        """A catch-up subscription: replays history from `from_position`, then follows live
        appends (also another process's, on a read-only handle) without gaps or duplicates.
        Yields RecordedEvents, or Arrow batches with batches=True; `close()` ends it from any
        thread; iteration stops after `timeout` seconds without events (iterate again to go
        on).

        Example:
            >>> with store.subscribe(from_position=0, timeout=1.0) as sub:  # doctest: +SKIP
            ...     for event in sub:
            ...         handle(event)
        """
        if self._closed:
            raise StoreClosedError(self._log.path)
        return _subs.subscribe(self._log, self._notifier, from_position, types=types,
                               stream_prefix=stream_prefix, batch_size=batch_size,
                               batches=batches, timeout=timeout)

    def subscribe_async(self, from_position: int = 0, *, types: Iterable[str] | None = None,
                        stream_prefix: str | None = None,
                        batch_size: int = _subs.DEFAULT_SUBSCRIBE_BATCH, batches: bool = False,
                        timeout: float | None = None) -> _subs.AsyncSubscription[Any]:
        """The asyncio form of subscribe: `async for event in store.subscribe_async(...)`.

        Example:
            >>> async for event in store.subscribe_async(timeout=1.0):  # doctest: +SKIP
            ...     handle(event)
        """
        if self._closed:
            raise StoreClosedError(self._log.path)
        return _subs.subscribe_async(self._log, self._notifier, from_position, types=types,
                                     stream_prefix=stream_prefix, batch_size=batch_size,
                                     batches=batches, timeout=timeout)

    def wait_for(self, position: int, timeout: float | None = None) -> bool:
        """Block until the event at `position` is visible here (read-your-writes; on a
        read-only handle, until the writer's append reaches it). False on timeout.

        Example:
            >>> res = writer.append("order-7", [NewEvent("OrderPlaced", b"{}")])  # doctest: +SKIP
            >>> reader.wait_for(res.last_position, timeout=5.0)  # doctest: +SKIP
            True
        """
        if self._closed:
            raise StoreClosedError(self._log.path)
        return _subs.wait_for(self._log, self._notifier, position, timeout)

    def checkpoint(self) -> None:
        """Write the index checkpoints now (open then costs only the events after it).

        The events they cover are synced first; a checkpoint that cannot be written is
        skipped (they are derived: the next open scans more instead).

        Raises:
            StoreFailedError: syncing the events failed, or the store failed earlier.

        Example:
            >>> store.checkpoint()  # doctest: +SKIP
        """
        if self._closed:
            raise StoreClosedError(self._log.path)
        if not self._log.readonly:
            self._log.checkpoint()
