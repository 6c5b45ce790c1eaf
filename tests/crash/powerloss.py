"""A power-loss simulator for the store: it replays the trace of a FileIO (every open, write,
fsync, truncate, rename, unlink and directory fsync the core made) into a model of what is
durable and what is only in the page cache, and materialises the directory a machine could
find after losing power at any point of that trace.

The model is as strict as POSIX and ext4 allow (in the spirit of SQLite's crash-test VFS and
the ALICE study, "All File Systems Are Not Created Equal", OSDI 2014):

- File data is durable up to the file's last fsync/fdatasync. Every 4 KiB block written (or
  truncated away) since may, independently of its neighbours, hold the new bytes, the old
  bytes, a mix of both by 512-byte sector (a torn block), and where the block was never
  durable zeros or garbage; the file's length may be the durable one, the current one, or
  any block boundary in between. Bytes that were durable stay as they were unless rewritten
  (the "powersafe overwrite" assumption SQLite makes by default: a write does not damage
  neighbouring durable bytes of its sector).
  Independent per-block choices also model reordering: a later write may survive while an
  earlier one is lost.
- Directory entries (creations, renames, unlinks) are durable after an fsync of their
  directory. The entries changed since are replayed as a random prefix of the operations on
  that directory (a journaling file system commits metadata in order): a new file not yet
  covered may vanish, a rename not yet covered may be undone, an unlink may be undone.
- A file's data and its name are independent: a fsynced file whose entry was never made
  durable vanishes; a durable entry of a never-fsynced file may be empty or garbage.
- Directories themselves (the store directory, index/) survive: the core creates them with
  os.makedirs, outside the traced layer. (The store directory's entry in its parent is the
  caller's business; docs/reliability.md says so.)
- Files that existed before recording started are durable as they were.

Example:
    >>> rec = Recorder(store_dir)                       # doctest: +SKIP
    >>> io = FileIO(); io.trace = rec.trace              # doctest: +SKIP
    >>> store = cl.EventStore.open(store_dir, io=io)     # doctest: +SKIP
    >>> ...                                              # doctest: +SKIP
    >>> for k, crashed in rec.crash_points(tmp, seeds=2):  # doctest: +SKIP
    ...     check(crashed, acknowledged_through(k))
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BLOCK_BYTES = 4096

Op = tuple[str, str | None, int, object]


@dataclass
class _Inode:
    """One file's contents: what is in the page cache and what is on the platter."""

    data: bytearray
    durable: bytes = b""


@dataclass
class _Dir:
    """One directory: the names that are durable, and the name operations since its last fsync."""

    durable: dict[str, int] = field(default_factory=dict)
    pending: list[tuple[str, str, int | None]] = field(default_factory=list)  # (op, name, inode)


class Model:
    """The durable and volatile state of a directory tree, driven by trace operations.

    Invariants:
        - `names` is the volatile (current) namespace: relative path -> inode number;
        - each directory's durable entries plus a prefix of its pending operations is a
          namespace the file system could show after a crash.

    Thread-safety: not thread-safe; feed it from one thread (the store's trace calls are made
    with the GIL held, in order).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.inodes: dict[int, _Inode] = {}
        self.names: dict[str, int] = {}
        self.dirs: dict[str, _Dir] = {}
        self._next = 1
        if self.root.exists():
            for dirpath, _dirnames, filenames in os.walk(self.root):
                for fn in filenames:
                    full = Path(dirpath) / fn
                    rel = str(full.relative_to(self.root))
                    raw = full.read_bytes()
                    ino = self._new_inode(raw, durable=True)
                    self.names[rel] = ino
                    self._dir(rel).durable[os.path.basename(rel)] = ino

    def _new_inode(self, raw: bytes = b"", *, durable: bool = False) -> int:
        ino = self._next
        self._next += 1
        self.inodes[ino] = _Inode(bytearray(raw), bytes(raw) if durable else b"")
        return ino

    def _rel(self, path: str) -> str | None:
        p = os.path.abspath(path)
        root = str(self.root)
        if p == root:
            return ""
        if not p.startswith(root + os.sep):
            return None  # outside the tree: not modelled
        return p[len(root) + 1:]

    def _dir(self, rel: str) -> _Dir:
        d = os.path.dirname(rel)
        if d not in self.dirs:
            self.dirs[d] = _Dir()
        return self.dirs[d]

    def apply(self, op: str, path: str | None, offset: int, data: object) -> None:
        """Apply one traced operation (see FileIO.trace for their shapes)."""
        if path is None or op == "close":
            return
        rel = self._rel(path)
        if rel is None:
            return
        if op == "open":
            if offset & os.O_DIRECTORY or rel == "" or rel in self.dirs:
                return
            ino = self.names.get(rel)
            if ino is None:
                if not offset & os.O_CREAT:
                    return
                ino = self._new_inode()
                self.names[rel] = ino
                self._dir(rel).pending.append(("link", os.path.basename(rel), ino))
            elif offset & os.O_TRUNC:
                del self.inodes[ino].data[:]
        elif op in ("write", "publish"):  # publish: the visibility mark, rewritten at 0
            assert isinstance(data, bytes)
            buf = self.inodes[self.names[rel]].data
            end = offset + len(data)
            if len(buf) < end:
                buf.extend(b"\0" * (end - len(buf)))
            buf[offset:end] = data
        elif op == "truncate":
            buf = self.inodes[self.names[rel]].data
            if len(buf) > offset:
                del buf[offset:]
            else:
                buf.extend(b"\0" * (offset - len(buf)))
        elif op == "fsync":
            ino = self.names.get(rel)
            if ino is not None:
                self.inodes[ino].durable = bytes(self.inodes[ino].data)
        elif op == "rename":
            assert isinstance(data, str)
            dst = self._rel(data)
            assert dst is not None and os.path.dirname(dst) == os.path.dirname(rel), \
                "the core renames within one directory"
            ino = self.names.pop(rel)
            self.names[dst] = ino
            d = self._dir(rel)
            d.pending.append(("unlink", os.path.basename(rel), None))
            d.pending.append(("link", os.path.basename(dst), ino))
            # A rename is one atomic step: mark the pair so a prefix never splits it.
            d.pending.append(("barrier", "", None))
        elif op == "unlink":
            self.names.pop(rel, None)
            self._dir(rel).pending.append(("unlink", os.path.basename(rel), None))
        elif op == "zero":  # zeros written over a reserved range: a write like any other
            assert isinstance(data, int)
            buf = self.inodes[self.names[rel]].data
            if len(buf) < offset + data:
                buf.extend(b"\0" * (offset + data - len(buf)))
            buf[offset:offset + data] = bytes(data)
        elif op == "grow":  # fallocate that extends the file: zeros up to offset + length
            assert isinstance(data, int)
            buf = self.inodes[self.names[rel]].data
            if len(buf) < offset + data:
                buf.extend(b"\0" * (offset + data - len(buf)))
        elif op in ("allocate", "writeback"):
            pass  # blocks reserved past the end (size unchanged), or writeback started: hints
        elif op == "fsync_dir":
            d = self.dirs.setdefault(rel, _Dir())
            prefix = "" if rel == "" else rel + os.sep
            d.durable = {n[len(prefix):]: ino for n, ino in self.names.items()
                         if os.path.dirname(n) == rel and n.startswith(prefix)}
            d.pending.clear()
        else:
            raise ValueError(f"unknown traced op {op!r}")

    def materialise(self, dest: Path, rng: random.Random, *, clean: bool = False) -> None:
        """Write the tree as it could be after a power loss now into `dest` (created).

        With `clean`, the crash keeps exactly what is durable (no partial blocks, no garbage,
        no undone directory operations beyond the durable ones): the mildest power loss."""
        dest.mkdir(parents=True, exist_ok=True)
        for d in sorted(self.dirs):
            (dest / d).mkdir(parents=True, exist_ok=True)
        for dname, d in self.dirs.items():
            names = dict(d.durable)
            steps = _atomic_steps(d.pending)
            keep = 0 if clean else rng.randint(0, len(steps))
            for step in steps[:keep]:
                for kind, name, ino in step:
                    if kind == "link":
                        assert ino is not None
                        names[name] = ino
                    else:
                        names.pop(name, None)
            for name, ino in names.items():
                target = dest / dname / name
                target.write_bytes(self._crashed_bytes(self.inodes[ino], rng, clean))

    @staticmethod
    def _crashed_bytes(inode: _Inode, rng: random.Random, clean: bool) -> bytes:
        old, new = inode.durable, bytes(inode.data)
        if clean or old == new:
            return old
        lo, hi = min(len(old), len(new)), max(len(old), len(new))
        # The length: the durable one, the current one, or a block boundary in between.
        choices = [len(old), len(new)]
        first_block = (lo + BLOCK_BYTES - 1) // BLOCK_BYTES * BLOCK_BYTES
        choices += list(range(first_block, hi, BLOCK_BYTES))[:64]
        length = rng.choice(choices)
        out = bytearray(length)
        for start in range(0, length, BLOCK_BYTES):
            end = min(start + BLOCK_BYTES, length)
            size = end - start
            o, n = old[start:end], new[start:end]
            if o == n and len(o) == size:
                out[start:end] = o
                continue
            base = o.ljust(size, b"\0")  # bytes past the durable length were never on disk
            durable_here = len(o)
            fate = rng.random()
            if fate < 0.3:
                blk = n.ljust(size, b"\0")
            elif fate < 0.55:
                blk = base
            elif fate < 0.7:  # a torn block: each 512-byte sector old or new
                blk = b"".join(
                    (n.ljust(size, b"\0") if rng.random() < 0.5 else base)[s:s + 512]
                    for s in range(0, size, 512))
            elif fate < 0.85:  # never-written blocks read back as zeros ...
                blk = base
            else:  # ... or as stale garbage (ext4 data=writeback, other file systems)
                blk = base[:durable_here] + rng.randbytes(size - durable_here)
            out[start:end] = blk
        return bytes(out)


def _atomic_steps(pending: list[tuple[str, str, int | None]]) -> list[list[tuple[str, str, int | None]]]:
    """Group pending name operations into atomic steps (a rename's unlink + link is one)."""
    steps: list[list[tuple[str, str, int | None]]] = []
    i = 0
    while i < len(pending):
        if (i + 2 < len(pending) and pending[i][0] == "unlink" and pending[i + 1][0] == "link"
                and pending[i + 2][0] == "barrier"):
            steps.append([pending[i], pending[i + 1]])
            i += 3
        elif pending[i][0] == "barrier":
            i += 1
        else:
            steps.append([pending[i]])
            i += 1
    return steps


class Recorder:
    """Records a FileIO trace over one store directory and materialises crashed copies of it.

    Set `io.trace = recorder.trace` before opening the store. Mark acknowledgements with
    `recorder.mark()` (it returns the number of operations traced so far): an operation index
    k is a crash point "after the k-th operation".

    Example:
        >>> rec = Recorder(tmp_path / "s")  # doctest: +SKIP
        >>> rec.op_count                    # doctest: +SKIP
        0
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self._initial = Model(self.root)
        self.ops: list[Op] = []

    def trace(self, op: str, path: str | None, offset: int, data: object) -> None:
        """The FileIO trace callback."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
        self.ops.append((op, path, offset, data))

    @property
    def op_count(self) -> int:
        """How many operations were traced so far."""
        return len(self.ops)

    def mark(self) -> int:
        """The crash point just after everything traced so far (call it after an append returns)."""
        return len(self.ops)

    def crash_points(self, workdir: Path, points: list[int], *, seed: int,
                     variants: int = 1) -> Iterator[tuple[int, int, Path]]:
        """For each crash point k (ascending), yield (k, variant, directory) where directory
        holds a crashed copy of the store after the first k traced operations. Variant 0 is
        the clean crash (exactly what is durable); the others draw random fates from a seeded
        RNG. Each directory is removed when the next one is made.
        """
        model = Model.__new__(Model)
        model.root = self.root
        model.inodes = {k: _Inode(bytearray(v.data), v.durable) for k, v in self._initial.inodes.items()}
        model.names = dict(self._initial.names)
        model.dirs = {k: _Dir(dict(v.durable), list(v.pending)) for k, v in self._initial.dirs.items()}
        model._next = self._initial._next
        done = 0
        for k in sorted(set(points)):
            while done < k:
                model.apply(*self.ops[done])
                done += 1
            for v in range(variants):
                dest = workdir / f"crash-{k}-{v}"
                rng = random.Random(f"{seed}:{k}:{v}")
                model.materialise(dest, rng, clean=(v == 0))
                try:
                    yield k, v, dest
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
