"""Read benchmarks: read_stream of 100-event streams and read_all into RecordedEvents, next to
SQLite answering the same reads over the same events, measured in the same run.

Run all core figures with `python benchmarks/run_core.py [--quick]`; `pytest benchmarks/`
runs the pytest-benchmark versions below at a small size.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

import chronolog as cl
from benchmarks.baselines import (
    BenchContext,
    Figure,
    Trial,
    consume,
    interleaved,
    median,
    remove,
    sqlite_append_batches,
    sqlite_open,
    sqlite_read_stream,
    sqlite_replay,
    sqlite_rows,
)
from benchmarks.workload import Workload

STREAM_EVENTS = 100


def build_stores(wl: Workload, root: Path) -> tuple[cl.EventStore, sqlite3.Connection]:
    """The workload in a Chronolog store and in a SQLite event store (untimed set-up)."""
    remove(root)
    root.mkdir(parents=True)
    store = cl.EventStore.open(root / "chronolog", durability="os")
    for streams, types, datas in wl.batches(10_000):
        store.append_batch(streams, types, datas)
    conn = sqlite_open(root / "events.db")
    sqlite_append_batches(conn, sqlite_rows(wl), 10_000)
    return store, conn


def pick_streams(wl: Workload, count: int, events: int = STREAM_EVENTS) -> list[str]:
    """`count` stream names holding exactly `events` events (the nearest sizes if too few),
    chosen with a fixed seed."""
    sizes = np.bincount(wl.stream_index, minlength=wl.spec.n_streams)
    order = np.lexsort((np.random.default_rng(7).random(len(sizes)), np.abs(sizes - events)))
    chosen = order[:count]
    first_event = {}
    for pos, s in enumerate(wl.stream_index.tolist()):
        if s not in first_event:
            first_event[s] = pos
    return [wl.streams[first_event[int(s)]] for s in chosen]


def read_streams(store: cl.EventStore, names: list[str]) -> int:
    """read_stream of every name; returns the events read."""
    read = store.read_stream
    return sum(len(read(name)) for name in names)


def sqlite_read_streams(conn: sqlite3.Connection, names: list[str]) -> int:
    return sum(len(sqlite_read_stream(conn, name)) for name in names)


# ---------------------------------------------------------------------- run_core figures

def measure(ctx: BenchContext, wl: Workload) -> list[Figure]:
    """read_stream and read_all figures of issue 2, each next to SQLite."""
    root = ctx.scratch / "read"
    store, conn = build_stores(wl, root)
    try:
        names = pick_streams(wl, 100 if ctx.quick else 500)
        events = read_streams(store, names)  # warm both sides once
        sqlite_read_streams(conn, names)
        consume(store.read_all())
        sqlite_replay(conn)
        times = interleaved({
            "stream": Trial(run=lambda _: read_streams(store, names)),
            "sqlite_stream": Trial(run=lambda _: sqlite_read_streams(conn, names)),
            "all": Trial(run=lambda _: consume(store.read_all())),
            "sqlite_all": Trial(run=lambda _: sqlite_replay(conn)),
        }, ctx.repeats)
    finally:
        store.close()
        conn.close()
        remove(root)
    t = {k: median(v) for k, v in times.items()}
    per = events / len(names)
    return [
        Figure("read_stream of a 100-event stream vs SQLite", "reads/s", len(names) / t["stream"],
               "SELECT … WHERE stream=? ORDER BY version", len(names) / t["sqlite_stream"],
               target=10.0, detail=f"{len(names)} streams, {per:.1f} events each"),
        Figure("read_all into RecordedEvent vs SQLite replay", "ev/s", len(wl) / t["all"],
               "SQLite SELECT … ORDER BY position into tuples", len(wl) / t["sqlite_all"],
               target=3.0, detail=f"{len(wl):,} events"),
    ]


# ---------------------------------------------------------------------- pytest-benchmark

def _stores(small_workload: Workload, tmp_path: Path):
    return build_stores(small_workload, tmp_path / "read")


def test_read_stream_100_events(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    store, conn = _stores(small_workload, tmp_path)
    names = pick_streams(small_workload, 100)
    benchmark.extra_info["streams"] = len(names)
    benchmark(read_streams, store, names)
    store.close()
    conn.close()


def test_read_stream_baseline_sqlite(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    store, conn = _stores(small_workload, tmp_path)
    names = pick_streams(small_workload, 100)
    benchmark.extra_info["streams"] = len(names)
    benchmark(sqlite_read_streams, conn, names)
    store.close()
    conn.close()


def test_read_all(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    store, conn = _stores(small_workload, tmp_path)
    benchmark.extra_info["events"] = len(small_workload)
    benchmark.pedantic(lambda: consume(store.read_all()), rounds=3, iterations=1)
    store.close()
    conn.close()


def test_read_all_baseline_sqlite(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    store, conn = _stores(small_workload, tmp_path)
    benchmark.extra_info["events"] = len(small_workload)
    benchmark.pedantic(lambda: sqlite_replay(conn), rounds=3, iterations=1)
    store.close()
    conn.close()
