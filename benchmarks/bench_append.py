"""Append benchmarks: append_batch, one append per event, and fsync group commit, each next to
its baselines (raw writes, LMDB, SQLite, a write+fdatasync loop) measured in the same run.

Run all core figures with `python benchmarks/run_core.py [--quick]`; `pytest benchmarks/`
runs the pytest-benchmark versions below at a small size.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

import chronolog as cl
from benchmarks.baselines import (
    BenchContext,
    Figure,
    Trial,
    interleaved,
    lmdb_append,
    lmdb_values,
    median,
    raw_write,
    remove,
    segment_bytes,
    sqlite_append_batches,
    sqlite_append_single,
    sqlite_open,
    sqlite_rows,
    write_fdatasync_loop,
)
from benchmarks.workload import Workload

BATCH_EVENTS = 10_000
SQLITE_BATCH_EVENTS = 1_000
LMDB_COMMIT_EVENTS = 1_000
FSYNC_THREADS = 16
BURST_THREADS = 8


# ---------------------------------------------------------------------- the operations

def chronolog_append_batches(store: cl.EventStore, batches: list[tuple[Any, Any, Any]]) -> None:
    """append_batch over pre-cut column slices (Arrow arrays or Python lists)."""
    append = store.append_batch
    for streams, types, datas in batches:
        append(streams, types, datas)


def chronolog_append_single(store: cl.EventStore, wl: Workload) -> None:
    """One append call per event, building its NewEvent as a user would."""
    append, new = store.append, cl.NewEvent
    for stream, typ, data in zip(wl.streams, wl.types, wl.datas):
        append(stream, [new(typ, data)])


def _list_batches(wl: Workload, size: int) -> list[tuple[list[str], list[str], list[bytes]]]:
    s, t, d = wl.streams, wl.types, wl.datas
    return [(s[i:i + size], t[i:i + size], d[i:i + size]) for i in range(0, len(wl), size)]


class _ThreadedAppends:
    """`threads` threads, each appending its share of single events, released together."""

    def __init__(self, store: cl.EventStore, wl: Workload, threads: int) -> None:
        self.store = store
        self.start = threading.Barrier(threads + 1)
        self.workers = [threading.Thread(target=self._work, args=(wl, k, threads), daemon=True)
                        for k in range(threads)]
        self.errors: list[BaseException] = []
        for w in self.workers:
            w.start()

    def _work(self, wl: Workload, k: int, threads: int) -> None:
        events = [(s, cl.NewEvent(t, d)) for s, t, d in
                  zip(wl.streams[k::threads], wl.types[k::threads], wl.datas[k::threads])]
        self.start.wait()
        try:
            for stream, event in events:
                self.store.append(stream, [event])
        except BaseException as exc:  # noqa: BLE001 - re-raised by run(), never swallowed
            self.errors.append(exc)

    def run(self) -> None:
        self.start.wait()
        for w in self.workers:
            w.join()
        if self.errors:
            raise self.errors[0]


class _Bursts:
    """`threads` threads that append one event each at the same moment, `bursts` times (a
    barrier between bursts): the latency of every append, in seconds."""

    def __init__(self, store: cl.EventStore, threads: int, bursts: int) -> None:
        self.store = store
        self.bursts = bursts
        self.gate = threading.Barrier(threads)
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self.workers = [threading.Thread(target=self._work, args=(k,), daemon=True)
                        for k in range(threads)]

    def _work(self, k: int) -> None:
        event = cl.NewEvent("Burst", b"x" * 180)
        try:
            for _ in range(self.bursts):
                self.gate.wait()
                t0 = time.perf_counter()
                self.store.append(f"burst-{k}", [event])
                elapsed = time.perf_counter() - t0
                with self._lock:
                    self.latencies.append(elapsed)
        except BaseException as exc:  # noqa: BLE001 - re-raised by run(), never swallowed
            self.errors.append(exc)
            self.gate.abort()

    def run(self) -> list[float]:
        for w in self.workers:
            w.start()
        for w in self.workers:
            w.join()
        if self.errors:
            raise self.errors[0]
        return sorted(self.latencies)


# ---------------------------------------------------------------------- run_core figures

def measure(ctx: BenchContext, wl: Workload) -> list[Figure]:
    """Every append figure of issue 2, each next to its baseline."""
    return (measure_append_batch(ctx, wl) + measure_append_single(ctx, wl)
            + measure_roll_stall(ctx) + measure_group_commit(ctx, wl))


ROLL_PAYLOAD_BYTES = 1_000


def measure_roll_stall(ctx: BenchContext) -> list[Figure]:
    """One append call per event (durability "os") through a segment roll: the slowest append
    (the one that seals a segment: one fdatasync of it, a new segment, the index checkpoint)
    next to the median append of the same run. For information: what the writeback hint every
    8 MiB buys (docs/design.md)."""
    segment = (16 << 20) if ctx.quick else (256 << 20)
    count = segment // (ROLL_PAYLOAD_BYTES + 100) + segment // 16 // (ROLL_PAYLOAD_BYTES + 100)
    data = bytes(range(256)) * (ROLL_PAYLOAD_BYTES // 256) + bytes(ROLL_PAYLOAD_BYTES % 256)
    worst: list[float] = []
    typical: list[float] = []

    def run(store: cl.EventStore) -> None:
        append, new, clock = store.append, cl.NewEvent, time.perf_counter
        lat = []
        for i in range(count):
            t0 = clock()
            append(f"roll-{i % 100}", [new("Put", data)])
            lat.append(clock() - t0)
        lat.sort()
        worst.append(lat[-1])
        typical.append(lat[len(lat) // 2])

    def setup() -> cl.EventStore:
        return cl.EventStore.open(ctx.fresh_dir("roll"), durability="os", max_segment_bytes=segment)

    def teardown(store: cl.EventStore) -> None:
        store.close()
        remove(Path(store.path))

    interleaved({"chronolog": Trial(run=run, setup=setup, teardown=teardown)}, ctx.repeats)
    return [Figure("append, one call per event (os): slowest append, at a segment roll", "µs",
                   median(worst) * 1e6, "median append of the same runs", median(typical) * 1e6,
                   kind="info", detail=f"{count:,} appends of {ROLL_PAYLOAD_BYTES} B, "
                   f"segments of {segment >> 20} MiB: one roll per run")]


def _store_trial(ctx: BenchContext, name: str, run, durability: str = "os",
                 keep: dict[str, Any] | None = None) -> Trial:
    def setup() -> cl.EventStore:
        return cl.EventStore.open(ctx.fresh_dir(name), durability=durability)

    def teardown(store: cl.EventStore) -> None:
        store.close()
        if keep is not None and "segment_bytes" not in keep:
            keep["segment_bytes"] = segment_bytes(Path(store.path))
        remove(Path(store.path))

    return Trial(run=run, setup=setup, teardown=teardown)


def measure_append_batch(ctx: BenchContext, wl: Workload) -> list[Figure]:
    """append_batch of 10,000-event Arrow batches (durability "os") against raw writes of the
    same segment bytes, LMDB and SQLite; the Python-list input path for information."""
    n = len(wl)
    arrow_batches = wl.batches(BATCH_EVENTS)
    list_batches = _list_batches(wl, BATCH_EVENTS)
    rows = sqlite_rows(wl)
    items = lmdb_values(wl) if importlib.util.find_spec("lmdb") is not None else []
    keep: dict[str, Any] = {}
    # An untimed warm-up run produces the segment bytes the raw-write baseline writes.
    warm = _store_trial(ctx, "warm", lambda s: chronolog_append_batches(s, arrow_batches), keep=keep)
    state = warm.setup()
    warm.run(state)
    warm.teardown(state)
    seg = keep["segment_bytes"]
    raw_path = ctx.scratch / "raw.bin"

    def sqlite_setup():
        path = ctx.fresh_dir("sqlite") / "events.db"
        path.parent.mkdir(parents=True)
        return sqlite_open(path)

    def sqlite_teardown(conn) -> None:
        conn.close()
        remove(ctx.scratch / "sqlite")

    # The CPU each timed run used: the process's, and the appending thread's alone (the rest
    # is the write pipeline's helper and the roll's checkpoint thread).
    cpu: dict[str, list[float]] = {"process": [], "appender": []}

    def batch_run(store: cl.EventStore) -> None:
        ru0, th0 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
        chronolog_append_batches(store, arrow_batches)
        th1, ru1 = time.thread_time(), resource.getrusage(resource.RUSAGE_SELF)
        cpu["appender"].append(th1 - th0)
        cpu["process"].append(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime)

    trials = {
        "chronolog": _store_trial(ctx, "batch", batch_run),
        "chronolog_lists": _store_trial(ctx, "batch", lambda s: chronolog_append_batches(s, list_batches)),
        "raw": Trial(run=lambda _: raw_write(raw_path, seg), teardown=lambda _: remove(raw_path)),
        "sqlite": Trial(setup=sqlite_setup, run=lambda c: sqlite_append_batches(c, rows, SQLITE_BATCH_EVENTS),
                        teardown=sqlite_teardown),
    }
    has_lmdb = importlib.util.find_spec("lmdb") is not None
    if has_lmdb:
        trials["lmdb"] = Trial(setup=lambda: ctx.fresh_dir("lmdb"),
                               run=lambda p: lmdb_append(p, items, LMDB_COMMIT_EVENTS), teardown=remove)
    else:
        ctx.notes.append("the lmdb package is not installed: no LMDB baseline (pip install lmdb)")
    times = interleaved(trials, ctx.repeats)
    t = {k: median(v) for k, v in times.items()}
    mib = 1 << 20
    size = f"{n:,} events, {len(seg) / mib:.0f} MiB of segments"
    return [
        Figure("append_batch Arrow 10k/batch (os) vs raw 1 MiB writes", "MiB/s",
               len(seg) / t["chronolog"] / mib, "raw write of the segment bytes",
               len(seg) / t["raw"] / mib, target=0.25, detail=size),
        Figure("append_batch Arrow 10k/batch (os) vs LMDB", "ev/s", n / t["chronolog"],
               "LMDB putmulti, no sync, commit/1k", n / t["lmdb"] if has_lmdb else None,
               target=3.0, detail=size),
        *_cpu_bound(n, median(cpu["process"]), median(cpu["appender"]),
                    n / t["lmdb"] if has_lmdb else None, size),
        Figure("append_batch Arrow 10k/batch (os) vs SQLite", "ev/s", n / t["chronolog"],
               "SQLite executemany/1k, WAL, NORMAL", n / t["sqlite"], target=50.0, detail=size),
        Figure("append_batch Python lists 10k/batch (os) vs SQLite", "ev/s", n / t["chronolog_lists"],
               "SQLite executemany/1k, WAL, NORMAL", n / t["sqlite"], kind="info", detail=size),
    ]


def _cpu_bound(n: int, process_s: float, appender_s: float, lmdb_rate: float | None,
               size: str) -> list[Figure]:
    """What the CPU append_batch used allows, on this machine: its process's CPU time spread
    perfectly over every CPU it may run on is the shortest wall time the same work could take,
    whatever the threads; that rate next to LMDB's is the highest ratio within reach without
    using less CPU (for information: it bounds the "vs LMDB" figure above)."""
    cpus = len(os.sched_getaffinity(0))
    per_m = 1e6 / n * 1e3  # seconds for n events -> milliseconds per million
    return [
        Figure("append_batch Arrow 10k/batch (os): process CPU per 1M events", "ms",
               process_s * per_m, "of it the appending thread", appender_s * per_m, kind="info",
               detail=f"{size}; the rest: the write pipeline's helper, the roll's checkpoint"),
        Figure(f"append_batch's CPU spread over all {cpus} CPUs vs LMDB (the highest ratio "
               "within reach)", "ev/s", n / (process_s / cpus), "LMDB putmulti, no sync, commit/1k",
               lmdb_rate, kind="info", detail=size),
    ]


def measure_append_single(ctx: BenchContext, wl: Workload) -> list[Figure]:
    """One append call per event (durability "os") against SQLite, one event per transaction."""
    sub = wl.slice(0, 20_000 if ctx.quick else 100_000)
    rows = sqlite_rows(sub)
    sub.streams, sub.types, sub.datas  # noqa: B018 - build the lists before timing

    def sqlite_setup():
        path = ctx.fresh_dir("sqlite1") / "events.db"
        path.parent.mkdir(parents=True)
        return sqlite_open(path)

    def sqlite_teardown(conn) -> None:
        conn.close()
        remove(ctx.scratch / "sqlite1")

    times = interleaved({
        "chronolog": _store_trial(ctx, "single", lambda s: chronolog_append_single(s, sub)),
        "sqlite": Trial(setup=sqlite_setup, run=lambda c: sqlite_append_single(c, rows),
                        teardown=sqlite_teardown),
    }, ctx.repeats)
    n = len(sub)
    return [Figure("append, one call per event (os) vs SQLite", "ev/s", n / median(times["chronolog"]),
                   "SQLite 1 event/txn, WAL, NORMAL", n / median(times["sqlite"]), target=10.0,
                   detail=f"{n:,} events")]


def measure_group_commit(ctx: BenchContext, wl: Workload) -> list[Figure]:
    """durability="fsync": 16 threads appending single events against a write+fdatasync loop."""
    count = 1_000 if ctx.quick else 5_000
    sub = wl.slice(0, count)
    record = sub.encoded_bytes // count + 56  # one event per frame: the frame overhead too
    path = ctx.scratch / "fsync-loop.bin"

    def threaded_setup():
        store = cl.EventStore.open(ctx.fresh_dir("fsync"), durability="fsync")
        return store, _ThreadedAppends(store, sub, FSYNC_THREADS)

    def threaded_teardown(state) -> None:
        store, _ = state
        store.close()
        remove(Path(store.path))

    times = interleaved({
        "threads": Trial(setup=threaded_setup, run=lambda st: st[1].run(), teardown=threaded_teardown),
        "single": _store_trial(ctx, "fsync1", lambda s: chronolog_append_single(s, sub), durability="fsync"),
        "loop": Trial(run=lambda _: write_fdatasync_loop(path, b"x" * record, count),
                      teardown=lambda _: remove(path)),
    }, ctx.repeats)
    loop_rate = count / median(times["loop"])
    bursts = 20 if ctx.quick else 100
    store = cl.EventStore.open(ctx.fresh_dir("bursts"), durability="fsync")
    try:
        latencies = _Bursts(store, BURST_THREADS, bursts).run()
    finally:
        store.close()
        remove(Path(store.path))
    p90 = latencies[int(len(latencies) * 0.9)]
    return [
        Figure(f"append fsync, {FSYNC_THREADS} threads (group commit) vs write+fdatasync loop",
               "ev/s", count / median(times["threads"]), f"write+fdatasync loop, {record} B",
               loop_rate, target=8.0, detail=f"{count:,} events per side"),
        Figure("append fsync, 1 thread vs write+fdatasync loop", "ev/s",
               count / median(times["single"]), f"write+fdatasync loop, {record} B", loop_rate,
               kind="info", detail=f"{count:,} events per side"),
        # Latency, lower is better: the ratio is the median append's over one write+fdatasync
        # of the loop, so a burst served by two syncs shows ~2x.
        Figure(f"append fsync, bursts of {BURST_THREADS} threads x 1 event: median latency",
               "µs", median(latencies) * 1e6, "one write+fdatasync of the loop",
               1e6 / loop_rate, kind="info",
               detail=f"{bursts} bursts; p90 {p90 * 1e6:.0f} µs, max {latencies[-1] * 1e6:.0f} µs"),
    ]


# ---------------------------------------------------------------------- pytest-benchmark

def _fresh_store(tmp_path: Path, durability: str = "os"):
    counter = iter(range(1 << 30))

    def setup():
        store = cl.EventStore.open(tmp_path / f"s{next(counter)}", durability=durability)
        return (store,), {}
    return setup


def _close(handle) -> None:
    handle.close()


def test_append_batch_arrow(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    batches = small_workload.batches(BATCH_EVENTS)
    benchmark.extra_info["events"] = len(small_workload)
    benchmark.pedantic(lambda s: chronolog_append_batches(s, batches),
                       setup=_fresh_store(tmp_path), teardown=_close, rounds=3, iterations=1)


def test_append_batch_python_lists(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    batches = _list_batches(small_workload, BATCH_EVENTS)
    benchmark.extra_info["events"] = len(small_workload)
    benchmark.pedantic(lambda s: chronolog_append_batches(s, batches),
                       setup=_fresh_store(tmp_path), teardown=_close, rounds=3, iterations=1)


def test_append_batch_baseline_sqlite(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    rows = sqlite_rows(small_workload)
    counter = iter(range(1 << 30))
    benchmark.extra_info["events"] = len(small_workload)
    benchmark.pedantic(lambda c: sqlite_append_batches(c, rows, SQLITE_BATCH_EVENTS),
                       setup=lambda: ((sqlite_open(tmp_path / f"e{next(counter)}.db"),), {}),
                       teardown=_close, rounds=3, iterations=1)


def test_append_batch_baseline_lmdb(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    items = lmdb_values(small_workload)
    counter = iter(range(1 << 30))
    benchmark.extra_info["events"] = len(small_workload)
    benchmark.pedantic(lambda p: lmdb_append(p, items, LMDB_COMMIT_EVENTS),
                       setup=lambda: ((tmp_path / f"l{next(counter)}",), {}), rounds=3, iterations=1)


def test_append_single(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    sub = small_workload.slice(0, 10_000)
    benchmark.extra_info["events"] = len(sub)
    benchmark.pedantic(lambda s: chronolog_append_single(s, sub),
                       setup=_fresh_store(tmp_path), teardown=_close, rounds=3, iterations=1)


def test_append_single_baseline_sqlite(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    rows = sqlite_rows(small_workload.slice(0, 10_000))
    counter = iter(range(1 << 30))
    benchmark.extra_info["events"] = len(rows)
    benchmark.pedantic(lambda c: sqlite_append_single(c, rows),
                       setup=lambda: ((sqlite_open(tmp_path / f"e{next(counter)}.db"),), {}),
                       teardown=_close, rounds=3, iterations=1)


def test_append_fsync_16_threads(benchmark, small_workload: Workload, tmp_path: Path) -> None:
    sub = small_workload.slice(0, 1_000)
    counter = iter(range(1 << 30))

    def setup():
        store = cl.EventStore.open(tmp_path / f"f{next(counter)}", durability="fsync")
        return (_ThreadedAppends(store, sub, FSYNC_THREADS),), {}

    benchmark.extra_info["events"] = len(sub)
    benchmark.pedantic(lambda appends: appends.run(), setup=setup,
                       teardown=lambda appends: appends.store.close(), rounds=3, iterations=1)


def test_append_fsync_baseline_write_fdatasync(benchmark, tmp_path: Path) -> None:
    benchmark.extra_info["events"] = 1_000
    benchmark.pedantic(lambda: write_fdatasync_loop(tmp_path / "loop.bin", b"x" * 320, 1_000),
                       rounds=3, iterations=1)
