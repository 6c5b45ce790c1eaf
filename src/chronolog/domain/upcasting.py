"""Upcasters: functions that bring old event and snapshot payloads up to the current shape,
chained v1 -> v2 -> v3 on read. Old bytes on disk are never rewritten."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chronolog.domain.errors import EventDefinitionError, UpcastError

__all__ = ["Upcaster", "Upcasters"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    """A registry of upcasters by (event type, from schema version) and by
    (aggregate snapshot name, from snapshot version).

    An upcaster takes the payload decoded as plain data (a dict) at version n and returns
    it at version n + 1. Reading an event stored at version 1 when the class is at version
    3 runs the upcasters from 1 and from 2, in that order, then builds the event.

    Invariants:
        - at most one upcaster per (name, from_version);
        - upcasting happens on read only: the store is never rewritten.

    Thread-safety: register everything before the registry is shared; reads are safe.

    Example:
        >>> ups = Upcasters()
        >>> @ups.event("OrderPlaced", from_version=1)
        ... def add_currency(data):
        ...     return {**data, "currency": "EUR"}
        >>> ups.upcast_event("OrderPlaced", {"amount": 3}, 1, 2)
        {'amount': 3, 'currency': 'EUR'}
    """

    def __init__(self) -> None:
        self._events: dict[tuple[str, int], Upcaster] = {}
        self._snapshots: dict[tuple[str, int], Upcaster] = {}

    def event(self, event_type: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register an upcaster of event type `event_type` from `from_version` to the next.

        Raises:
            EventDefinitionError: one is already registered for that step.

        Example:
            >>> ups = Upcasters()
            >>> _ = ups.event("Paid", from_version=1)(lambda d: {**d, "fee": 0})
        """
        return self._register(self._events, event_type, from_version)

    def snapshot(self, aggregate: type | str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register an upcaster of snapshots of `aggregate` (a class or its name) from
        snapshot version `from_version` to the next.

        Example:
            >>> ups = Upcasters()
            >>> _ = ups.snapshot("Order", from_version=1)(lambda s: {**s, "notes": []})
        """
        name = aggregate if isinstance(aggregate, str) else aggregate.__name__
        return self._register(self._snapshots, name, from_version)

    @staticmethod
    def _register(table: dict[tuple[str, int], Upcaster], name: str,
                  from_version: int) -> Callable[[Upcaster], Upcaster]:
        if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
            raise EventDefinitionError(f"from_version must be an int >= 1, got {from_version!r}")

        def register(fn: Upcaster) -> Upcaster:
            if (name, from_version) in table:
                raise EventDefinitionError(
                    f"an upcaster for {name!r} from version {from_version} is already registered")
            table[(name, from_version)] = fn
            return fn
        return register

    def upcast_event(self, event_type: str, data: dict[str, Any], found: int,
                     current: int) -> dict[str, Any]:
        """Run the chain of event upcasters from version `found` to `current`.

        Raises:
            UpcastError: a step is missing, or the stored version is newer than the code.

        Example:
            >>> Upcasters().upcast_event("Paid", {"a": 1}, 2, 2)
            {'a': 1}
        """
        return self._chain(self._events, event_type, data, found, current)

    def upcast_snapshot(self, aggregate: str, state: dict[str, Any], found: int,
                        current: int) -> dict[str, Any] | None:
        """Run the chain of snapshot upcasters; None when the chain is incomplete (the
        caller then ignores the snapshot and replays every event).

        Example:
            >>> Upcasters().upcast_snapshot("Order", {}, 1, 2) is None
            True
        """
        try:
            return self._chain(self._snapshots, aggregate, state, found, current)
        except UpcastError:
            return None

    @staticmethod
    def _chain(table: dict[tuple[str, int], Upcaster], name: str, data: dict[str, Any],
               found: int, current: int) -> dict[str, Any]:
        if found > current:
            raise UpcastError(name, found, current, "the stored payload is newer than this code")
        for v in range(found, current):
            fn = table.get((name, v))
            if fn is None:
                raise UpcastError(name, found, current, f"no upcaster from v{v} to v{v + 1}")
            data = fn(data)
            if not isinstance(data, dict):
                raise UpcastError(name, found, current,
                                  f"the upcaster from v{v} returned {type(data).__name__}, not a dict")
        return data

    def __len__(self) -> int:
        return len(self._events) + len(self._snapshots)

    def __repr__(self) -> str:
        return f"Upcasters(events={sorted(self._events)}, snapshots={sorted(self._snapshots)})"
