"""Open and memory benchmarks: the time to open a store of 10 million events (against one of
1 million, after a clean close and after a kill -9), the peak RSS of a process that
ingests 10 million events with append_batch, and short sessions (open, read a stream,
append one event, close) on a store of 1 million streams against SQLite.

The big stores are built once under the benchmark directory (default /tmp/chronolog-bench,
~2.7 GB for 10M events) and reused by later runs. Every measurement runs in a child process
(`python -m benchmarks.bench_open …`), so caches and imports of the parent do not leak in.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.baselines import BenchContext, Figure, median, remove
from benchmarks.workload import WorkloadSpec

REPO = Path(__file__).resolve().parent.parent
_BUILD_VERSION = 1  # bump when the workload or the store format changes


def _rss_mb(field: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident set size, in MiB.

    Not ru_maxrss: on Linux it survives execve, so a child started by a big parent reports
    the parent's peak (the fork's copy of its memory) until it grows past it. VmHWM is the
    high-water mark of this process image alone."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def _child(*args: str, stdin: Any = None, timeout: float = 3600) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_open", *args], cwd=REPO,
                          env=_env(), stdin=stdin, capture_output=True, text=True, timeout=timeout,
                          check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"benchmark child {args} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------- child entry points

def child_produce(n_events: int, n_streams: int) -> None:
    """Write the workload to stdout as an Arrow IPC stream of 10,000-event batches (the
    generator runs in its own process, so its memory is not charged to the ingesting one)."""
    import pyarrow as pa

    from benchmarks.workload import iter_batches

    spec = WorkloadSpec(n_events, n_streams)
    sink = sys.stdout.buffer
    writer = None
    for table in iter_batches(spec, 10_000):
        table = table.select(["stream", "type", "data"])
        if writer is None:
            writer = pa.ipc.new_stream(sink, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
    sink.flush()


def child_ingest(path: str, kill: bool) -> None:
    """Ingest the Arrow IPC stream on stdin into a new store with append_batch (one call per
    10,000-event batch); print the peak RSS after imports and after the ingestion as JSON;
    then close, or SIGKILL ourselves (the kill -9 state)."""
    import pyarrow as pa

    import chronolog as cl

    rss_imports = _rss_mb("VmRSS")
    store = cl.EventStore.open(path, durability="os")
    appending = 0.0
    for batch in pa.ipc.open_stream(sys.stdin.buffer):
        t0 = time.perf_counter()
        store.append_batch(batch.column(0), batch.column(1), batch.column(2))
        appending += time.perf_counter() - t0
    head = store.head
    peak = _rss_mb()
    print(json.dumps({"rss_imports_mb": rss_imports, "rss_peak_mb": peak, "head": head,
                      "append_s": appending}), flush=True)
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    store.close()


def ingest(path: Path, n_events: int, n_streams: int, kill: bool) -> dict[str, Any]:
    """Generate the workload in one child and ingest it in another (piped Arrow IPC)."""
    producer = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_open", "produce",
                                 str(n_events), str(n_streams)], cwd=REPO, env=_env(),
                                stdout=subprocess.PIPE)
    try:
        return _child("ingest", str(path), "kill" if kill else "close", stdin=producer.stdout)
    finally:
        if producer.stdout is not None:
            producer.stdout.close()
        producer.wait()


def child_open(path: str, readonly: bool = False) -> None:
    """Time EventStore.open (and close) of an existing store, after a warm-up open of a tiny
    store so that imports and first-call costs are not counted; print JSON."""
    import chronolog as cl

    with tempfile.TemporaryDirectory() as tmp:
        cl.EventStore.open(tmp + "/warm", durability="os").close()
    t0 = time.perf_counter()
    store = cl.EventStore.open(path, durability="os", readonly=readonly)
    t1 = time.perf_counter()
    head = store.head
    store.close()
    t2 = time.perf_counter()
    print(json.dumps({"open_s": t1 - t0, "close_s": t2 - t1, "head": head}), flush=True)


def child_roll(path: str) -> None:
    """Open a store as its writer and append single 1,000-byte events through one segment
    roll and 60,000 appends past it (the roll's checkpoint is written and adopted meanwhile);
    print the slowest and the median append as JSON."""
    import statistics

    import chronolog as cl

    store = cl.EventStore.open(path, durability="os")
    segments = len([p for p in os.listdir(path) if p.endswith(".seg")])
    ev, lat, clock, i, rolled = [cl.NewEvent("Put", b"r" * 1000)], [], time.perf_counter, 0, 0
    while not rolled or i < rolled + 60_000:
        t0 = clock()
        store.append(f"roll-{i % 100_000}", ev)
        lat.append(clock() - t0)
        i += 1
        if not rolled and i % 1000 == 0 and len(
                [p for p in os.listdir(path) if p.endswith(".seg")]) > segments:
            rolled = i
    store.close()
    print(json.dumps({"slowest_s": max(lat), "median_s": statistics.median(lat),
                      "appends": len(lat)}), flush=True)


SESSION_DATA = b'{"order": "o", "items": 3, "total_cents": 12345, "currency": "EUR", "note": "" }'


def child_session(path: str, kind: str, repeats: int, n_streams: int) -> None:
    """Time `repeats` short sessions, each in a fresh handle: open the store, read one
    stream, append one event to it (expecting the version read), close; print the median
    and slowest as JSON. `kind`: "chronolog" or "sqlite" (the same session on SQLite: connect
    with WAL and synchronous=NORMAL, SELECT the stream, INSERT at the next position, commit,
    close)."""
    import statistics

    lat, clock = [], time.perf_counter
    streams = [f"order-{(r * 7919) % n_streams:07d}" for r in range(repeats + 1)]
    if kind == "chronolog":
        import chronolog as cl

        with tempfile.TemporaryDirectory() as tmp:  # imports and first calls, not timed
            cl.EventStore.open(tmp + "/warm", durability="os").close()
        for stream in streams[1:]:
            t0 = clock()
            store = cl.EventStore.open(path, durability="os")
            events = store.read_stream(stream)
            store.append(stream, [cl.NewEvent("Shipped", SESSION_DATA)],
                         expected_version=events[-1].version)
            store.close()
            lat.append(clock() - t0)
    else:
        from benchmarks.baselines import sqlite_open

        with tempfile.TemporaryDirectory() as tmp:
            sqlite_open(Path(tmp) / "warm.db").close()
        for stream in streams[1:]:
            t0 = clock()
            conn = sqlite_open(Path(path))
            rows = conn.execute("SELECT position, version, type, data FROM events "
                                "WHERE stream = ? ORDER BY version", (stream,)).fetchall()
            (last,) = conn.execute("SELECT max(position) FROM events").fetchone()
            conn.execute("INSERT INTO events (position, stream, version, type, data) "
                         "VALUES (?, ?, ?, ?, ?)", (last + 1, stream, rows[-1][1] + 1,
                                                    "Shipped", SESSION_DATA))
            conn.commit()
            conn.close()
            lat.append(clock() - t0)
    print(json.dumps({"median_s": statistics.median(lat), "slowest_s": max(lat)}), flush=True)


def session_stores(root: Path, n_streams: int, ctx_notes: list[str]) -> Path:
    """A Chronolog store (store/) and an SQLite database (events.db) of n_streams streams of
    one event each (built once under root, reused later)."""
    import sqlite3

    import pyarrow as pa

    import chronolog as cl
    from benchmarks.baselines import sqlite_open
    from chronolog.store import FORMAT_VERSION

    home = root / f"session-v{_BUILD_VERSION}-f{FORMAT_VERSION}-{n_streams}"
    if (home / "built.json").exists():
        ctx_notes.append(f"reused the {n_streams:,}-stream session stores")
        return home
    remove(home)
    home.mkdir(parents=True)
    step = 100_000
    with cl.EventStore.open(home / "store", durability="os") as store:
        for at in range(0, n_streams, step):
            k = min(step, n_streams - at)
            store.append_batch(pa.array([f"order-{i:07d}" for i in range(at, at + k)], pa.large_string()),
                               pa.array(["Created"] * k, pa.large_string()),
                               pa.array([SESSION_DATA] * k, pa.large_binary()))
    conn: sqlite3.Connection = sqlite_open(home / "events.db")
    for at in range(0, n_streams, step):
        conn.executemany("INSERT INTO events (position, stream, version, type, data) "
                         "VALUES (?, ?, 0, 'Created', ?)",
                         ((i, f"order-{i:07d}", SESSION_DATA) for i in range(at, min(at + step, n_streams))))
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    (home / "built.json").write_text(json.dumps({"built": time.strftime("%Y-%m-%d %H:%M")}))
    return home


def sessions(ctx: BenchContext, n_streams: int) -> Figure:
    """Short sessions on a store of n_streams streams against SQLite, on copies of the built
    stores (each run starts from the same state), children interleaved."""
    home = session_stores(ctx.root, n_streams, ctx.notes)
    work = ctx.fresh_dir("session")
    shutil.copytree(home / "store", work / "store")
    shutil.copy(home / "events.db", work / "events.db")
    _child("open", str(work / "store"))  # index files of the current core (a rebuild if not)
    per_child = 20
    ours, theirs = [], []
    for _ in range(max(ctx.repeats, 3)):
        ours.append(_child("session", str(work / "store"), "chronolog", str(per_child), str(n_streams)))
        theirs.append(_child("session", str(work / "events.db"), "sqlite", str(per_child), str(n_streams)))
    remove(work)
    label = f"{n_streams // 1_000_000}M" if n_streams >= 1_000_000 else f"{n_streams // 1000}k"
    t_ours = median([r["median_s"] for r in ours])
    t_theirs = median([r["median_s"] for r in theirs])
    return Figure(f"short session (open, read a stream, append one event, close), {label} streams",
                  "sessions/s", 1 / t_ours, "the same session on SQLite (WAL, NORMAL)", 1 / t_theirs,
                  kind="info",
                  detail=f"medians of {len(ours)} children x {per_child} sessions each side, "
                         f"interleaved; slowest: {max(r['slowest_s'] for r in ours) * 1e3:.1f} ms vs "
                         f"{max(r['slowest_s'] for r in theirs) * 1e3:.1f} ms")


# ---------------------------------------------------------------------- building and reusing

def big_store(root: Path, n_events: int, n_streams: int, ctx_notes: list[str]) -> tuple[Path, dict[str, Any]]:
    """The store of `n_events` under root (built now when missing): returns (its folder,
    its build record). The folder holds store/ (cleanly closed) and index.clean/ (the index
    checkpoints of a clean close, restored before each measurement)."""
    from chronolog.store import FORMAT_VERSION

    home = root / f"open-v{_BUILD_VERSION}-f{FORMAT_VERSION}-{n_events}-{n_streams}"
    record_path = home / "built.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        # Checked read-only first (a writer open of a store the current core misreads could
        # cut it): a store this core cannot read whole is built again.
        try:
            head = _child("open", str(home / "store"), "readonly")["head"]
        except RuntimeError:
            head = -1
        if head == n_events:
            ctx_notes.append(f"reused the {n_events:,}-event store built {record['built']}")
            return home, record
        ctx_notes.append(f"rebuilt the {n_events:,}-event store: the current core reads "
                         f"{head} events from the one built {record['built']}")
    free = shutil.disk_usage(root).free
    need = n_events * 300 * 1.3
    if free < need:
        raise RuntimeError(f"{root} has {free / 1e9:.1f} GB free, building {n_events:,} events "
                           f"needs about {need / 1e9:.1f} GB; free some space or set CHRONOLOG_BENCH_DIR")
    remove(home)
    home.mkdir(parents=True)
    store = home / "store"
    built = ingest(store, n_events, n_streams, kill=False)
    shutil.copytree(store / "index", home / "index.clean")
    record = {"built": time.strftime("%Y-%m-%d %H:%M"), "n_events": n_events,
              "n_streams": n_streams, "build": built}
    record_path.write_text(json.dumps(record, indent=1))
    return home, record


def refresh_clean_index(home: Path) -> None:
    """Re-take index.clean with the current core (open, then close cleanly), so that a core
    whose index files changed since the build is measured on its own checkpoints."""
    _with_index(home, "clean")
    _child("open", str(home / "store"))
    remove(home / "index.clean")
    shutil.copytree(home / "store" / "index", home / "index.clean")


def _with_index(home: Path, which: str | None) -> None:
    """Put an index state in place: 'killed', 'clean', or None (no index at all)."""
    index = home / "store" / "index"
    remove(index)
    if which is not None:
        shutil.copytree(home / f"index.{which}", index)


def open_times(home: Path, state: str | None, repeats: int, restore: bool = True) -> list[float]:
    """Seconds to open home/store with the index state `state` put in place before each."""
    times = []
    try:
        for _ in range(repeats):
            _with_index(home, state)
            times.append(_child("open", str(home / "store"))["open_s"])
    finally:
        if restore:
            _with_index(home, "clean")
    return times


# ---------------------------------------------------------------------- run_core figures

def measure(ctx: BenchContext) -> list[Figure]:
    """Open times (10M against 1M; quick: 1M against 100k) and the peak RSS of ingestion."""
    small_n, big_n = (100_000, 1_000_000) if ctx.quick else (1_000_000, 10_000_000)
    small, _ = big_store(ctx.root, small_n, small_n // 100, ctx.notes)
    big, _ = big_store(ctx.root, big_n, big_n // 100, ctx.notes)
    refresh_clean_index(small)
    refresh_clean_index(big)
    clean_small, clean_big = [], []
    repeats = max(ctx.repeats, 5)
    for _ in range(repeats):  # interleaved: a noisy moment hurts both sizes
        clean_small += open_times(small, "clean", 1)
        clean_big += open_times(big, "clean", 1)
    rebuild_small = open_times(small, None, ctx.repeats)
    # Peak RSS: a fresh ingestion of big_n events in a child (into scratch), which then kills
    # itself (-9): its index checkpoints are those of the last segment roll. The opens of
    # that state follow, then the store is removed.
    rss_home = ctx.fresh_dir("rss")
    rss = ingest(rss_home / "store", big_n, big_n // 100, kill=True)
    shutil.copytree(rss_home / "store" / "index", rss_home / "index.killed")
    killed_big = open_times(rss_home, "killed", ctx.repeats, restore=False)
    # A segment roll of single appends in that store (big: the stream index checkpoint of a
    # roll grows with the log; docs/design.md, "Index checkpoints in the background").
    rolls = [_child("roll", str(rss_home / "store")) for _ in range(ctx.repeats)]
    remove(rss_home)
    session = sessions(ctx, small_n)
    ms = 1000.0
    b, s = f"{big_n // 1_000_000}M" if big_n >= 1_000_000 else f"{big_n // 1000}k", \
        f"{small_n // 1_000_000}M" if small_n >= 1_000_000 else f"{small_n // 1000}k"
    t_big, t_small = median(clean_big), median(clean_small)
    return [
        Figure(f"open {b} events (after clean close)", "ms", t_big * ms, f"open {s} events",
               t_small * ms, target=100.0, kind="max", detail=f"median of {repeats}, child process"),
        Figure(f"open {b} / open {s} (after clean close)", "x", t_big / t_small,
               target=2.0, kind="max", detail="time ratio"),
        Figure(f"open {b} events after kill -9 (checkpoint at last roll)", "ms", median(killed_big) * ms,
               f"open {b} after clean close", t_big * ms, kind="info",
               detail=f"median of {ctx.repeats}; the tail past the last checkpoint (written at each "
                      "segment roll) is indexed on open; no roll, no checkpoint: a full rebuild"),
        Figure(f"append, one call per event (os), in the {b}-event store: slowest append, at a "
               "segment roll", "µs", median([r["slowest_s"] for r in rolls]) * 1e6,
               "median append of the same runs", median([r["median_s"] for r in rolls]) * 1e6,
               kind="info", detail=f"median of {ctx.repeats} runs, each one roll of 1,000-byte "
               f"appends over 100,000 streams and 60,000 appends past it (~{rolls[0]['appends']:,} "
               "appends)"),
        Figure(f"open {s} events with no index (full rebuild)", "ms", median(rebuild_small) * ms,
               f"open {s} after clean close", t_small * ms, kind="info"),
        Figure(f"peak RSS ingesting {b} events (append_batch 10k)", "MB", rss["rss_peak_mb"],
               "RSS after imports", rss["rss_imports_mb"], target=300.0, kind="max",
               detail=f"VmHWM of a child fed by a generator process; appending took {rss['append_s']:.1f} s "
                      f"({big_n / rss['append_s'] / 1e6:.2f} M ev/s sustained)"),
        session,
    ]


# ---------------------------------------------------------------------- pytest-benchmark

def test_open_clean_store(benchmark, small_workload, tmp_path: Path) -> None:
    import chronolog as cl

    path = tmp_path / "store"
    with cl.EventStore.open(path, durability="os") as store:
        for streams, types, datas in small_workload.batches(10_000):
            store.append_batch(streams, types, datas)
    benchmark.extra_info["events"] = len(small_workload)
    benchmark(lambda: cl.EventStore.open(path, durability="os").close())


def main(argv: list[str]) -> None:
    if argv[0] == "produce":
        child_produce(int(argv[1]), int(argv[2]))
    elif argv[0] == "ingest":
        child_ingest(argv[1], kill=argv[2] == "kill")
    elif argv[0] == "open":
        child_open(argv[1], readonly=argv[2:] == ["readonly"])
    elif argv[0] == "roll":
        child_roll(argv[1])
    elif argv[0] == "session":
        child_session(argv[1], argv[2], int(argv[3]), int(argv[4]))
    else:
        raise SystemExit("usage: python -m benchmarks.bench_open produce N STREAMS | "
                         "ingest PATH kill|close | open PATH [readonly] | roll PATH | "
                         "session PATH chronolog|sqlite REPEATS STREAMS")


if __name__ == "__main__":
    main(sys.argv[1:])
