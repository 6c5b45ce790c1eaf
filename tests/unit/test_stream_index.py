"""The stream checkpoint (index/streams.idx) is the stream hash index itself, mapped on open
and probed in place: reopening answers as before for many streams, for streams created after
a checkpoint, across several checkpoints of one handle and with streams left empty by refused
batches; a damaged or inconsistent file (even one whose CRCs were recomputed to match) is
rebuilt from the segments with identical answers and never crashes the process."""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import chronolog as cl
from chronolog._core.crc import crc32c

N_STREAMS = 1500  # base table of 4096 slots, memory table grown past its first 1024
HEADER = 64
RECORD = 32
CHUNK = 1024          # directory records per chunk
CHUNK_RECORD = 16     # bytes per chunk table entry
SLOT_BLOCK = 16384    # slots per slot CRC


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


def _fill(store: cl.EventStore, names: list[str], rounds: int = 2) -> None:
    """`rounds` events in every stream, the streams interleaved (one batch per round)."""
    for r in range(rounds):
        store.append_batch(names, ["T"] * len(names), [b"%d" % r] * len(names))


def _answers(store: cl.EventStore) -> dict[str, Any]:
    """What a reader observes of the stream index (every stream, its version and events)."""
    streams = store.streams()
    return {
        "head": store.head,
        "streams": streams,
        "count": store.stats()["streams"],
        "versions": [store.stream_version(s) for s in streams],
        "events": [[(e.position, e.version, e.data) for e in store.read_stream(s)]
                   for s in streams],
    }


def _layout(raw: bytes) -> dict[str, int]:
    """Offsets of the parts of a streams.idx file (checkpoint.pyx docstring)."""
    n = struct.unpack_from("<Q", raw, 40)[0]
    names_bytes = struct.unpack_from("<I", raw, 48)[0]
    slots = 8
    while slots < 2 * n:
        slots *= 2
    blocks = (slots + SLOT_BLOCK - 1) // SLOT_BLOCK
    slot_crcs = HEADER + 4 * slots
    chunks = slot_crcs + (4 * blocks + 7) // 8 * 8
    n_chunks = (n + CHUNK - 1) // CHUNK
    directory = chunks + CHUNK_RECORD * n_chunks
    names = directory + RECORD * n
    return {"n": n, "slots": slots, "blocks": blocks, "slot_crcs": slot_crcs,
            "chunks": chunks, "n_chunks": n_chunks,
            "directory": directory, "names": names, "names_end": names + names_bytes}


def _reseal(raw: bytearray) -> bytes:
    """Recompute every CRC (each slot block's, each chunk's, the tables', the header's) so that
    only the checks of content remain."""
    lay = _layout(bytes(raw))
    for b in range(lay["blocks"]):
        i0, i1 = b * SLOT_BLOCK, min(lay["slots"], (b + 1) * SLOT_BLOCK)
        struct.pack_into("<I", raw, lay["slot_crcs"] + 4 * b,
                         crc32c(bytes(raw[HEADER + 4 * i0:HEADER + 4 * i1])))
    names_bytes = lay["names_end"] - lay["names"]
    for c in range(lay["n_chunks"]):
        entry = lay["chunks"] + CHUNK_RECORD * c
        name0 = struct.unpack_from("<I", raw, entry + 8)[0]
        name1 = (struct.unpack_from("<I", raw, entry + CHUNK_RECORD + 8)[0]
                 if c + 1 < lay["n_chunks"] else names_bytes)
        i0, i1 = c * CHUNK, min(lay["n"], (c + 1) * CHUNK)
        covered = bytes(raw[lay["directory"] + RECORD * i0:lay["directory"] + RECORD * i1]) \
            + bytes(raw[lay["names"] + name0:lay["names"] + name1])
        struct.pack_into("<I", raw, entry + 12, crc32c(covered))
    struct.pack_into("<I", raw, 52, crc32c(bytes(raw[lay["slot_crcs"]:lay["directory"]])))
    struct.pack_into("<I", raw, 60, crc32c(bytes(raw[:60])))
    return bytes(raw)


@pytest.fixture
def closed_store(open_store: Callable[..., cl.EventStore], store_path: Path) -> dict[str, Any]:
    """A cleanly closed store of N_STREAMS streams: its answers and its checkpoint bytes."""
    s = open_store()
    _fill(s, _names("s", N_STREAMS))
    answers = _answers(s)
    s.close()
    return {"answers": answers, "raw": (store_path / "index" / "streams.idx").read_bytes()}


def test_the_checkpoint_holds_a_hash_table_of_twice_the_streams(
        closed_store: dict[str, Any]) -> None:
    raw = closed_store["raw"]
    lay = _layout(raw)
    assert raw[:8] == b"CHLSIDX5"
    assert lay["n"] == N_STREAMS and lay["slots"] == 4096
    slots = struct.unpack_from(f"<{lay['slots']}I", raw, HEADER)
    assert sorted(v for v in slots if v) == list(range(1, N_STREAMS + 1))


def test_reopening_a_store_of_many_streams_answers_as_before(
        closed_store: dict[str, Any], open_store: Callable[..., cl.EventStore]) -> None:
    assert _answers(open_store()) == closed_store["answers"]


def test_streams_created_after_the_checkpoint_are_found_with_the_checkpointed_ones(
        closed_store: dict[str, Any], open_store: Callable[..., cl.EventStore]) -> None:
    s = open_store()
    late = _names("late", 1200)
    _fill(s, late, rounds=1)
    _fill(s, _names("s", N_STREAMS)[::7] + late[::5], rounds=1)
    assert s.stream_version("s-00000") == 2 and s.stream_version("late-00000") == 1
    assert s.stream_version("late-00001") == 0 and s.stream_version("nope") is None
    before = _answers(s)
    assert len(before["streams"]) == N_STREAMS + 1200
    s.close()
    assert _answers(open_store()) == before


def test_several_checkpoints_of_one_handle_keep_every_stream_as_appended(
        open_store: Callable[..., cl.EventStore]) -> None:
    s = open_store()
    expected: dict[str, int] = {}
    for k in range(4):
        batch = _names(f"c{k}", 400) + _names("c0", 400)[k::4]
        _fill(s, batch, rounds=1)
        for name in batch:
            expected[name] = expected.get(name, 0) + 1
        s.checkpoint()
        assert {n: s.stream_version(n) + 1 for n in expected} == expected
    before = _answers(s)
    s.close()
    assert _answers(open_store()) == before


def test_a_stream_left_empty_by_a_refused_batch_is_not_checkpointed(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    s = open_store()
    _fill(s, _names("a", 300), rounds=1)
    with pytest.raises(cl.WrongExpectedVersionError):
        s.append_batch(["ghost", "a-00001"], ["T", "T"], [b"", b""],
                       expected_versions={"a-00001": 5})
    _fill(s, _names("b", 300), rounds=1)  # ids after the empty stream's
    s.checkpoint()  # checkpoint directory indexes now differ from the ids
    _fill(s, ["ghost"] + _names("a", 300)[::3] + _names("b", 300)[::3], rounds=1)
    assert s.stream_version("ghost") == 0 and s.stream_version("b-00003") == 1
    before = _answers(s)
    s.close()
    assert _answers(open_store()) == before


def test_a_reopened_checkpoint_never_lists_a_stream_without_events(
        open_store: Callable[..., cl.EventStore]) -> None:
    s = open_store()
    _fill(s, _names("a", 50), rounds=1)
    with pytest.raises(cl.WrongExpectedVersionError):
        s.append_batch(["ghost", "a-00001"], ["T", "T"], [b"", b""],
                       expected_versions={"a-00001": 5})
    s.close()
    s = open_store()
    assert "ghost" not in s.streams() and s.stream_version("ghost") is None
    assert s.append("ghost", [cl.NewEvent("T", b"")]).next_version == 1


def _damaged(raw: bytes, how: str) -> bytes:
    lay = _layout(raw)
    b = bytearray(raw)
    slots = struct.unpack_from(f"<{lay['slots']}I", raw, HEADER)
    used = [i for i, v in enumerate(slots) if v]
    empty = [i for i, v in enumerate(slots) if not v]
    rec = lay["directory"] + RECORD * (lay["n"] // 2)  # a record in the middle
    if how == "slot-byte":
        b[HEADER + 4 * used[len(used) // 2]] ^= 0x01
    elif how == "directory-byte":
        b[rec + 8] ^= 0x04
    elif how == "name-byte":
        b[(lay["names"] + lay["names_end"]) // 2] ^= 0x20
    elif how == "slot-past-the-streams":
        struct.pack_into("<I", b, HEADER + 4 * used[0], lay["n"] + 1)
        return _reseal(b)
    elif how == "slot-table-full":
        for i in empty:
            struct.pack_into("<I", b, HEADER + 4 * i, 1)
        return _reseal(b)
    elif how == "slot-duplicated":
        struct.pack_into("<I", b, HEADER + 4 * empty[0], slots[used[0]])
        return _reseal(b)
    elif how == "empty-name":
        struct.pack_into("<I", b, rec + 28, 0)
        return _reseal(b)
    elif how == "name-too-long":
        struct.pack_into("<I", b, rec + 28, 2000)
        return _reseal(b)
    elif how == "name-past-the-names":
        struct.pack_into("<I", b, rec + 24, 0xFFFFFF00)
        return _reseal(b)
    elif how == "count-too-big":
        struct.pack_into("<Q", b, rec + 8, 1 << 62)
        return _reseal(b)
    elif how == "count-zero":
        struct.pack_into("<Q", b, rec + 8, 0)
        return _reseal(b)
    elif how == "first-past-the-positions":
        struct.pack_into("<Q", b, rec + 16, 1 << 40)
        return _reseal(b)
    elif how == "streams-overstated":
        struct.pack_into("<Q", b, 40, lay["n"] + 1)
        struct.pack_into("<I", b, 60, crc32c(bytes(b[:60])))
        return bytes(b)
    elif how == "through-understated":
        struct.pack_into("<Q", b, 32, struct.unpack_from("<Q", raw, 32)[0] - 1)
        struct.pack_into("<I", b, 60, crc32c(bytes(b[:60])))
        return bytes(b)
    else:
        raise AssertionError(how)
    return bytes(b)


DAMAGE = ["slot-byte", "directory-byte", "name-byte", "slot-past-the-streams",
          "slot-table-full", "slot-duplicated", "empty-name", "name-too-long",
          "name-past-the-names", "count-too-big", "count-zero", "first-past-the-positions",
          "streams-overstated", "through-understated"]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_stream_checkpoint_is_rebuilt_with_identical_answers(
        closed_store: dict[str, Any], open_store: Callable[..., cl.EventStore],
        store_path: Path, how: str) -> None:
    path = store_path / "index" / "streams.idx"
    path.write_bytes(_damaged(closed_store["raw"], how))
    s = open_store()
    assert _answers(s) == closed_store["answers"]
    assert s.stream_version("missing") is None
    assert s.verify()["ok"] is True
    assert s.append("s-00000", [cl.NewEvent("T", b"")]).next_version == 3
    s.close()
    assert path.read_bytes() != closed_store["raw"]  # a sound checkpoint, with the new event
    assert _answers(open_store())["versions"][0] == 2


def test_a_rebuilt_stream_checkpoint_is_byte_identical_to_the_original(
        closed_store: dict[str, Any], open_store: Callable[..., cl.EventStore],
        store_path: Path) -> None:
    # Chunks are checked when first read: a writer that reads the damaged one rebuilds the
    # indexes and writes a sound checkpoint at close.
    path = store_path / "index" / "streams.idx"
    path.write_bytes(_damaged(closed_store["raw"], "directory-byte"))
    s = open_store()
    assert _answers(s) == closed_store["answers"]
    s.close()
    assert path.read_bytes() == closed_store["raw"]


def test_a_checkpoint_of_the_previous_hash_format_is_rebuilt_not_trusted(
        closed_store: dict[str, Any], open_store: Callable[..., cl.EventStore],
        store_path: Path) -> None:
    # CHLSIDX2 files placed their slots by FNV-1a: probed with today's hash they would miss.
    path = store_path / "index" / "streams.idx"
    old = bytearray(closed_store["raw"])
    old[:8] = b"CHLSIDX2"
    path.write_bytes(_reseal(old))
    s = open_store()
    assert _answers(s) == closed_store["answers"]
    s.close()
    assert path.read_bytes() == closed_store["raw"]


def test_names_of_every_length_differing_in_one_byte_are_distinct_streams(
        open_store: Callable[..., cl.EventStore]) -> None:
    # Every length from 1 to 40 bytes (the hash reads 1-, 2-, 4- and 8-byte words and an
    # overlapping last word), each name changed at each of its byte positions.
    names = ["a" * n for n in range(1, 41)]
    names += ["a" * i + "b" + "a" * (n - i - 1) for n in range(1, 41) for i in range(n)]
    s = open_store()
    s.append_batch(names, ["T"] * len(names), [name.encode() for name in names])
    for reopened in (False, True):
        if reopened:
            s.close()
            s = open_store()
        assert len(s.streams()) == len(names)
        assert all([e.data for e in s.read_stream(name)] == [name.encode()] for name in names)


CONTENT_DAMAGE = ["directory-byte", "name-byte", "empty-name", "count-too-big", "count-zero",
                  "first-past-the-positions", "name-past-the-names", "slot-byte",
                  "slot-past-the-streams", "slot-table-full", "slot-duplicated"]


@pytest.mark.parametrize("how", CONTENT_DAMAGE)
def test_a_readonly_handle_answers_right_over_a_damaged_directory_chunk(
        closed_store: dict[str, Any], open_store: Callable[..., cl.EventStore],
        store_path: Path, how: str) -> None:
    # Open checks the slots and the chunk table only; the damaged chunk is found when a
    # lookup first reads it, and the answer comes from a rebuild, never from the damage.
    path = store_path / "index" / "streams.idx"
    path.write_bytes(_damaged(closed_store["raw"], how))
    s = open_store(readonly=True)
    middle = _names("s", N_STREAMS)[N_STREAMS // 2]
    assert [e.version for e in s.read_stream(middle)] == [0, 1]
    assert s.stream_version(middle) == 1
    assert _answers(s) == closed_store["answers"]
    assert path.read_bytes() == _damaged(closed_store["raw"], how)  # a reader writes nothing


@pytest.mark.parametrize("how", CONTENT_DAMAGE)
def test_the_first_append_over_a_damaged_directory_chunk_continues_the_stream(
        closed_store: dict[str, Any], open_store: Callable[..., cl.EventStore],
        store_path: Path, how: str) -> None:
    # Nothing read first: the append must not take a stream the damage hides for a new one.
    (store_path / "index" / "streams.idx").write_bytes(_damaged(closed_store["raw"], how))
    s = open_store()
    for name in _names("s", N_STREAMS)[N_STREAMS // 2 - 2:N_STREAMS // 2 + 3]:
        assert s.append(name, [cl.NewEvent("T", b"late")]).next_version == 3
    assert s.verify()["ok"] is True


@pytest.mark.parametrize("how", CONTENT_DAMAGE)
def test_the_first_append_batch_over_a_damaged_directory_chunk_continues_its_streams(
        closed_store: dict[str, Any], open_store: Callable[..., cl.EventStore],
        store_path: Path, how: str) -> None:
    # The batch's streams and the streams its expected_versions name (one outside the batch)
    # are all looked up before anything is decided from them.
    (store_path / "index" / "streams.idx").write_bytes(_damaged(closed_store["raw"], how))
    s = open_store()
    names = _names("s", N_STREAMS)
    batch = names[N_STREAMS // 2 - 2:N_STREAMS // 2 + 3] + ["brand-new"]
    expected = {name: 1 for name in names[N_STREAMS // 2 - 4:N_STREAMS // 2 + 3]}
    s.append_batch(batch, ["T"] * len(batch), [b"late"] * len(batch),
                   expected_versions={**expected, "brand-new": cl.NO_STREAM})
    assert [s.stream_version(name) for name in batch] == [2] * 5 + [0]
    assert s.stream_version(names[N_STREAMS // 2 - 4]) == 1
    assert s.verify()["ok"] is True


def test_the_first_append_to_a_store_of_many_streams_fills_only_the_entries_it_looks_up(
        tmp_path: Path) -> None:
    # 300,000 streams: checking every chunk and filling every entry (what the first append
    # did until 11-28) grew the process by ~26 MB (19 MB of entries, and the pages of the
    # mapped checkpoint it read); looking up one stream touches a few pages (0.1-3 MB).
    path = tmp_path / "many"
    names = _names("m", 300_000)
    with cl.EventStore.open(path, durability="os") as s:
        s.append_batch(names, ["T"] * len(names), [b"x"] * len(names))
    code = f"""
import chronolog as cl
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
s = cl.EventStore.open({str(path)!r}, durability="os")
s.stream_version("m-00007")
before = rss()
r = s.append("m-150000", [cl.NewEvent("T", b"y")])
print(rss() - before, r.next_version, s.stream_version("m-299999"))
s.close()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grown_kb, next_version, last = (int(x) for x in out.stdout.split())
    assert (next_version, last) == (2, 0)
    assert grown_kb < 12 * 1024, f"the first append grew the process by {grown_kb} KiB"


def _one_round_checkpoint(open_store: Callable[..., cl.EventStore], store_path: Path,
                          n: int) -> tuple[list[str], Path, bytearray, dict[str, int]]:
    """n streams of one event each, closed: (names, checkpoint path, its bytes, its layout)."""
    s = open_store()
    names = _names("s", n)
    _fill(s, names, rounds=1)
    s.close()
    path = store_path / "index" / "streams.idx"
    raw = bytearray(path.read_bytes())
    return names, path, raw, _layout(bytes(raw))


def test_lookups_in_one_chunk_leave_the_other_chunks_unchecked_and_still_right(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    # 3,000 streams = three directory chunks; damage in the last one is only met (and
    # repaired by a rebuild) when a lookup reaches it.
    names, path, raw, lay = _one_round_checkpoint(open_store, store_path, 3000)
    assert lay["n_chunks"] == 3
    raw[lay["directory"] + RECORD * 2500 + 8] ^= 0x01  # a count in chunk 2
    path.write_bytes(bytes(raw))
    r = open_store(readonly=True)
    assert [r.stream_version(n) for n in names[:10]] == [0] * 10
    assert r.stream_version(names[2500]) == 0 and r.stream_version("nope") is None
    assert len(r.streams()) == 3000


def test_a_damaged_slot_block_is_found_by_the_probe_that_reads_it(
        open_store: Callable[..., cl.EventStore], store_path: Path) -> None:
    # 9,000 streams: 32,768 slots in two CRC blocks. A slot of the second block pointing past
    # the streams (its block CRC resealed) is refused when a probe first reads that block.
    names, path, raw, lay = _one_round_checkpoint(open_store, store_path, 9000)
    assert lay["blocks"] == 2
    slots = struct.unpack_from(f"<{lay['slots']}I", raw, HEADER)
    used = [i for i in range(SLOT_BLOCK, lay["slots"]) if slots[i]]
    struct.pack_into("<I", raw, HEADER + 4 * used[0], 9000 + 5)
    path.write_bytes(_reseal(raw))
    r = open_store(readonly=True)
    assert [r.stream_version(n) for n in names] == [0] * 9000
    assert r.stream_version("nope") is None


@pytest.mark.parametrize("sizes", [[4095, 1, 1], [4096, 1], [4097, 9000], [3, 70000]])
def test_streams_of_many_events_between_and_across_checkpoints_read_back_whole(
        open_store, store_path: Path, sizes: list[int]) -> None:
    # A stream's positions since the last checkpoint (its delta array, grown by doubling,
    # dropped at each checkpoint) must all read back, whatever its size across checkpoints.
    s = open_store()
    expected: dict[str, list[bytes]] = {"big": [], "small": []}
    for k, n in enumerate(sizes):
        datas = [b"%d-%d" % (k, i) for i in range(n)]
        s.append_batch(["big"] * n + ["small"], ["T"] * (n + 1), datas + [b"s%d" % k])
        expected["big"] += datas
        expected["small"].append(b"s%d" % k)
        if k == 0:
            s.checkpoint()
    for name, datas in expected.items():
        assert [e.data for e in s.read_stream(name)] == datas
        assert [e.version for e in s.read_stream(name)] == list(range(len(datas)))
    s.close()
    again = open_store()
    for name, datas in expected.items():
        assert [e.data for e in again.read_stream(name)] == datas


def test_delta_arrays_reused_after_checkpoints_keep_every_streams_positions(
        open_store: Callable[..., cl.EventStore]) -> None:
    # Delta arrays are carved from chunks that a checkpoint hands back for reuse; a stream
    # of 140,000 events since the last checkpoint needs an array larger than one chunk
    # (1 MiB). Streams written before and after each checkpoint, interleaved, must keep
    # their own positions whatever array their entries moved to.
    s = open_store()
    names = _names("r", 3000)
    expected: dict[str, list[int]] = {}
    for k in range(3):
        for r in range(3 + k):
            batch = names[k * 500:k * 500 + 2000]
            first = s.append_batch(batch, ["T"] * len(batch), [b"%d" % r] * len(batch)).first_position
            for i, name in enumerate(batch):
                expected.setdefault(name, []).append(first + i)
        big = 140_000 if k == 1 else 10
        first = s.append_batch(["big"] * big, ["T"] * big, [b"b"] * big).first_position
        expected.setdefault("big", []).extend(range(first, first + big))
        s.checkpoint()
    for name, positions in expected.items():
        assert [e.position for e in s.read_stream(name)] == positions, name
    s.close()
    again = open_store()
    assert {n: [e.position for e in again.read_stream(n)] for n in expected} == expected
