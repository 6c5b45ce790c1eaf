"""Stream names and event types are stored as UTF-8 and every reader decodes them strictly, so
append_batch refuses names that are not well-formed UTF-8 before anything is written. Python
strs always are; Arrow string arrays need not be (their producer does not validate them: an
array viewed from binary holds any bytes), so the core checks them: one ASCII test over all
names, and a strict check of each name only when that fails."""

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
from chronolog.errors import InvalidEventError, InvalidStreamNameError


def _unchecked(values: list[bytes]) -> pa.Array:
    """An Arrow string array holding these bytes as they are (as an unvalidated producer may)."""
    return pa.array(values, pa.large_binary()).view(pa.large_string())


BAD = {
    "lone-continuation": b"\x80",
    "truncated-2-byte": b"caf\xc3",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3-byte": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "past-U+10FFFF": b"\xf4\x90\x80\x80",
    "byte-FF": b"\xff\xfe",
    "truncated-4-byte": b"\xf0\x9f\x98",
}


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
@pytest.mark.parametrize("where", [0, 7, 499])
def test_a_stream_name_that_is_not_utf8_is_refused_at_its_event_and_nothing_is_written(
        store: cl.EventStore, disk_state, bad: bytes, where: int) -> None:
    names = [b"stream-%d" % i for i in range(500)]
    names[where] = b"s" + bad
    before = disk_state()
    with pytest.raises(InvalidStreamNameError, match=rf"event {where}: a stream name must be valid UTF-8"):
        store.append_batch(_unchecked(names), ["T"] * 500, [b""] * 500)
    assert store.head == 0 and store.streams() == []
    assert disk_state() == before


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_an_event_type_that_is_not_utf8_is_refused_and_nothing_is_written(
        store: cl.EventStore, disk_state, bad: bytes) -> None:
    before = disk_state()
    with pytest.raises(InvalidEventError, match=r"event 1: the event type must be valid UTF-8"):
        store.append_batch(["a", "b", "c"], _unchecked([b"T", b"T" + bad, b"T"]), [b""] * 3)
    assert store.head == 0
    assert disk_state() == before


def test_names_of_every_utf8_length_are_taken_from_arrow_as_they_are(store: cl.EventStore) -> None:
    names = ["café", "заказ-7", "注文-9", "order-😀", "plain"]
    store.append_batch(_unchecked([n.encode() for n in names]),
                       _unchecked([b"Plac\xc3\xa9", b"T", b"T", b"T", b"T"]), [b""] * 5)
    assert sorted(store.streams()) == sorted(names)
    assert [e.type for e in store.read_stream("café")] == ["Placé"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.binary(min_size=1, max_size=12) | st.text(min_size=1, max_size=6).map(str.encode))
def test_an_arrow_stream_name_is_taken_exactly_when_python_decodes_it(
        tmp_path: Path, name: bytes) -> None:
    path = tmp_path / "s"
    shutil.rmtree(path, ignore_errors=True)
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    with cl.EventStore.open(path, durability="os") as s:
        if text is None:
            with pytest.raises(InvalidStreamNameError):
                s.append_batch(_unchecked([b"ok", name]), ["T", "T"], [b"", b""])
            assert s.head == 0
        elif "\x00" in text:
            with pytest.raises(InvalidStreamNameError):
                s.append_batch(_unchecked([b"ok", name]), ["T", "T"], [b"", b""])
        else:
            s.append_batch(_unchecked([b"ok", name]), ["T", "T"], [b"", b""])
            assert [e.stream for e in s.read_all()] == ["ok", text]


def _patch_first_record(seg: Path, change: Any) -> None:
    """Apply `change(record: bytearray)` to the first record of the segment's first (plain)
    frame and fix its record, body and header CRCs."""
    raw = bytearray(seg.read_bytes())
    frame, header_bytes = 64, 56
    stored, = struct.unpack_from("<I", raw, frame + 4)
    body = bytearray(raw[frame + header_bytes: frame + header_bytes + stored])
    rec_len, = struct.unpack_from("<I", body, 0)
    record = bytearray(body[:rec_len])
    change(record)
    struct.pack_into("<I", record, 4, crc32c(bytes(record[8:])))
    body[:rec_len] = record
    header = raw[frame: frame + header_bytes]
    struct.pack_into("<I", header, 48, crc32c(bytes(body)))
    struct.pack_into("<I", header, 52, crc32c(bytes(header[:52])))
    raw[frame: frame + header_bytes] = header
    raw[frame + header_bytes: frame + header_bytes + stored] = body
    seg.write_bytes(bytes(raw))


def _rewrite_name(seg: Path, old: bytes, new: bytes) -> None:
    """Replace `old` by `new` (same length) in the first record of the segment's first frame
    (a plain one: no narrow region) and fix its CRCs, as a writer that did not check its
    names would have written it (format: docs/format.md)."""
    def rename(record: bytearray) -> None:
        at = record.index(old, 48)
        record[at: at + len(new)] = new

    _patch_first_record(seg, rename)


@pytest.mark.parametrize("field", ["stream", "type"])
def test_verify_reports_a_record_whose_name_is_not_utf8(tmp_path: Path, field: str) -> None:
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os") as s:
        s.append("order-é", [cl.NewEvent("Placé", b"{}")])
        s.append("order-2", [cl.NewEvent("T", b"{}")])
    seg = next(path.glob("*.seg"))
    _rewrite_name(seg, "order-é".encode() if field == "stream" else "Placé".encode(),
                  b"order-\xc3\x28" if field == "stream" else b"Plac\xc3\x28")
    shutil.rmtree(path / "index")
    with cl.EventStore.open(path, readonly=True) as r:
        report = r.verify()
        # Reads say it is damage (CorruptionError), not a raw UnicodeDecodeError.
        with pytest.raises(cl.CorruptionError, match="position 0 has a stream name or event type "
                           "that is not valid UTF-8"):
            list(r.read_all())
        if field == "stream":
            with pytest.raises(cl.CorruptionError, match="not valid UTF-8"):
                r.streams()
        assert [e.stream for e in r.read_stream("order-2")] == ["order-2"]
    assert report["ok"] is False
    assert report["problems"][0]["segment"] == seg.name
    assert report["problems"][0]["offset"] == 64
    assert "record 0: its stream name or event type is not valid UTF-8" in report["problems"][0]["reason"]


def test_a_record_whose_stream_name_holds_a_nul_is_reported_by_verify(tmp_path: Path) -> None:
    # No append writes one (read_stream could never name it); under valid CRCs verify said ok.
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os") as s:
        s.append("order-1", [cl.NewEvent("T", b"{}")])
    _rewrite_name(next(path.glob("*.seg")), b"order-1", b"orde\x00-1")
    shutil.rmtree(path / "index")
    with cl.EventStore.open(path, readonly=True) as r:
        report = r.verify()
    assert report["ok"] is False
    assert "record 0: its stream name holds a NUL byte" in report["problems"][0]["reason"]


def test_a_record_whose_stream_name_is_over_the_limit_is_damage_to_every_reader(tmp_path: Path) -> None:
    # A 1,024-byte name and a 2-byte type made into a 1,025-byte name and a 1-byte type: the
    # record's length still adds up and every CRC checks. read_stream of such a name is refused
    # as an invalid name, so readers must refuse the record itself.
    path = tmp_path / "s"
    with cl.EventStore.open(path, durability="os") as s:
        s.append("x" * 1024, [cl.NewEvent("AB", b"{}")])

    def longer(record: bytearray) -> None:
        struct.pack_into("<H", record, 8, 1025)
        record[10] = 1

    _patch_first_record(next(path.glob("*.seg")), longer)
    shutil.rmtree(path / "index")
    with pytest.raises(cl.CorruptionError, match="record fields do not add up"):
        cl.EventStore.open(path, readonly=True)
