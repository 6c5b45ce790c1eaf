"""The errors the domain layer raises (all under chronolog.errors.ChronologError).

Example:
    >>> from chronolog.domain.errors import AggregateNotFoundError
    >>> AggregateNotFoundError("order-7").stream
    'order-7'
"""

from __future__ import annotations

from chronolog.errors import ChronologError


class AggregateNotFoundError(ChronologError, LookupError):
    """Raised when a repository is asked for an aggregate whose stream holds no events.

    Example:
        >>> str(AggregateNotFoundError("order-7")).startswith("no aggregate")
        True
    """

    def __init__(self, stream: str, at_version: int | None = None) -> None:
        self.stream = stream
        self.at_version = at_version
        extra = f" at version {at_version}" if at_version is not None else ""
        super().__init__(
            f"no aggregate in stream {stream!r}{extra}; create it first (construct it and "
            "save it), or check exists() before get()")


class UnknownEventTypeError(ChronologError, TypeError):
    """Raised when a stream holds an event type the aggregate class does not apply.

    Example:
        >>> UnknownEventTypeError("Order", "Shipped").event_type
        'Shipped'
    """

    def __init__(self, aggregate: str, event_type: str) -> None:
        self.aggregate = aggregate
        self.event_type = event_type
        super().__init__(
            f"{aggregate} has no apply method for event type {event_type!r}; add a method "
            f"`def apply_x(self, e: <the {event_type} class>)` or an @event-decorated method")


class UpcastError(ChronologError, ValueError):
    """Raised when a stored payload has a schema version the code cannot bring up to date.

    Example:
        >>> UpcastError("OrderPlaced", 1, 3, "no upcaster from v1").found
        1
    """

    def __init__(self, name: str, found: int, current: int, reason: str) -> None:
        self.name = name
        self.found = found
        self.current = current
        super().__init__(
            f"{name}: stored schema version {found}, code expects {current}: {reason}. "
            f"Register an upcaster with Upcasters.event({name!r}, from_version=...) for every "
            "step, or upgrade the code that reads this store")


class EventDefinitionError(ChronologError, TypeError):
    """Raised when an event class or an @event method is declared in a way that cannot work.

    Example:
        >>> isinstance(EventDefinitionError("x"), TypeError)
        True
    """
