"""`chronolog repair`: without --salvage it rebuilds the indexes of a sound store and refuses
(exit 1, nothing changed) a damaged one; with --salvage it keeps the events before the damage
and moves everything after it, byte for byte, into salvage-<time>/ with a log."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chronolog as cl
from chronolog.cli.main import main


def _store(path: Path) -> list[Path]:
    """A closed store of 40 events (frames of 324 bytes) over 4 KiB segments: 12 per segment."""
    with cl.EventStore.open(path, max_segment_bytes=4096) as s:
        for i in range(40):
            s.append(f"order-{i % 4}", [cl.NewEvent("T", b"%03d" % i + b"x" * 197)])
    return sorted(path.glob("*.seg"))


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file() and p.name != "LOCK"}


def _events(path: Path) -> list[bytes]:
    with cl.EventStore.open(path, readonly=True) as r:
        assert r.verify()["ok"]
        return [e.data[:3] for e in r.read_all()]


def _flip(seg: Path, at: int) -> None:
    raw = bytearray(seg.read_bytes())
    raw[at] ^= 0x01
    seg.write_bytes(bytes(raw))


def test_repair_of_a_sound_store_rebuilds_its_indexes_and_changes_no_segment(tmp_path, capsys) -> None:
    path = tmp_path / "s"
    _store(path)
    before = {n: b for n, b in _files(path).items() if n.endswith(".seg")}
    (path / "index" / "streams.idx").write_bytes(b"stale junk")
    assert main(["repair", str(path)]) == 0
    assert "OK: 40 events check; indexes rebuilt" in capsys.readouterr().out
    assert {n: b for n, b in _files(path).items() if n.endswith(".seg")} == before
    assert (path / "index" / "streams.idx").read_bytes()[:8] == b"CHLSIDX5"
    assert _events(path) == [b"%03d" % i for i in range(40)]


@pytest.mark.parametrize("damage", ["sealed-frame", "newest-segment-gone"])
def test_repair_without_salvage_refuses_damage_and_changes_nothing(tmp_path, capsys, damage) -> None:
    path = tmp_path / "s"
    segs = _store(path)
    if damage == "sealed-frame":
        _flip(segs[1], 64 + 324 + 100)
    else:
        segs[-1].unlink()
    before = _files(path) | {f"index/{p.name}": p.read_bytes() for p in (path / "index").iterdir()}
    assert main(["repair", str(path)]) == 1
    err = capsys.readouterr().err
    assert "repair changed nothing" in err and "chronolog repair --salvage" in err
    assert _files(path) | {f"index/{p.name}": p.read_bytes() for p in (path / "index").iterdir()} == before


def test_salvage_keeps_the_events_before_damage_in_a_sealed_segment_and_moves_the_rest_aside(
        tmp_path, capsys) -> None:
    path = tmp_path / "s"
    segs = _store(path)
    original = {p.name: p.read_bytes() for p in segs}
    _flip(segs[1], 64 + 324 + 100)  # the second frame of the second segment: event 13
    assert main(["repair", str(path), "--salvage"]) == 0
    assert "salvaged: 13 events kept" in capsys.readouterr().out
    assert _events(path) == [b"%03d" % i for i in range(13)]
    (aside,) = path.glob("salvage-*")
    cut = original[segs[1].name][: 64 + 324]
    assert segs[1].read_bytes() == cut
    assert (aside / f"{segs[1].name}.from-{64 + 324}").read_bytes() == \
        bytes(_flipped(original[segs[1].name], 64 + 324 + 100))[64 + 324:]
    for seg in segs[2:]:
        assert (aside / seg.name).read_bytes() == original[seg.name]
    log = (aside / "repair.log").read_text()
    assert "frame body CRC32C mismatch" in log and "the store opens with 13 events" in log
    with cl.EventStore.open(path) as s:  # the store goes on from there
        assert s.append("after", [cl.NewEvent("T", b"new")]).first_position == 13


def _flipped(raw: bytes, at: int) -> bytearray:
    out = bytearray(raw)
    out[at] ^= 0x01
    return out


def test_salvage_of_a_store_that_lost_its_newest_segment_opens_what_is_left(tmp_path) -> None:
    path = tmp_path / "s"
    segs = _store(path)
    segs[-1].unlink()
    with pytest.raises(cl.CorruptionError):
        cl.EventStore.open(path)
    result = cl.repair(path, salvage=True)
    assert result["events"] == 36 and _events(path) == [b"%03d" % i for i in range(36)]
    assert any("4 acknowledged events are missing" in step for step in result["salvaged"])


def test_two_salvages_in_the_same_second_keep_what_each_cut_apart(tmp_path) -> None:
    path = tmp_path / "s"
    segs = _store(path)
    _flip(segs[2], 64 + 100)
    first = cl.repair(path, salvage=True)
    _flip(segs[1], 64 + 100)
    second = cl.repair(path, salvage=True)
    assert (first["events"], second["events"]) == (24, 12)
    assert first["salvage_dir"] != second["salvage_dir"]
    assert Path(first["salvage_dir"], f"{segs[2].name}.from-64").exists()
    assert Path(second["salvage_dir"], f"{segs[1].name}.from-64").exists()


def test_salvage_of_a_damaged_segment_header_moves_the_whole_segment_aside(tmp_path) -> None:
    path = tmp_path / "s"
    segs = _store(path)
    _flip(segs[2], 10)
    result = cl.repair(path, salvage=True)
    assert result["events"] == 24 and _events(path) == [b"%03d" % i for i in range(24)]
    aside = Path(result["salvage_dir"])
    assert sorted(p.name for p in aside.glob("*.seg")) == [s.name for s in segs[2:]]


def test_repair_refuses_a_store_with_a_writer_and_a_directory_without_a_store(tmp_path) -> None:
    path = tmp_path / "s"
    _store(path)
    with cl.EventStore.open(path), pytest.raises(cl.StoreLockedError):
        cl.repair(path, salvage=True)
    with pytest.raises(cl.errors.StoreNotFoundError):
        cl.repair(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    assert not list(path.glob("salvage-*"))
    (path / "chronolog.store").unlink()  # segments without their header
    with pytest.raises(cl.CorruptionError, match="the store header is missing"):
        cl.repair(path, salvage=True)
    assert not list(path.glob("salvage-*")) and not (path / "chronolog.store").exists()
    shutil.rmtree(path)
    os.makedirs(path)
    with pytest.raises(cl.errors.StoreNotFoundError):
        cl.repair(path, salvage=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seg_index=st.integers(0, 3), where=st.floats(0, 1), action=st.sampled_from(["flip", "truncate", "delete"]))
def test_salvage_of_any_damage_keeps_a_prefix_of_the_events_and_every_byte(
        tmp_path_factory, seg_index, where, action) -> None:
    path = tmp_path_factory.mktemp("salvage") / "s"
    segs = _store(path)
    original = [b"%03d" % i for i in range(40)]
    seg = segs[seg_index]
    raw = bytearray(seg.read_bytes())
    at = min(len(raw) - 1, int(where * len(raw)))
    if action == "flip":
        raw[at] ^= 0x40
        seg.write_bytes(bytes(raw))
    elif action == "truncate":
        del raw[at:]
        seg.write_bytes(bytes(raw))
    else:
        seg.unlink()
    damaged = {p.name: p.read_bytes() for p in segs if p.exists()}
    result = cl.repair(path, salvage=True)
    kept = _events(path)
    assert kept == original[: len(kept)] and result["events"] == len(kept)
    aside = Path(result["salvage_dir"]) if result["salvage_dir"] else None
    for name, data in damaged.items():  # every byte of every segment is somewhere
        # its head: moved aside whole, or still in the store (the store may also have begun a
        # new, empty segment of that name after moving it); then the part cut from it
        head = aside / name if aside is not None and (aside / name).exists() else path / name
        pieces = sorted(aside.glob(f"{name}.from-*")) if aside is not None else []
        whole = (head.read_bytes() if head.exists() else b"") + b"".join(p.read_bytes() for p in pieces)
        before = aside / f"{name}.before-repair" if aside is not None else None
        assert whole == data or (before is not None and before.exists()
                                 and before.read_bytes() == data), name


@pytest.mark.parametrize("salvage", [False, True], ids=["repair", "salvage"])
def test_repair_of_a_store_missing_a_dictionary_changes_nothing_and_says_to_restore_it(
        tmp_path, capsys, salvage) -> None:
    # The frames are whole; they need a dictionary file. Salvage once deleted index/ and then
    # refused, and the store no longer opened at all (rebuilding the index decodes every frame).
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os", compression="zstd") as s:
        for i in range(600):
            s.append(f"order-{i % 10}", [cl.NewEvent("T", b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i % 40)))])
        assert s.train_dictionary(sample_events=600, dict_bytes=2048) == 1
        for i in range(50):
            s.append(f"late-{i % 3}", [cl.NewEvent("T", b'{"n": %d, "pad": "%s"}' % (i, b"x" * 30))])
    lost = tmp_path / "zstd-00000001.dict"
    (path / "zstd-00000001.dict").rename(lost)
    def state() -> dict[str, bytes]:  # (index/visible, the readers' mark, is the open's)
        return _files(path) | {f"index/{p.name}": p.read_bytes()
                               for p in (path / "index").iterdir() if p.name != "visible"}

    before = state()
    assert main(["repair", str(path)] + (["--salvage"] if salvage else [])) == 1
    err = capsys.readouterr().err
    assert "needs zstd dictionary 1, which is missing" in err and "changed nothing" in err
    assert "Restore the store's zstd-<id>.dict files from a backup" in err
    assert "keeps everything before the damage" not in err
    assert state() == before
    with cl.EventStore.open(path, readonly=True) as r:
        assert r.head == 650 and len(list(r.read_all(limit=600))) == 600  # still opens and reads
    lost.rename(path / "zstd-00000001.dict")
    assert main(["repair", str(path)]) == 0
