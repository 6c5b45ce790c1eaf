"""Fuzz targets for the compiled core, runnable with atheris or as plain loops.

Three targets, each taking arbitrary bytes:

- ``frames``: the bytes become the body of the only segment of a valid store (after a valid
  segment header), which is opened read-only and then writable (recovery) and read whole:
  the frame decoder and recovery.
- ``store``: the bytes are an archive of a whole store directory (store header, segments by
  first position, index files; see `unpack_store`), opened and read the same way: open over
  arbitrary, hostile directories.
- ``scan``: like ``frames``, then the Arrow scan (chronolog.scan) over the store with columns
  and filters drawn from the input's first bytes.
- ``narrow``: the bytes (after 8 bytes of scan choices) overwrite the start of the narrow
  region of a real 70-event frame, whose CRCs (region, body, header) are then recomputed, so
  the region's parser is reached past its checksums; then everything is read and scanned
  with narrow columns (position, stream, type).
- ``body``: the bytes (after 8 bytes of frame choices, see `body_segment`) become the body of
  the only frame (codec 0) of a segment, whose header (taken from a real frame: salt, position,
  synced mark) gets the input's sizes and event count; each record the input's offset table
  points at whose length field fits gets its CRC recomputed, then the narrow region's (when
  flagged and it fits), the body's and the header's: the record parser, the offset table and
  the narrow region are reached with hostile but checksummed bytes. Then read and scanned.
- ``zbody``: the same for a codec-1 (zstd) frame: the bytes are the stored body (block
  directory, zstd frames, offset table), the decoded size comes from the directory, the
  dictionary id from a choice byte (the store holds dictionary 1); a choice bit reseals the
  records inside the blocks that decode (decode, recompute record CRCs, compress again and
  fix the directory's stored sizes), another takes the blocks as plain records and compresses
  them, so the record checks are reached through the decoder too.

The contract (DESIGN invariant 9): any input ends in success or a ChronologError (such as
CorruptionError). Any other exception, a crash of the interpreter or a hang is a bug.

Usage:
    python tests/fuzz/harness.py atheris TARGET [libFuzzer flags...]   # needs `pip install atheris`
    python tests/fuzz/harness.py loop TARGET SECONDS [SEED]             # no atheris needed
    python tests/fuzz/harness.py replay TARGET FILE...                  # used by test_regressions.py
    python tests/fuzz/harness.py corpus                                 # rebuild tests/fuzz/corpus

Example:
    >>> run_target("frames", b"\\x00" * 10)  # doctest: +SKIP
    'error:CorruptionError'
"""

from __future__ import annotations

import atexit
import hashlib
import os
import random
import shutil
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CRASHERS = HERE / "crashers"
TARGETS = ("frames", "store", "scan", "narrow", "body", "zbody")
STORE_FILE = "chronolog.store"
SEGMENT_HEADER_BYTES = 64
MAX_ARCHIVE_FILE_BYTES = 1 << 16
_ENTRY = struct.Struct("<BIH")  # kind, segment first position, length

_scratch_root: Path | None = None
_template: dict[str, bytes] | None = None
_narrow: tuple[bytes, int, int] | None = None
_bodies: dict[str, tuple[dict[str, bytes], bytes, list[tuple[bytes, bytes]]]] = {}
_FRAME_HEADER_BYTES = 56
_FRAME_TRAILER_MAGIC = 0x46484C43
last_error: BaseException | None = None  # the ChronologError of the last run_target, if any


def _scratch() -> Path:
    """A per-process scratch directory (in RAM when /dev/shm is there)."""
    global _scratch_root
    if _scratch_root is None:
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        _scratch_root = Path(tempfile.mkdtemp(prefix="chronolog-fuzz-", dir=base))
        atexit.register(shutil.rmtree, _scratch_root, True)
    return _scratch_root


def _template_files() -> dict[str, bytes]:
    """The store header and an empty segment header of one template store (same store id)."""
    global _template
    if _template is None:
        import chronolog as cl

        d = _scratch() / "template"
        with cl.EventStore.open(d, durability="os"):
            pass
        seg = min(d.glob("*.seg"))
        _template = {STORE_FILE: (d / STORE_FILE).read_bytes(),
                     "segment_header": seg.read_bytes()[:SEGMENT_HEADER_BYTES]}
    return _template


def unpack_store(data: bytes) -> dict[str, bytes]:
    """Decode an archive: entries of (u8 kind, u32 first position, u16 length, bytes).
    kind % 4: 0 the store header, 1 a segment named by its first position, 2 the position
    index, 3 the stream index. A short tail is ignored."""
    files: dict[str, bytes] = {}
    off = 0
    while off + _ENTRY.size <= len(data):
        kind, first, n = _ENTRY.unpack_from(data, off)
        off += _ENTRY.size
        body = data[off:off + n]
        off += n
        name = (STORE_FILE, f"{first:020d}.seg", "index/positions.idx",
                "index/streams.idx")[kind % 4]
        files[name] = body
    return files


def pack_store(files: dict[str, bytes]) -> bytes:
    """The inverse of unpack_store (for building the seed corpus from real stores)."""
    kinds = {STORE_FILE: 0, "index/positions.idx": 2, "index/streams.idx": 3}
    out = bytearray()
    for name, body in sorted(files.items()):
        body = body[:MAX_ARCHIVE_FILE_BYTES - 1]
        if name.endswith(".seg"):
            out += _ENTRY.pack(1, int(name[:20]), len(body))
        else:
            out += _ENTRY.pack(kinds[name], 0, len(body))
        out += body
    return bytes(out)


def _write_files(d: Path, files: dict[str, bytes]) -> None:
    d.mkdir(parents=True)
    for name, body in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)


def _read_everything(d: Path, *, scan_spec: bytes | None, narrow: bool = False) -> None:
    """Open read-only, then writable (recovery), and read all of it each time."""
    import chronolog as cl
    from chronolog import scan as cl_scan

    for readonly in (True, False):
        with cl.EventStore.open(d, readonly=readonly, durability="os") as store:
            events = list(store.read_all())
            assert [e.position for e in events] == list(range(len(events))), "positions not dense"
            assert store.head == len(events)
            list(store.read_all(backwards=True))
            for s in store.streams():
                evs = store.read_stream(s)
                assert [e.version for e in evs] == list(range(len(evs))), "versions not dense"
                assert store.stream_version(s) == (len(evs) - 1 if evs else None)
            store.verify()
            if scan_spec is not None:
                _scan(cl_scan, store, scan_spec, events, narrow)


def _scan(cl_scan: object, store: object, spec: bytes, events: list[object],
          narrow: bool = False) -> None:
    cols = ["position", "stream", "version", "type", "timestamp", "data", "metadata", "id"]
    rng = random.Random(spec)
    if narrow or rng.random() < 0.3:  # only columns a frame's narrow region serves
        picked = [c for c in ("position", "stream", "type") if rng.random() < 0.6] or ["stream"]
    else:
        picked = [c for c in cols if rng.random() < 0.6] or None
    types = None
    if events and rng.random() < 0.4:
        types = [events[rng.randrange(len(events))].type]  # type: ignore[attr-defined]
    prefix = None
    if events and rng.random() < 0.3:
        prefix = events[rng.randrange(len(events))].stream[:2]  # type: ignore[attr-defined]
    batch = rng.choice((1, 3, 64, 65536))
    start = rng.randrange(len(events) + 2)
    table = cl_scan.scan_table(store._log, start, types=types,  # type: ignore[attr-defined]
                               stream_prefix=prefix, batch_size=batch, columns=picked)
    if types is None and prefix is None:
        assert table.num_rows == max(0, len(events) - start), "scan row count"


def _narrow_template() -> tuple[bytes, int, int]:
    """A segment holding one 70-event append_batch frame of the template store, the offset of
    its frame and the bytes of its narrow region."""
    global _narrow
    if _narrow is None:
        import chronolog as cl

        t = _template_files()
        d = _scratch() / "narrow-template"
        d.mkdir(parents=True)
        (d / STORE_FILE).write_bytes(t[STORE_FILE])
        with cl.EventStore.open(d, durability="os") as s:
            s.append_batch([f"n-{i % 5}" for i in range(70)], [f"T{i % 3}" for i in range(70)],
                           [b"%d" % i for i in range(70)])
        seg = (d / "00000000000000000000.seg").read_bytes()
        (narrow,) = struct.unpack_from("<I", seg, SEGMENT_HEADER_BYTES + 44)
        assert narrow, "the template frame has no narrow region"
        _narrow = (seg, SEGMENT_HEADER_BYTES, narrow)
    return _narrow


def narrow_segment(data: bytes) -> bytes:
    """The template segment with `data` over the start of its frame's narrow region, resealed
    (region CRC, body CRC, header CRC) as a writer of those bytes would have."""
    from chronolog._core.crc import crc32c

    seg, off, narrow = _narrow_template()
    raw = bytearray(seg)
    region = off + 56
    raw[region:region + min(len(data), narrow)] = data[:narrow]
    (body,) = struct.unpack_from("<I", raw, off + 4)
    struct.pack_into("<I", raw, region + 12, crc32c(bytes(raw[region + 16:region + narrow])))
    struct.pack_into("<I", raw, off + 48, crc32c(bytes(raw[region:region + body])))
    struct.pack_into("<I", raw, off + 52, crc32c(bytes(raw[off:off + 52])))
    return bytes(raw)


def segment_frames(seg: bytes) -> list[tuple[bytes, bytes]]:
    """(header, stored body) of each whole frame of a segment, walked by the lengths alone."""
    out = []
    off = SEGMENT_HEADER_BYTES
    while off + 64 <= len(seg) and seg[off:off + 4] == b"CHLF":
        (n,) = struct.unpack_from("<I", seg, off + 4)
        if off + 64 + n > len(seg):
            break
        out.append((seg[off:off + _FRAME_HEADER_BYTES], seg[off + 56:off + 56 + n]))
        off += 64 + n
    return out


def _body_template(target: str) -> tuple[dict[str, bytes], bytes, list[tuple[bytes, bytes]]]:
    """For `body` (codec 0) or `zbody` (codec 1): the store's files but its segment (the store
    header; for zbody a trained dictionary, id 1), the segment's header, and the (header, body)
    of the real frames written (the first one is the template of the fuzzed frame's header)."""
    if target not in _bodies:
        import chronolog as cl

        t = _template_files()
        d = _scratch() / f"{target}-template"
        d.mkdir(parents=True)
        (d / STORE_FILE).write_bytes(t[STORE_FILE])
        (d / "00000000000000000000.seg").write_bytes(t["segment_header"])
        if target == "body":
            with cl.EventStore.open(d, durability="os") as s:
                s.append("b-0", [cl.NewEvent("A", b"x" * 10, metadata=b"m"),
                                 cl.NewEvent("B", b"{}")])
        else:
            rng = random.Random(7)
            with cl.EventStore.open(d, durability="os", compression="zstd",
                                    compression_block_bytes=1024) as s:
                for k in range(12):
                    vs = [rng.choice((b"aa", b"bbb", b"c")) for _ in range(100)]
                    s.append_batch([f"z-{(k + i) % 7}" for i in range(100)], ["Z", "Y"] * 50,
                                   [b'{"n": %d, "v": "%s"}' % (i, vs[i]) for i in range(100)])
            # Dictionary 1, trained on fixed samples (records hold timestamps: a dictionary
            # trained on them would differ from run to run and the seeds using it would not
            # decode), stored the way train_dictionary stores one.
            from chronolog._core.codec import Dictionaries, train

            samples = [b'z-%d\x00Z{"n": %d, "v": "%s"}' % (i % 7, i, (b"aa", b"bbb", b"c")[i % 3])
                       for i in range(2000)]
            assert Dictionaries(str(d)).add(train(samples, 2048)) == 1
        seg = min(d.glob("*.seg")).read_bytes()
        files = {STORE_FILE: t[STORE_FILE]}
        for p in d.glob("zstd-*.dict"):
            files[p.name] = p.read_bytes()
        _bodies[target] = (files, seg[:SEGMENT_HEADER_BYTES], segment_frames(seg))
    return _bodies[target]


def _reseal_records(body: bytearray, table: int, count: int) -> None:
    """Recompute the CRC of each record the offset table (at `table` of `body`, `count`
    entries) points at whose header and length fit below the table."""
    from chronolog._core.crc import crc32c

    if table < 0:
        return
    for i in range(count):
        if table + 4 * i + 4 > len(body):
            break
        (off,) = struct.unpack_from("<I", body, table + 4 * i)
        if off + 48 > table:
            continue
        (n,) = struct.unpack_from("<I", body, off)
        if n < 48 or off + n > table:
            continue
        struct.pack_into("<I", body, off + 4, crc32c(bytes(body[off + 8:off + n])))


def _reseal_zstd_blocks(body: bytearray, count: int) -> bytearray:
    """zbody's reseal: decode each block of the directory that decodes as zstd says, recompute
    the record CRCs in the decoded records, compress the blocks again and fix the directory's
    stored sizes. Blocks that do not decode stay as they are; a directory that does not fit is
    left alone."""
    try:
        import zstandard
    except ImportError:
        return body
    if len(body) < 4:
        return body
    (n,) = struct.unpack_from("<I", body, 0)
    table = len(body) - 4 * count
    if n == 0 or n > 4096 or 4 + 8 * n > table:
        return body
    dirs = [struct.unpack_from("<II", body, 4 + 8 * k) for k in range(n)]
    src = 4 + 8 * n
    blocks: list[bytes] = []
    decoded: list[bytes | None] = []
    for st, raw in dirs:
        blk = bytes(body[src:min(src + st, table)])
        src += st
        blocks.append(blk)
        try:
            # (decompress allocates what the frame declares: only frames that declare `raw`)
            if raw > 1 << 20 or zstandard.frame_content_size(blk) != raw:
                decoded.append(None)
                continue
            got = zstandard.ZstdDecompressor().decompress(blk)
            decoded.append(got if len(got) == raw else None)
        except zstandard.ZstdError:
            decoded.append(None)
    if src != table:
        return body
    records = bytearray(b"".join(d for d in decoded if d is not None))
    if not records:
        return body
    offsets = bytes(body[table:])
    # The offsets are into the decoded records; reseal against the blocks that decoded only when
    # all did (else the offsets would not line up).
    if all(d is not None for d in decoded):
        both = records + offsets
        _reseal_records(both, len(records), count)
        records = both[:len(records)]
    out = bytearray(struct.pack("<I", n))
    new_blocks = []
    at = 0
    for (st, raw), blk, dec in zip(dirs, blocks, decoded):
        if dec is not None:
            blk = zstandard.ZstdCompressor(level=1).compress(bytes(records[at:at + raw]))
            at += raw
        new_blocks.append(blk)
        out += struct.pack("<II", len(blk) if dec is not None else st, raw)
    for blk in new_blocks:
        out += blk
    return out + offsets


def _compress_plain_blocks(body: bytearray, count: int) -> bytearray:
    """zbody's plain mode: the blocks of `body` hold decoded records (the directory's stored
    sizes give their lengths): reseal the records, compress each block (zstd level 1, content
    size in its header) and set the directory's sizes to the truth; the last block ends at the
    offset table. Left alone when the directory does not fit."""
    try:
        import zstandard
    except ImportError:
        return body
    table = len(body) - 4 * count
    if len(body) < 4 or table < 4:
        return body
    (n,) = struct.unpack_from("<I", body, 0)
    if n == 0 or n > 4096 or 4 + 8 * n > table:
        return body
    lens = [struct.unpack_from("<I", body, 4 + 8 * k)[0] for k in range(n)]
    lens[-1] = table - 4 - 8 * n - sum(lens[:-1])  # the last block takes up the difference
    if lens[-1] < 0:
        return body
    both = bytearray(body[4 + 8 * n:])
    _reseal_records(both, table - 4 - 8 * n, count)
    out = bytearray(struct.pack("<I", n))
    blocks = []
    at = 0
    for size in lens:
        blocks.append(zstandard.ZstdCompressor(level=1).compress(bytes(both[at:at + size])))
        out += struct.pack("<II", len(blocks[-1]), size)
        at += size
    return out + b"".join(blocks) + both[at:]


def body_segment(target: str, data: bytes) -> tuple[dict[str, bytes], bytes]:
    """The store's files and the spec (scan choices) for `body` or `zbody`.

    The first 8 bytes of `data` choose: u32 event count (0 or too many for the body: as many
    as fit, 52 bytes each), u16 frame flags (bit 0: a narrow region), u8 narrow region bytes
    / 8 (body) or dictionary id choice (zbody: bits 0-1 give 0, 1, 1 or 2 (missing); bit 2
    reseals the records inside the blocks; bit 3, the plain mode, takes the blocks as decoded
    records and compresses them, see _compress_plain_blocks), u8 spare (the scan choices too);
    the rest is the stored body. The header is the first real frame's, with these fields and
    the CRCs redone."""
    from chronolog._core.crc import crc32c

    files, seg_header, frames = _body_template(target)
    spec, body = data[:8].ljust(8, b"\0"), bytearray(data[8:])
    count, flags, pick, _ = struct.unpack("<IHBB", spec)
    header = bytearray(frames[0][0])
    if target == "zbody" and pick & 12:
        c = count if count and 12 + 4 * count <= len(body) else max(1, (len(body) - 12) // 4)
        body = _compress_plain_blocks(body, c) if pick & 8 else _reseal_zstd_blocks(body, c)
    n = len(body)
    raw = n  # zbody: the directory's decoded sizes when it fits, then the offset table
    if target == "zbody":
        if n >= 4:
            (blocks,) = struct.unpack_from("<I", body, 0)
            if 0 < blocks and 4 + 8 * blocks <= n:
                raw = sum(struct.unpack_from("<I", body, 8 + 8 * k)[0] for k in range(blocks))
        limit = max(1, (n - 12) // 4)
    else:
        limit = max(1, n // 52)
    if count == 0 or count > limit:
        count = limit
    if target == "zbody":
        raw = (raw + 4 * count) & 0xFFFFFFFF
        narrow = 0
        dict_id = (0, 1, 1, 2)[pick & 3]
        codec = 1
    else:
        narrow = 8 * pick if flags & 1 else 0
        dict_id = 0
        codec = 0
        _reseal_records(body, n - 4 * count, count)
        if flags & 1 and 16 <= narrow <= n:
            struct.pack_into("<I", body, 12, crc32c(bytes(body[16:narrow])))
    struct.pack_into("<I", header, 4, n)
    struct.pack_into("<I", header, 24, count)
    struct.pack_into("<HH", header, 28, codec, flags)
    struct.pack_into("<II", header, 32, raw, dict_id)  # (the synced mark at 40 stays)
    struct.pack_into("<I", header, 44, narrow)
    struct.pack_into("<I", header, 48, crc32c(bytes(body)))
    struct.pack_into("<I", header, 52, crc32c(bytes(header[:52])))
    frame = bytes(header) + bytes(body) + struct.pack("<II", n, _FRAME_TRAILER_MAGIC)
    return {**files, "00000000000000000000.seg": seg_header + frame}, spec


def outcome_key(result: str) -> str:
    """What the last run_target ended in, for atheris's feedback: the error's class, its message
    with numbers and paths left out, and the line (of the compiled core too: Cython frames name
    their .pyx line) that raised it."""
    import re

    if result == "ok" or last_error is None:
        return result
    tb = last_error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"
    msg = str(last_error).split(". Run `chronolog", 1)[0]
    msg = re.sub(r"b?'[^']*'|b?\"[^\"]*\"", "S", msg)  # names (hostile bytes) first
    msg = re.sub(r"\d+", "N", re.sub(r"/\S+", "PATH", msg))[:200]
    return f"{result}|{where}|{msg}"


def run_target(target: str, data: bytes) -> str:
    """Run one input through a target; returns "ok" or "error:<ChronologError subclass>".
    Any other exception propagates: it is a finding."""
    from chronolog.errors import ChronologError

    t = _template_files()
    d = _scratch() / f"case-{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    if target in ("frames", "scan"):
        spec = None
        if target == "scan":
            spec, data = data[:8], data[8:]
        files = {STORE_FILE: t[STORE_FILE],
                 "00000000000000000000.seg": t["segment_header"] + data}
    elif target == "narrow":
        spec, data = data[:8], data[8:]
        files = {STORE_FILE: t[STORE_FILE], "00000000000000000000.seg": narrow_segment(data)}
    elif target == "store":
        spec = None
        files = unpack_store(data)
    elif target in ("body", "zbody"):
        files, spec = body_segment(target, data)
    else:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    _write_files(d, files)
    try:
        _read_everything(d, scan_spec=spec, narrow=target == "narrow")
        return "ok"
    except ChronologError as exc:
        global last_error
        last_error = exc
        return f"error:{type(exc).__name__}"
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- seed corpus


def build_corpus() -> None:
    """Write small seed inputs from real stores into tests/fuzz/corpus/<target>/."""
    import chronolog as cl

    t = _template_files()
    store_id = t[STORE_FILE][16:32]
    for target in TARGETS:
        (CORPUS / target).mkdir(parents=True, exist_ok=True)
    rng = random.Random(2024)

    def save(target: str, data: bytes) -> None:
        name = hashlib.sha1(data).hexdigest()[:16]
        (CORPUS / target / name).write_bytes(data)

    # Real segment bodies, re-stamped with the template's salt by re-creating them in a store
    # that shares the template's store header: write the header first, then append.
    # The last case appends batches of NARROW_MIN_EVENTS and more: frames with a narrow region.
    for k, (n_appends, big) in enumerate(((1, False), (4, False), (12, True), (3, True), (2, None))):
        d = _scratch() / f"seed-{k}"
        d.mkdir(parents=True)
        (d / STORE_FILE).write_bytes(t[STORE_FILE])
        (d / "00000000000000000000.seg").write_bytes(t["segment_header"])
        with cl.EventStore.open(d, durability="os", max_segment_bytes=4096 if big else 1 << 20) as s:
            for i in range(n_appends):
                if big is None:
                    n = 64 + 16 * i
                    s.append_batch([f"s-{j % 9}" for j in range(n)], [f"T{j % 3}" for j in range(n)],
                                   [rng.randbytes(rng.randint(0, 12)) for _ in range(n)])
                elif i % 3 == 2:
                    s.append_batch([f"s-{i}", "s-0"], ["B", "B2"], [b"x" * i, b"{}"],
                                   metadatas=[b"m", b""], ids=[uuid.UUID(int=i + 1), None])
                else:
                    s.append(f"s-{i % 2}", [cl.NewEvent("A", rng.randbytes(rng.randint(0, 600 if big else 40)),
                                                        metadata=b"meta" if i % 2 else b"")])
        segs = sorted(d.glob("*.seg"))
        first_body = segs[0].read_bytes()[SEGMENT_HEADER_BYTES:]
        save("frames", first_body[:8192])
        save("scan", bytes(rng.randbytes(8)) + first_body[:8192])
        files = {STORE_FILE: (d / STORE_FILE).read_bytes()}
        for p in segs:
            files[p.name] = p.read_bytes()
        for p in (d / "index").glob("*.idx"):
            files[f"index/{p.name}"] = p.read_bytes()
        if len(pack_store(files)) < 40_000:
            save("store", pack_store(files))
        shutil.rmtree(d)
    assert store_id == t[STORE_FILE][16:32]
    save("frames", b"")
    save("store", b"")
    # The narrow region of a real frame: whole (reads back), cut short, and with an index out
    # of range (the region's CRC is recomputed by the target, so the parser must catch it).
    seg, off, narrow = _narrow_template()
    region = seg[off + 56:off + 56 + narrow]
    save("narrow", b"narrow-0" + region)
    save("narrow", b"narrow-1" + region[:16])
    save("narrow", b"narrow-3")  # the region as written, other scan choices
    bad = bytearray(region)
    bad[16] = 0xFF
    save("narrow", b"narrow-2" + bytes(bad))
    # Frame bodies for body (codec 0) and zbody (codec 1), each behind its 8 choice bytes
    # (u32 count, u16 flags, u8 narrow/8 or dictionary choice, u8 spare: see body_segment).
    def choices(count: int, flags: int, pick: int, spare: int) -> bytes:
        return struct.pack("<IHBB", count, flags, pick, spare)

    _, _, frames = _body_template("body")
    for header, body in frames:
        (count,) = struct.unpack_from("<I", header, 24)
        save("body", choices(count, 0, 0, 0) + body)
        save("body", choices(0, 0, 0, 1) + body)  # count: as many as fit
    d = _scratch() / "seed-body"
    d.mkdir(parents=True)
    (d / STORE_FILE).write_bytes(t[STORE_FILE])
    with cl.EventStore.open(d, durability="os") as s:
        s.append_batch(["s-1", "s-0", "s-1"], ["B", "B2", "B"], [b"x" * 5, b"{}", b""],
                       metadatas=[b"m", b"", b"meta"],
                       ids=[uuid.UUID(int=7), None, uuid.UUID(int=9)])
    for header, body in segment_frames((d / "00000000000000000000.seg").read_bytes()):
        save("body", choices(3, 0, 0, 2) + body)
    shutil.rmtree(d)
    (count,) = struct.unpack_from("<I", seg, off + 24)
    (stored,) = struct.unpack_from("<I", seg, off + 4)
    save("body", choices(count, 1, narrow // 8, 3) + seg[off + 56:off + 56 + stored])
    zfiles, _, frames = _body_template("zbody")
    # A first frame (position 0, like the fuzzed frame) compressed with dictionary 1.
    d = _scratch() / "seed-zbody"
    _write_files(d, zfiles)
    with cl.EventStore.open(d, durability="os", compression="zstd") as s:
        s.append("z-d", [cl.NewEvent("Z", b'{"n": 1, "v": "aa"}'),
                         cl.NewEvent("Y", b'{"n": 2, "v": "c"}', metadata=b"m")])
    (with_dict,) = segment_frames(min(d.glob("*.seg")).read_bytes())
    shutil.rmtree(d)
    # A frame of two blocks decoding to more than PARALLEL_BYTES (256 KiB): the two-thread
    # decoder, from ~3 KiB of input (each block repeats one 1500-byte chunk).
    d = _scratch() / "seed-zbody-parallel"
    _write_files(d, {STORE_FILE: t[STORE_FILE]})
    chunk = random.Random(5).randbytes(1500)
    with cl.EventStore.open(d, durability="os", compression="zstd",
                            compression_block_bytes=150_000) as s:
        s.append_batch(["z-p"] * 30, ["P"] * 30, [(chunk * 7)[:10_000]] * 30)
    ((_, two_blocks),) = segment_frames(min(d.glob("*.seg")).read_bytes())
    shutil.rmtree(d)
    assert struct.unpack_from("<I", two_blocks, 0)[0] == 2 and len(two_blocks) < 8192
    save("zbody", choices(30, 0, 0, 3) + two_blocks)
    for header, body in (frames[0], with_dict):
        (count,) = struct.unpack_from("<I", header, 24)
        (dict_id,) = struct.unpack_from("<I", header, 36)
        save("zbody", choices(count, 0, dict_id, 0) + body)
        save("zbody", choices(count, 0, 4 | dict_id, 1) + body)  # resealed through zstd
    (count,) = struct.unpack_from("<I", frames[0][0], 24)
    save("zbody", choices(count, 0, 2, 2) + frames[0][1])  # a dictionary the frame does not use
    # The plain mode: a frame of 3 blocks of 8 small records each, its blocks decoded.
    d = _scratch() / "seed-zbody-plain"
    _write_files(d, {STORE_FILE: t[STORE_FILE]})
    with cl.EventStore.open(d, durability="os", compression="zstd",
                            compression_block_bytes=1024) as s:
        s.append_batch([f"p-{i % 3}" for i in range(24)], ["P", "Q"] * 12,
                       [b'{"k": "%d", "pad": "%s"}' % (i, b"ab" * 40) for i in range(24)],
                       metadatas=[b"m" if i % 5 == 0 else b"" for i in range(24)])
    ((_, stored),) = segment_frames(min(d.glob("*.seg")).read_bytes())
    shutil.rmtree(d)
    import zstandard

    (n,) = struct.unpack_from("<I", stored, 0)
    plain = bytearray(struct.pack("<I", n))
    at = 4 + 8 * n
    blocks = []
    for k in range(n):
        st, raw = struct.unpack_from("<II", stored, 4 + 8 * k)
        blocks.append(zstandard.ZstdDecompressor().decompress(stored[at:at + st]))
        plain += struct.pack("<II", raw, raw)
        at += st
    assert n > 1, n
    save("zbody", choices(24, 0, 8, 4) + plain + b"".join(blocks) + stored[at:])


# --------------------------------------------------------------------------- drivers


def _mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.3 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op < 0.45 and buf:
            i = rng.randrange(len(buf))
            buf[i] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op < 0.55 and len(buf) >= 4:
            i = rng.randrange(len(buf) - 3)
            buf[i:i + 4] = struct.pack("<I", rng.choice((0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 48, 56,
                                                         rng.getrandbits(32))))
        elif op < 0.7 and buf:
            i = rng.randrange(len(buf) + 1)
            del buf[i:i + rng.randint(1, 64)]
        elif op < 0.8:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 32))
        elif op < 0.9 and pool:
            other = rng.choice(pool)
            if other:
                a = rng.randrange(len(other))
                i = rng.randrange(len(buf) + 1)
                buf[i:i] = other[a:a + rng.randint(1, 256)]
        else:
            buf = buf[:rng.randrange(len(buf) + 1)]
    return bytes(buf)


def corpus_files(target: str) -> list[Path]:
    """The seed corpus and the kept crashers of a target."""
    out: list[Path] = []
    for root in (CORPUS / target, CRASHERS / target):
        if root.is_dir():
            out.extend(sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")))
    return out


def loop(target: str, seconds: float, seed: int = 0,
         on_input: Callable[[bytes], None] | None = None) -> int:
    """Mutate the corpus at random for `seconds` (plain Python, no atheris); returns the number
    of inputs run. A failing input is saved under crashers/<target>/ and re-raised."""
    rng = random.Random(seed)
    pool = [p.read_bytes() for p in corpus_files(target)] or [b""]
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(pool), pool)
        if on_input is not None:
            on_input(data)
        try:
            run_target(target, data)
        except BaseException:
            keep = CRASHERS / target
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"crash-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)
            raise
        n += 1
        if rng.random() < 0.05:
            pool.append(data)
    return n


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    mode = argv[1]
    if mode == "corpus":
        build_corpus()
        return 0
    target = argv[2]
    if target not in TARGETS:
        print(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    if mode == "replay":
        for f in argv[3:]:
            print(f"RUN {f}", flush=True)
            print(f"OK {f} {run_target(target, Path(f).read_bytes())}", flush=True)
        return 0
    if mode == "loop":
        seconds = float(argv[3]) if len(argv) > 3 else 60.0
        seed = int(argv[4]) if len(argv) > 4 else int(time.time())
        started = time.monotonic()
        n = loop(target, seconds, seed)
        print(f"{target}: {n} inputs in {time.monotonic() - started:.1f} s, no failure (seed {seed})")
        return 0
    if mode == "atheris":
        import atheris  # pip install atheris

        with atheris.instrument_imports():
            import chronolog
            import chronolog.scan  # noqa: F401
        _template_files()

        # The compiled core is not instrumented (atheris sees Python code only): give libFuzzer
        # a new edge for each distinct way an input ends (the check that refused it, see
        # outcome_key), one freshly instrumented function per outcome, so inputs that get past
        # one more check of the core are kept.
        outcomes: dict[str, Callable[[], None]] = {}

        def feedback(key: str) -> None:
            hit = outcomes.get(key)
            if hit is None:
                if len(outcomes) >= 20_000:
                    return
                ns: dict[str, object] = {}
                exec("def hit():\n    return None\n", ns)  # noqa: S102 (a fresh code object)
                hit = outcomes[key] = atheris.instrument_func(ns["hit"])
            hit()

        def one(data: bytes) -> None:
            global last_error
            last_error = None
            feedback(outcome_key(run_target(target, data)))

        # libFuzzer writes new inputs into its first corpus directory: a scratch copy, so the
        # seeds in the repository stay small and reviewed (copy a crasher there by hand).
        work = _scratch() / f"corpus-{target}"
        shutil.copytree(CORPUS / target, work, dirs_exist_ok=True)
        atheris.Setup([argv[0], *argv[3:], str(work)], one)
        atheris.Fuzz()
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
