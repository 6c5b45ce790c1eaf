"""Repair (DESIGN invariant 5's "explicit, logged way out"): rebuild a store's derived indexes,
and with `salvage` move damaged bytes aside until the events before the damage open again.
Nothing is deleted: what salvage cuts goes to a `salvage-<UTC time>/` directory in the store,
with `repair.log`, a line per step."""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any

from chronolog._args import store_path
from chronolog._lifetime import take_lock
from chronolog.errors import CorruptionError, StoreFailedError, StoreNotFoundError
from chronolog.store import EventStore

__all__ = ["repair"]

_SEGMENT = re.compile(r"^\d{20}\.seg$")
_DICTIONARY = re.compile(r"^zstd-\d{8}\.dict$")
_RESTORE_DICTIONARY = ("Restore the store's zstd-<id>.dict files from a backup (the frames that "
                       "use them are whole, and read again once they are back), then run "
                       "`chronolog repair` again")
_HEADER_BYTES = 64  # a segment's header (docs/format.md): a cut below it drops the segment


def repair(path: str | os.PathLike[str], *, salvage: bool = False) -> dict[str, Any]:
    """Check the store at `path` and rebuild its indexes; with `salvage`, first cut away what
    is damaged (offline: it takes the write lock).

    Without salvage nothing but derived files changes: the store is opened (as any writer
    does: a torn tail is cut), every frame and record is checked (`verify`), and only when all
    check are the indexes deleted and rebuilt from the segments. Damage raises
    CorruptionError and changes nothing.

    With salvage, damage is cut away until the store opens: the index is deleted (a
    checkpoint that counts more events than the segments hold would refuse the open), a copy
    of the newest segment is kept, and at each damaged frame the rest of its segment and
    every later segment are moved into `salvage-<time>/` (the segment is truncated there).
    The events before the damage stay; the positions of those moved aside are handed out
    again by later appends. Each step is logged in `salvage-<time>/repair.log` and returned.

    Returns:
        {"events": events in the store after, "salvaged": [steps, as logged],
         "salvage_dir": the directory of what was moved aside, or None}

    Raises:
        StoreNotFoundError: no store at `path`.
        StoreLockedError: a writer has the store open.
        CorruptionError: the store is damaged (without salvage: nothing was changed), or
            salvage cannot help (the store header itself is damaged or missing).
        StoreFailedError: salvage could not write its log or the copy of the newest segment
            (a full disk); nothing was changed and no salvage directory is left.

    Example:
        >>> import chronolog as cl
        >>> cl.repair("data/shop", salvage=True)["events"]  # doctest: +SKIP
        41250
    """
    path = store_path(path)
    if not os.path.exists(os.path.join(path, "chronolog.store")):
        # No store (StoreNotFoundError, and none is made), or segments without their header
        # (CorruptionError: salvage cannot make one up); the read-only open says which.
        EventStore.open(path, readonly=True).close()
        raise StoreNotFoundError(path)
    try:
        damage = _check(path)
    except CorruptionError as exc:
        damage = exc
    if damage is not None:
        dictionary = "dictionary" in damage.reason or _DICTIONARY.match(os.path.basename(damage.path))
        if not salvage:
            raise CorruptionError(damage.path, damage.offset, f"{damage.reason}; repair changed "
                                  "nothing", remedy=_RESTORE_DICTIONARY if dictionary else None) from None
        if dictionary:
            # The frames are whole; they need a dictionary file that is missing or damaged.
            # Cutting them away would lose every event from the first on, and with the index
            # deleted the store would no longer open at all (rebuilding it decodes every frame).
            raise CorruptionError(damage.path, damage.offset, f"{damage.reason}; salvage changed "
                                  "nothing", remedy=_RESTORE_DICTIONARY) from None
        return _salvage(path, damage)
    _rebuild(path)
    with EventStore.open(path) as store:
        return {"events": store.head, "salvaged": [], "salvage_dir": None}


def _check(path: str) -> CorruptionError | None:
    """Open the store as its writer would and verify it: the first problem, or None."""
    with EventStore.open(path) as store:
        report = store.verify()
    if report["ok"]:
        return None
    first = report["problems"][0]
    where = os.path.join(path, first["segment"]) if first["segment"] else path
    return CorruptionError(where, first["offset"], first["reason"])


def _rebuild(path: str) -> None:
    """Delete the derived index directory (under the write lock) and open: a full rebuild."""
    fd = take_lock(path)
    try:
        shutil.rmtree(os.path.join(path, "index"), ignore_errors=True)
    finally:
        os.close(fd)
    with EventStore.open(path) as store:
        store.checkpoint()


def _salvage(path: str, first: CorruptionError) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = os.path.join(path, f"salvage-{stamp}")
    n = 1
    while os.path.lexists(aside):  # a second salvage within the same second
        n += 1
        aside = os.path.join(path, f"salvage-{stamp}-{n}")
    os.makedirs(aside, mode=0o700)
    steps: list[str] = []

    def log(line: str) -> None:
        steps.append(line)
        with open(os.path.join(aside, "repair.log"), "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    try:
        log(f"found: {first}")
    except OSError as exc:
        raise _nothing_changed(path, aside, exc, "writing its log failed") from exc
    try:
        fd = take_lock(path)
    except BaseException:
        shutil.rmtree(aside, ignore_errors=True)  # (a writer opened it meanwhile: nothing changed)
        raise
    try:
        segments = sorted(n for n in os.listdir(path) if _SEGMENT.match(n))
        if segments:
            newest = segments[-1]
            try:
                shutil.copyfile(os.path.join(path, newest), os.path.join(aside, newest + ".before-repair"))
                log(f"kept a copy of the newest segment as it was: {newest}.before-repair")
            except OSError as exc:
                raise _nothing_changed(path, aside, exc,
                                       f"copying the newest segment {newest} aside failed") from exc
        shutil.rmtree(os.path.join(path, "index"), ignore_errors=True)
        log("deleted index/ (derived; rebuilt from the segments)")
        _fsync_dir(path)
    finally:
        os.close(fd)
    for _ in range(len(segments) + 2):
        try:
            with EventStore.open(path) as store:
                report = store.verify()
                if report["ok"]:
                    store.checkpoint()
                    events = store.head
                    break
                p = report["problems"][0]
                damage = CorruptionError(os.path.join(path, p["segment"]) if p["segment"] else path,
                                         p["offset"], p["reason"])
        except CorruptionError as exc:
            damage = exc
        _cut(path, damage, aside, log)
    else:
        raise CorruptionError(path, None, "salvage did not converge; see " + aside)
    log(f"done: the store opens with {events} events; the positions from {events} on will be "
        "handed out again by the next appends")
    return {"events": events, "salvaged": steps, "salvage_dir": aside}


def _nothing_changed(path: str, aside: str, exc: OSError, what: str) -> StoreFailedError:
    """Remove the salvage directory of a salvage that stopped before it changed the store (a
    truncated copy must not stay behind looking like a backup); the error that says so."""
    shutil.rmtree(aside, ignore_errors=True)
    return StoreFailedError(path, exc, f"repair --salvage changed nothing in {path!r}: {what} "
                            f"({exc.strerror or exc}); {aside} and what it held (a partial copy) were "
                            "removed. Free space on that disk (salvage first copies the newest "
                            "segment) and run `chronolog repair --salvage` again")


def _cut(path: str, damage: CorruptionError, aside: str, log: Any) -> None:
    """Move the damaged part of the store aside: from the damaged offset to the end of its
    segment, and every later segment. Refuses damage outside a segment file."""
    name = os.path.basename(damage.path)
    if os.path.dirname(os.path.abspath(damage.path)) != os.path.abspath(path) \
            or not _SEGMENT.match(name) or not os.path.exists(damage.path):
        raise CorruptionError(damage.path, damage.offset,
                              f"{damage.reason}; salvage keeps the events before damage in a "
                              "segment, and this is not in one",
                              remedy="Restore this file from a backup, then run `chronolog "
                                     "repair --salvage` again")
    fd = take_lock(path)
    try:
        later = sorted(n for n in os.listdir(path) if _SEGMENT.match(n) and n > name)
        for n in later:
            os.rename(os.path.join(path, n), os.path.join(aside, n))
            log(f"moved {n} aside (after the damage)")
        off = damage.offset
        if off is None or off < _HEADER_BYTES:
            os.rename(damage.path, os.path.join(aside, name))
            log(f"moved {name} aside (its header is damaged: {damage.reason})")
        else:
            size = os.path.getsize(damage.path)
            with open(damage.path, "r+b") as f:
                f.seek(off)
                rest = f.read(size - off)
                with open(os.path.join(aside, f"{name}.from-{off}"), "wb") as out:
                    out.write(rest)
                    out.flush()
                    os.fsync(out.fileno())
                f.truncate(off)
                f.flush()
                os.fsync(f.fileno())
            log(f"cut {name} at byte {off} ({damage.reason}); its {size - off} bytes from "
                f"there are in {name}.from-{off}")
        _fsync_dir(aside)
        _fsync_dir(path)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
