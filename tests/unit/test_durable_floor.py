"""The writer's recovery never ends below what the index checkpoint covers: a checkpoint is
written only after the events it covers are synced, so fewer events in the segments means
damage from outside (a segment deleted or truncated, its last synced frames damaged), not a
torn tail. Opening would hand the lost positions out again (DESIGN invariant 3), so the open
refuses with CorruptionError before it cuts or writes anything; `chronolog repair --salvage`
(or deleting index/ by hand) opens what is left."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import chronolog as cl


def _store(path: Path) -> list[Path]:
    """A closed "fsync" store of 40 events over 4 KiB segments, all checkpointed."""
    with cl.EventStore.open(path, max_segment_bytes=4096) as s:
        for i in range(40):
            s.append(f"order-{i % 4}", [cl.NewEvent("T", b"x" * 200)])
    return sorted(path.glob("*.seg"))


def _flip(seg: Path, at: int) -> int:
    """Flip a bit of the byte at `at` (negative: from the end); return the file's size."""
    raw = bytearray(seg.read_bytes())
    raw[at] ^= 0x10
    seg.write_bytes(bytes(raw))
    return len(raw)


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file() and p.name != "LOCK"}


def _refused(path: Path, missing: int) -> cl.CorruptionError:
    before = _files(path)
    with pytest.raises(cl.CorruptionError, match=rf"the index checkpoint records 40 as written to "
                       rf"stable storage, so {missing} acknowledged events? (are|is) missing") as info:
        cl.EventStore.open(path)
    assert _files(path) == before, "the refused open changed a file"
    assert not list(path.glob("*.torn-*"))
    return info.value


def test_a_deleted_newest_segment_is_refused_not_opened_without_its_events(tmp_path: Path) -> None:
    segs = _store(tmp_path / "s")
    with cl.EventStore.open(tmp_path / "s", readonly=True) as r:
        kept = sum(1 for _ in r.read_all())
    os.unlink(segs[-1])
    err = _refused(tmp_path / "s", 40 - int(segs[-1].name[:20]))
    assert Path(err.path).name == segs[-2].name and kept == 40


@pytest.mark.parametrize("cut,missing", [(1, 1), (100, 1), (324, 1), (325, 2)])
def test_a_newest_segment_truncated_into_checkpointed_frames_is_refused_and_not_cut(
        tmp_path: Path, cut: int, missing: int) -> None:
    segs = _store(tmp_path / "s")  # (frames of one event: 324 bytes each)
    os.truncate(segs[-1], segs[-1].stat().st_size - cut)
    err = _refused(tmp_path / "s", missing)
    assert Path(err.path).name == segs[-1].name


@pytest.mark.parametrize("keep", [0, 42, 64])
def test_a_newest_segment_cut_into_its_header_is_refused_and_kept(tmp_path: Path, keep: int) -> None:
    """Only its header left (or part of it): the open takes it for a segment a crash tore while
    creating it, which holds no frame and which the writer removes, but the checkpoint says its
    events were acknowledged: the open refuses and the file stays, for repair to keep. (The
    removal once came first, then the refusal.)"""
    segs = _store(tmp_path / "s")
    os.truncate(segs[-1], keep)
    err = _refused(tmp_path / "s", 40 - int(segs[-1].name[:20]))
    assert Path(err.path).name == segs[-2 if keep < 64 else -1].name  # (a whole header: attached)
    assert segs[-1].stat().st_size == keep


def test_a_flipped_byte_in_the_last_checkpointed_frame_is_refused_not_cut_as_a_torn_tail(
        tmp_path: Path) -> None:
    # In its trailer: the frame the checkpoint ends in no longer checks, so the open rebuilds
    # from the segments and meets it as the end of the newest segment.
    segs = _store(tmp_path / "s")
    size = _flip(segs[-1], -3)
    err = _refused(tmp_path / "s", 1)
    assert err.offset == size - 324


def test_a_flipped_byte_inside_a_checkpointed_frame_is_found_when_read_and_by_verify(
        tmp_path: Path) -> None:
    # In its body: the open trusts the checkpoint (it reads only the tail), the read checks
    # the record's CRC.
    segs = _store(tmp_path / "s")
    _flip(segs[-1], -40)
    with cl.EventStore.open(tmp_path / "s") as s:
        assert s.head == 40
        with pytest.raises(cl.CorruptionError):
            list(s.read_all(from_position=39))
        assert s.verify()["ok"] is False


def test_a_store_whose_segments_are_all_gone_is_refused_and_no_segment_is_made(tmp_path: Path) -> None:
    for seg in _store(tmp_path / "s"):
        os.unlink(seg)
    _refused(tmp_path / "s", 40)
    assert not list((tmp_path / "s").glob("*.seg"))


def test_deleting_index_opens_what_is_left_and_appends_after_it(tmp_path: Path) -> None:
    segs = _store(tmp_path / "s")
    os.unlink(segs[-1])
    shutil.rmtree(tmp_path / "s" / "index")
    first = int(segs[-1].name[:20])
    with cl.EventStore.open(tmp_path / "s") as s:
        assert s.head == first and s.verify()["ok"]
        assert s.append("after", [cl.NewEvent("T", b"")]).first_position == first


def test_events_past_the_checkpoint_are_still_a_tail_recovery_may_cut(tmp_path: Path) -> None:
    # The floor is the checkpoint, not the log: frames written after it (here a tail close
    # leaves to the next open; or frames never synced) may be torn and are cut as before.
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os") as s:
        s.append_batch([f"s-{i % 50}" for i in range(300)], ["T"] * 300, [b"x"] * 300)
    with cl.EventStore.open(path, durability="os") as s:
        s.append("late", [cl.NewEvent("T", b"y" * 50)])
    with cl.EventStore.open(path, readonly=True) as r:
        assert r._log.checkpoint_through == 300  # type: ignore[attr-defined]
    seg = max(path.glob("*.seg"))
    os.truncate(seg, seg.stat().st_size - 10)
    with cl.EventStore.open(path) as s:
        assert s.head == 300 and s.stream_version("late") is None


@pytest.mark.parametrize("backwards", [False, True])
def test_read_all_delivers_every_good_event_before_a_damaged_one_then_raises(
        tmp_path: Path, backwards: bool) -> None:
    # read_all reads 4,096 positions at a time: damage at position 20 must not hide 0..19
    # (or, backwards, 39..21) behind the error.
    segs = _store(tmp_path / "s")
    seg = next(s for s in segs if int(s.name[:20]) <= 20 < int(s.name[:20]) + 12)
    _flip(seg, 64 + 324 * (20 - int(seg.name[:20])) + 100)  # inside event 20's record
    got = []
    with cl.EventStore.open(tmp_path / "s") as s, pytest.raises(cl.CorruptionError):
        for e in s.read_all(backwards=backwards):
            got.append(e.position)
    assert got == (list(range(39, 20, -1)) if backwards else list(range(20)))


@pytest.mark.parametrize("readonly", [False, True], ids=["writer", "reader"])
def test_a_subscription_delivers_every_good_event_before_a_damaged_one_then_raises(
        tmp_path: Path, readonly: bool) -> None:
    # A subscription reads its history in chunks of up to 4,096 events: damage at position 20
    # hid 0..19 behind the error (`chronolog tail --from 0` printed nothing).
    segs = _store(tmp_path / "s")
    seg = next(s for s in segs if int(s.name[:20]) <= 20 < int(s.name[:20]) + 12)
    _flip(seg, 64 + 324 * (20 - int(seg.name[:20])) + 100)  # inside event 20's record
    got = []
    with cl.EventStore.open(tmp_path / "s", readonly=readonly) as s:
        sub = s.subscribe(0, timeout=0.2)
        with pytest.raises(cl.CorruptionError):
            for e in sub:
                got.append(e.position)
        sub.close()
    assert got == list(range(20))


@pytest.mark.parametrize("readonly", [True, False])
def test_verify_reports_events_missing_below_the_checkpoint(tmp_path: Path, readonly: bool) -> None:
    # A reader opens such a store (it cannot tell a writer's roll from a loss at open), but
    # verify() holds it to the checkpoint's count, as the writer's open does; so does the CLI.
    from chronolog.cli.main import main

    segs = _store(tmp_path / "s")
    os.unlink(segs[-1])
    if not readonly:  # the writer refuses; what verify says of what is left after salvage
        cl.repair(tmp_path / "s", salvage=True)
    with cl.EventStore.open(tmp_path / "s", readonly=True) as r:
        report = r.verify()
    if readonly:
        assert report["ok"] is False and report["events"] == 36
        assert "the segments hold 36 events, but the index checkpoint records 40" in \
            report["problems"][0]["reason"]
        assert main(["verify", str(tmp_path / "s")]) == 1
    else:
        assert report["ok"] is True and report["events"] == 36
        assert main(["verify", str(tmp_path / "s")]) == 0


def test_verify_by_readers_opened_while_a_writer_rolls_segments_finds_nothing_missing(
        tmp_path: Path) -> None:
    # A reader opened between a roll's checkpoint and the writer's next visibility mark lags
    # the checkpoint's count for a moment: verify waits for it rather than report a loss.
    import threading
    import time

    path = tmp_path / "s"
    stop = threading.Event()
    with cl.EventStore.open(path, max_segment_bytes=4096) as w:  # "fsync": the mark lags
        def write() -> None:
            i = 0
            while not stop.is_set():
                w.append_batch([f"s-{i % 3}"] * 4, ["T"] * 4, [b"x" * 100] * 4)
                i += 1
        t = threading.Thread(target=write)
        t.start()
        try:
            while w.head < 100:  # a few rolls behind it before the first reader
                time.sleep(0.005)
            reports = []
            for _ in range(30):
                with cl.EventStore.open(path, readonly=True) as r:
                    reports.append(r.verify())
        finally:
            stop.set()
            t.join()
    assert [r["problems"] for r in reports if not r["ok"]] == []
    assert reports[0]["events"] >= 100 and reports[-1]["events"] > reports[0]["events"]
