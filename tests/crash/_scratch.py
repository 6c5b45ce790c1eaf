"""Scratch directories for crash tests that copy or fsync hundreds of small stores."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def ram_dir(fallback: Path, prefix: str) -> Iterator[Path]:
    """A scratch directory in RAM when /dev/shm is writable (tests that copy or fsync hundreds
    of small stores), removed afterwards; else `fallback` (pytest's tmp_path)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield fallback
        return
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
