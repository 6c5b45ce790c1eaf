"""`chronolog demo`: the reference workload end to end, with the figures it reaches.

Ingest (append_batch, durability "os"), close, reopen, replay everything, read random
streams, verify; then the read-side steps the installed version supports (a columnar scan
written to Parquet when the store has `scan`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from chronolog.cli.output import fmt_int, fmt_mb, fmt_rate, make_console, make_progress, print_json
from chronolog.cli.workload import (
    DEFAULT_BATCH_EVENTS,
    DEFAULT_EVENTS,
    DEFAULT_SEED,
    DEFAULT_STREAMS,
    reference_batches,
)
from chronolog.errors import InvalidArgumentError
from chronolog.store import EventStore

STREAM_READS = 1_000


@dataclass
class Step:
    """One measured step of the demo: what it did, how much, how long.

    Example:
        >>> Step("replay", events=10, seconds=0.5, bytes=1000).events_per_s
        20.0
    """

    name: str
    events: int | None = None
    seconds: float = 0.0
    bytes: int | None = None
    note: str = ""

    @property
    def events_per_s(self) -> float | None:
        """Events per second, or None when the step counts no events."""
        return self.events / self.seconds if self.events is not None and self.seconds else None

    @property
    def mb_per_s(self) -> float | None:
        """MB (10^6 bytes) per second, or None when the step counts no bytes."""
        return self.bytes / 1e6 / self.seconds if self.bytes is not None and self.seconds else None


@dataclass
class DemoRun:
    """What the demo measured, and where its store is.

    Example:
        >>> DemoRun(path="/tmp/x", events=0).ok
        True
    """

    path: str
    events: int
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check of the run held."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The run as a JSON-ready dict."""
        return {
            "path": self.path, "events": self.events, "ok": self.ok,
            "problems": self.problems, "skipped": self.skipped,
            "steps": [{"name": s.name, "events": s.events, "seconds": s.seconds,
                       "bytes": s.bytes, "events_per_s": s.events_per_s,
                       "mb_per_s": s.mb_per_s, "note": s.note} for s in self.steps],
        }


def add_parser(sub: Any) -> None:
    """Register `demo`.

    Example:
        >>> import argparse; p = argparse.ArgumentParser(); add_parser(p.add_subparsers())
    """
    p = sub.add_parser(
        "demo", help="run the reference workload and print the figures",
        description="Create a store (in a temporary directory, or --path), ingest the "
                    "reference workload (seeded: events over streams, 5 event types, JSON "
                    "payloads of about 180 bytes) with append_batch in batches of 10,000, "
                    "close, reopen, replay everything, read 1,000 random streams, verify, and "
                    "print what each step reached.")
    p.add_argument("--events", type=int, default=DEFAULT_EVENTS, metavar="N",
                   help=f"events to ingest (default {DEFAULT_EVENTS:,})")
    p.add_argument("--streams", type=int, default=DEFAULT_STREAMS, metavar="N",
                   help=f"streams to spread them over (default {DEFAULT_STREAMS:,})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the workload's seed")
    p.add_argument("--path", default=None, metavar="DIR",
                   help="keep the store in DIR (new or empty) instead of a temporary directory "
                        "(its Parquet exports go to DIR.events.parquet and DIR.orders.parquet)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    p.set_defaults(func=run)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def run_demo(path: str, events: int, streams: int, seed: int,
             console: Any = None) -> DemoRun:
    """Run every step of the demo on a new store at `path`; return what it measured.

    Raises:
        InvalidArgumentError: `path` holds something already, or a count is out of range.

    Example:
        >>> run_demo("/tmp/demo-store", events=2000, streams=100, seed=1).ok  # doctest: +SKIP
        True
    """
    if events < 1 or streams < 1:
        raise InvalidArgumentError(f"--events and --streams must be >= 1, got {events}, {streams}")
    if os.path.isdir(path) and os.listdir(path):
        raise InvalidArgumentError(f"{path!r} is not empty; the demo needs a new or empty directory")
    demo = DemoRun(path=os.path.abspath(path), events=events)
    progress_console = console if console is not None else make_console()
    # Pass 1: generate the whole workload first, so the ingest figure is the store's alone.
    batches = list(reference_batches(events, streams, DEFAULT_BATCH_EVENTS, seed))
    payload_bytes = sum(b.data_bytes for b in batches)

    # Pass 2: ingest, then close (sync + index checkpoints).
    store = EventStore.open(path, durability="os")
    try:
        with make_progress(progress_console, "ingest") as progress:
            task = progress.add_task("ingest", total=events)
            started = time.perf_counter()
            for b in batches:
                store.append_batch(b.streams, b.types, b.datas)
                progress.advance(task, len(b.streams))
            ingest_s = time.perf_counter() - started
    finally:
        _, close_s = _timed(store.close)
    del batches
    log_bytes = sum(e.stat().st_size for e in os.scandir(path) if e.name.endswith(".seg"))
    demo.steps.append(Step("ingest (append_batch)", events, ingest_s, log_bytes,
                           f"{DEFAULT_BATCH_EVENTS:,}/batch, durability os, "
                           f"{fmt_mb(payload_bytes)} MB payload"))
    demo.steps.append(Step("close (sync + index checkpoint)", None, close_s))

    # Pass 3: reopen and read.
    store, open_s = _timed(lambda: EventStore.open(path, durability="os"))
    with store:
        demo.steps.append(Step("reopen", None, open_s, note=f"head {fmt_int(store.head)}"))
        if store.head != events:
            demo.problems.append(f"reopened store holds {store.head} events, ingested {events}")
        demo.steps.append(_replay(store, demo))
        demo.steps.append(_stream_reads(store, seed, demo))
        report, verify_s = _timed(store.verify)
        demo.steps.append(Step("verify", int(report["events"]), verify_s,
                               int(report["bytes"]), "every CRC, position, version"))
        if not report["ok"]:
            first = report["problems"][0]
            demo.problems.append(f"verify: segment {first['segment']} offset {first['offset']}: "
                                 f"{first['reason']}")
        # Pass 4: the read side, as far as the installed version has it.
        for step in READ_SIDE_STEPS:
            step(store, demo)
    return demo


def _replay(store: EventStore, demo: DemoRun) -> Step:
    def replay() -> tuple[int, int]:
        n = 0
        nbytes = 0
        for e in store.read_all():
            if e.position != n:
                demo.problems.append(f"replay: position {e.position} where {n} was due")
                break
            n += 1
            nbytes += len(e.data)
        return n, nbytes

    (n, nbytes), seconds = _timed(replay)
    if n != store.head:
        demo.problems.append(f"replay read {n} events, the store holds {store.head}")
    return Step("replay (read_all)", n, seconds, nbytes, "payload MB/s")


def _stream_reads(store: EventStore, seed: int, demo: DemoRun) -> Step:
    import numpy as np

    names = store.streams()
    rng = np.random.default_rng(seed + 1)
    picked = [names[i] for i in rng.choice(len(names), min(STREAM_READS, len(names)),
                                           replace=False)]

    def read() -> tuple[int, int]:
        n = 0
        nbytes = 0
        for name in picked:
            events = store.read_stream(name)
            if [e.version for e in events] != list(range(len(events))):
                demo.problems.append(f"read_stream({name!r}): versions are not 0..{len(events) - 1}")
            n += len(events)
            nbytes += sum(len(e.data) for e in events)
        return n, nbytes

    (n, nbytes), seconds = _timed(read)
    return Step("stream reads (read_stream)", n, seconds, nbytes,
                f"{fmt_int(len(picked))} random streams, payload MB/s")


def _scan_to_parquet(store: EventStore, demo: DemoRun) -> None:
    """Scan the store into Arrow and write the events to a Parquet file (needs store.scan)."""
    if not hasattr(store, "scan"):
        demo.skipped.append("scan to Arrow + Parquet export: store.scan is not available yet")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    def scan() -> pa.Table:
        return pa.Table.from_batches(list(store.scan()))

    table, scan_s = _timed(scan)
    if table.num_rows != store.head:
        demo.problems.append(f"scan returned {table.num_rows} rows, the store holds {store.head}")
    demo.steps.append(Step("scan (Arrow batches)", table.num_rows, scan_s, table.nbytes,
                           "Arrow MB/s"))
    # Beside the store directory, not in it: the store's directory holds only its own files.
    out = demo.path.rstrip(os.sep) + ".events.parquet"
    _, write_s = _timed(lambda: pq.write_table(table, out))
    size = os.path.getsize(out)
    demo.steps.append(Step("write Parquet", table.num_rows, write_s, size,
                           f"{fmt_mb(size)} MB file"))


def _order_read_model(store: EventStore, demo: DemoRun) -> None:
    """A columnar read model, the way the team's design says projections work: scan the events into
    Arrow, decode every JSON payload in one go with pyarrow's JSON reader (no Python loop per
    event), group by order, and export the model to Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    def build() -> pa.Table:
        events = pa.Table.from_batches(list(store.scan(columns=["stream", "version", "data"])))
        # One NDJSON buffer: each payload followed by a newline, values back to back.
        lines = pc.binary_join_element_wise(events["data"].combine_chunks(), pa.scalar(b""), b"\n")
        lines = lines.cast(pa.large_binary())
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:]
        ndjson = lines.buffers()[2][int(offsets[0]):int(offsets[len(lines)])]
        fields = pj.read_json(pa.BufferReader(ndjson))
        revenue = pc.multiply(fields["quantity"], fields["price_cents"])
        model_in = pa.table({"order": events["stream"], "version": events["version"],
                             "revenue_cents": revenue})
        return model_in.group_by("order").aggregate([
            ("version", "count"), ("version", "max"), ("revenue_cents", "sum")]).rename_columns(
                ["order", "events", "last_version", "revenue_cents"])

    model, seconds = _timed(build)
    if pc.sum(model["events"]).as_py() != store.head:
        demo.problems.append("the read model does not account for every event")
    demo.steps.append(Step("read model (orders)", store.head, seconds, model.nbytes,
                           f"{fmt_int(model.num_rows)} orders; JSON decoded by pyarrow"))
    out = demo.path.rstrip(os.sep) + ".orders.parquet"
    _, write_s = _timed(lambda: pq.write_table(model, out))
    size = os.path.getsize(out)
    demo.steps.append(Step("export read model (Parquet)", model.num_rows, write_s, size,
                           f"{fmt_mb(size)} MB file"))


# The read-side steps, in order.
READ_SIDE_STEPS: list[Callable[[EventStore, DemoRun], None]] = [_scan_to_parquet,
                                                                 _order_read_model]


def print_run(demo: DemoRun, console: Any) -> None:
    """Print the figures of a demo run as a table.

    Example:
        >>> print_run(run_demo("/tmp/d", 2000, 100, 1), make_console())  # doctest: +SKIP
    """
    table = Table(title=f"chronolog demo: {fmt_int(demo.events)} events", title_justify="left")
    for name, justify in (("step", "left"), ("events", "right"), ("seconds", "right"),
                          ("events/s", "right"), ("MB/s", "right"), ("note", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in demo.steps:
        table.add_row(
            s.name, fmt_int(s.events) if s.events is not None else "",
            f"{s.seconds:.3f}",
            fmt_rate(s.events, s.seconds) if s.events is not None else "",
            f"{s.mb_per_s:,.1f}" if s.mb_per_s is not None else "", s.note)
    console.print(table)
    console.print("MB/s: segment file bytes for ingest and verify; payload bytes for replay "
                  "and stream reads.")
    for what in demo.skipped:
        console.print(f"skipped: {what}")
    for what in demo.problems:
        console.print(f"PROBLEM: {what}")
    console.print("OK: every check held" if demo.ok else "FAILED: see the problems above")


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed arguments; return 0 when every check held, else 1.

    Example:
        >>> run(build_parser().parse_args(["demo", "--events", "2000"]))  # doctest: +SKIP
        0
    """
    console = make_console()
    if args.path is not None:
        demo = run_demo(args.path, args.events, args.streams, args.seed, console)
    else:
        with tempfile.TemporaryDirectory(prefix="chronolog-demo-") as tmp:
            demo = run_demo(os.path.join(tmp, "store"), args.events, args.streams, args.seed,
                            console)
    if args.json:
        print_json(demo.as_dict())
    else:
        print_run(demo, console)
        if args.path is None:
            console.print("(the store was in a temporary directory and is gone; keep one with "
                          "--path DIR)")
    return 0 if demo.ok else 1
