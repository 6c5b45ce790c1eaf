#!/usr/bin/env python3
"""Print a segment file's header and every frame (offset, first position, count, CRCs), and
optionally every record, reading the bytes by the format spec alone (docs/format.md).

It shares no code with the log's reader but the CRC32C, so it is a second opinion when a
store misbehaves.

Usage:
    python tools/dump_segment.py STORE/00000000000000000000.seg [--records] [--limit N]

Example:
    $ python tools/dump_segment.py data/shop/00000000000000000000.seg --records --limit 2
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from chronolog._core.crc import crc32c

SEGMENT_MAGIC = b"CHLOGSEG"
SEGMENT_HEADER = struct.Struct("<8sII QQ16sQ I I")  # magic, version, bytes, salt, first,
SEGMENT_HEADER_BYTES = 64                            # store id, created, reserved, crc
FRAME_HEADER = struct.Struct("<IIQQIHHIIIIII")
FRAME_HEADER_BYTES = 56
FRAME_TRAILER = struct.Struct("<II")
FRAME_TRAILER_BYTES = 8
FRAME_MAGIC = 0x464C4843
TRAILER_MAGIC = 0x46484C43
RECORD_HEADER = struct.Struct("<IIHBBIQQqII")
RECORD_HEADER_BYTES = 48
RECORD_HAS_ID = 1
FRAME_HAS_NARROW = 1
NARROW_HEADER = struct.Struct("<IHBBII")  # streams, types, index width, zero, names bytes, crc


@dataclass
class Frame:
    """One batch frame as found on disk, with the result of each check."""

    offset: int
    end: int
    first_position: int
    count: int
    codec: int
    body: bytes
    header_crc_ok: bool
    body_crc_ok: bool
    trailer_ok: bool
    salt_ok: bool
    narrow: int = 0  # bytes of the narrow region the body starts with (flags bit 0)

    @property
    def ok(self) -> bool:
        """True when every check of the frame held."""
        return self.header_crc_ok and self.body_crc_ok and self.trailer_ok and self.salt_ok


def narrow_region(frame: Frame) -> dict[str, object]:
    """Decode the narrow region header of a frame that has one (docs/format.md) and check its
    CRC and that its parts fill it.

    Example:
        >>> narrow_region(Frame(64, 64, 0, 0, 0, b"", True, True, True, True))["ok"]
        False
    """
    body, r = frame.body, frame.narrow
    if r < NARROW_HEADER.size or r > len(body):
        return {"ok": False, "reason": f"region of {r} bytes does not fit the body"}
    streams, types, width, zero, names, crc = NARROW_HEADER.unpack_from(body, 0)
    used = NARROW_HEADER.size + frame.count * (width + 1) + 2 * streams + types + names
    fits = width in (2, 4) and zero == 0 and used <= r < used + 8
    return {"ok": fits and crc32c(body[NARROW_HEADER.size:r]) == crc, "streams": streams,
            "types": types, "width": width, "names_bytes": names,
            "crc_ok": crc32c(body[NARROW_HEADER.size:r]) == crc, "fits": fits}


@dataclass
class Record:
    """One record of a frame body."""

    index: int
    offset: int
    length: int
    crc_ok: bool
    position: int
    version: int
    timestamp: int
    stream: str
    type: str
    event_id: bytes | None
    metadata: bytes
    data: bytes


def read_segment_header(buf: bytes) -> dict[str, object]:
    """Decode and check the 64-byte segment header.

    Example:
        >>> read_segment_header(b"\\0" * 64)["magic_ok"]
        False
    """
    if len(buf) < SEGMENT_HEADER_BYTES:
        raise ValueError(f"file is {len(buf)} bytes, shorter than a segment header (64)")
    magic, version, nbytes, salt, first, store_id, created, _reserved, crc = \
        SEGMENT_HEADER.unpack_from(buf, 0)
    return {"magic_ok": magic == SEGMENT_MAGIC, "format_version": version,
            "header_bytes": nbytes, "salt": salt, "first_position": first,
            "store_id": store_id.hex(), "created_ns": created,
            "crc_ok": crc32c(buf[:60]) == crc}


def frames(buf: bytes, salt: int) -> Iterator[Frame | tuple[int, str]]:
    """Yield each frame from offset 64; at the first that cannot be read, yield
    (offset, reason) and stop (a torn tail or damage).

    Example:
        >>> list(frames(b"\\0" * 64, 0))
        []
    """
    off = SEGMENT_HEADER_BYTES
    while off < len(buf):
        if off + FRAME_HEADER_BYTES > len(buf):
            yield off, f"{len(buf) - off} bytes left, fewer than a frame header (torn tail?)"
            return
        (magic, body_bytes, fsalt, first, count, codec, flags, _raw_bytes, _dict_id,
         _synced_mark, narrow, body_crc, header_crc) = FRAME_HEADER.unpack_from(buf, off)
        if magic != FRAME_MAGIC:
            yield off, f"no frame magic (found {magic:#010x})"
            return
        end = off + FRAME_HEADER_BYTES + body_bytes + FRAME_TRAILER_BYTES
        if end > len(buf):
            yield off, f"frame of {end - off} bytes runs past the end of the file (torn tail?)"
            return
        body = buf[off + FRAME_HEADER_BYTES: off + FRAME_HEADER_BYTES + body_bytes]
        t_bytes, t_magic = FRAME_TRAILER.unpack_from(buf, end - FRAME_TRAILER_BYTES)
        yield Frame(off, end, first, count, codec, body,
                    header_crc_ok=crc32c(buf[off: off + 52]) == header_crc,
                    body_crc_ok=crc32c(body) == body_crc,
                    trailer_ok=t_bytes == body_bytes and t_magic == TRAILER_MAGIC,
                    salt_ok=fsalt == salt, narrow=narrow if flags & FRAME_HAS_NARROW else 0)
        off = end


def records(frame: Frame) -> Iterator[Record]:
    """Yield the records of an uncompressed frame body, found through its offset table.

    Example:
        >>> list(records(Frame(64, 64, 0, 0, 0, b"", True, True, True, True)))
        []
    """
    body = frame.body
    table = len(body) - 4 * frame.count
    if table < 0:
        raise ValueError(f"frame at {frame.offset}: body too short for {frame.count} offsets")
    for i in range(frame.count):
        (at,) = struct.unpack_from("<I", body, table + 4 * i)
        if at + RECORD_HEADER_BYTES > table:
            raise ValueError(f"frame at {frame.offset}: record {i} offset {at} out of bounds")
        (length, crc, slen, tlen, flags, mlen, position, version, ts, dlen,
         _reserved) = RECORD_HEADER.unpack_from(body, at)
        if at + length > table:
            raise ValueError(f"frame at {frame.offset}: record {i} length {length} out of bounds")
        p = at + RECORD_HEADER_BYTES
        event_id = None
        if flags & RECORD_HAS_ID:
            event_id = body[p: p + 16]
            p += 16
        stream = body[p: p + slen].decode("utf-8", "replace")
        p += slen
        etype = body[p: p + tlen].decode("utf-8", "replace")
        p += tlen
        metadata = body[p: p + mlen]
        p += mlen
        data = body[p: p + dlen]
        yield Record(i, at, length, crc32c(body[at + 8: at + length]) == crc, position,
                     version, ts, stream, etype, event_id, metadata, data)


def _ok(flag: bool) -> str:
    return "ok" if flag else "BAD"


def main(argv: list[str] | None = None) -> int:
    """Dump one segment file; return 0 when every check held, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("segment", help="a .seg file of a Chronolog store")
    parser.add_argument("--records", action="store_true", help="print every record too")
    parser.add_argument("--limit", type=int, default=None, help="stop after N frames")
    parser.add_argument("--data-bytes", type=int, default=60,
                        help="show at most this many bytes of each payload (default 60)")
    args = parser.parse_args(argv)
    with open(args.segment, "rb") as f:
        buf = f.read()
    header = read_segment_header(buf)
    print(f"segment {args.segment}: {len(buf)} bytes")
    for key, value in header.items():
        print(f"  {key}: {value}")
    clean = bool(header["magic_ok"] and header["crc_ok"])
    n_frames = n_events = 0
    for item in frames(buf, int(header["salt"])):  # type: ignore[call-overload]
        if isinstance(item, tuple):
            print(f"STOP at offset {item[0]}: {item[1]}")
            clean = False
            break
        n_frames += 1
        n_events += item.count
        print(f"frame @{item.offset} .. {item.end}: positions {item.first_position}.."
              f"{item.first_position + item.count - 1} ({item.count} events, "
              f"{len(item.body)} body bytes, codec {item.codec}) header CRC "
              f"{_ok(item.header_crc_ok)}, body CRC {_ok(item.body_crc_ok)}, trailer "
              f"{_ok(item.trailer_ok)}, salt {_ok(item.salt_ok)}")
        clean = clean and item.ok
        if item.narrow:
            nr = narrow_region(item)
            print(f"  narrow region: {item.narrow} bytes, {nr.get('streams')} streams, "
                  f"{nr.get('types')} types, {nr.get('width')}-byte stream index, "
                  f"{'ok' if nr['ok'] else 'BAD'}")
            clean = clean and bool(nr["ok"])
        if args.records and item.codec == 0:
            try:
                for r in records(item):
                    clean = clean and r.crc_ok
                    eid = r.event_id.hex() if r.event_id else "-"
                    print(f"  record {r.index} @body+{r.offset} ({r.length} B, CRC "
                          f"{_ok(r.crc_ok)}): position {r.position} {r.stream!r} v{r.version} "
                          f"{r.type!r} ts {r.timestamp} id {eid} meta {len(r.metadata)} B "
                          f"data {r.data[: args.data_bytes]!r}")
            except ValueError as exc:
                print(f"  BAD: {exc}")
                clean = False
        if args.limit is not None and n_frames >= args.limit:
            print(f"(stopped after {n_frames} frames: --limit)")
            break
    print(f"{n_frames} frames, {n_events} events: {'all checks hold' if clean else 'PROBLEMS'}")
    return 0 if clean else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`: the reader went away
        sys.stderr.close()
        sys.exit(0)
