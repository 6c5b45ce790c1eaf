"""Simulated power loss at every point of a traced workload (tests/crash/powerloss.py).

In durability "fsync" every append that returned before the crash point must be there after
recovery; in every mode the store must hold exactly a prefix of what was written, whole
appends only (no gap, no garbage), answer every query consistently, and take new appends.
The default run tries every crash point of a short workload (several hundred); `-m crash`
runs thousands over longer workloads and more random fates per point.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import powerloss
import pytest
from _scratch import ram_dir

import chronolog as cl
from chronolog._core.fileio import FileIO

MAX_SEGMENT_BYTES = 16 * 1024  # small: the workload rolls segments (and crashes mid-roll)


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """A scratch directory in RAM when /dev/shm is there (fsync is free on tmpfs, and the
    simulator, not the disk, decides what survives); else pytest's tmp_path."""
    with ram_dir(tmp_path, "chronolog-powerloss-") as d:
        yield d


@dataclass
class Workload:
    """What a traced run wrote: every event in order, where each append ends, and the crash
    point after which each append was acknowledged."""

    recorder: powerloss.Recorder
    events: list[tuple[str, int, str, bytes, bytes, bytes | None]] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=lambda: [0])  # event counts at append ends
    acked_at: list[tuple[int, int]] = field(default_factory=list)  # (crash point, events acked)

    def acknowledged_by(self, k: int) -> int:
        """Events whose append returned within the first k traced operations."""
        n = 0
        for point, count in self.acked_at:
            if point <= k:
                n = count
        return n


def _payload(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.08:
        return rng.randbytes(rng.randint(4_500, 9_000))  # spans blocks
    if roll < 0.3:
        return rng.randbytes(rng.randint(200, 1_500))
    return rng.randbytes(rng.randint(0, 120))


def run_workload(store_dir: Path, durability: str, seed: int, appends: int,
                 flush_interval_ms: int = 600_000) -> Workload:
    """Run a seeded workload over two sessions (checkpoint in the middle, close, reopen, more
    appends, close) with every I/O operation traced. The default flush interval is long, so
    "interval" syncs only at rolls and close and the trace is deterministic."""
    rng = random.Random(seed)
    rec = powerloss.Recorder(store_dir)
    work = Workload(rec)
    streams = [f"acct-{i}" for i in range(6)] + ["ünïcode-é"]
    versions: dict[str, int] = {}

    def one_append(store: cl.EventStore) -> None:
        if rng.random() < 0.3:
            n = rng.randint(2, 5)
            names = [rng.choice(streams) for _ in range(n)]
            datas = [_payload(rng) for _ in range(n)]
            metas = [rng.randbytes(rng.randint(0, 20)) for _ in range(n)]
            ids = [uuid.UUID(int=rng.getrandbits(128)).bytes for _ in range(n)]
            res = store.append_batch(names, ["Moved"] * n, datas, metadatas=metas, ids=ids)
            described = list(zip(names, ["Moved"] * n, datas, metas, ids))
        else:
            name = rng.choice(streams)
            n = rng.randint(1, 3)
            evs = [cl.NewEvent("Opened", _payload(rng),
                               metadata=b"m" if rng.random() < 0.5 else b"",
                               id=uuid.UUID(int=rng.getrandbits(128)) if rng.random() < 0.5 else None)
                   for _ in range(n)]
            res = store.append(name, evs)
            described = [(name, e.type, e.data, e.metadata, e.id.bytes if e.id else None) for e in evs]
        assert res.first_position == len(work.events)
        for stream, etype, data, meta, eid in described:
            version = versions.get(stream, -1) + 1
            versions[stream] = version
            work.events.append((stream, version, etype, data, meta, eid))
        work.boundaries.append(len(work.events))
        work.acked_at.append((rec.mark(), len(work.events)))

    io = FileIO()
    io.trace = rec.trace
    half = appends // 2
    store = cl.EventStore.open(store_dir, durability=durability, io=io,
                               max_segment_bytes=MAX_SEGMENT_BYTES,
                               flush_interval_ms=flush_interval_ms)
    for i in range(half):
        one_append(store)
        if i == half // 2:
            store.checkpoint()
    store.close()
    store = cl.EventStore.open(store_dir, durability=durability, io=io,
                               max_segment_bytes=MAX_SEGMENT_BYTES,
                               flush_interval_ms=flush_interval_ms)
    for _ in range(appends - half):
        one_append(store)
    store.close()
    return work


def check_recovered(crashed: Path, durability: str, work: Workload, k: int,
                    *, append_after: bool) -> int:
    """Open a crashed copy and check the guarantees; returns how many events it holds."""
    where = f"crash point {k} of {work.recorder.op_count} ({crashed.name})"
    with cl.EventStore.open(crashed, durability=durability,
                            max_segment_bytes=MAX_SEGMENT_BYTES) as store:
        got = list(store.read_all())
        n = len(got)
        assert n in work.boundaries, f"{where}: {n} events is not a whole number of appends"
        if durability == "fsync":
            acked = work.acknowledged_by(k)
            assert n >= acked, f"{where}: {acked} events were acknowledged, {n} survived"
        for e, want in zip(got, work.events):
            assert (e.stream, e.version, e.type, e.data, e.metadata, e.id_bytes) == want, \
                f"{where}: event {e.position} differs from what was written"
        assert [e.position for e in got] == list(range(n)), f"{where}: positions not dense"
        expected_streams: list[str] = []
        for stream, *_ in work.events[:n]:
            if stream not in expected_streams:
                expected_streams.append(stream)
        assert store.streams() == expected_streams, where
        for s in expected_streams:
            mine = [e for e in got if e.stream == s]
            assert [(e.position, e.data) for e in store.read_stream(s)] == \
                [(e.position, e.data) for e in mine], f"{where}: read_stream({s!r})"
            assert store.stream_version(s) == len(mine) - 1, where
        report = store.verify()
        assert report["ok"], f"{where}: verify after recovery: {report['problems'][:2]}"
        if append_after:
            res = store.append("after-crash", [cl.NewEvent("Recovered", b"!")])
            assert res.first_position == n, where
    if append_after:
        with cl.EventStore.open(crashed, readonly=True) as again:
            assert again.head == n + 1, f"{where}: the append after recovery did not persist"
    return n


def _sweep(tmp_path: Path, durability: str, seed: int, appends: int, variants: int,
           *, tolerate_refusal: bool = False, flush_interval_ms: int = 600_000) -> tuple[int, int, int]:
    """Crash at every traced operation (`variants` fates each) and check each recovery.
    Returns (crashed copies tried, traced operations, refusals). With `tolerate_refusal`, an
    open that refuses with CorruptionError counts as a refusal instead of failing: the weaker
    guarantee "never a wrong answer" still holds for everything else."""
    work = run_workload(tmp_path / "store", durability, seed, appends, flush_interval_ms)
    total = work.recorder.op_count
    tried = refused = 0
    for k, v, crashed in work.recorder.crash_points(tmp_path / "crashes", list(range(total + 1)),
                                                    seed=seed, variants=variants):
        tried += 1
        try:
            # Appending after recovery is sampled (it costs an fsync per point).
            check_recovered(crashed, durability, work, k, append_after=(k + v) % 7 == 0)
        except cl.CorruptionError:
            if not tolerate_refusal:
                raise
            refused += 1
    return tried, total, refused


# --------------------------------------------------------------------------- the simulator


def test_simulator_clean_crash_keeps_only_fsynced_bytes_and_durable_names(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    rec = powerloss.Recorder(root)
    a, b = str(root / "a"), str(root / "b")
    rec.trace("open", a, os.O_CREAT | os.O_WRONLY, None)
    rec.trace("write", a, 0, b"synced")
    rec.trace("fsync", a, 0, None)
    rec.trace("fsync_dir", str(root), 0, None)
    rec.trace("write", a, 6, b"+lost")
    rec.trace("open", b, os.O_CREAT | os.O_WRONLY, None)
    rec.trace("write", b, 0, b"never durable")
    rec.trace("fsync", b, 0, None)  # data durable, but its name never is
    seen = [(sorted(os.listdir(crashed)), (crashed / "a").read_bytes())
            for _, _, crashed in rec.crash_points(tmp_path / "c", [rec.op_count], seed=1)]
    assert seen == [(["a"], b"synced")]


def test_simulator_may_undo_a_rename_not_covered_by_a_directory_fsync(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    (root / "x").write_bytes(b"old")
    rec = powerloss.Recorder(root)
    tmp, x = str(root / "x.tmp"), str(root / "x")
    rec.trace("open", tmp, os.O_CREAT | os.O_WRONLY, None)
    rec.trace("write", tmp, 0, b"new")
    rec.trace("fsync", tmp, 0, None)
    rec.trace("rename", tmp, 0, x)
    seen = set()
    for _, _, crashed in rec.crash_points(tmp_path / "c", [rec.op_count], seed=3, variants=40):
        seen.add((tuple(sorted(os.listdir(crashed))), (crashed / "x").read_bytes()))
    assert (("x",), b"old") in seen and (("x",), b"new") in seen
    assert all(names in (("x",), ("x", "x.tmp")) for names, _ in seen)


# --------------------------------------------------------------------------- the store


def test_fsync_mode_keeps_every_acknowledged_append_at_every_crash_point(tmp_path: Path) -> None:
    tried, total, _ = _sweep(tmp_path, "fsync", seed=11, appends=40, variants=3)
    assert tried == 3 * (total + 1)


def test_os_mode_never_recovers_a_gap_or_garbage_at_any_crash_point(tmp_path: Path) -> None:
    tried, total, _ = _sweep(tmp_path, "os", seed=12, appends=40, variants=3,
                             tolerate_refusal=True)
    assert tried == 3 * (total + 1)


def test_interval_mode_never_recovers_a_gap_or_garbage_at_any_crash_point(tmp_path: Path) -> None:
    tried, total, _ = _sweep(tmp_path, "interval", seed=13, appends=30, variants=3,
                             tolerate_refusal=True)
    assert tried == 3 * (total + 1)


def test_os_mode_recovers_a_whole_prefix_at_every_crash_point(tmp_path: Path) -> None:
    _sweep(tmp_path, "os", seed=12, appends=24, variants=2)


def test_interval_mode_recovers_a_whole_prefix_at_every_crash_point(tmp_path: Path) -> None:
    tried, total, _ = _sweep(tmp_path, "interval", seed=13, appends=30, variants=3)
    assert tried == 3 * (total + 1)


@pytest.mark.parametrize("durability", ["os", "interval"])
def test_a_checkpoint_syncs_the_events_it_covers_before_the_index_files(tmp_path: Path,
                                                                       durability: str) -> None:
    # An index must never be more durable than the events it covers: after a power loss it
    # would name events the segments no longer hold. So checkpoint() first syncs the segment
    # (even in os mode), then writes and renames the index files.
    io = FileIO()
    ops: list[tuple[str, str]] = []
    io.trace = lambda op, path, offset, data: ops.append((op, os.path.basename(path or "")))
    store = cl.EventStore.open(tmp_path / "store", durability=durability,
                               flush_interval_ms=600_000, io=io)
    store.append("a", [cl.NewEvent("T", b"x" * 5000)])
    store.append("a", [cl.NewEvent("T", b"y" * 10)])
    ops.clear()
    store.checkpoint()
    store.close()
    seg_sync = ops.index(("fsync", "00000000000000000000.seg"))
    renames = [i for i, (op, name) in enumerate(ops) if op == "rename"]
    assert renames and all(seg_sync < i for i in renames)


@pytest.mark.crash
@pytest.mark.parametrize("durability", ["fsync", "os", "interval"])
@pytest.mark.parametrize("seed", range(100, 104))
def test_long_power_loss_sweep_keeps_the_guarantees(tmp_path: Path, durability: str,
                                                    seed: int) -> None:
    tried, total, refused = _sweep(tmp_path, durability, seed=seed, appends=80, variants=4,
                                   tolerate_refusal=durability != "fsync",
                                   flush_interval_ms=5)
    print(f"power loss {durability} seed {seed}: {tried} crashed copies over {total} ops, "
          f"{refused} refused with CorruptionError")
    assert tried == 4 * (total + 1)
