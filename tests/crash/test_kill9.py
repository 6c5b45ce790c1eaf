"""kill -9 a writer process at random moments; the store must hold exactly what was acknowledged
(plus, at most, the one append that was in flight, whole), and recovery runs on top of recovery.

The writer is tests/crash/_child.py: it announces each append before the call (intent) and
acknowledges it after the call returned, over a pipe. See its docstring for the protocol.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import chronolog as cl

CHILD = Path(__file__).with_name("_child.py")
_spec = importlib.util.spec_from_file_location("chronolog_tests_crash_child", CHILD)
assert _spec is not None and _spec.loader is not None
child = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(child)

MAX_SEGMENT_BYTES = 128 * 1024  # small: segments roll (and crash mid-roll) often
DEFAULT_ITERATIONS = 13  # per durability mode: 26 kills in the default run
LONG_ITERATIONS = 300
ITERATIONS_PER_STORE = 25  # the long run starts a fresh store now and then to stay small
WAIT_SECONDS = 60.0  # hang guard for the child's start and death, not a timing assertion

Described = tuple[str, int, str]  # stream, version, digest


class _Lines:
    """Collects the child's stdout lines in a thread, so a full pipe never stalls the child."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[bytes] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: Any) -> None:
        for line in iter(stream.readline, b""):
            self.lines.append(line)
            if line.startswith(b"R "):
                self.ready.set()
        self.ready.set()

    def join(self) -> None:
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive(), "the child's stdout never closed"


@dataclass
class _Report:
    """What the killed child said: its starting head, acknowledged events, the in-flight intent."""

    start_head: int | None = None
    acked: list[Described] = field(default_factory=list)
    in_flight: tuple[int, list[Described]] | None = None


def _parse(lines: list[bytes]) -> _Report:
    rep = _Report()
    for raw in lines:
        if not raw.endswith(b"\n"):
            break  # torn by the kill: an intent cut short means the call never started
        tag, _, body = raw.decode("utf-8").rstrip("\n").partition(" ")
        if tag == "R":
            rep.start_head = int(body)
            continue
        msg = json.loads(body)
        events = [(s, v, d) for s, v, d in msg["events"]]
        if tag == "I":
            assert rep.in_flight is None, "two intents without an acknowledgement"
            rep.in_flight = (msg["first"], events)
        elif tag == "A":
            assert rep.in_flight is not None and rep.in_flight[1] == events, "ack without intent"
            first = rep.in_flight[0]
            assert (msg["first"], msg["last"]) == (first, first + len(events) - 1), (
                f"append returned positions {msg['first']}..{msg['last']}, "
                f"expected {first}..{first + len(events) - 1}"
            )
            rep.acked.extend(events)
            rep.in_flight = None
        else:
            raise AssertionError(f"unexpected line from the child: {raw!r}")
    return rep


def _run_and_kill(store_dir: Path, durability: str, rng: random.Random) -> _Report:
    """Start a writer, kill -9 it 20-150 ms into its appends (now and then: during its open)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            str(store_dir),
            durability,
            str(rng.getrandbits(32)),
            str(MAX_SEGMENT_BYTES),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = _Lines(proc.stdout)
    try:
        if rng.random() < 0.125:
            # Kill early: possibly while the child's open is still recovering the last crash.
            threading.Event().wait(rng.uniform(0.0, 0.25))
        else:
            assert lines.ready.wait(WAIT_SECONDS), "the child never opened the store"
            threading.Event().wait(rng.uniform(0.02, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait(WAIT_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines.join()
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    assert rc == -signal.SIGKILL, f"the child exited by itself (rc {rc}) before the kill:\n{err}"
    return _parse(lines.lines)


def _check_store(
    store_dir: Path, readonly: bool, model: list[Described], rep: _Report,
    adoptable: list[Described],
) -> tuple[list[Described], list[Described]]:
    """Reopen and check everything; return the store's events (the next model) and the events
    of an append a reader did not see and the next writer may still adopt (`adoptable`).

    A reader sees only what the writer acknowledged (index/visible): in "fsync" mode the
    append in flight at the kill may be whole in the file yet invisible to it, and the next
    writer's recovery keeps it (whole) or cuts it (torn)."""
    if rep.start_head is not None:
        if adoptable and rep.start_head == len(model) + len(adoptable):
            model = model + adoptable  # the child's open kept it whole
        adoptable = []
        assert rep.start_head == len(model), (
            f"the child opened the store at head {rep.start_head}, after the last check it "
            f"held {len(model)} events"
        )
    with cl.EventStore.open(store_dir, readonly=readonly, durability="os") as store:
        report = store.verify()
        assert report["ok"], report["problems"]
        events = list(store.read_all())
        head = store.head
        assert [e.position for e in events] == list(range(head)), "positions are not 0..head-1"
        narrow = store.scan_table(columns=["position", "stream", "type"]).to_pydict()
        assert narrow == {"position": [e.position for e in events],
                          "stream": [e.stream for e in events], "type": [e.type for e in events]}, \
            "a narrow scan disagrees with read_all"
        versions: dict[str, int] = {}
        by_stream: dict[str, list[Any]] = {}
        for e in events:
            assert e.version == versions.get(e.stream, 0), (
                f"stream {e.stream!r} version {e.version} at position {e.position}, "
                f"expected {versions.get(e.stream, 0)}"
            )
            versions[e.stream] = e.version + 1
            by_stream.setdefault(e.stream, []).append(e)
        for stream, evs in by_stream.items():
            assert store.read_stream(stream) == evs, (
                f"read_stream({stream!r}) disagrees with read_all"
            )
            assert store.stream_version(stream) == len(evs) - 1
        stored = [
            (e.stream, e.version, child.event_digest(e.type, e.data, e.metadata, e.id_bytes))
            for e in events
        ]
    if adoptable and stored[len(model):len(model) + len(adoptable)] == adoptable:
        model, adoptable = model + adoptable, []
    expected = model + rep.acked
    assert len(stored) >= len(expected), (
        f"acknowledged events lost: the store holds {len(stored)}, {len(expected)} were acknowledged"
    )
    mismatch = next((i for i, (a, b) in enumerate(zip(stored, expected)) if a != b), None)
    assert mismatch is None, (
        f"position {mismatch}: stored {stored[mismatch]}, acknowledged {expected[mismatch]}"
    )
    extra = stored[len(expected) :]
    if extra:
        assert rep.in_flight is not None, (
            f"{len(extra)} events beyond the acknowledged, none in flight"
        )
        first, intent = rep.in_flight
        assert first == len(expected) and extra == intent, (
            "the events beyond the acknowledged are not exactly the append that was in flight"
        )
    elif readonly and rep.in_flight is not None:
        adoptable = rep.in_flight[1]
    return stored, adoptable


def _kill_loop(tmp_path: Path, durability: str, iterations: int, seed: int) -> None:
    rng = random.Random(seed)
    store_dir = tmp_path / "store-0"
    model: list[Described] = []
    adoptable: list[Described] = []
    for it in range(iterations):
        if it and it % ITERATIONS_PER_STORE == 0:
            store_dir = tmp_path / f"store-{it}"
            model, adoptable = [], []
        rep = _run_and_kill(store_dir, durability, rng)
        if not store_dir.joinpath("chronolog.store").exists():
            assert not rep.acked, "appends were acknowledged but the store was never created"
            continue
        # Alternate: the writer's open recovers here, or the next child's open does. (A store
        # killed before its first segment existed has nothing a reader could open.)
        readonly = bool(it % 2) and any(store_dir.glob("*.seg"))
        model, adoptable = _check_store(store_dir, readonly=readonly, model=model, rep=rep,
                                        adoptable=adoptable)


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_every_acknowledged_append_survives_repeated_kill_9(
    tmp_path: Path, durability: str
) -> None:
    _kill_loop(tmp_path, durability, DEFAULT_ITERATIONS, seed=0xC0FFEE)


@pytest.mark.crash
@pytest.mark.parametrize("durability", ["os", "fsync", "interval"])
def test_every_acknowledged_append_survives_hundreds_of_kill_9(
    tmp_path: Path, durability: str
) -> None:
    seed = int(os.environ.get("CHRONOLOG_CRASH_SEED", random.randrange(1 << 30)))
    print(f"CHRONOLOG_CRASH_SEED={seed}")
    _kill_loop(tmp_path, durability, LONG_ITERATIONS, seed=seed)
