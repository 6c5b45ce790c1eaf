"""Subscription latency: from an append returning to a subscriber seeing the event, in the
same process (a thread) and in another process (a read-only handle), median and p99.

Run through `python benchmarks/bench_scan.py`, or alone: `python benchmarks/bench_subscribe.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import chronolog as cl
from benchmarks.baselines import BenchContext, Figure, remove
from benchmarks.workload import bench_dir
from chronolog import subscriptions as subs

PAUSE_S = 0.002  # between appends: the subscriber is idle (blocked) when each one lands

_CHILD = textwrap.dedent("""
    import sys, time
    import chronolog as cl
    from chronolog import subscriptions as subs
    path, start, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = cl.EventStore.open(path, readonly=True)
    if hasattr(store, "subscribe"):
        sub = store.subscribe(start, timeout=30.0)
    else:
        sub = subs.subscribe(store._log, None, start, timeout=30.0)
    print("ready", flush=True)
    seen = []
    for event in sub:
        seen.append(time.monotonic_ns())
        if len(seen) == n:
            break
    print(" ".join(map(str, seen)), flush=True)
""")


def _append_timed(store: cl.EventStore, n: int, notify: Any) -> list[int]:
    returned = []
    payload = b'{"order_id": "o-1", "amount": 12.5, "sku": "SKU-123"}' * 3
    for i in range(n):
        store.append(f"order-{i % 100}", [cl.NewEvent("ItemAdded", payload)])
        if notify is not None:
            notify()
        returned.append(time.monotonic_ns())
        time.sleep(PAUSE_S)
    return returned


def _latencies_us(returned: list[int], seen: list[int]) -> np.ndarray:
    # A subscriber may see an event before append() returns (the head moves first): 0 then.
    return np.maximum(np.array(seen, dtype=np.int64) - np.array(returned, dtype=np.int64), 0) / 1e3


def same_process(path: Path, n: int) -> tuple[np.ndarray, str]:
    """A subscriber thread blocked on the store, the main thread appending."""
    store = cl.EventStore.open(path, durability="os")
    notifier = getattr(store, "_notifier", None)
    how = "the store's notifier"
    notify = None
    if notifier is None:  # the facade has no hook yet: emulate it exactly as it will call it
        notifier = subs.AppendNotifier(store.path)
        notify = notifier.notify
        how = "an AppendNotifier notified after each append"
    sub = subs.subscribe(store._log, notifier, store.head, timeout=30.0)
    seen: list[int] = []

    def follow() -> None:
        for _event in sub:
            seen.append(time.monotonic_ns())
            if len(seen) == n:
                return

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.05)
    try:
        returned = _append_timed(store, n, notify)
        t.join(60)
    finally:
        sub.close()
        store.close()
    return _latencies_us(returned, seen), how


def cross_process(path: Path, n: int) -> np.ndarray:
    """A read-only subscriber in a child process (inotify), this process appending."""
    store = cl.EventStore.open(path, durability="os")
    store.append("warm-up", [cl.NewEvent("Started", b"{}")])
    start = store.head
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(start), str(n)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the subscriber process did not start")
        time.sleep(0.05)
        returned = _append_timed(store, n, None)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        store.close()
    seen = [int(x) for x in out.split()]
    return _latencies_us(returned, seen)


def measure(ctx: BenchContext, samples: int = 300) -> list[Figure]:
    """Median and p99 wake-up latency, same process and cross-process (target median < 10 ms)."""
    root = ctx.fresh_dir("subscribe")
    try:
        same, how = same_process(root / "same", samples)
        other = cross_process(root / "other", samples)
    finally:
        remove(root)
    out = []
    for label, lat, detail in (("same process", same, f"a thread woken by {how}"),
                               ("cross-process", other, "read-only handle, inotify")):
        out.append(Figure(f"subscription latency, {label}, median", "µs",
                          float(np.median(lat)), target=10_000.0, kind="max",
                          detail=f"{len(lat)} appends, {detail}"))
        out.append(Figure(f"subscription latency, {label}, p99", "µs",
                          float(np.percentile(lat, 99)), kind="info"))
    return out


def main() -> int:
    from benchmarks.run_core import print_table

    root = bench_dir()
    ctx = BenchContext(quick=True, repeats=1, scratch=root / f"sub-{os.getpid()}", root=root)
    try:
        print_table(measure(ctx), markdown=False)
    finally:
        remove(ctx.scratch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
