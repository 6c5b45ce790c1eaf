"""Commands: an Application runs command handlers (load, decide, save) with retries on
concurrency conflicts and exactly-once effects for commands that carry a command id."""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from chronolog._core.events import AppendResult, NewEvent
from chronolog.domain.aggregate import Aggregate
from chronolog.domain.repository import Repository, append_aggregates
from chronolog.domain.snapshots import SnapshotPolicy
from chronolog.domain.upcasting import Upcasters
from chronolog.errors import InvalidArgumentError, WrongExpectedVersionError
from chronolog.store import NO_STREAM, EventStore

__all__ = ["COMMAND_PREFIX", "Application", "CommandContext", "CommandResult", "command", "command_uuid"]

A = TypeVar("A", bound=Aggregate)

# The longest a retry waits for a conflicting append to become visible (Application._await_visible).
RETRY_WAIT_S = 1.0

COMMAND_PREFIX = "$command-"
COMMAND_TYPE = "$command"
#: Command ids that are not UUIDs are mapped into this namespace with uuid5.
COMMAND_NAMESPACE = uuid.UUID("6f0c1c1e-6b1e-5c4b-9a57-63686c6f6c6f")


def command_uuid(command_id: uuid.UUID | str) -> uuid.UUID:
    """The UUID of a command id (a UUID as is; any other str through uuid5).

    Example:
        >>> command_uuid("pay-7") == command_uuid("pay-7")
        True
    """
    if isinstance(command_id, uuid.UUID):
        return command_id
    if not isinstance(command_id, str) or not command_id:
        raise InvalidArgumentError(f"command_id must be a uuid.UUID or a non-empty str, got {command_id!r}")
    return uuid.uuid5(COMMAND_NAMESPACE, command_id)


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """What a command did.

    Attributes:
        value: what the handler returned (for a duplicate: the value stored with the first
            run when it was JSON-encodable, as plain JSON data; else None).
        command_id: the command's UUID, or None.
        duplicate: True when the command id had already been recorded: nothing was appended.
        attempts: how many times the handler ran (retries after conflicts).
        append: the store's AppendResult (None when nothing was appended).

    Example:
        >>> CommandResult(None, None, False, 1, None).duplicate
        False
    """

    value: Any
    command_id: uuid.UUID | None
    duplicate: bool
    attempts: int
    append: AppendResult | None


class CommandContext:
    """The unit of work of one command attempt: the aggregates it loaded or created, saved
    together (one atomic append) when the handler returns.

    Thread-safety: one per attempt, used by one thread.

    Example:
        >>> @app.command  # doctest: +SKIP
        ... def pay(ctx, order_id, amount):
        ...     ctx.get(Order, order_id).pay(amount)
    """

    def __init__(self, app: Application) -> None:
        self._app = app
        self._aggregates: dict[str, Aggregate] = {}

    def get(self, aggregate: type[A], id: Any) -> A:
        """Load an aggregate (the same object when asked twice in one command).

        Raises:
            AggregateNotFoundError: it has no events.
        """
        stream = aggregate.stream_name(id)
        agg = self._aggregates.get(stream)
        if agg is None:
            agg = self._app.repository(aggregate).get(id)
            self._aggregates[stream] = agg
        return agg  # type: ignore[return-value]

    def add(self, agg: A) -> A:
        """Register a new aggregate to be saved with the command; returns it.

        Raises:
            InvalidArgumentError: another object for the same stream is already in the command.
        """
        stream = type(agg).stream_name(agg.id)
        other = self._aggregates.get(stream)
        if other is not None and other is not agg:
            raise InvalidArgumentError(f"stream {stream!r} already has an aggregate in this command")
        self._aggregates[stream] = agg
        return agg

    def exists(self, aggregate: type[Aggregate], id: Any) -> bool:
        """True when the aggregate is in this command or has events in the store."""
        return aggregate.stream_name(id) in self._aggregates or self._app.repository(aggregate).exists(id)

    @property
    def aggregates(self) -> list[Aggregate]:
        """The aggregates loaded or added, in order."""
        return list(self._aggregates.values())


class _CommandMethod:
    """The descriptor `@command` puts on an Application subclass method."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, app: Application | None, owner: type | None = None) -> Any:
        if app is None:
            return self
        return _Runner(app, functools.partial(self.fn, app), self.fn.__name__)


class _Runner:
    """A command bound to an application: call it with the command's arguments (and an
    optional command_id=) to run it."""

    def __init__(self, app: Application, handler: Callable[..., Any], name: str) -> None:
        self._app = app
        self._handler = handler
        self.__name__ = name

    def __call__(self, *args: Any, command_id: uuid.UUID | str | None = None, **kwargs: Any) -> CommandResult:
        return self._app._run(self._handler, args, kwargs, command_id)

    def __repr__(self) -> str:
        return f"<command {self.__name__}>"


def command(fn: Callable[..., Any]) -> Any:
    """Mark a method of an Application subclass as a command handler, taking
    (self, ctx, *args); call it as app.method(*args, command_id=...) -> CommandResult.

    Example:
        >>> class Shop(Application):
        ...     @command
        ...     def pay(self, ctx, order_id, amount):
        ...         ctx.get(Order, order_id).pay(amount)
    """
    return _CommandMethod(fn)


class Application:
    """Runs commands: each loads aggregates through a CommandContext, decides (the
    aggregates record events or raise your domain exceptions) and saves everything the
    command touched in one atomic append.

    Retries: a WrongExpectedVersionError (another writer moved a stream in between) reruns
    the handler from a fresh load, up to `max_attempts` times in all; domain exceptions are
    never retried.

    Idempotency: a command given a command_id records, in the same atomic append as its
    events, a marker event in the system stream "$command-<uuid>" (expected: no stream), and
    its events get the ids uuid5(command_uuid, str(index)). Running the same command id
    again, in this process or after a restart, finds the marker and returns
    CommandResult(duplicate=True) without running the handler or appending anything.

    Invariants:
        - a command's events and its marker are all stored, or none;
        - a command id's events are stored at most once.

    Thread-safety: commands may run concurrently from several threads (conflicts retry)
    when the repositories have no cache.

    Example:
        >>> app = Application(store)  # doctest: +SKIP
        >>> @app.command  # doctest: +SKIP
        ... def place(ctx, order_id, customer):
        ...     ctx.add(Order(order_id)).place(customer)
        >>> app.place("7", "ada", command_id="place-7").duplicate  # doctest: +SKIP
        False
    """

    def __init__(self, store: EventStore, *, max_attempts: int = 3,
                 snapshots: dict[type[Aggregate], SnapshotPolicy | int] | None = None,
                 snapshot_store: EventStore | None = None,
                 upcasters: Upcasters | None = None, cache_size: int = 0) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self.store = store
        self.max_attempts = max_attempts
        self.upcasters = upcasters
        self._snapshots = dict(snapshots or {})
        self._snapshot_store = snapshot_store
        self._cache_size = cache_size
        self._repositories: dict[type[Aggregate], Repository[Any]] = {}
        self._commands: dict[str, _Runner] = {}
        self._marker_decode = msgspec.json.Decoder(dict[str, Any]).decode

    def repository(self, aggregate: type[A]) -> Repository[A]:
        """The application's repository for an aggregate class (made on first use).

        Example:
            >>> app.repository(Order).get("7")  # doctest: +SKIP
        """
        repo = self._repositories.get(aggregate)
        if repo is None:
            repo = Repository(self.store, aggregate, snapshots=self._snapshots.get(aggregate),
                              snapshot_store=self._snapshot_store, upcasters=self.upcasters,
                              cache_size=self._cache_size)
            self._repositories[aggregate] = repo
        return repo

    def command(self, fn: Callable[..., Any]) -> _Runner:
        """Register a function (ctx, *args) as a command; returns the runner, also
        reachable as app.<function name>.

        Example:
            >>> @app.command  # doctest: +SKIP
            ... def cancel(ctx, order_id):
            ...     ctx.get(Order, order_id).cancel()
        """
        runner = _Runner(self, fn, fn.__name__)
        self._commands[fn.__name__] = runner
        return runner

    def __getattr__(self, name: str) -> Any:
        commands = self.__dict__.get("_commands", {})
        if name in commands:
            return commands[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or command {name!r}")

    def handle(self, name: str, *args: Any, command_id: uuid.UUID | str | None = None,
               **kwargs: Any) -> CommandResult:
        """Run the registered command `name` (for dispatch by name, e.g. from a queue).

        Example:
            >>> app.handle("cancel", "7", command_id="cancel-7").duplicate  # doctest: +SKIP
            False
        """
        runner = self._commands.get(name) or getattr(self, name, None)
        if not isinstance(runner, _Runner):
            raise InvalidArgumentError(f"no command named {name!r}; register it with @app.command")
        return runner(*args, command_id=command_id, **kwargs)

    # ------------------------------------------------------------------ the loop

    def _run(self, handler: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             command_id: uuid.UUID | str | None) -> CommandResult:
        cid = command_uuid(command_id) if command_id is not None else None
        marker = f"{COMMAND_PREFIX}{cid}" if cid is not None else ""
        attempt = 0
        while True:
            attempt += 1
            # Pass 1: a command id already recorded is a duplicate: report, do nothing.
            if cid is not None and self.store.stream_version(marker) is not None:
                return self._duplicate(cid, marker, attempt - 1)
            # Pass 2: load and decide (domain exceptions propagate, nothing recorded).
            ctx = CommandContext(self)
            value = handler(ctx, *args, **kwargs)
            aggregates = ctx.aggregates
            before = [(agg, agg.version - len(agg._pending)) for agg in aggregates]
            # Pass 3: save everything, with the marker, in one append.
            extra: list[tuple[str, NewEvent, int]] = []
            ids = None
            nonce = ""
            if cid is not None:
                nonce = uuid.uuid4().hex
                extra.append((marker, self._marker(cid, nonce, before, value), int(NO_STREAM)))
                ids = functools.partial(_event_id, cid)
            try:
                result = append_aggregates(self.store, aggregates, ids, extra)
            except WrongExpectedVersionError as exc:
                if attempt < self.max_attempts:
                    self._await_visible(exc)
                    continue
                if cid is not None and self.store.stream_version(marker) is not None:
                    return self._duplicate(cid, marker, attempt)
                raise
            if cid is not None and result is not None and not self._is_ours(marker, nonce):
                # The store recognised the same ids and returned the original result.
                return self._duplicate(cid, marker, attempt)
            for agg, old in before:
                repo = self._repositories.get(type(agg))
                if repo is not None and repo.policy is not None:
                    repo.after_save([(agg, old)])
            return CommandResult(value, cid, False, attempt, result)

    def _await_visible(self, conflict: WrongExpectedVersionError) -> None:
        """Before a retry, wait (up to RETRY_WAIT_S) until reads show the stream at the version
        the conflict reported. In "fsync" mode an append is visible only once its group
        commit's fsync returns, but it counts for expected versions as soon as it is written:
        a retry that reloads at once decides on the same old state again, and every attempt
        could be spent within that fsync."""
        actual = conflict.actual
        if actual is None:
            return
        deadline = time.monotonic() + RETRY_WAIT_S
        while True:
            seen = self.store.stream_version(conflict.stream)
            left = deadline - time.monotonic()
            if (seen is not None and seen >= actual) or left <= 0:
                return
            self.store.wait_for(self.store.head, timeout=min(left, 0.01))

    @staticmethod
    def _marker(cid: uuid.UUID, nonce: str, before: list[tuple[Aggregate, int]], value: Any) -> NewEvent:
        streams = {type(a).stream_name(a.id): [old + 1, a.version] for a, old in before if a._pending}
        try:
            data = msgspec.json.encode({"exec": nonce, "streams": streams, "value": value})
        except (TypeError, msgspec.MsgspecError):
            data = msgspec.json.encode({"exec": nonce, "streams": streams, "value": None})
        return NewEvent(COMMAND_TYPE, data, b'{"v":1}', uuid.uuid5(cid, "command"))

    def _is_ours(self, marker: str, nonce: str) -> bool:
        stored = self.store.read_stream(marker, 0, limit=1)
        return bool(stored) and self._marker_decode(stored[0].data).get("exec") == nonce

    def _duplicate(self, cid: uuid.UUID, marker: str, attempts: int) -> CommandResult:
        stored = self.store.read_stream(marker, 0, limit=1)
        value = self._marker_decode(stored[0].data).get("value") if stored else None
        return CommandResult(value, cid, True, attempts, None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r}, commands={sorted(self._commands)})"


def _event_id(cid: uuid.UUID, index: int) -> uuid.UUID:
    return uuid.uuid5(cid, str(index))



