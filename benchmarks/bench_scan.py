"""Scan benchmarks: columnar replay into Arrow next to memcpy, SQLite and LMDB replaying the
same events, plus the subscription wake-up latency (bench_subscribe), all in one run.

Run: `python benchmarks/bench_scan.py [--quick] [--repeats N]` (prints a table).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow as pa

import chronolog as cl
from benchmarks import bench_subscribe
from benchmarks.baselines import (
    BenchContext,
    Figure,
    Trial,
    consume,
    interleaved,
    lmdb_append,
    lmdb_values,
    median,
    remove,
    sqlite_append_batches,
    sqlite_open,
    sqlite_replay,
    sqlite_rows,
)
from benchmarks.workload import Workload, bench_dir, load_workload
from chronolog import scan as scan_mod

NARROW = ["position", "type", "stream"]


def store_scan(store: cl.EventStore, **kw: Any) -> Iterator[pa.RecordBatch]:
    """store.scan when the facade has it, else the module function on its log."""
    if hasattr(store, "scan"):
        return store.scan(**kw)  # type: ignore[no-any-return]
    return scan_mod.scan(store._reading(), notifier=getattr(store, "_notifier", None), **kw)


def scanned_bytes(store: cl.EventStore, columns: list[str] | None = None) -> int:
    """The bytes of every Arrow buffer a scan produces (what it wrote to memory)."""
    return sum(b.nbytes for b in store_scan(store, columns=columns))


def lmdb_scan(path: Path) -> None:
    """LMDB's raw cursor over every key -> value, in key (position) order."""
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False, subdir=True)
    try:
        with env.begin(buffers=False) as txn:
            consume(txn.cursor().iternext())
    finally:
        env.close()


def measure(ctx: BenchContext, wl: Workload) -> list[Figure]:
    """The scan figures of issue 3 (all columns vs memcpy, SQLite, LMDB; narrow vs all)."""
    root = ctx.fresh_dir("scan")
    store = cl.EventStore.open(root / "chronolog", durability="os")
    for streams, types, datas in wl.batches(10_000):
        store.append_batch(streams, types, datas)
    conn = sqlite_open(root / "events.db")
    sqlite_append_batches(conn, sqlite_rows(wl), 10_000)
    lmdb_append(root / "lmdb", lmdb_values(wl), 10_000)
    try:
        out_bytes = scanned_bytes(store)  # also warms the page cache
        narrow_bytes = scanned_bytes(store, NARROW)
        src = np.random.default_rng(1).integers(0, 255, out_bytes, dtype=np.uint8)
        dst = np.empty_like(src)
        np.copyto(dst, src)
        sqlite_replay(conn)
        lmdb_scan(root / "lmdb")
        times = interleaved({
            "all": Trial(run=lambda _: consume(store_scan(store))),
            "narrow": Trial(run=lambda _: consume(store_scan(store, columns=NARROW))),
            "memcpy": Trial(run=lambda _: np.copyto(dst, src)),
            "sqlite": Trial(run=lambda _: sqlite_replay(conn)),
            "lmdb": Trial(run=lambda _: lmdb_scan(root / "lmdb")),
        }, ctx.repeats)
    finally:
        store.close()
        conn.close()
        remove(root)
    t = {k: median(v) for k, v in times.items()}
    n = len(wl)
    mb = 1e6
    return [
        Figure("scan, all columns, vs memcpy of the same bytes", "MB/s", out_bytes / t["all"] / mb,
               "numpy copyto (preallocated)", out_bytes / t["memcpy"] / mb, target=0.30,
               detail=f"{out_bytes / mb:.0f} MB of Arrow buffers, {n:,} events"),
        Figure("scan, all columns, vs SQLite replay", "ev/s", n / t["all"],
               "SQLite SELECT … ORDER BY position into tuples", n / t["sqlite"], target=10.0),
        Figure("scan, all columns, vs LMDB cursor", "ev/s", n / t["all"],
               "LMDB cursor over position -> value", n / t["lmdb"], target=2.0),
        Figure("scan(columns=[position, type, stream]) vs all columns", "ev/s", n / t["narrow"],
               "scan, all columns", n / t["all"], target=3.0,
               detail=f"{narrow_bytes / mb:.0f} MB of Arrow buffers"),
    ]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run_core import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events instead of 1M")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (medians)")
    parser.add_argument("--latency-samples", type=int, default=300,
                        help="appends timed per subscription latency figure")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    root = bench_dir()
    ctx = BenchContext(quick=args.quick, repeats=max(1, args.repeats),
                       scratch=root / f"scan-{os.getpid()}", root=root)
    started = time.perf_counter()
    wl = load_workload(ctx.n_events, ctx.n_streams)
    try:
        figures = measure(ctx, wl)
        figures += bench_subscribe.measure(ctx, args.latency_samples)
    finally:
        remove(ctx.scratch)
    print(f"chronolog scan benchmarks ({'quick' if args.quick else 'full'}, "
          f"{ctx.repeats} repeats, medians), {os.cpu_count()} cores")
    print_table(figures, args.markdown)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
