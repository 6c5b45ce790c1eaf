"""cl.compact: sealed segments rewritten with another encoding keep every event byte for byte
(all RecordedEvent fields), pass verify before and after, and a compact killed at any moment
leaves each segment old or new, never neither."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from _frames import CODEC_NONE, CODEC_ZSTD, frames

import chronolog as cl
from chronolog._core import compact as _compact
from chronolog._core.fileio import FileIO
from chronolog.errors import StoreFailedError


def _build(path: Path, seed: int, n_batches: int = 24) -> None:
    """A closed store with mixed frames (plain, zstd, zstd with a dictionary), ids, metadata,
    single-event and batch appends, over 24 KiB segments."""
    rng = random.Random(seed)
    counter = 0
    for phase in ("plain", "zstd", "dictionary"):
        with cl.EventStore.open(path, durability="os", max_segment_bytes=24 * 1024,
                                compression=None if phase == "plain" else "zstd",
                                compression_block_bytes=4096) as store:
            if phase == "dictionary":
                store.train_dictionary(sample_events=2000, dict_bytes=2048)
            for _ in range(n_batches // 3):
                n = rng.choice([1, 1, 5, 40])
                rows = []
                for _ in range(n):
                    counter += 1
                    rows.append((f"order-{rng.randrange(25)}", rng.choice(["Placed", "Paid"]),
                                 json.dumps({"n": counter, "sku": f"S{rng.randrange(80)}",
                                             "note": "x" * rng.randrange(200)}).encode(),
                                 b"" if counter % 4 else b'{"trace": "%d"}' % counter,
                                 uuid.UUID(int=counter) if counter % 3 else None))
                store.append_batch([r[0] for r in rows], [r[1] for r in rows],
                                   [r[2] for r in rows], metadatas=[r[3] for r in rows],
                                   ids=[r[4] for r in rows])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compact") / "store"
    _build(path, seed=3, n_batches=90)
    segments = sorted(path.glob("*.seg"))
    assert len(segments) >= 5
    kinds = {(f.codec, f.dict_id) for s in segments for f in frames(s)}
    assert {(CODEC_NONE, 0), (CODEC_ZSTD, 0), (CODEC_ZSTD, 1)} <= kinds
    return path


@pytest.fixture
def copy(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "store"
    shutil.copytree(template, path)
    return path


def _events(path: Path) -> list[tuple[Any, ...]]:
    with cl.EventStore.open(path, readonly=True) as store:
        return [(e.position, e.stream, e.version, e.type, e.data, e.metadata, e.timestamp, e.id)
                for e in store.read_all()]


def _verify(path: Path) -> dict[str, Any]:
    with cl.EventStore.open(path, readonly=True) as store:
        return store.verify()


def _sealed(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))[:-1]


TARGETS = {
    "zstd with the dictionary": {"compression": "zstd", "use_dictionary": True},
    "zstd without a dictionary": {"compression": "zstd", "use_dictionary": False},
    "zstd level 9": {"compression": "zstd", "compression_level": 9},
    "uncompressed": {"compression": None},
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_compact_preserves_every_event_field(copy, template, target):
    cl.compact(copy, **TARGETS[target])
    assert _events(copy) == _events(template)


@pytest.mark.parametrize("target", list(TARGETS))
def test_verify_passes_before_and_after_compact(copy, target):
    assert _verify(copy)["ok"]
    cl.compact(copy, **TARGETS[target])
    report = _verify(copy)
    assert report["ok"], report["problems"]


def test_compact_keeps_the_head_streams_and_stream_versions(copy, template):
    cl.compact(copy, compression="zstd")
    with cl.EventStore.open(template, readonly=True) as before, \
            cl.EventStore.open(copy, readonly=True) as after:
        assert after.head == before.head
        assert after.streams() == before.streams()
        assert [after.stream_version(s) for s in after.streams()] == [
            before.stream_version(s) for s in before.streams()]


def test_compact_leaves_the_newest_segment_byte_for_byte(copy, template):
    newest = max(template.glob("*.seg")).name
    cl.compact(copy, compression="zstd")
    assert (copy / newest).read_bytes() == (template / newest).read_bytes()


def test_compact_reports_the_sealed_segments_and_their_sizes(copy):
    sealed = _sealed(copy)
    before = sum(p.stat().st_size for p in sealed)
    report = cl.compact(copy, compression="zstd")
    assert report == {"segments": len(sealed), "bytes_before": before,
                      "bytes_after": sum(p.stat().st_size for p in _sealed(copy))}


def test_compact_to_zstd_shrinks_sealed_segments_that_hold_plain_frames(copy):
    report = cl.compact(copy, compression="zstd")
    assert report["bytes_after"] < report["bytes_before"]


def test_compact_to_zstd_with_the_dictionary_uses_it_in_every_compressed_frame(copy):
    cl.compact(copy, compression="zstd", use_dictionary=True)
    kinds = {(f.codec, f.dict_id) for s in _sealed(copy) for f in frames(s)}
    assert (CODEC_ZSTD, 1) in kinds
    assert (CODEC_ZSTD, 0) not in kinds


def test_compact_without_compression_leaves_only_plain_frames_in_sealed_segments(copy):
    cl.compact(copy, compression=None)
    assert {f.codec for s in _sealed(copy) for f in frames(s)} == {CODEC_NONE}


def test_compact_keeps_segment_names_and_leaves_no_temporary_files(copy, template):
    cl.compact(copy, compression="zstd")
    assert sorted(os.listdir(copy)) == sorted(os.listdir(template))


@pytest.mark.parametrize("errno_", [errno.ENOSPC, errno.EIO], ids=["full-disk", "io-error"])
def test_a_compact_whose_write_fails_removes_its_scratch_file_and_keeps_every_segment(
        copy, template, errno_):
    # cl.compact's work, on a handle whose third segment write fails (a full disk): the
    # partial <segment>.compact must not stay behind holding the space the next try needs.
    io = FileIO()
    store = cl.EventStore.open(copy, durability="fsync", io=io)
    io.inject("write", after=3, errno=errno_)
    try:
        with pytest.raises(StoreFailedError, match=r"compact stopped rewriting \d{20}\.seg after an "
                           r"I/O error .*; nothing is lost.*run compact again") as info:
            _compact.compact_sealed(store._log, None)
        assert info.value.cause.errno == errno_
    finally:
        io.clear()
        store.close()
    assert not list(copy.glob("*.compact"))
    assert _events(copy) == _events(template) and _verify(copy)["ok"]
    cl.compact(copy, compression=None)  # and it runs again once the cause is gone
    assert _events(copy) == _events(template)


def test_compact_twice_gives_the_same_events(copy, template):
    cl.compact(copy, compression="zstd")
    cl.compact(copy, compression=None)
    cl.compact(copy, compression="zstd", compression_level=3)
    assert _events(copy) == _events(template)


def test_appends_after_compact_continue_at_the_head(copy, template):
    head = len(_events(template))
    cl.compact(copy, compression="zstd")
    with cl.EventStore.open(copy, durability="os", compression="zstd") as store:
        got = store.append("order-1", [cl.NewEvent("Paid", b'{"n": -1}')])
        assert got.first_position == head
        assert store.read_stream("order-1")[-1].position == head
    assert _verify(copy)["ok"]


def test_compact_while_a_writer_has_the_store_open_is_refused(copy, template):
    with cl.EventStore.open(copy, durability="os"), pytest.raises(cl.StoreLockedError):
        cl.compact(copy, compression="zstd")
    assert _events(copy) == _events(template)


def test_compact_with_an_unknown_compression_is_refused_before_anything_changes(copy, template):
    with pytest.raises(cl.errors.InvalidArgumentError, match="compression"):
        cl.compact(copy, compression="lz4")
    assert sorted(os.listdir(copy)) == sorted(os.listdir(template))


# ---------------------------------------------------------------------------- kill -9

_CHILD = textwrap.dedent(
    """
    import sys, time
    import chronolog as cl
    print("ready", flush=True)
    t0 = time.perf_counter()
    cl.compact(sys.argv[1], compression=sys.argv[2] if sys.argv[2] != "none" else None)
    print(time.perf_counter() - t0, flush=True)
    """
)


def _start_compact(path: Path, compression: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), compression],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
    return child


def _compact_seconds(template: Path, tmp_path: Path) -> float:
    """How long one compact of the template takes in a child (to spread the kills over)."""
    path = tmp_path / "timing"
    shutil.copytree(template, path)
    child = _start_compact(path, "zstd")
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    return float(out.strip())


def _kill_compact_at_random_moments(template: Path, tmp_path: Path, iterations: int,
                                    seed: int) -> None:
    rng = random.Random(seed)
    want = _events(template)
    seconds = _compact_seconds(template, tmp_path)
    originals = {p.name: p.read_bytes() for p in template.glob("*.seg")}
    for k in range(iterations):
        path = tmp_path / f"kill-{k}"
        shutil.copytree(template, path)
        compression = rng.choice(["zstd", "none"])
        child = _start_compact(path, compression)
        time.sleep(rng.uniform(0, seconds * 1.1))
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
        # Every segment is there, under its name: old (the same bytes) or new (verified below).
        assert sorted(p.name for p in path.glob("*.seg")) == sorted(originals)
        assert _events(path) == want, f"kill {k} ({compression})"
        report = _verify(path)
        assert report["ok"], (k, report["problems"])
        # A later compact finishes the job and leaves no temporary file behind.
        cl.compact(path, compression="zstd")
        assert _events(path) == want
        assert not [n for n in os.listdir(path) if n.endswith((".compact", ".tmp"))]
        shutil.rmtree(path)


def test_compact_killed_at_random_moments_leaves_every_event(template, tmp_path):
    """The default run's short version: 3 kills."""
    _kill_compact_at_random_moments(template, tmp_path, iterations=3, seed=1)


@pytest.mark.crash
def test_compact_killed_at_many_random_moments_leaves_every_event(template, tmp_path):
    """`pytest -m crash`: 20 kills."""
    _kill_compact_at_random_moments(template, tmp_path, iterations=20, seed=2)
