"""Checks of the public API's arguments shared by its modules: ints, timeouts, name filters."""

from __future__ import annotations

import math
import os
import stat
import threading
from collections.abc import Iterable

from chronolog.errors import InvalidArgumentError, StoreAccessError


def int_option(value: object, name: str, lo: int, hi: int) -> None:
    """Refuse (InvalidArgumentError) anything but an int in [lo, hi]; bools are not ints here."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} must be an int between {lo} and {hi}, got {value!r}")


# "No bound" for versions, positions and limits: the largest int64, so that the core's
# uint64_t arguments convert on CPython's fast path (2**63 does not fit a C long and would take
# the slow, digit-by-digit conversion on every read).
UNBOUNDED = (1 << 63) - 1


def non_negative(value: int | None, name: str, *, default: int) -> int:
    """`value` as a bound the core takes (at most UNBOUNDED - 1), `default` for None; refuse
    (InvalidArgumentError) anything but an int >= 0 or None."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int >= 0 or None, got {value!r}")
    if value < 0:
        raise InvalidArgumentError(f"{name} must be >= 0, got {value}")
    return min(value, UNBOUNDED - 1)


def options_not_negative(*options: tuple[str, int | None]) -> None:
    """Refuse (InvalidArgumentError) the first of the (name, value) options, such as a
    command's ("--from", args.start), whose value is negative."""
    for name, value in options:
        if value is not None and value < 0:
            raise InvalidArgumentError(f"{name} must be >= 0, got {value}")


def timeout_seconds(value: float | None, name: str = "timeout") -> float | None:
    """`value` as a wait in seconds, None (and infinity) meaning forever; refuse
    (InvalidArgumentError) anything but a number >= 0 or None: a bool, NaN (a wait that
    compares false to every deadline would never end) or a negative number. A wait longer than
    the longest the platform's waits take (threading.TIMEOUT_MAX, ~292 years) is forever too
    (1e10 seconds raised a raw OverflowError)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or value < 0:
        raise InvalidArgumentError(f"{name} must be a number of seconds >= 0 or None, got {value!r}")
    return None if value > threading.TIMEOUT_MAX else float(value)


def flag(value: object, name: str) -> bool:
    """A True/False option as a bool; refuse (InvalidArgumentError) anything else, which
    would be taken by its truth (backwards="no" read backwards)."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
    return value


def name_list(values: Iterable[str] | None, name: str) -> list[str] | None:
    """A filter of names (event types, streams) as a list, None for no filter; refuse
    (InvalidArgumentError) a single str or bytes, which iterates as its characters (a filter
    `types="OrderPlaced"` would match nothing), and anything but strs in it."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise InvalidArgumentError(f"{name} must be a list of names, not a single "
                                   f"{type(values).__name__}: write {name}=[{values!r}]")
    try:
        out = list(values)
    except TypeError:
        raise InvalidArgumentError(f"{name} must be a list of names or None, got "
                                   f"{type(values).__name__}") from None
    for v in out:
        if not isinstance(v, str):
            raise InvalidArgumentError(f"{name} must hold str names, got {v!r}")
    return out


def store_path(value: object) -> str:
    """The store directory argument as a str path; refuse (InvalidArgumentError) anything but a
    non-empty str or os.PathLike of str, and a path that exists as something other than a
    directory (StoreAccessError when it may not be looked at)."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise InvalidArgumentError(f"path must be a str or os.PathLike naming the store's "
                                   f"directory, got {type(value).__name__}")
    path = os.fspath(value)
    if isinstance(path, bytes):
        raise InvalidArgumentError(f"path must be a str, got bytes {path!r}: decode it with "
                                   "os.fsdecode(path)")
    if not path:
        raise InvalidArgumentError("path must name the store's directory, got ''")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except NotADirectoryError:
        raise InvalidArgumentError(f"{path!r} cannot be a store directory: a part of it is a "
                                   "file") from None
    except PermissionError as exc:
        raise StoreAccessError(path, exc) from None
    if not stat.S_ISDIR(mode):
        raise InvalidArgumentError(f"{path!r} is a file, not a directory: a store is a "
                                   "directory (give a new path to create one there)")
    return path
