"""Trained zstd dictionaries: stored as primary files, named by every frame that uses them;
a missing, damaged or substituted dictionary file reads as CorruptionError, never as garbage."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from _frames import (
    CODEC_ZSTD,
    DICT_HEADER_BYTES,
    compressed_frames,
    dictionary_data,
    dictionary_path,
    frames,
    write_dictionary_file,
)

import chronolog as cl
from chronolog.errors import StoreFailedError


def _rows(rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    return [(f"order-{rng.randrange(30)}",
             json.dumps({"sku": f"SKU-{rng.randrange(500)}", "qty": rng.randrange(9),
                         "price": rng.randrange(10**5) / 100, "currency": "EUR"}).encode())
            for _ in range(n)]


def _append_one_by_one(store: cl.EventStore, rows: list[tuple[str, bytes]]) -> None:
    for stream, data in rows:
        store.append(stream, [cl.NewEvent("ItemAdded", data)])


@pytest.fixture(scope="module")
def two_dictionaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed zstd store: 1,500 events without a dictionary, 300 single-event appends with
    dictionary 1, 300 with dictionary 2."""
    path = tmp_path_factory.mktemp("dicts") / "store"
    rng = random.Random(23)
    with cl.EventStore.open(path, durability="os", compression="zstd") as store:
        rows = _rows(rng, 1500)
        store.append_batch([s for s, _ in rows], ["ItemAdded"] * len(rows), [d for _, d in rows])
        assert store.train_dictionary(sample_events=1500, dict_bytes=2048) == 1
        _append_one_by_one(store, _rows(rng, 300))
        assert store.train_dictionary(sample_events=1800, dict_bytes=4096) == 2
        _append_one_by_one(store, _rows(rng, 300))
    return path


def _everything(path: Path) -> list[tuple[int, str, int, bytes, int]]:
    with cl.EventStore.open(path, readonly=True) as store:
        return [(e.position, e.stream, e.version, e.data, e.timestamp) for e in store.read_all()]


def _dictionary_ids_in_frames(path: Path) -> set[int]:
    return {f.dict_id for seg in path.glob("*.seg") for f in compressed_frames(seg)}


def test_frames_name_the_dictionary_they_were_compressed_with(two_dictionaries):
    assert _dictionary_ids_in_frames(two_dictionaries) == {0, 1, 2}


def test_a_dictionary_file_is_primary_data_with_a_checked_header(two_dictionaries):
    raw = dictionary_path(two_dictionaries, 1).read_bytes()
    assert raw[:8] == b"CHLZDICT"
    assert len(raw) > DICT_HEADER_BYTES


def test_single_event_appends_compress_better_with_a_dictionary(tmp_path):
    rng = random.Random(5)
    rows = _rows(rng, 400)
    ratios = {}
    for trained in (False, True):
        path = tmp_path / f"s{trained}"
        with cl.EventStore.open(path, durability="os", compression="zstd") as store:
            store.append_batch([s for s, _ in rows], ["ItemAdded"] * 400, [d for _, d in rows])
            if trained:
                store.train_dictionary(sample_events=400, dict_bytes=2048)
            before = store.stats()
            _append_one_by_one(store, _rows(rng, 200))
            after = store.stats()
        ratios[trained] = ((after["decoded_frame_bytes"] - before["decoded_frame_bytes"])
                           / (after["stored_frame_bytes"] - before["stored_frame_bytes"]))
    assert ratios[True] > ratios[False]


def test_reopening_with_compression_keeps_using_the_newest_dictionary(two_dictionaries, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(two_dictionaries, path)
    with cl.EventStore.open(path, durability="os", compression="zstd") as store:
        store.append("order-x", [cl.NewEvent("ItemAdded", b'{"sku": "SKU-1", "qty": 1}')])
    last = compressed_frames(max(path.glob("*.seg")))[-1]
    assert last.dict_id == 2


def test_reopening_without_compression_writes_plain_frames(two_dictionaries, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(two_dictionaries, path)
    with cl.EventStore.open(path, durability="os") as store:
        store.append("order-x", [cl.NewEvent("ItemAdded", b'{"sku": "SKU-1", "qty": 1}' * 30)])
    assert frames(max(path.glob("*.seg")))[-1].codec == 0
    assert _everything(path)[:-1] == _everything(two_dictionaries)


def test_train_dictionary_on_a_store_without_compression_is_refused(store):
    store.append_batch(["s"] * 100, ["T"] * 100, [b'{"a": %d}' % i for i in range(100)])
    with pytest.raises(cl.errors.InvalidArgumentError, match="compression"):
        store.train_dictionary()


def test_train_dictionary_on_a_read_only_handle_is_refused(two_dictionaries):
    with cl.EventStore.open(two_dictionaries, readonly=True) as store, \
            pytest.raises(cl.errors.ReadOnlyError):
        store.train_dictionary()


def test_train_dictionary_on_too_few_events_is_refused_and_stores_nothing(open_store, store_path):
    store = open_store(compression="zstd")
    store.append("s", [cl.NewEvent("T", b"{}")])
    with pytest.raises(cl.errors.InvalidArgumentError, match="train"):
        store.train_dictionary()
    assert not list(store_path.glob("zstd-*.dict*"))


# ---------------------------------------------------------------------- damaged dictionaries

def _remove(path: Path, dict_id: int) -> None:
    dictionary_path(path, dict_id).unlink()


def _flip_a_dictionary_byte(path: Path, dict_id: int) -> None:
    p = dictionary_path(path, dict_id)
    raw = bytearray(p.read_bytes())
    raw[DICT_HEADER_BYTES + len(raw) // 3] ^= 0x10
    p.write_bytes(bytes(raw))


def _flip_a_header_byte(path: Path, dict_id: int) -> None:
    p = dictionary_path(path, dict_id)
    raw = bytearray(p.read_bytes())
    raw[17] ^= 0x01
    p.write_bytes(bytes(raw))


def _truncate(path: Path, dict_id: int) -> None:
    p = dictionary_path(path, dict_id)
    p.write_bytes(p.read_bytes()[: DICT_HEADER_BYTES + 100])


def _empty(path: Path, dict_id: int) -> None:
    dictionary_path(path, dict_id).write_bytes(b"")


def _substitute_the_other_dictionary(path: Path, dict_id: int) -> None:
    """A well-formed file (every header check passes) holding the other trained dictionary."""
    other = dictionary_data(dictionary_path(path, 3 - dict_id))
    write_dictionary_file(dictionary_path(path, dict_id), dict_id, other)


def _substitute_raw_content(path: Path, dict_id: int) -> None:
    """A well-formed file whose content is not a trained dictionary (zstd takes it as raw
    content)."""
    write_dictionary_file(dictionary_path(path, dict_id), dict_id, b'{"sku": "SKU-' * 200)


DICTIONARY_DAMAGE = {
    "missing": _remove,
    "a flipped content byte": _flip_a_dictionary_byte,
    "a flipped header byte": _flip_a_header_byte,
    "truncated": _truncate,
    "empty": _empty,
    "the other dictionary in a well-formed file": _substitute_the_other_dictionary,
    "raw content in a well-formed file": _substitute_raw_content,
}


def _read_all(path: Path) -> object:
    with cl.EventStore.open(path, readonly=True) as store:
        return list(store.read_all())


def _read_stream(path: Path) -> object:
    with cl.EventStore.open(path, readonly=True) as store:
        return [store.read_stream(s) for s in store.streams()]


def _scan_table(path: Path) -> object:
    with cl.EventStore.open(path, readonly=True) as store:
        return store.scan_table()


def _rebuild_the_index(path: Path) -> object:
    shutil.rmtree(path / "index")
    with cl.EventStore.open(path, durability="os") as store:
        return list(store.read_all())


DICTIONARY_READERS = {
    "read_all": _read_all,
    "read_stream": _read_stream,
    "scan_table": _scan_table,
    "open rebuilding the index": _rebuild_the_index,
}


@pytest.mark.parametrize("reader", list(DICTIONARY_READERS))
@pytest.mark.parametrize("damage", list(DICTIONARY_DAMAGE))
def test_a_damaged_dictionary_reads_as_corruption_error(two_dictionaries, tmp_path, damage,
                                                        reader):
    path = tmp_path / "s"
    shutil.copytree(two_dictionaries, path)
    DICTIONARY_DAMAGE[damage](path, 1)
    with pytest.raises(cl.CorruptionError):
        DICTIONARY_READERS[reader](path)


@pytest.mark.parametrize("damage", list(DICTIONARY_DAMAGE))
def test_verify_reports_a_damaged_dictionary(two_dictionaries, tmp_path, damage):
    path = tmp_path / "s"
    shutil.copytree(two_dictionaries, path)
    DICTIONARY_DAMAGE[damage](path, 1)
    with cl.EventStore.open(path, readonly=True) as store:
        report = store.verify()
    assert not report["ok"]


@pytest.mark.parametrize("damage", ["missing", "a flipped content byte"])
def test_frames_without_a_dictionary_stay_readable_when_a_dictionary_is_damaged(
    two_dictionaries, tmp_path, damage
):
    path = tmp_path / "s"
    shutil.copytree(two_dictionaries, path)
    DICTIONARY_DAMAGE[damage](path, 1)
    with cl.EventStore.open(path, readonly=True) as store:
        got = [(e.position, e.data) for e in store.read_all(limit=1500)]
    assert got == [(p, d) for p, _, _, d, _ in _everything(two_dictionaries)[:1500]]


def test_a_frame_stripped_of_its_dictionary_id_reads_as_corruption_error(two_dictionaries,
                                                                          tmp_path):
    from _frames import edit_frame

    path = tmp_path / "s"
    shutil.copytree(two_dictionaries, path)
    victim = next((seg, f) for seg in sorted(path.glob("*.seg")) for f in compressed_frames(seg)
                  if f.dict_id == 1 and f.codec == CODEC_ZSTD)
    edit_frame(*victim, dict_id=0)
    with pytest.raises(cl.CorruptionError):
        _read_all(path)


def test_opening_for_writes_with_a_damaged_newest_dictionary_is_refused(two_dictionaries,
                                                                         tmp_path):
    path = tmp_path / "s"
    shutil.copytree(two_dictionaries, path)
    _flip_a_dictionary_byte(path, 2)
    with pytest.raises(cl.CorruptionError):
        cl.EventStore.open(path, durability="os", compression="zstd")


@pytest.mark.parametrize("op", ["write", "fsync", "rename", "fsync_dir"])
def test_a_failed_dictionary_write_raises_and_leaves_no_dictionary_in_use(tmp_path, op):
    # The dictionary file is written through the store's FileIO: a fault at any step raises,
    # and the store keeps compressing with what it had (nothing half-written is used).
    from chronolog._core.fileio import FileIO
    io = FileIO()
    store = cl.EventStore.open(tmp_path / "s", durability="os", compression="zstd", io=io)
    _append_one_by_one(store, _rows(random.Random(5), 400))
    io.inject(op)
    with pytest.raises(StoreFailedError, match="train_dictionary could not store the dictionary"):
        store.train_dictionary()
    left = list((tmp_path / "s").glob("zstd-*.dict"))
    if op != "fsync_dir":  # renamed before the directory sync failed: the file is whole
        assert not left
    store.append("s", [cl.NewEvent("T", b'{"after": true}')])
    assert store.read_stream("s")[-1].data == b'{"after": true}'
    # The next training never writes over a file an earlier one left (dictionary files are
    # never rewritten): after the failed directory sync it takes id 2.
    before = {p.name: p.read_bytes() for p in left}
    assert store.train_dictionary() == 2  # (ids only grow: one tried is never taken again)
    assert {p.name: p.read_bytes() for p in left} == before
    store.close()
    with cl.EventStore.open(tmp_path / "s") as again:
        assert again.verify()["ok"] is True


def test_a_lost_dictionary_file_never_has_its_id_handed_out_again(tmp_path):
    # Dictionary 1 lost (moved away) after one frame used it; the writer goes on and trains
    # again (its sample misses that frame). The new dictionary must not be id 1, or that frame
    # could never be read, not even once the lost file is restored from a backup: ids come
    # from the frames too, not the files alone.
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os", compression="zstd") as store:
        rows = _rows(random.Random(3), 1500)
        store.append_batch([s for s, _ in rows], ["ItemAdded"] * len(rows), [d for _, d in rows])
        assert store.train_dictionary(sample_events=1500, dict_bytes=2048) == 1
        _append_one_by_one(store, _rows(random.Random(4), 1))  # position 1500, dictionary 1
    before = _everything(path)
    backup = tmp_path / "zstd-00000001.dict.backup"
    (path / "zstd-00000001.dict").rename(backup)
    with cl.EventStore.open(path, durability="os", compression="zstd") as store:
        _append_one_by_one(store, _rows(random.Random(7), 300))
        # 100 samples of 1,801 positions (i * 1801 // 100) skip position 1500
        assert store.train_dictionary(sample_events=100, dict_bytes=2048) == 2
        _append_one_by_one(store, _rows(random.Random(8), 50))
    assert _dictionary_ids_in_frames(path) == {0, 1, 2}  # (0: compressed without one)
    shutil.copyfile(backup, path / "zstd-00000001.dict")
    assert _everything(path)[:len(before)] == before
    with cl.EventStore.open(path, readonly=True) as store:
        assert store.verify()["ok"] is True
