"""The domain layer: events, aggregates, repositories, commands, snapshots, upcasters.

Example:
    >>> from chronolog.domain import Aggregate, DomainEvent, Repository, event
"""

from chronolog.domain.aggregate import Aggregate, event
from chronolog.domain.application import Application, CommandContext, CommandResult, command
from chronolog.domain.errors import (
    AggregateNotFoundError,
    EventDefinitionError,
    UnknownEventTypeError,
    UpcastError,
)
from chronolog.domain.events import DomainEvent
from chronolog.domain.repository import Repository
from chronolog.domain.snapshots import BulkSnapshot, SnapshotPolicy
from chronolog.domain.upcasting import Upcasters

__all__ = [
    "Aggregate",
    "AggregateNotFoundError",
    "Application",
    "BulkSnapshot",
    "CommandContext",
    "CommandResult",
    "DomainEvent",
    "EventDefinitionError",
    "Repository",
    "SnapshotPolicy",
    "UnknownEventTypeError",
    "UpcastError",
    "Upcasters",
    "command",
    "event",
]
