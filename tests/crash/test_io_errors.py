"""Injected I/O errors (FileIO.inject): fail the Nth write, fsync, rename or directory fsync of a
scripted workload, once or persistently, with ENOSPC or EIO, for every N the workload reaches.

The store must fail stop: the failing append raises StoreFailedError, and so does every later
append; nothing acknowledged is lost; a reopen with a fresh FileIO recovers and takes appends.
Faults during EventStore.open (store creation: the bare OSError propagates, a later open
recovers) and in index checkpoints (absorbed: derived files are rebuilt) are checked too;
docs/reliability.md describes both.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _scratch import ram_dir

import chronolog as cl
from chronolog._core.fileio import FileIO
from chronolog.errors import StoreFailedError

MAX_SEGMENT_BYTES = 8 * 1024
OPS = ("write", "fsync", "rename", "fsync_dir")
ERRNOS = (errno.ENOSPC, errno.EIO)


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """Scratch space in RAM when /dev/shm is there: hundreds of stores, fsync-mode each."""
    with ram_dir(tmp_path, "chronolog-ioerr-") as d:
        yield d


def _script() -> list[tuple[str, list[str], list[bytes]]]:
    """The scripted appends: (kind, streams, payloads); sized so segments roll twice."""
    steps = []
    for i in range(14):
        if i % 4 == 3:
            steps.append(("batch", [f"s-{i % 3}", f"s-{(i + 1) % 3}", "s-x"],
                          [bytes([i]) * 300, b"", bytes([i]) * 1200]))
        else:
            steps.append(("one", [f"s-{i % 3}"], [bytes([i]) * (100 + 450 * (i % 5))]))
    return steps


@dataclass
class Outcome:
    """What a faulted run saw: where it failed and what was acknowledged."""

    open_error: BaseException | None = None
    append_errors: list[tuple[int, BaseException]] = field(default_factory=list)
    checkpoint_error: BaseException | None = None
    close_error: BaseException | None = None
    acked: list[tuple[str, bytes]] = field(default_factory=list)
    attempted: list[list[tuple[str, bytes]]] = field(default_factory=list)


def run(store_dir: Path, io: FileIO, durability: str = "fsync") -> Outcome:
    """Run the script through `io`: open, appends (a checkpoint in the middle), close."""
    out = Outcome()
    try:
        store = cl.EventStore.open(store_dir, durability=durability, io=io,
                                   max_segment_bytes=MAX_SEGMENT_BYTES)
    except BaseException as exc:  # noqa: BLE001 - recorded and checked by the caller
        out.open_error = exc
        return out
    for i, (kind, streams, datas) in enumerate(_script()):
        out.attempted.append(list(zip(streams, datas)))
        try:
            if kind == "one":
                store.append(streams[0], [cl.NewEvent("Put", datas[0])])
            else:
                store.append_batch(streams, ["Put"] * len(streams), datas)
        except BaseException as exc:  # noqa: BLE001
            out.append_errors.append((i, exc))
            continue
        out.acked.extend(zip(streams, datas))
        if i == 6:
            try:
                store.checkpoint()
            except BaseException as exc:  # noqa: BLE001
                out.checkpoint_error = exc
    try:
        store.close()
    except BaseException as exc:  # noqa: BLE001
        out.close_error = exc
    return out


def op_totals(tmp: Path, durability: str = "fsync") -> dict[str, int]:
    """How many times the fault-free workload calls each op."""
    io = FileIO()
    out = run(tmp / "count", io, durability)
    assert out.open_error is None and not out.append_errors and out.close_error is None
    return dict(io.counts)


def check_reopen(store_dir: Path, out: Outcome, where: str) -> None:
    """Reopen with a fresh FileIO: a prefix of the attempted appends, every acknowledged one
    in it, and the store takes a new append."""
    with cl.EventStore.open(store_dir, durability="fsync", max_segment_bytes=MAX_SEGMENT_BYTES) as store:
        got = [(e.stream, e.data) for e in store.read_all()]
        assert got[:len(out.acked)] == out.acked, f"{where}: an acknowledged event was lost"
        boundaries = [0]
        flat: list[tuple[str, bytes]] = []
        for a in out.attempted:
            flat.extend(a)
            boundaries.append(len(flat))
        assert len(got) in boundaries and got == flat[:len(got)], \
            f"{where}: the store is not a whole prefix of what was attempted"
        # The one append that failed may be there (written, then its fsync failed); nothing
        # after it was attempted against the disk.
        assert len(got) <= len(out.acked) + max((len(a) for a in out.attempted), default=0), where
        assert store.verify()["ok"], where
        head = store.head
        res = store.append("after", [cl.NewEvent("Put", b"ok")])
        assert res.first_position == head, where


def _cases(durability: str) -> Iterator[tuple[str, int, int, bool]]:
    tmp = Path(tempfile.mkdtemp(prefix="chronolog-ioerr-count-"))
    try:
        totals = op_totals(tmp, durability)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for op in OPS:
        for n in range(totals[op]):
            for err in ERRNOS:
                for persistent in (False, True):
                    yield op, n, err, persistent


def _sweep(tmp_path: Path, durability: str) -> dict[str, int]:
    """Every (op, N, errno, persistent) over the script; returns a tally of where faults hit."""
    tally = {"open": 0, "append": 0, "checkpoint": 0, "close": 0, "absorbed": 0}
    for case, (op, n, err, persistent) in enumerate(_cases(durability)):
        where = f"{durability}: {op} #{n} fails with {errno.errorcode[err]}" + \
            (" persistently" if persistent else " once")
        store_dir = tmp_path / f"s{case}"
        io = FileIO()
        io.inject(op, after=n, errno=err, persistent=persistent)
        out = run(store_dir, io, durability)
        if out.open_error is not None:
            tally["open"] += 1
            # Creation failed: the error says what (an OSError with the errno), and a
            # reopen without the fault creates or recovers the store.
            assert isinstance(out.open_error, OSError), f"{where}: {out.open_error!r}"
            assert out.open_error.errno == err, f"{where}: {out.open_error!r}"
            check_reopen(store_dir, out, where)
            continue
        if out.append_errors:
            tally["append"] += 1
            first, exc = out.append_errors[0]
            assert isinstance(exc, StoreFailedError), f"{where}: append {first} raised {exc!r}"
            assert exc.cause.errno == err, where
            # Fail-stop: every append after the failing one fails too, whatever the fault.
            failed_steps = [i for i, _ in out.append_errors]
            assert failed_steps == list(range(first, len(out.attempted))), \
                f"{where}: appends after a failure succeeded: {failed_steps}"
            assert all(isinstance(e, StoreFailedError) for _, e in out.append_errors), where
        elif out.checkpoint_error is not None:
            tally["checkpoint"] += 1
        elif out.close_error is not None:
            tally["close"] += 1
        else:
            # The fault hit a derived file (an index checkpoint): the core absorbs it, the
            # next open rebuilds from the segments.
            tally["absorbed"] += 1
        for what in ("checkpoint_error", "close_error"):
            e = getattr(out, what)
            assert e is None or isinstance(e, OSError), f"{where}: {what} {e!r}"
        check_reopen(store_dir, out, where)
        shutil.rmtree(store_dir, ignore_errors=True)
    return tally


def test_every_injected_fault_in_fsync_mode_fails_stop_and_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    tally = _sweep(tmp_path, "fsync")
    assert tally["append"] > 0 and tally["open"] > 0, tally


def test_every_injected_fault_in_os_mode_fails_stop_and_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    tally = _sweep(tmp_path, "os")
    assert tally["append"] > 0


def test_a_failed_fsync_makes_the_append_raise_store_failed_with_the_cause(tmp_path: Path) -> None:
    io = FileIO()
    store = cl.EventStore.open(tmp_path / "s", io=io)
    store.append("a", [cl.NewEvent("Put", b"1")])
    io.inject("fsync", errno=errno.EIO)
    with pytest.raises(StoreFailedError) as info:
        store.append("a", [cl.NewEvent("Put", b"2")])
    assert info.value.cause.errno == errno.EIO
    with pytest.raises(StoreFailedError):
        store.append("a", [cl.NewEvent("Put", b"3")])  # the fault was once; the stop stays
    store.close()


def test_a_store_reopened_after_a_failed_fsync_keeps_the_acknowledged_events(tmp_path: Path) -> None:
    io = FileIO()
    store = cl.EventStore.open(tmp_path / "s", io=io)
    store.append("a", [cl.NewEvent("Put", b"1")])
    io.inject("fsync", errno=errno.ENOSPC, persistent=True)
    with pytest.raises(StoreFailedError):
        store.append("a", [cl.NewEvent("Put", b"2")])
    store.close()
    with cl.EventStore.open(tmp_path / "s") as again:
        assert [e.data for e in again.read_all()][:1] == [b"1"]
        again.append("a", [cl.NewEvent("Put", b"3")])


def test_a_failed_index_checkpoint_at_close_is_absorbed_and_the_store_reopens_whole(
        tmp_path: Path) -> None:
    io = FileIO()
    store = cl.EventStore.open(tmp_path / "s", io=io)
    for i in range(5):
        store.append(f"s-{i % 2}", [cl.NewEvent("Put", bytes([i]))])
    io.inject("rename", errno=errno.ENOSPC, persistent=True)
    store.close()  # the checkpoint is derived: its failure does not fail the close
    with cl.EventStore.open(tmp_path / "s") as again:
        assert [e.data for e in again.read_all()] == [bytes([i]) for i in range(5)]
        assert again.stream_version("s-0") == 2


def test_a_fault_while_recovery_cuts_a_torn_tail_fails_the_open_and_a_later_open_recovers(
        tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    with cl.EventStore.open(store_dir) as store:
        for i in range(3):
            store.append("a", [cl.NewEvent("Put", bytes([i]) * 50)])
    seg = max(store_dir.glob("*.seg"))
    with open(seg, "ab") as f:
        f.write(b"CHLF" + b"\x07" * 30)  # a torn frame header: recovery must cut it
    io = FileIO()
    io.inject("truncate", errno=errno.EIO, persistent=True)
    with pytest.raises(OSError) as info:
        cl.EventStore.open(store_dir, io=io)
    assert info.value.errno == errno.EIO
    with cl.EventStore.open(store_dir) as again:
        assert [e.data for e in again.read_all()] == [bytes([i]) * 50 for i in range(3)]
        again.append("a", [cl.NewEvent("Put", b"next")])
