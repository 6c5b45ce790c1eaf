"""The baselines every Chronolog figure is compared with, and the kit to time and report them.

Baselines: raw sequential writes, a write+fdatasync loop, SQLite as an event store, LMDB as
a position-keyed log. Kit: `BenchContext` (the run's settings), `Figure` (one measured
ratio against its target) and `interleaved` (A/B repeats, medians).

Example:
    >>> conn = sqlite_open(tmp_path / "events.db")            # doctest: +SKIP
    >>> sqlite_append_batches(conn, sqlite_rows(wl), 1_000)   # doctest: +SKIP
"""

from __future__ import annotations

import collections
import os
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.workload import Workload

__all__ = [
    "BenchContext",
    "Figure",
    "Trial",
    "consume",
    "interleaved",
    "lmdb_append",
    "lmdb_values",
    "median",
    "raw_write",
    "remove",
    "segment_bytes",
    "sqlite_append_batches",
    "sqlite_append_single",
    "sqlite_open",
    "sqlite_read_stream",
    "sqlite_replay",
    "sqlite_rows",
    "write_fdatasync_loop",
]

WRITE_CHUNK_BYTES = 1 << 20


# ---------------------------------------------------------------------- the measurement kit

@dataclass
class BenchContext:
    """The settings of one benchmark run.

    Attributes:
        quick: the CI smoke size (100k events) instead of the reference sizes.
        repeats: timed repeats of each measurement (medians are reported).
        scratch: a directory for the stores of this run (removed at the end).
        root: the persistent benchmark directory (cached workloads, the 10M store).

    Example:
        >>> ctx = BenchContext(quick=True, repeats=3, scratch=Path("/tmp/x"), root=Path("/tmp"))
        >>> ctx.n_events, ctx.n_streams
        (100000, 1000)
    """

    quick: bool
    repeats: int
    scratch: Path
    root: Path
    notes: list[str] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        return 100_000 if self.quick else 1_000_000

    @property
    def n_streams(self) -> int:
        # ~100 events per stream in both sizes (read_stream reads 100-event streams).
        return self.n_events // 100

    def fresh_dir(self, name: str) -> Path:
        """A new, empty directory under scratch (removing any earlier one of that name)."""
        path = self.scratch / name
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Figure:
    """One measured figure: Chronolog's value next to a baseline measured in the same run.

    `ratio` is chronolog / baseline when higher is better ("x"), and `target` the ratio the
    issue asks for; for "max" figures (a time or a size) the target is an upper bound on the
    value itself.

    Example:
        >>> Figure("append", "ev/s", 2e6, "SQLite", 1e5, target=10).met
        True
    """

    name: str
    unit: str
    value: float
    baseline_name: str = ""
    baseline_value: float | None = None
    target: float | None = None
    kind: str = "x"  # "x": ratio >= target; "max": value <= target; "info": no target
    detail: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        if self.target is None or self.kind == "info":
            return None
        if self.kind == "max":
            return self.value <= self.target
        r = self.ratio
        return None if r is None else r >= self.target

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "value": self.value,
                "baseline": self.baseline_name, "baseline_value": self.baseline_value,
                "ratio": self.ratio, "target": self.target, "kind": self.kind,
                "met": self.met, "detail": self.detail}


@dataclass
class Trial:
    """One side of an A/B measurement: setup (untimed) -> run (timed) -> teardown (untimed).

    Example:
        >>> Trial(run=lambda state: sum(range(10))).run(None)
        45
    """

    run: Callable[[Any], Any]
    setup: Callable[[], Any] = lambda: None
    teardown: Callable[[Any], None] = lambda state: None


def interleaved(trials: dict[str, Trial], repeats: int) -> dict[str, list[float]]:
    """Time each trial `repeats` times, alternating between them (A B A B …) so that a noisy
    neighbour hurts every side alike. Returns the seconds of every repeat, per trial.

    Example:
        >>> times = interleaved({"a": Trial(run=lambda s: None)}, 3)
        >>> len(times["a"])
        3
    """
    out: dict[str, list[float]] = {name: [] for name in trials}
    for _ in range(repeats):
        for name, trial in trials.items():
            state = trial.setup()
            try:
                # Every side starts with no dirty page cache: otherwise whichever runs after
                # a large write meets the kernel's writeback throttling (swings of 5x seen).
                os.sync()
                t0 = time.perf_counter()
                trial.run(state)
                out[name].append(time.perf_counter() - t0)
            finally:
                trial.teardown(state)
    return out


def median(values: Sequence[float]) -> float:
    """The median (the figure we report of every repeated measurement)."""
    return float(statistics.median(values))


def consume(iterable: Iterable[Any]) -> None:
    """Exhaust an iterator as cheaply as Python can (the same way for every side)."""
    collections.deque(iterable, maxlen=0)


def segment_bytes(store_path: Path) -> bytes:
    """The concatenated bytes of a store's segment files (what the store wrote)."""
    parts = [p.read_bytes() for p in sorted(Path(store_path).glob("*.seg"))]
    return b"".join(parts)


# ---------------------------------------------------------------------- raw file baselines

def raw_write(path: Path, data: bytes | memoryview, chunk_bytes: int = WRITE_CHUNK_BYTES) -> None:
    """Write `data` to a new file in `chunk_bytes` writes from Python (no fsync): the raw
    sequential write bandwidth an append path can hope to approach.

    Example:
        >>> raw_write(tmp_path / "raw.bin", b"x" * 10)  # doctest: +SKIP
    """
    view = memoryview(data)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        for at in range(0, len(view), chunk_bytes):
            chunk = view[at:at + chunk_bytes]
            while chunk:
                chunk = chunk[os.write(fd, chunk):]
    finally:
        os.close(fd)


def write_fdatasync_loop(path: Path, record: bytes, count: int) -> None:
    """Append `record` to a new file `count` times, fdatasync after each write: the rate of
    durable single appends without group commit.

    Example:
        >>> write_fdatasync_loop(tmp_path / "sync.bin", b"x" * 250, 10)  # doctest: +SKIP
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        for _ in range(count):
            os.write(fd, record)
            os.fdatasync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- SQLite as an event store

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    stream   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    data     BLOB    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream_version ON events (stream, version);
"""


def sqlite_open(path: Path) -> sqlite3.Connection:
    """SQLite set up as an event store: WAL, synchronous=NORMAL, a unique (stream, version)
    index. Transactions are implicit (begun by the first INSERT, ended by commit()).

    Example:
        >>> conn = sqlite_open(tmp_path / "events.db")  # doctest: +SKIP
    """
    conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SQLITE_SCHEMA)
    conn.commit()
    return conn


def sqlite_rows(wl: Workload) -> list[tuple[int, str, int, str, bytes]]:
    """The workload as SQLite rows (position, stream, version, type, data). The versions are
    computed here, outside any timing: this favours SQLite (an event store must find them)."""
    return list(zip(range(len(wl)), wl.streams, wl.versions.tolist(), wl.types, wl.datas))


_INSERT = "INSERT INTO events (position, stream, version, type, data) VALUES (?, ?, ?, ?, ?)"


def sqlite_append_batches(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]],
                          batch_events: int = 1_000) -> None:
    """executemany, one transaction per batch of `batch_events`."""
    for at in range(0, len(rows), batch_events):
        conn.executemany(_INSERT, rows[at:at + batch_events])
        conn.commit()


def sqlite_append_single(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """One event per transaction (synchronous=NORMAL in WAL: no fsync per commit)."""
    execute, commit = conn.execute, conn.commit
    for row in rows:
        execute(_INSERT, row)
        commit()


def sqlite_read_stream(conn: sqlite3.Connection, stream: str) -> list[tuple[Any, ...]]:
    """One stream's events in version order, as tuples."""
    return conn.execute(
        "SELECT position, version, type, data FROM events WHERE stream = ? ORDER BY version",
        (stream,)).fetchall()


def sqlite_replay(conn: sqlite3.Connection) -> None:
    """Every event in position order, into tuples (consumed, not kept)."""
    consume(conn.execute("SELECT position, stream, version, type, data FROM events ORDER BY position"))


# ---------------------------------------------------------------------- LMDB as a log

def lmdb_values(wl: Workload) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs for LMDB: an 8-byte big-endian position, and stream NUL type NUL
    data. Built outside the timing (this favours LMDB)."""
    return [(p.to_bytes(8, "big"), b"%s\0%s\0%s" % (s.encode(), t.encode(), d))
            for p, (s, t, d) in enumerate(zip(wl.streams, wl.types, wl.datas))]


def lmdb_append(path: Path, items: Sequence[tuple[bytes, bytes]], commit_events: int = 1_000) -> None:
    """LMDB as a position-keyed log: no sync, one write transaction per `commit_events`,
    keys appended in order (MDB_APPEND)."""
    import lmdb

    total = sum(len(k) + len(v) for k, v in items)
    env = lmdb.open(str(path), map_size=max(1 << 30, 4 * total), sync=False, metasync=False,
                    subdir=True, lock=True)
    try:
        for at in range(0, len(items), commit_events):
            with env.begin(write=True) as txn:
                txn.cursor().putmulti(items[at:at + commit_events], append=True)
    finally:
        env.close()


def remove(path: Path) -> None:
    """Remove a file or a directory tree, if present."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
