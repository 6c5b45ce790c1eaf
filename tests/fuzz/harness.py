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
TARGETS = ("frames", "store", "scan", "narrow")
STORE_FILE = "chronolog.store"
SEGMENT_HEADER_BYTES = 64
MAX_ARCHIVE_FILE_BYTES = 1 << 16
_ENTRY = struct.Struct("<BIH")  # kind, segment first position, length

_scratch_root: Path | None = None
_template: dict[str, bytes] | None = None
_narrow: tuple[bytes, int, int] | None = None


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
    else:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    _write_files(d, files)
    try:
        _read_everything(d, scan_spec=spec, narrow=target == "narrow")
        return "ok"
    except ChronologError as exc:
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

        def one(data: bytes) -> None:
            run_target(target, data)

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
