"""Chronolog: a fast, crash-safe embedded event store for CQRS and event sourcing.

Example:
    >>> import chronolog as cl
    >>> store = cl.EventStore.open("data/shop")  # doctest: +SKIP
    >>> store.append("order-7", [cl.NewEvent("OrderPlaced", b'{"amount": 3.5}')],
    ...              expected_version=cl.NO_STREAM)  # doctest: +SKIP
    AppendResult(first_position=0, last_position=0, next_version=1)
"""

from chronolog import errors
from chronolog._core.events import AppendResult, NewEvent, RecordedEvent
from chronolog.compaction import compact
from chronolog.domain import (
    Aggregate,
    AggregateNotFoundError,
    Application,
    BulkSnapshot,
    CommandContext,
    CommandResult,
    DomainEvent,
    EventDefinitionError,
    Repository,
    SnapshotPolicy,
    UnknownEventTypeError,
    UpcastError,
    Upcasters,
    command,
    event,
)
from chronolog.errors import (
    ChronologError,
    CorruptionError,
    EventTooLargeError,
    InvalidStreamNameError,
    ReadOnlyError,
    StoreClosedError,
    StoreLockedError,
    WrongExpectedVersionError,
)
from chronolog.repair import repair
from chronolog.store import ANY, NO_STREAM, STREAM_EXISTS, EventStore, StreamState

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "Aggregate",
    "AggregateNotFoundError",
    "AppendResult",
    "Application",
    "BulkSnapshot",
    "ChronologError",
    "CommandContext",
    "CommandResult",
    "CorruptionError",
    "DomainEvent",
    "EventDefinitionError",
    "EventStore",
    "EventTooLargeError",
    "InvalidStreamNameError",
    "NewEvent",
    "ReadOnlyError",
    "RecordedEvent",
    "Repository",
    "SnapshotPolicy",
    "StoreClosedError",
    "StoreLockedError",
    "StreamState",
    "UnknownEventTypeError",
    "UpcastError",
    "Upcasters",
    "WrongExpectedVersionError",
    "command",
    "compact",
    "errors",
    "event",
    "repair",
]
