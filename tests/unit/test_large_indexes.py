"""The indexes past the sizes the other tests stay under, against a model: over 8 MiB of
stream positions (the checkpoint copy drops the old mapping's pages every 8 MiB), over 8,192
streams (more than one 16,384-slot block of the checkpoint's hash table, and many 1,024-stream
directory chunks), one hot stream with over 131,072 events since its checkpoint (a delta array
larger than a 1 MiB delta chunk), segment rolls with their background checkpoints, inline
checkpoints that fail and succeed, reopens with and without index files, and read-only
handles (lazily attached checkpoints). A short run in the default suite; a longer one under
`-m slow`.

The model is the stream of every position; an event's data is its position, so every read
is checked against the model's positions of its stream."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import chronolog as cl
from chronolog._core.fileio import FileIO

SEGMENT_BYTES = 24 << 20


class _Model:
    def __init__(self) -> None:
        self.stream_of = np.zeros(0, dtype=np.int32)  # stream index of each position

    def positions(self, k: int) -> np.ndarray:
        return np.flatnonzero(self.stream_of == k)


def _names(n: int) -> np.ndarray:
    return np.array([f"stream-{k}" for k in range(n)], dtype=object)


def _batch(rng: np.random.Generator, names: np.ndarray, n_live: int, n: int,
           head: int) -> tuple[np.ndarray, list[pa.Array]]:
    """A batch of n events: a third on the hot stream 0, the rest spread over the live
    streams and a few new ones; the data of each event is its position."""
    ks = rng.integers(1, n_live, n)
    ks[rng.random(n) < 0.33] = 0
    if n_live < len(names):  # a few streams appear for the first time
        new = rng.random(n) < 0.01
        ks[new] = rng.integers(n_live, min(len(names), n_live + 5), int(new.sum()))
    data = pa.array([b"%d" % p for p in range(head, head + n)], pa.binary())
    return ks.astype(np.int32), [pa.array(names[ks].tolist(), pa.string()),
                                 pa.array(["E"] * n, pa.string()), data]


def _check(store: cl.EventStore, model: _Model, names: np.ndarray, rng: np.random.Generator,
           sample: int) -> None:
    n = len(model.stream_of)
    assert store.head == n
    present = np.unique(model.stream_of)
    assert len(list(store.streams())) == len(present)
    ks = [0, int(present[-1])] + [int(k) for k in rng.choice(present, min(sample, len(present)))]
    for k in ks:
        pos = model.positions(k)
        name = names[k]
        assert store.stream_version(name) == len(pos) - 1, name
        for v in {0, len(pos) // 2, max(0, len(pos) - 3)}:
            got = [int(e.data) for e in store.read_stream(name, from_version=v, limit=3)]
            assert got == pos[v:v + 3].tolist(), (name, v)
    unknown = names[int(rng.integers(0, len(names)))]
    if not np.any(model.stream_of == np.flatnonzero(names == unknown)[0]):
        assert store.stream_version(unknown) is None
    p = int(rng.integers(0, n))
    assert [int(e.data) for e in store.read_all(p, limit=2)] == list(range(p, min(n, p + 2)))


ACTIONS = ["check", "checkpoint", "failed checkpoint", "reopen", "reopen without streams.idx",
           "reopen without index", "read-only"]


def _run(path: Path, seed: int, actions: list[str], events_per_step: int, sample: int) -> None:
    rng = np.random.default_rng(seed)
    choose = random.Random(seed)  # which I/O op a failed checkpoint fails
    names = _names(12_000)
    model = _Model()
    n_live = 9_000
    io = FileIO()
    store = cl.EventStore.open(path, durability="os", max_segment_bytes=SEGMENT_BYTES, io=io)
    try:
        for action in actions:
            left = events_per_step
            while left:
                n = min(left, int(rng.integers(1_000, 60_000)))
                ks, cols = _batch(rng, names, n_live, n, len(model.stream_of))
                store.append_batch(*cols)
                model.stream_of = np.concatenate([model.stream_of, ks])
                n_live = max(n_live, int(ks.max()) + 1)
                left -= n
            if action == "checkpoint":
                store.checkpoint()
            elif action == "failed checkpoint":
                io.inject(choose.choice(["open", "write", "rename"]), after=0, persistent=True)
                store.checkpoint()  # derived files: the failure is absorbed
                io.clear()
            elif action.startswith("reopen"):
                store.close()
                index = path / "index"
                if action == "reopen without streams.idx":
                    (index / "streams.idx").unlink(missing_ok=True)
                elif action == "reopen without index":
                    for f in os.listdir(index):
                        (index / f).unlink()
                store = cl.EventStore.open(path, durability="os", max_segment_bytes=SEGMENT_BYTES,
                                           io=io)
            elif action == "read-only":
                with cl.EventStore.open(path, readonly=True) as reader:
                    _check(reader, model, names, rng, sample)
            _check(store, model, names, rng, sample)
        assert store.verify()["ok"]
    finally:
        store.close()
    with cl.EventStore.open(path, durability="os") as again:
        _check(again, model, names, rng, sample)


def test_indexes_past_their_block_chunk_and_drop_sizes_agree_with_the_model(tmp_path: Path) -> None:
    # A failed checkpoint then a good one (the base is the failed job's image when the good
    # one copies it), every kind of reopen, a read-only handle, rolls in every step.
    _run(tmp_path / "store", seed=1, actions=[
        "checkpoint", "failed checkpoint", "checkpoint", "read-only", "reopen without streams.idx",
        "failed checkpoint", "check", "reopen", "reopen without index", "read-only"],
        events_per_step=200_000, sample=40)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_long_runs_of_large_indexes_agree_with_the_model(tmp_path: Path, seed: int) -> None:
    choose = random.Random(seed)
    _run(tmp_path / "store", seed=seed, actions=[choose.choice(ACTIONS) for _ in range(30)],
         events_per_step=200_000, sample=200)
