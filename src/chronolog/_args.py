"""Checks of the public API's int arguments, shared by the store's methods."""

from __future__ import annotations

from chronolog.errors import InvalidArgumentError


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
