"""The narrow region of a batch frame (format.pxd; docs/design.md "Narrow scans"): which
appends write one, that a scan of position, stream and type answers from it exactly what the
records say, and that damage to it is caught, never returned or crashed on."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chronolog as cl
from chronolog._core.crc import crc32c
from chronolog.errors import CorruptionError

SEGMENT_HEADER = 64
FRAME_HEADER = 56
NARROW = ["position", "stream", "type"]


def _frames(seg: Path) -> list[dict[str, int]]:
    """The header fields of every frame of a segment file."""
    raw = seg.read_bytes()
    out, off = [], SEGMENT_HEADER
    while off + FRAME_HEADER <= len(raw):
        body, = struct.unpack_from("<I", raw, off + 4)
        count, codec, flags, raw_bytes = struct.unpack_from("<IHHI", raw, off + 24)
        narrow, = struct.unpack_from("<I", raw, off + 44)
        out.append({"offset": off, "count": count, "codec": codec, "flags": flags,
                    "raw": raw_bytes, "narrow": narrow, "body": body})
        off += FRAME_HEADER + body + 8
    return out


def _reseal(raw: bytearray, off: int) -> None:
    """Recompute the narrow region CRC (when there is one), the body CRC and the header CRC
    of the frame at `off`, as a writer of these bytes would have."""
    body, = struct.unpack_from("<I", raw, off + 4)
    narrow, = struct.unpack_from("<I", raw, off + 44)
    b = off + FRAME_HEADER
    if narrow:
        struct.pack_into("<I", raw, b + 12, crc32c(bytes(raw[b + 16:b + narrow])))
    struct.pack_into("<I", raw, off + 48, crc32c(bytes(raw[b:b + body])))
    struct.pack_into("<I", raw, off + 52, crc32c(bytes(raw[off:off + 52])))


def _batch(store: cl.EventStore, n: int, *, streams: int = 7, types: int = 3, tag: str = "s") -> None:
    store.append_batch([f"{tag}-{i % streams}" for i in range(n)], [f"T{i % types}" for i in range(n)],
                       [b"%d" % i for i in range(n)])


def _segment(store_path: Path) -> Path:
    return store_path / "00000000000000000000.seg"


def _same_columns(narrow: pa.Table, full: pa.Table, cols: list[str]) -> None:
    assert narrow.column_names == cols
    for c in cols:
        assert narrow.column(c).to_pylist() == full.column(c).to_pylist(), c


def test_append_batch_of_at_least_64_events_writes_a_narrow_region_and_smaller_appends_do_not(
        store: cl.EventStore, store_path: Path) -> None:
    _batch(store, 64)
    _batch(store, 63)
    store.append("one-stream", [cl.NewEvent("A", b"x")] * 100)
    frames = _frames(_segment(store_path))
    assert [(f["count"], f["flags"]) for f in frames] == [(64, 1), (63, 0), (100, 0)]
    assert frames[0]["narrow"] > 16 and frames[0]["narrow"] % 8 == 0
    assert frames[1]["narrow"] == frames[2]["narrow"] == 0


def test_a_compressed_store_writes_no_narrow_region(open_store: Any, store_path: Path) -> None:
    s = open_store(compression="zstd")
    _batch(s, 500)
    (frame,) = _frames(_segment(store_path))
    assert (frame["codec"], frame["flags"], frame["narrow"]) == (1, 0, 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(appends=st.lists(st.tuples(st.sampled_from([1, 5, 63, 64, 150]), st.integers(1, 40),
                                  st.integers(1, 6)), min_size=1, max_size=6),
       cols=st.lists(st.sampled_from(NARROW), min_size=1, max_size=3, unique=True),
       types=st.one_of(st.none(), st.lists(st.sampled_from(["T0", "T2", "T5", "nope"]), max_size=2)),
       streams=st.one_of(st.none(), st.lists(st.sampled_from(["s-0", "s-3", "t-1", "x"]), max_size=3)),
       prefix=st.one_of(st.none(), st.sampled_from(["s-", "t", "s-1", "zz"])),
       batch_size=st.sampled_from([1, 7, 65536]), start=st.integers(0, 400),
       stop=st.one_of(st.none(), st.integers(0, 500)))
def test_a_narrow_scan_equals_the_same_columns_of_a_full_scan(
        tmp_path_factory: Any, appends: list[tuple[int, int, int]], cols: list[str],
        types: list[str] | None, streams: list[str] | None, prefix: str | None,
        batch_size: int, start: int, stop: int | None) -> None:
    path = tmp_path_factory.mktemp("narrow")
    with cl.EventStore.open(path, durability="os", max_segment_bytes=8192) as s:
        for k, (n, n_streams, n_types) in enumerate(appends):
            _batch(s, n, streams=n_streams, types=n_types, tag="st"[k % 2])
        kw = {"types": types, "streams": streams, "stream_prefix": prefix}
        full = s.scan_table(start, stop, **kw)
        narrow = s.scan_table(start, stop, columns=cols, batch_size=batch_size, **kw)
        _same_columns(narrow, full, cols)
        assert s.verify()["ok"]


def test_more_than_255_types_in_a_batch_means_no_region_and_the_scan_still_answers(
        store: cl.EventStore, store_path: Path) -> None:
    _batch(store, 600, types=300)
    (frame,) = _frames(_segment(store_path))
    assert frame["flags"] == 0
    _same_columns(store.scan_table(columns=NARROW), store.scan_table(), NARROW)


def test_a_batch_over_65536_streams_uses_four_byte_stream_indexes(
        store: cl.EventStore, store_path: Path) -> None:
    _batch(store, 70_000, streams=70_000)
    (frame,) = _frames(_segment(store_path))
    raw = _segment(store_path).read_bytes()
    region = frame["offset"] + FRAME_HEADER
    assert frame["flags"] == 1
    assert struct.unpack_from("<IHB", raw, region) == (70_000, 3, 4)
    _same_columns(store.scan_table(columns=NARROW, stream_prefix="s-6999"),
                  store.scan_table(stream_prefix="s-6999"), NARROW)


def _damaged(store_path: Path, open_store: Any, edit: Any, *, reseal: bool) -> cl.EventStore:
    """A store of two narrow frames whose first frame's region `edit` changes (in place, on a
    bytearray of the segment, given the region's offset); then opened read-only."""
    s = open_store()
    _batch(s, 100)
    _batch(s, 80)
    s.close()
    seg = _segment(store_path)
    raw = bytearray(seg.read_bytes())
    first = _frames(seg)[0]
    edit(raw, first["offset"] + FRAME_HEADER, first)
    if reseal:
        _reseal(raw, first["offset"])
    seg.write_bytes(bytes(raw))
    return open_store(readonly=True)


@pytest.mark.parametrize("where", ["header", "stream index", "type index", "names", "padding"])
def test_a_flipped_byte_in_the_narrow_region_fails_the_narrow_scan_the_full_scan_and_verify(
        store_path: Path, open_store: Any, where: str) -> None:
    def flip(raw: bytearray, region: int, f: dict[str, int]) -> None:
        at = {"header": 2, "stream index": 16 + 10, "type index": 16 + 2 * f["count"] + 5,
              "names": f["narrow"] - 12, "padding": f["narrow"] - 1}[where]
        raw[region + at] ^= 0x10

    r = _damaged(store_path, open_store, flip, reseal=False)
    with pytest.raises(CorruptionError):
        r.scan_table(columns=NARROW)
    with pytest.raises(CorruptionError):
        r.scan_table()
    assert not r.verify()["ok"]


def test_a_region_that_disagrees_with_its_records_is_reported_by_verify(
        store_path: Path, open_store: Any) -> None:
    def retype(raw: bytearray, region: int, f: dict[str, int]) -> None:
        t = region + 16 + 2 * f["count"]  # the type index of event 0 (width 2)
        raw[t] = (raw[t] + 1) % 3

    r = _damaged(store_path, open_store, retype, reseal=True)
    report = r.verify()
    assert not report["ok"]
    assert "narrow region names another stream or type" in report["problems"][0]["reason"]
    assert r.scan_table()["type"].to_pylist()[0] == "T0"  # the records still say so


@pytest.mark.parametrize("field,value", [("stream index", 0xFFFF), ("type index", 200),
                                         ("streams", 0), ("types", 0), ("width", 3),
                                         ("names bytes", 1 << 30), ("name length", 0)])
def test_a_region_out_of_range_with_valid_crcs_raises_corruption_never_crashes(
        store_path: Path, open_store: Any, field: str, value: int) -> None:
    def craft(raw: bytearray, region: int, f: dict[str, int]) -> None:
        n = f["count"]
        at, fmt = {"stream index": (16 + 2 * 3, "<H"), "type index": (16 + 2 * n + 4, "<B"),
                   "streams": (0, "<I"), "types": (4, "<H"), "width": (6, "<B"),
                   "names bytes": (8, "<I"), "name length": (16 + 3 * n, "<H")}[field]
        struct.pack_into(fmt, raw, region + at, value)

    r = _damaged(store_path, open_store, craft, reseal=True)
    with pytest.raises(CorruptionError, match="narrow region"):
        r.scan_table(columns=NARROW)
    assert not r.verify()["ok"]


def test_narrow_bytes_without_the_flag_are_a_bad_frame_layout(
        store_path: Path, open_store: Any) -> None:
    def unflag(raw: bytearray, region: int, f: dict[str, int]) -> None:
        struct.pack_into("<H", raw, f["offset"] + 30, 0)

    r = _damaged(store_path, open_store, unflag, reseal=True)
    with pytest.raises(CorruptionError, match="frame header fields out of range"):
        r.scan_table(columns=NARROW)


@pytest.mark.parametrize("compression", ["zstd", None])
def test_compaction_drops_the_region_when_compressing_and_keeps_it_otherwise(
        open_store: Any, store_path: Path, compression: str | None) -> None:
    s = open_store(max_segment_bytes=4096)
    for k in range(4):
        _batch(s, 100, tag=f"c{k}")
    before = s.scan_table()
    s.close()
    cl.compact(store_path, compression=compression)
    first = _frames(_segment(store_path))[0]
    assert first["flags"] == (0 if compression else 1)
    r = open_store(readonly=True)
    assert r.scan_table().equals(before)
    _same_columns(r.scan_table(columns=NARROW), before, NARROW)
    assert r.verify()["ok"]


def test_a_version_2_store_is_read_and_appended_to_with_regions_only_in_new_segments(
        open_store: Any, store_path: Path) -> None:
    s = open_store(max_segment_bytes=1 << 20)
    _batch(s, 10)
    s.close()
    for name in ("chronolog.store", "00000000000000000000.seg"):  # as version 2 wrote them
        raw = bytearray((store_path / name).read_bytes())
        struct.pack_into("<I", raw, 8, 2)
        struct.pack_into("<I", raw, 60, crc32c(bytes(raw[:60])))
        (store_path / name).write_bytes(bytes(raw))
    s = open_store(max_segment_bytes=8192)
    _batch(s, 100)  # into the version-2 segment: no region there
    _batch(s, 100)  # rolls: a version-3 segment, with a region
    segs = sorted(store_path.glob("*.seg"))
    assert [f["flags"] for f in _frames(segs[0])] == [0, 0]
    assert [f["flags"] for f in _frames(segs[1])] == [1]
    assert struct.unpack_from("<I", segs[1].read_bytes(), 8) == (3,)
    _same_columns(s.scan_table(columns=NARROW), s.scan_table(), NARROW)
    assert s.verify()["ok"]


def test_a_store_of_an_unknown_format_version_is_refused(open_store: Any, store_path: Path) -> None:
    open_store().close()
    raw = bytearray((store_path / "chronolog.store").read_bytes())
    struct.pack_into("<I", raw, 8, 4)
    struct.pack_into("<I", raw, 60, crc32c(bytes(raw[:60])))
    (store_path / "chronolog.store").write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="versions 2 to 3"):
        open_store()


@pytest.mark.parametrize("field", ["stream", "type"])
def test_a_name_that_is_not_utf8_under_valid_crcs_fails_both_scans_never_an_invalid_arrow_column(
        store_path: Path, open_store: Any, field: str) -> None:
    # An Arrow string column is not validated by whoever reads it (DuckDB, Polars, to_pylist):
    # a scan must raise CorruptionError rather than hand over bytes that are not UTF-8 (a store
    # written before append_batch checked Arrow names, or damage under valid CRCs). The name is
    # rewritten in the region and in every record, and every CRC fixed, as a writer would have.
    good, bad = ("é-3".encode(), b"\xc3\x28-3") if field == "stream" else ("Té2".encode(), b"T\xc3\x282")
    s = open_store(store_path, durability="os")
    s.append_batch([f"é-{i % 7}" for i in range(100)], [f"Té{i % 3}" for i in range(100)],
                   [b"%d" % i for i in range(100)])
    s.close()
    seg = _segment(store_path)
    raw = bytearray(seg.read_bytes())
    f = _frames(seg)[0]
    b = f["offset"] + FRAME_HEADER
    body = raw[b:b + f["body"]]
    assert f["narrow"] and body.count(good) > 1
    body = body.replace(good, bad)
    offsets = struct.unpack_from(f"<{f['count']}I", body, len(body) - 4 * f["count"])
    for at in offsets:
        n, = struct.unpack_from("<I", body, at)
        struct.pack_into("<I", body, at + 4, crc32c(bytes(body[at + 8:at + n])))
    raw[b:b + f["body"]] = body
    _reseal(raw, f["offset"])
    seg.write_bytes(bytes(raw))
    shutil.rmtree(store_path / "index")

    r = open_store(store_path, readonly=True)
    first = 3 if field == "stream" else 2
    message = (f"position {first} has a stream name that is not valid UTF-8" if field == "stream"
               else "an event type in the scanned range is not valid UTF-8")
    with pytest.raises(CorruptionError, match=message):
        r.scan_table(columns=NARROW)  # names from the narrow region
    with pytest.raises(CorruptionError, match=message):
        r.scan_table()  # names from the records
    other = "type" if field == "stream" else "stream"
    assert len(r.scan_table(columns=["position", other])) == 100  # the sound column still reads
    assert not r.verify()["ok"]
