"""Test helpers that read and rewrite compressed frames in segment files, so a test can craft
damage that only the codec layer can notice (the frame's CRCs are fixed up after each edit).

Layouts: the frame header in src/chronolog/_core/format.pxd, the codec-1 body in
src/chronolog/_core/codec.pyx, the zstd frame header in RFC 8878 section 3.1.1.1.

Example:
    >>> frame = compressed_frames(seg)[0]                       # doctest: +SKIP
    >>> edit_frame(seg, frame, body=bytes(frame.body))          # doctest: +SKIP
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chronolog._core.crc import crc32c
from chronolog._core.log import FORMAT_VERSION_NUMBER

SEGMENT_HEADER_BYTES = 64
FRAME_HEADER_BYTES = 56
FRAME_TRAILER_BYTES = 8
CODEC_NONE, CODEC_ZSTD = 0, 1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Frame header field offsets (format.pxd).
STORED_AT, COUNT_AT, CODEC_AT, RAW_AT, DICT_AT, BODY_CRC_AT, HEADER_CRC_AT = 4, 24, 28, 32, 36, 48, 52


@dataclass(frozen=True)
class Frame:
    """One frame of a segment file as stored: where it is and its header fields."""

    offset: int
    count: int
    codec: int
    stored_bytes: int
    raw_bytes: int
    dict_id: int
    body: bytes

    @property
    def body_offset(self) -> int:
        return self.offset + FRAME_HEADER_BYTES


@dataclass(frozen=True)
class Block:
    """One zstd block of a codec-1 body: its directory entry and where its bytes are."""

    index: int
    stored_bytes: int
    raw_bytes: int
    data_offset: int  # into the body

    @property
    def directory_offset(self) -> int:
        """Body offset of this block's (u32 stored, u32 decoded) directory entry."""
        return 4 + 8 * self.index


def frames(seg: Path) -> list[Frame]:
    """Every frame of a sound segment file, in order."""
    raw = seg.read_bytes()
    out = []
    off = SEGMENT_HEADER_BYTES
    while off + FRAME_HEADER_BYTES <= len(raw):
        stored, = struct.unpack_from("<I", raw, off + STORED_AT)
        count, = struct.unpack_from("<I", raw, off + COUNT_AT)
        codec, = struct.unpack_from("<H", raw, off + CODEC_AT)
        raw_bytes, dict_id = struct.unpack_from("<II", raw, off + RAW_AT)
        body = raw[off + FRAME_HEADER_BYTES: off + FRAME_HEADER_BYTES + stored]
        out.append(Frame(off, count, codec, stored, raw_bytes, dict_id, body))
        off += FRAME_HEADER_BYTES + stored + FRAME_TRAILER_BYTES
    assert off == len(raw), f"{seg.name}: not made of whole frames"
    return out


def compressed_frames(seg: Path) -> list[Frame]:
    """The codec-1 frames of a segment file."""
    return [f for f in frames(seg) if f.codec == CODEC_ZSTD]


def blocks(frame: Frame) -> list[Block]:
    """The block directory of a codec-1 frame."""
    n, = struct.unpack_from("<I", frame.body, 0)
    at = 4 + 8 * n
    out = []
    for k in range(n):
        stored, raw = struct.unpack_from("<II", frame.body, 4 + 8 * k)
        out.append(Block(k, stored, raw, at))
        at += stored
    return out


def zstd_content_size_field(block_bytes: bytes) -> tuple[int, int]:
    """(offset, width) of the Frame_Content_Size field in a zstd frame's header."""
    assert block_bytes[:4] == ZSTD_MAGIC, "not a zstd frame"
    fhd = block_bytes[4]
    fcs_flag, single_segment, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    at = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    assert width, "this zstd frame does not declare its content size"
    return at, width


def zstd_content_size(block_bytes: bytes) -> int:
    at, width = zstd_content_size_field(block_bytes)
    value = int.from_bytes(block_bytes[at: at + width], "little")
    return value + 256 if width == 2 else value


def put_zstd_content_size(body: bytearray, block: Block, value: int) -> None:
    """Overwrite the declared content size of `block`'s zstd frame in place (same width)."""
    at, width = zstd_content_size_field(bytes(body[block.data_offset: block.data_offset + 18]))
    stored = value - 256 if width == 2 else value
    assert 0 <= stored < 1 << (8 * width), f"{value} does not fit a {width}-byte field"
    start = block.data_offset + at
    body[start: start + width] = stored.to_bytes(width, "little")


def edit_frame(
    seg: Path,
    frame: Frame,
    *,
    body: bytes | None = None,
    raw_bytes: int | None = None,
    dict_id: int | None = None,
) -> None:
    """Rewrite `frame` in place with a new body of the same length and/or new header fields,
    then recompute the body CRC and the header CRC, so the frame passes every check below
    the codec."""
    new_body = frame.body if body is None else body
    assert len(new_body) == frame.stored_bytes, "an edit must keep the body's length"
    raw = bytearray(seg.read_bytes())
    header = raw[frame.offset: frame.offset + FRAME_HEADER_BYTES]
    if raw_bytes is not None:
        struct.pack_into("<I", header, RAW_AT, raw_bytes)
    if dict_id is not None:
        struct.pack_into("<I", header, DICT_AT, dict_id)
    struct.pack_into("<I", header, BODY_CRC_AT, crc32c(new_body))
    struct.pack_into("<I", header, HEADER_CRC_AT, crc32c(bytes(header[:HEADER_CRC_AT])))
    raw[frame.offset: frame.offset + FRAME_HEADER_BYTES] = header
    raw[frame.body_offset: frame.body_offset + frame.stored_bytes] = new_body
    seg.write_bytes(bytes(raw))


def edit_body(seg: Path, frame: Frame, change: Callable[[bytearray], None], **fields: int) -> None:
    """edit_frame with the body changed in place by `change(body)`."""
    body = bytearray(frame.body)
    change(body)
    edit_frame(seg, frame, body=bytes(body), **fields)


# -------------------------------------------------------------------- dictionary files

DICT_HEADER_BYTES = 32


def dictionary_path(store_dir: Path, dict_id: int) -> Path:
    return store_dir / f"zstd-{dict_id:08d}.dict"


def write_dictionary_file(path: Path, dict_id: int, data: bytes) -> None:
    """Write a dictionary file that passes every header check (codec.pyx's layout)."""
    header = bytearray(DICT_HEADER_BYTES)
    header[0:8] = b"CHLZDICT"
    struct.pack_into("<IIQI", header, 8, FORMAT_VERSION_NUMBER, dict_id, len(data), crc32c(data))
    struct.pack_into("<I", header, 28, crc32c(bytes(header[:28])))
    path.write_bytes(bytes(header) + data)


def dictionary_data(path: Path) -> bytes:
    return path.read_bytes()[DICT_HEADER_BYTES:]
