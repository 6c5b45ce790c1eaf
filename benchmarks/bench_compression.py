"""Compression benchmarks (issue 5): ratios with and without a trained dictionary (batch and
single-event appends, next to the zstd CLI on the same payloads), append_batch, scan and
read_stream on compressed stores against uncompressed ones, and the block size trade-off.

Run: `python benchmarks/bench_compression.py [--quick] [--repeats N] [--markdown]`
(prints a table; every figure is a median over interleaved repeats, in one run), or
`pytest benchmarks/bench_compression.py` for the pytest-benchmark versions (50k events).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest

import chronolog as cl
from benchmarks.baselines import BenchContext, Figure, Trial, consume, interleaved, median, remove
from benchmarks.workload import Workload, bench_dir, load_workload

BATCH_EVENTS = 10_000
TRAIN_EVENTS = 20_000          # events appended before train_dictionary (and sampled by it)
SINGLE_EVENTS = 100_000        # single-event appends per store (the full run's cap)
READ_STREAMS = 500             # read_stream calls per timed repeat
BLOCK_SIZES = (4 << 10, 16 << 10, 32 << 10, 64 << 10, 256 << 10)
CLI_FILES = 20_000             # payloads compressed one file each by the zstd CLI
FAST_LEVEL = -3                # zstd's fast levels trade ratio for speed


# ---------------------------------------------------------------------- building stores

def store_options(compression: str | None, block_bytes: int = 32 << 10,
                  level: int = 1) -> dict[str, Any]:
    return {"durability": "os", "compression": compression, "compression_level": level,
            "compression_block_bytes": block_bytes}


def append_batches(store: cl.EventStore, wl: Workload, start: int = 0) -> None:
    for streams, types, datas in wl.slice(start, len(wl)).batches(BATCH_EVENTS):
        store.append_batch(streams, types, datas)


def build(path: Path, wl: Workload, compression: str | None, *, dictionary: bool = False,
          block_bytes: int = 32 << 10, level: int = 1) -> dict[str, float]:
    """Ingest the workload in 10k batches. With `dictionary`, the first TRAIN_EVENTS are
    appended, a dictionary is trained on them, then the rest follows. Returns the store's
    figures: the ratio over the frames written with the final settings, and bytes on disk."""
    with cl.EventStore.open(path, **store_options(compression, block_bytes, level)) as store:
        start = 0
        if dictionary:
            for streams, types, datas in wl.slice(0, TRAIN_EVENTS).batches(BATCH_EVENTS):
                store.append_batch(streams, types, datas)
            store.train_dictionary(sample_events=TRAIN_EVENTS)
            start = TRAIN_EVENTS
        before = store.stats()
        append_batches(store, wl, start)
        after = store.stats()
    return {"ratio": frame_ratio(before, after), "disk": disk_bytes(path)}


def frame_ratio(before: dict[str, Any], after: dict[str, Any]) -> float:
    """Decoded over stored frame bytes of the frames written between two stats() calls (a
    codec-0 frame stores its decoded size, so this is the uncompressed store's size over
    the compressed store's for the same appends)."""
    raw = after["decoded_frame_bytes"] - before["decoded_frame_bytes"]
    stored = after["stored_frame_bytes"] - before["stored_frame_bytes"]
    return raw / stored


def disk_bytes(path: Path) -> int:
    """Segment and dictionary files: everything primary a compressed store keeps."""
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".seg", ".dict"))


def single_appends(path: Path, wl: Workload, compression: str | None, dictionary: bool,
                   n: int) -> tuple[float, float]:
    """TRAIN_EVENTS as batches (trained on when `dictionary`), then n events one append each
    (frames of one event). Returns (ratio over the single-event frames, their appends/s)."""
    with cl.EventStore.open(path, **store_options(compression)) as store:
        for streams, types, datas in wl.slice(0, TRAIN_EVENTS).batches(BATCH_EVENTS):
            store.append_batch(streams, types, datas)
        if dictionary:
            store.train_dictionary(sample_events=TRAIN_EVENTS)
        part = wl.slice(TRAIN_EVENTS, TRAIN_EVENTS + n)
        rows = list(zip(part.streams, part.types, part.datas))
        before = store.stats()
        append, event = store.append, cl.NewEvent
        t0 = time.perf_counter()
        for stream, etype, data in rows:
            append(stream, [event(etype, data)])
        seconds = time.perf_counter() - t0
        after = store.stats()
    return frame_ratio(before, after), n / seconds


# ---------------------------------------------------------------------- the zstd CLI

def zstd_cli(ctx: BenchContext, wl: Workload) -> dict[str, float] | None:
    """The zstd command line's ratios on the same payloads: `zstd -1` over all of them
    concatenated and over the uncompressed store's segment files, and one file per payload
    with and without a dictionary from `zstd --train` (CLI_FILES payloads)."""
    if shutil.which("zstd") is None:
        ctx.notes.append("zstd CLI not installed: its figures are skipped")
        return None
    root = ctx.fresh_dir("zstd-cli")
    root.mkdir()
    try:
        out: dict[str, float] = {}
        payloads = root / "payloads.bin"
        payloads.write_bytes(b"".join(wl.datas))
        out["concatenated"] = wl.payload_bytes / _zstd_size(["-1", str(payloads)])
        datas = wl.datas
        train = root / "train"
        train.mkdir()
        for i in range(min(10_000, TRAIN_EVENTS)):
            (train / f"{i}").write_bytes(datas[i])
        subprocess.run(["zstd", "-q", "--train", "-r", str(train), "-o", str(root / "dict"),
                        "--maxdict=112640"], check=True, capture_output=True)
        files = root / "files"
        files.mkdir()
        n = min(CLI_FILES, len(wl) - TRAIN_EVENTS)
        for i in range(n):
            (files / f"{i}").write_bytes(datas[TRAIN_EVENTS + i])
        raw = sum(len(datas[TRAIN_EVENTS + i]) for i in range(n))
        for name, extra in (("per payload", []), ("per payload, dictionary",
                                                  ["-D", str(root / "dict")])):
            packed = root / name.replace(", ", "-").replace(" ", "-")
            packed.mkdir()  # (zstd 1.5.4 crashes when --output-dir-flat is missing)
            subprocess.run(["zstd", "-q", "-1", "-r", str(files), *extra, "--output-dir-flat",
                            str(packed)], check=True, capture_output=True)
            out[name] = raw / sum(p.stat().st_size for p in packed.iterdir())
        return out
    finally:
        remove(root)


def _zstd_size(args: list[str]) -> int:
    done = subprocess.run(["zstd", "-q", "-c", *args], check=True, capture_output=True)
    return len(done.stdout)


# ---------------------------------------------------------------------- zstd alone

def zstd_blocks(store_path: Path, block_bytes: int = 32 << 10) -> tuple[list[bytes], list[bytes]]:
    """The uncompressed store's segment bytes cut in block_bytes pieces, and each piece
    compressed at level 1 by python-zstandard: what the codec does, without the store."""
    import zstandard

    data = b"".join(p.read_bytes() for p in sorted(store_path.glob("*.seg")))
    raw = [data[i: i + block_bytes] for i in range(0, len(data), block_bytes)]
    cctx = zstandard.ZstdCompressor(level=1)
    return raw, [cctx.compress(b) for b in raw]


def zstd_compress_all(raw: list[bytes]) -> None:
    import zstandard

    compress = zstandard.ZstdCompressor(level=1).compress
    for b in raw:
        compress(b)


def zstd_decompress_all(packed: list[bytes]) -> None:
    import zstandard

    decompress = zstandard.ZstdDecompressor().decompress
    for b in packed:
        decompress(b)


# ---------------------------------------------------------------------- reads

def read_streams(store: cl.EventStore, names: list[str]) -> int:
    read = store.read_stream
    return sum(len(read(name)) for name in names)


def scan_all(store: cl.EventStore) -> None:
    consume(store.scan())


# ---------------------------------------------------------------------- the figures

def measure(ctx: BenchContext, wl: Workload) -> list[Figure]:
    root = ctx.fresh_dir("compression")
    root.mkdir()
    n = len(wl)
    names = random.Random(7).sample(sorted(set(wl.streams)), READ_STREAMS)
    figures: list[Figure] = []
    try:
        # Pass 1: the three reference stores (plain, zstd-1, zstd-1 with a dictionary).
        stores = {"plain": root / "plain", "zstd": root / "zstd", "dict": root / "dict",
                  "fast": root / "fast"}
        built = {
            "plain": build(stores["plain"], wl, None),
            "zstd": build(stores["zstd"], wl, "zstd"),
            "dict": build(stores["dict"], wl, "zstd", dictionary=True),
            "fast": build(stores["fast"], wl, "zstd", level=FAST_LEVEL),
        }
        plain_disk = built["plain"]["disk"]
        figures += [
            Figure("ratio, append_batch 10k, zstd-1 + trained dictionary", "x",
                   built["dict"]["ratio"], "uncompressed frames", 1.0, target=4.0,
                   detail=f"decoded / stored frame bytes after training on {TRAIN_EVENTS:,} "
                          "events (112 KiB dictionary)"),
            Figure("ratio, append_batch 10k, zstd-1, no dictionary", "x",
                   built["zstd"]["ratio"], "uncompressed frames", 1.0, kind="info"),
            Figure(f"ratio, append_batch 10k, zstd {FAST_LEVEL} (fast), no dictionary", "x",
                   built["fast"]["ratio"], "uncompressed frames", 1.0, kind="info"),
            Figure("bytes on disk, zstd-1 + dictionary store", "MB", built["dict"]["disk"] / 1e6,
                   "uncompressed store", plain_disk / 1e6, kind="info",
                   detail="ratio < 1 is the saving: segments + dictionary file"),
            Figure("bytes on disk, zstd-1 store", "MB", built["zstd"]["disk"] / 1e6,
                   "uncompressed store", plain_disk / 1e6, kind="info"),
        ]
        # Pass 2: single-event appends (frames of one event), where a dictionary matters most.
        n_single = min(SINGLE_EVENTS, n - TRAIN_EVENTS)
        single = {}
        for key, compression, dictionary in (("plain", None, False), ("zstd", "zstd", False),
                                             ("dict", "zstd", True)):
            path = root / f"single-{key}"
            single[key] = single_appends(path, wl, compression, dictionary, n_single)
            remove(path)
        figures += [
            Figure("ratio, single-event appends, zstd-1 + dictionary", "x", single["dict"][0],
                   "uncompressed frames", 1.0, kind="info",
                   detail=f"{n_single:,} appends of one event (frame + record headers included)"),
            Figure("ratio, single-event appends, zstd-1, no dictionary", "x", single["zstd"][0],
                   "uncompressed frames", 1.0, kind="info"),
            Figure("single-event appends/s, zstd-1 + dictionary", "ev/s", single["dict"][1],
                   "uncompressed", single["plain"][1], kind="info", detail="one run each"),
        ]
        cli = zstd_cli(ctx, wl)
        if cli is not None:
            figures += [
                Figure("zstd CLI -1, all payloads concatenated", "x", cli["concatenated"],
                       "payload bytes", 1.0, kind="info",
                       detail="payloads only (no record headers, stream or type names)"),
                Figure("zstd CLI -1, one file per payload, --train dictionary", "x",
                       cli["per payload, dictionary"], "payload bytes", 1.0, kind="info",
                       detail=f"{CLI_FILES:,} payloads, dictionary trained on 10,000"),
                Figure("zstd CLI -1, one file per payload, no dictionary", "x",
                       cli["per payload"], "payload bytes", 1.0, kind="info"),
            ]
            seg_bytes = stores["plain"] / "all-segments.bin"
            with open(seg_bytes, "wb") as out:
                out.writelines(p.read_bytes() for p in sorted(stores["plain"].glob("*.seg")))
            figures.append(Figure(
                "zstd CLI -1 over the uncompressed store's segment files", "x",
                seg_bytes.stat().st_size / _zstd_size(["-1", str(seg_bytes)]), "segment bytes",
                1.0, kind="info", detail="the whole log as one zstd stream: the ceiling for "
                "frames compressed independently"))
            seg_bytes.unlink()

        # Pass 3: append_batch rates, interleaved (each repeat ingests into a fresh store;
        # the dictionary variant starts from a copy of the trained dictionary file).
        dict_file = next(stores["dict"].glob("zstd-*.dict"))

        def fresh(key: str) -> Callable[[], Path]:
            def setup() -> Path:
                path = root / f"append-{key}"
                remove(path)
                path.mkdir()
                if key == "dict":
                    shutil.copy(dict_file, path / dict_file.name)
                return path
            return setup

        def ingest(compression: str | None, level: int = 1) -> Callable[[Path], None]:
            def run(path: Path) -> None:
                with cl.EventStore.open(path, **store_options(compression, level=level)) as store:
                    append_batches(store, wl)
            return run

        raw_blocks, packed_blocks = zstd_blocks(stores["plain"])
        times = interleaved({
            "plain": Trial(setup=fresh("plain"), run=ingest(None), teardown=remove),
            "zstd": Trial(setup=fresh("zstd"), run=ingest("zstd"), teardown=remove),
            "dict": Trial(setup=fresh("dict"), run=ingest("zstd"), teardown=remove),
            "fast": Trial(setup=fresh("fast"), run=ingest("zstd", FAST_LEVEL), teardown=remove),
            "compress": Trial(run=lambda _: zstd_compress_all(raw_blocks)),
        }, ctx.repeats)
        t = {k: median(v) for k, v in times.items()}
        bound = n / (t["plain"] + t["compress"])
        figures += [
            Figure("append_batch 10k/batch, zstd-1", "ev/s", n / t["zstd"],
                   "uncompressed append_batch", n / t["plain"], target=0.6,
                   detail=f"uncompressed append time + zstd -1 alone (python-zstandard, 32 KiB "
                          f"blocks of the same records) would give {bound / 1e6:.2f} M ev/s = "
                          f"{bound * t['plain'] / n:.2f}x (the store writes ~4x fewer bytes, so "
                          f"it beats that sum); zstd -1 alone: "
                          f"{sum(map(len, raw_blocks)) / t['compress'] / 1e6:.0f} MB/s"),
            Figure("append_batch 10k/batch, zstd-1 + dictionary", "ev/s", n / t["dict"],
                   "uncompressed append_batch", n / t["plain"], target=0.6),
            Figure(f"append_batch 10k/batch, zstd {FAST_LEVEL} (fast)", "ev/s", n / t["fast"],
                   "uncompressed append_batch", n / t["plain"], target=0.6),
        ]

        # Pass 4: scans and random read_stream on the reference stores, interleaved.
        handles = {k: cl.EventStore.open(p, readonly=True) for k, p in stores.items()}
        try:
            for h in handles.values():  # warm the page cache and the indexes
                scan_all(h)
                read_streams(h, names)
            trials = {f"scan-{k}": Trial(run=lambda _, h=h: scan_all(h))
                      for k, h in handles.items()}
            trials |= {f"read-{k}": Trial(run=lambda _, h=h: read_streams(h, names))
                       for k, h in handles.items()}
            trials["decompress"] = Trial(run=lambda _: zstd_decompress_all(packed_blocks))
            t = {k: median(v) for k, v in interleaved(trials, ctx.repeats).items()}
        finally:
            for h in handles.values():
                h.close()
        figures += [
            Figure("scan, all columns, zstd-1 store", "ev/s", n / t["scan-zstd"],
                   "scan of the uncompressed store", n / t["scan-plain"], target=0.5,
                   detail=f"serial bound, uncompressed scan + zstd decompression alone "
                          f"(python-zstandard, 32 KiB blocks of the same records): "
                          f"{n / (t['scan-plain'] + t['decompress']) / 1e6:.2f} M ev/s = "
                          f"{t['scan-plain'] / (t['scan-plain'] + t['decompress']):.2f}x; "
                          f"decompression alone: "
                          f"{sum(map(len, raw_blocks)) / t['decompress'] / 1e6:.0f} MB/s"),
            Figure("scan, zstd-1 store vs zstd decompression alone", "ev/s", n / t["scan-zstd"],
                   "python-zstandard, same records", n / t["decompress"], kind="info"),
            Figure("scan, all columns, zstd-1 + dictionary store", "ev/s", n / t["scan-dict"],
                   "scan of the uncompressed store", n / t["scan-plain"], target=0.5),
            Figure(f"scan, all columns, zstd {FAST_LEVEL} (fast) store", "ev/s",
                   n / t["scan-fast"], "scan of the uncompressed store", n / t["scan-plain"],
                   kind="info"),
            Figure("read_stream of a 100-event stream, zstd-1 (32 KiB blocks)", "reads/s",
                   READ_STREAMS / t["read-zstd"], "uncompressed store",
                   READ_STREAMS / t["read-plain"], kind="info",
                   detail=f"{READ_STREAMS} random streams per repeat; each event sits in "
                          "another frame, so a read decodes ~100 blocks"),
            Figure("read_stream of a 100-event stream, zstd-1 + dictionary", "reads/s",
                   READ_STREAMS / t["read-dict"], "uncompressed store",
                   READ_STREAMS / t["read-plain"], kind="info"),
        ]
        for key in ("zstd", "dict", "fast"):
            remove(stores[key])

        # Pass 5: the block size trade-off (zstd-1; ratio also with a dictionary).
        figures += block_sizes(ctx, wl, root, stores["plain"], names)
    finally:
        remove(root)
    return figures


def block_sizes(ctx: BenchContext, wl: Workload, root: Path, plain: Path,
                names: list[str]) -> list[Figure]:
    n = len(wl)
    ratios, dict_ratios, ingest_s = {}, {}, {}
    for size in BLOCK_SIZES:
        path = root / f"block-{size}"
        t0 = time.perf_counter()
        ratios[size] = build(path, wl, "zstd", block_bytes=size)["ratio"]
        ingest_s[size] = time.perf_counter() - t0
        dpath = root / f"block-dict-{size}"
        dict_ratios[size] = build(dpath, wl, "zstd", dictionary=True, block_bytes=size)["ratio"]
        remove(dpath)
    handles = {size: cl.EventStore.open(root / f"block-{size}", readonly=True)
               for size in BLOCK_SIZES}
    handles[0] = cl.EventStore.open(plain, readonly=True)
    try:
        for h in handles.values():
            read_streams(h, names)
            scan_all(h)
        trials = {f"read-{s}": Trial(run=lambda _, h=h: read_streams(h, names))
                  for s, h in handles.items()}
        trials |= {f"scan-{s}": Trial(run=lambda _, h=h: scan_all(h)) for s, h in handles.items()}
        t = {k: median(v) for k, v in interleaved(trials, ctx.repeats).items()}
    finally:
        for h in handles.values():
            h.close()
    out = []
    for size in BLOCK_SIZES:
        kib = size >> 10
        out += [
            Figure(f"block {kib} KiB: ratio zstd-1 (with dictionary)", "x", ratios[size],
                   "uncompressed frames", 1.0, kind="info",
                   detail=f"with a trained dictionary: {dict_ratios[size]:.2f}x; "
                          f"ingest {n / ingest_s[size] / 1e6:.2f} M ev/s (one run)"),
            Figure(f"block {kib} KiB: read_stream of 100 events", "reads/s",
                   READ_STREAMS / t[f"read-{size}"], "uncompressed store",
                   READ_STREAMS / t["read-0"], kind="info",
                   detail=f"{t[f'read-{size}'] / READ_STREAMS * 1e3:.2f} ms per read vs "
                          f"{t['read-0'] / READ_STREAMS * 1e3:.2f} ms"),
            Figure(f"block {kib} KiB: scan, all columns", "ev/s", n / t[f"scan-{size}"],
                   "uncompressed store", n / t["scan-0"], kind="info"),
        ]
    for size in BLOCK_SIZES:
        remove(root / f"block-{size}")
    return out


# ---------------------------------------------------------------------- pytest-benchmark

@pytest.mark.parametrize("compression", [None, "zstd"])
def test_append_batch(benchmark: Any, small_workload: Workload, tmp_path: Path,
                      compression: str | None) -> None:
    runs = iter(range(1_000_000))

    def ingest() -> None:
        with cl.EventStore.open(tmp_path / f"s{next(runs)}", **store_options(compression)) as s:
            append_batches(s, small_workload)

    benchmark.pedantic(ingest, rounds=3, iterations=1)


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_scan(benchmark: Any, small_workload: Workload, tmp_path: Path,
              compression: str | None) -> None:
    build(tmp_path / "s", small_workload, compression)
    with cl.EventStore.open(tmp_path / "s", readonly=True) as store:
        benchmark.pedantic(lambda: scan_all(store), rounds=5, iterations=1)


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_read_stream_100_events(benchmark: Any, small_workload: Workload, tmp_path: Path,
                                compression: str | None) -> None:
    build(tmp_path / "s", small_workload, compression)
    names = random.Random(7).sample(sorted(set(small_workload.streams)), 100)
    with cl.EventStore.open(tmp_path / "s", readonly=True) as store:
        benchmark(read_streams, store, names)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run_core import machine, print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events instead of 1M")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (medians)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    root = bench_dir()
    ctx = BenchContext(quick=args.quick, repeats=max(1, args.repeats),
                       scratch=root / f"compression-{os.getpid()}", root=root)
    started = time.perf_counter()
    info = machine()
    wl = load_workload(ctx.n_events, ctx.n_streams)
    try:
        figures = measure(ctx, wl)
    finally:
        remove(ctx.scratch)
    print(f"chronolog compression benchmarks ({'quick' if args.quick else 'full'}: {wl!r}; "
          f"{ctx.repeats} repeats, medians), {info['nproc']} cores, load before "
          f"{info['load_before']}")
    print_table(figures, args.markdown)
    for note in ctx.notes:
        print(f"note: {note}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
