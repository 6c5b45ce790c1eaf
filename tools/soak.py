"""kill -9 soak: a writer process appends at random (sizes, batches, durability modes, segment
sizes); the soak SIGKILLs it at random moments, reopens the store and checks it against the
acknowledgement log, round after round.

The writer is this same script (``--child``). It is deterministic from its seed, so the soak
regenerates every append the writer would make and needs only the count of acknowledged
appends: the writer prints ``A <n>`` after its n-th append returned. After a kill the store
must hold everything it held before the round, then exactly the first n appends of the round
or the first n+1 (the one in flight, whole), nothing else.

Usage:
    python tools/soak.py --minutes 30 [--dir /tmp/soak] [--seed 1]
    python tools/soak.py --rounds 20

Example:
    >>> run_soak(Path("/tmp/soak"), rounds=3, seed=1)  # doctest: +SKIP
    SoakReport(rounds=3, kills=3, acknowledged=412, lost=0, ...)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CHILD_SAFETY_SECONDS = 60.0  # a writer nobody killed stops by itself
START_TIMEOUT_SECONDS = 60.0  # hang guard while the writer opens the store
DURABILITIES = ("fsync", "os", "interval")
SEGMENT_SIZES = (64 * 1024, 256 * 1024, 4 * 1024 * 1024)
ROUNDS_PER_STORE = 40  # start a fresh store now and then so verifying stays cheap ...
MAX_STORE_BYTES = 48 << 20  # ... and small

Event = tuple[str, str, bytes, bytes]  # stream, type, data, metadata


def appends_for(seed: int):  # -> Iterator[list[Event]]
    """The writer's appends for a seed, in order (an endless generator)."""
    rng = random.Random(seed)
    streams = [f"soak-{i}" for i in range(20)] + ["soak-é", "soak-" + "x" * 300]
    k = 0
    while True:
        n = rng.choice((1, 1, 1, 2, 5, 40))
        out = []
        for _ in range(n):
            roll = rng.random()
            size = (rng.randint(20_000, 200_000) if roll < 0.005 else
                    rng.randint(500, 5_000) if roll < 0.2 else rng.randint(0, 300))
            data = k.to_bytes(8, "little") + rng.randbytes(size)
            meta = rng.randbytes(rng.randint(0, 40)) if rng.random() < 0.3 else b""
            out.append((rng.choice(streams), rng.choice(("Made", "Moved", "Gone")), data, meta))
            k += 1
        yield out


def digest(e: Event) -> bytes:
    """A short digest of an event's content."""
    h = hashlib.blake2b(digest_size=12)
    for part in (e[0].encode(), e[1].encode(), e[2], e[3]):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def child(store: str, seed: int, durability: str, max_segment_bytes: int) -> None:
    """The writer: append forever, print "A <n>" after the n-th append returned."""
    import chronolog as cl

    s = cl.EventStore.open(store, durability=durability, max_segment_bytes=max_segment_bytes,
                           flush_interval_ms=20)
    print(f"R {s.head}", flush=True)
    deadline = time.monotonic() + CHILD_SAFETY_SECONDS
    for n, events in enumerate(appends_for(seed), start=1):
        if time.monotonic() > deadline:
            return
        if len({e[0] for e in events}) == 1 and n % 2:
            s.append(events[0][0], [cl.NewEvent(t, d, metadata=m) for _, t, d, m in events])
        else:
            s.append_batch([e[0] for e in events], [e[1] for e in events],
                           [e[2] for e in events], metadatas=[e[3] for e in events])
        print(f"A {n}", flush=True)


@dataclass
class SoakReport:
    """What a soak did and found."""

    rounds: int = 0
    kills: int = 0
    acknowledged: int = 0  # appends acknowledged over all rounds
    events_checked: int = 0
    in_flight_kept: int = 0  # rounds whose in-flight append survived (allowed, whole)
    lost: int = 0  # acknowledged appends missing after a kill: must stay 0
    seconds: float = 0.0


class SoakFailure(AssertionError):
    """Raised when the store does not hold what the acknowledgement log says it must."""


def _store_digests(store_dir: Path) -> list[bytes]:
    import chronolog as cl

    with cl.EventStore.open(store_dir, durability="os") as s:
        out = []
        for e in s.read_all():
            out.append(digest((e.stream, e.type, e.data, e.metadata)))
        if not s.verify()["ok"]:
            raise SoakFailure(f"verify failed after recovery: {s.verify()['problems'][:2]}")
        return out


def one_round(store_dir: Path, rng: random.Random, before: list[bytes], report: SoakReport,
              max_kill_delay: float) -> list[bytes]:
    """Run the writer, kill it at a random moment, check the store; returns its digests."""
    seed = rng.getrandbits(32)
    durability = rng.choice(DURABILITIES)
    seg = rng.choice(SEGMENT_SIZES)
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", str(store_dir),
                             str(seed), durability, str(seg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    if not ready.wait(START_TIMEOUT_SECONDS):
        proc.kill()
        raise SoakFailure(f"writer did not start: {proc.stderr.read() if proc.stderr else ''}")
    time.sleep(rng.random() * max_kill_delay)
    if proc.poll() is not None:
        err = proc.stderr.read() if proc.stderr else ""
        raise SoakFailure(f"writer exited by itself ({proc.returncode}): {err[-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()
    if proc.stderr:
        proc.stderr.close()
    report.kills += 1
    head = int(lines[0].split()[1])
    if head != len(before):
        raise SoakFailure(f"writer opened at head {head}, the store held {len(before)}")
    acked = max((int(x.split()[1]) for x in lines[1:] if x.startswith("A ")), default=0)
    gen = appends_for(seed)
    expected: list[bytes] = []
    for _ in range(acked):
        expected.extend(digest(e) for e in next(gen))
    in_flight = [digest(e) for e in next(gen)]
    after = _store_digests(store_dir)
    if after[:len(before)] != before:
        raise SoakFailure("events stored before the round changed")
    new = after[len(before):]
    if new[:len(expected)] != expected:
        report.lost += 1
        raise SoakFailure(f"{durability}: {acked} appends acknowledged ({len(expected)} events), "
                          f"the store holds {len(new)} new events that do not match")
    rest = new[len(expected):]
    if rest and rest != in_flight:
        raise SoakFailure(f"{durability}: after the acknowledged events the store holds "
                          f"{len(rest)} events that are not the whole in-flight append")
    report.in_flight_kept += bool(rest)
    report.acknowledged += acked
    report.events_checked += len(after)
    report.rounds += 1
    return after


def run_soak(workdir: Path, *, rounds: int | None = None, seconds: float | None = None,
             seed: int = 0, max_kill_delay: float = 1.5) -> SoakReport:
    """Run rounds until `rounds` are done or `seconds` have passed; raises SoakFailure."""
    rng = random.Random(seed)
    report = SoakReport()
    started = time.monotonic()
    store_dir = workdir / "store-0"
    before: list[bytes] = []
    while True:
        if rounds is not None and report.rounds >= rounds:
            break
        if seconds is not None and time.monotonic() - started >= seconds:
            break
        size = sum(p.stat().st_size for p in store_dir.glob("*.seg")) if store_dir.exists() else 0
        if report.rounds and (report.rounds % ROUNDS_PER_STORE == 0 or size > MAX_STORE_BYTES):
            shutil.rmtree(store_dir, ignore_errors=True)
            store_dir = workdir / f"store-{report.rounds}"
            before = []
        before = one_round(store_dir, rng, before, report, max_kill_delay)
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--child":
        child(argv[2], int(argv[3]), argv[4], int(argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=None, help="run this long")
    ap.add_argument("--rounds", type=int, default=None, help="or this many kill rounds")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args(argv[1:])
    if args.minutes is None and args.rounds is None:
        args.minutes = 10.0
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="chronolog-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report = run_soak(workdir, rounds=args.rounds,
                          seconds=args.minutes * 60 if args.minutes is not None else None,
                          seed=args.seed)
    except SoakFailure as exc:
        print(f"SOAK FAILED (seed {args.seed}, store kept in {workdir}): {exc}", file=sys.stderr)
        return 1
    print(f"soak seed {args.seed}: {report}")
    if args.dir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
