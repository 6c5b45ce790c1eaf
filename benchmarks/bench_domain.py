"""Domain layer benchmarks against the eventsourcing library (9.x), measured in one run.

    python benchmarks/bench_domain.py            # prints a table with the ratios
    python -m pytest benchmarks/bench_domain.py  # the pytest-benchmark versions

Workloads (the same aggregate shape on both sides: an order placed, then lines added):
- get100: repository.get of an aggregate with 100 events, no snapshot
  (eventsourcing: POPO recorder, in memory; chronolog: a store on disk, durability "os").
- get100-snap: the same with a snapshot taken at event 90 (10 events of tail).
- command: load, decide, save (one event per command) over 64 aggregates, from 1 thread and
  from 16 threads on disjoint aggregates (eventsourcing: SQLite persistence in a temp dir,
  WAL, synchronous=FULL: an fsync per command; chronolog: durability "fsync", the same
  guarantee, where concurrent commands share fsyncs, and "os" for reference).
Figures are medians of several runs; the ratio is eventsourcing time / chronolog time.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chronolog as cl
from chronolog.domain import Aggregate, Application, DomainEvent, Repository

N_EVENTS = 100
RUNS = 7


# ---------------------------------------------------------------- chronolog side

class Placed(DomainEvent, frozen=True):
    customer: str


class LineAdded(DomainEvent, frozen=True):
    sku: str
    quantity: int
    unit_price_cents: int


class Order(Aggregate):
    customer: str
    lines: list[list[Any]]
    total_cents: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.customer = ""
        self.lines = []
        self.total_cents = 0

    def add_line(self, sku: str, quantity: int, unit_price_cents: int) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.trigger(LineAdded(sku=sku, quantity=quantity, unit_price_cents=unit_price_cents))

    def apply_placed(self, e: Placed) -> None:
        self.customer = e.customer

    def apply_line(self, e: LineAdded) -> None:
        self.lines.append([e.sku, e.quantity, e.unit_price_cents])
        self.total_cents += e.quantity * e.unit_price_cents


def cl_order(id: str, n: int) -> Order:
    o = Order(id)
    o.trigger(Placed(customer="ada"))
    for i in range(n - 1):
        o.add_line(f"sku-{i}", 1 + i % 3, 100 + i)
    return o


# ---------------------------------------------------------------- eventsourcing side

_ES: tuple[type, type] | None = None


def es_classes() -> tuple[type, type]:
    """The eventsourcing classes, made once (it registers each class topic globally)."""
    global _ES
    if _ES is None:
        _ES = _make_es_classes()
    return _ES


def _make_es_classes() -> tuple[type, type]:
    from eventsourcing.application import Application as ESApplication
    from eventsourcing.domain import Aggregate as ESAggregate
    from eventsourcing.domain import event as es_event

    class ESOrder(ESAggregate):
        @es_event("Placed")
        def __init__(self, customer: str) -> None:
            self.customer = customer
            self.lines: list[list[Any]] = []
            self.total_cents = 0

        @es_event("LineAdded")
        def add_line(self, sku: str, quantity: int, unit_price_cents: int) -> None:
            self.lines.append([sku, quantity, unit_price_cents])
            self.total_cents += quantity * unit_price_cents

    class ESShop(ESApplication):
        def add_line(self, order_id: Any, sku: str) -> None:
            order = self.repository.get(order_id)
            order.add_line(sku, 1, 100)
            self.save(order)

    return ESOrder, ESShop


def es_order(ESOrder: type, n: int) -> Any:
    o = ESOrder(customer="ada")
    for i in range(n - 1):
        o.add_line(f"sku-{i}", 1 + i % 3, 100 + i)
    return o


# ---------------------------------------------------------------- timing

def per_op(fn: Callable[[], Any], ops: int, runs: int = RUNS) -> float:
    """Median seconds per operation over `runs` runs of `ops` operations."""
    fn()  # warm up caches and lazily built tables
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(ops):
            fn()
        samples.append((time.perf_counter() - t) / ops)
    return statistics.median(samples)


def bench_get(tmp: Path) -> dict[str, tuple[float, float]]:
    ESOrder, ESShop = es_classes()
    out = {}
    # eventsourcing, POPO, no snapshots / snapshots
    es_app = ESShop(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    o = es_order(ESOrder, N_EVENTS)
    es_app.save(o)
    es_plain = per_op(lambda: es_app.repository.get(o.id), 300)
    es_snap_app = ESShop(env={"PERSISTENCE_MODULE": "eventsourcing.popo", "IS_SNAPSHOTTING_ENABLED": "y"})
    s = es_order(ESOrder, N_EVENTS - 10)
    es_snap_app.save(s)
    es_snap_app.take_snapshot(s.id)
    for i in range(10):
        s.add_line(f"tail-{i}", 1, 1)
    es_snap_app.save(s)
    assert es_snap_app.repository.get(s.id).version == N_EVENTS
    es_snapped = per_op(lambda: es_snap_app.repository.get(s.id), 1000)
    # chronolog
    with cl.EventStore.open(tmp / "get", durability="os") as store:
        repo = Repository(store, Order)
        repo.save(cl_order("1", N_EVENTS))
        srepo = Repository(store, Order, read_snapshots=True)
        so = cl_order("2", N_EVENTS - 10)
        srepo.save(so)
        srepo.snapshot(so)
        for i in range(10):
            so.add_line(f"tail-{i}", 1, 1)
        srepo.save(so)
        assert srepo.get("2").version == N_EVENTS - 1 and repo.get("1").version == N_EVENTS - 1
        assert srepo.get("2").total_cents == es_snap_app.repository.get(s.id).total_cents
        cl_plain = per_op(lambda: repo.get("1"), 1000)
        cl_snapped = per_op(lambda: srepo.get("2"), 2000)
    out["get 100 events, no snapshot"] = (es_plain, cl_plain)
    out["get 100 events, snapshot at 90"] = (es_snapped, cl_snapped)
    return out


def _threaded(cmd: Callable[[int, int], None], threads: int, per_thread: int) -> float:
    """Seconds per command when `threads` threads each run `per_thread` commands."""
    import threading
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                cmd(t, i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, never hidden
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed / (threads * per_thread)


def bench_commands(tmp: Path, n_aggregates: int = 64, n_commands: int = 150,
                   threads: int = 16) -> dict[str, tuple[float, float]]:
    ESOrder, ESShop = es_classes()
    es_app = ESShop(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                         "SQLITE_DBNAME": str(tmp / "es.sqlite")})
    es_ids = []
    for _ in range(n_aggregates):
        o = ESOrder(customer="ada")
        es_app.save(o)
        es_ids.append(o.id)
    counter = iter(range(10**9))

    def es_cmd() -> None:
        i = next(counter)
        es_app.add_line(es_ids[i % n_aggregates], f"s{i}")

    # Threads work on disjoint aggregates (thread t owns aggregates t, t+threads, ...).
    def es_cmd_t(t: int, i: int) -> None:
        es_app.add_line(es_ids[(t + threads * i) % n_aggregates], f"s{t}-{i}")

    es_seq = per_op(es_cmd, n_commands, runs=3)
    es_thr = statistics.median(_threaded(es_cmd_t, threads, n_commands // threads * 2)
                               for _ in range(3))
    out = {}
    for durability in ("fsync", "os"):
        with cl.EventStore.open(tmp / f"cmd-{durability}", durability=durability) as store:
            app = Application(store)

            @app.command
            def add_line(ctx: Any, order_id: str, sku: str) -> None:
                ctx.get(Order, order_id).add_line(sku, 1, 100)

            repo = Repository(store, Order)
            for i in range(n_aggregates):
                o = Order(str(i))
                o.trigger(Placed(customer="ada"))
                repo.save(o)
            cl_counter = iter(range(10**9))

            def cl_cmd(app: Application = app, cl_counter: Any = cl_counter) -> None:
                i = next(cl_counter)
                app.add_line(str(i % n_aggregates), f"s{i}")

            def cl_cmd_t(t: int, i: int, app: Application = app) -> None:
                app.add_line(str((t + threads * i) % n_aggregates), f"s{t}-{i}")

            ops = n_commands if durability == "fsync" else 2000
            out[f"command, 1 thread, chronolog {durability}"] = (es_seq, per_op(cl_cmd, ops, runs=3))
            out[f"command, {threads} threads, chronolog {durability}"] = (
                es_thr, statistics.median(_threaded(cl_cmd_t, threads, ops // threads * 2)
                                          for _ in range(3)))
    return out


def main() -> None:
    targets = {"get 100 events, no snapshot": 20.0, "get 100 events, snapshot at 90": 2.0,
               "command, 1 thread, chronolog fsync": 10.0, "command, 16 threads, chronolog fsync": 10.0}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = {**bench_get(tmp), **bench_commands(tmp)}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; medians of {RUNS} runs "
          "(commands: 3); eventsourcing commands use SQLite (WAL, synchronous=FULL)")
    print(f"{'workload':<50} {'eventsourcing':>14} {'chronolog':>12} {'ratio':>8} {'target':>8}")
    for name, (es, ours) in rows.items():
        target = targets.get(name)
        mark = "" if target is None else (f">={target:g}x " + ("met" if es / ours >= target else "MISSED"))
        print(f"{name:<50} {es * 1e6:>11.1f} us {ours * 1e6:>9.1f} us {es / ours:>7.1f}x  {mark}")


# ---------------------------------------------------------------- pytest-benchmark

def test_bench_get_100_events(benchmark: Any, tmp_path: Path) -> None:
    with cl.EventStore.open(tmp_path / "s", durability="os") as store:
        repo = Repository(store, Order)
        repo.save(cl_order("1", N_EVENTS))
        benchmark(repo.get, "1")


def test_bench_es_get_100_events(benchmark: Any) -> None:
    ESOrder, ESShop = es_classes()
    app = ESShop(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    o = es_order(ESOrder, N_EVENTS)
    app.save(o)
    benchmark(app.repository.get, o.id)


if __name__ == "__main__":
    main()
