"""A writer process for the kill -9 tests: appends in a loop and reports every append on stdout.

Run as ``python _child.py STORE DURABILITY SEED MAX_SEGMENT_BYTES``. It opens the store,
prints ``R <head>``, then appends forever (single appends and append_batch, random sizes,
streams, ids and metadata). Around each call it prints one line (flushed at once):

- ``I <json>`` before the call (the intent): ``{"first": p, "events": [[stream, version,
  digest], ...]}`` where p is the position the append must take;
- ``A <json>`` after the call returned (the acknowledgement): the same events plus the
  positions the store returned (``first``, ``last``, ``next_version``).

The parent kills it at a random moment; after reopening, every acknowledged event must be
there, and anything beyond them must be exactly the one intent that was in flight.
The module also exports `event_digest`, so the parent computes the same digests.

Example:
    >>> event_digest("Made", b"{}", b"", None)  # doctest: +SKIP
    '9a1c...'
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
import uuid

STREAMS = [f"crash-{i}" for i in range(10)] + ["crash-é", "crash-" + "x" * 200]
TYPES = ["Made", "Changed", "Removed", "T" * 60]
SAFETY_SECONDS = 20.0  # a child the parent forgot to kill stops by itself


def event_digest(etype: str, data: bytes, metadata: bytes, id_bytes: bytes | None) -> str:
    """A digest of everything an event carries besides where it is (length-prefixed fields).

    Example:
        >>> len(event_digest("Made", b"{}", b"", None))
        32
    """
    h = hashlib.blake2b(digest_size=16)
    for part in (etype.encode("utf-8"), data, metadata, id_bytes or b""):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    h.update(b"\x01" if id_bytes is not None else b"\x00")
    return h.hexdigest()


def _payload(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.03:
        n = rng.randint(8_000, 60_000)  # large frames: a kill may tear them mid-write
    elif roll < 0.15:
        n = rng.randint(300, 3_000)
    else:
        n = rng.randint(0, 200)
    return rng.randbytes(n)


def _event(rng: random.Random) -> tuple[str, bytes, bytes, bytes | None]:
    etype = rng.choice(TYPES)
    data = _payload(rng)
    metadata = rng.randbytes(rng.randint(1, 40)) if rng.random() < 0.3 else b""
    id_bytes = uuid.UUID(int=rng.getrandbits(128)).bytes if rng.random() < 0.4 else None
    return etype, data, metadata, id_bytes


def _say(tag: str, obj: object) -> None:
    sys.stdout.write(tag + " " + json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    import chronolog as cl

    path, durability, seed, max_segment_bytes = argv[0], argv[1], int(argv[2]), int(argv[3])
    rng = random.Random(seed)
    store = cl.EventStore.open(path, durability=durability, max_segment_bytes=max_segment_bytes)
    head = store.head
    counts = {}
    for s in STREAMS:
        v = store.stream_version(s)
        counts[s] = 0 if v is None else v + 1
    sys.stdout.write(f"R {head}\n")
    sys.stdout.flush()
    deadline = time.monotonic() + SAFETY_SECONDS
    while time.monotonic() < deadline:
        single = rng.random() < 0.5
        if single:
            stream = rng.choice(STREAMS)
            evs = [_event(rng) for _ in range(rng.choice((1, 1, 1, 2, 3, 8)))]
            streams = [stream] * len(evs)
        else:
            n = rng.choice((1, 2, 5, 12, 30, 64, 100))  # 64 and more: narrow regions
            if rng.random() < 0.05:
                n = 600  # ~0.8 MB frames: written by the pipeline (csrc/chl_wpipe.h), header last
            evs = [_event(rng) for _ in range(n)]
            streams = [rng.choice(STREAMS) for _ in range(n)]
            if rng.random() < 0.3:  # a batch without a metadata column stores b"" for each
                evs = [(t, d, b"", i) for t, d, _, i in evs]
        described = []
        pending: dict[str, int] = {}
        for s, (etype, data, meta, eid) in zip(streams, evs):
            version = counts[s] + pending.get(s, 0)
            pending[s] = pending.get(s, 0) + 1
            described.append([s, version, event_digest(etype, data, meta, eid)])
        _say("I", {"first": head, "events": described})
        if single:
            expected = cl.ANY
            if rng.random() < 0.5:
                expected = cl.NO_STREAM if counts[stream] == 0 else counts[stream] - 1
            res = store.append(
                stream,
                [cl.NewEvent(t, d, metadata=m, id=i) for t, d, m, i in evs],
                expected_version=expected,
            )
        else:
            has_meta = any(e[2] for e in evs)
            has_ids = any(e[3] is not None for e in evs)
            res = store.append_batch(
                streams,
                [e[0] for e in evs],
                [e[1] for e in evs],
                metadatas=[e[2] for e in evs] if has_meta else None,
                ids=[e[3] for e in evs] if has_ids else None,
            )
        _say(
            "A",
            {
                "first": res.first_position,
                "last": res.last_position,
                "next_version": res.next_version,
                "events": described,
            },
        )
        head += len(evs)
        for s, k in pending.items():
            counts[s] += k
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
