"""Aggregates: consistency boundaries whose state changes only by applying events, in two
styles: @event-decorated command methods, or trigger(SomeEvent(...)) with apply_* methods."""

from __future__ import annotations

import functools
import inspect
import keyword
import threading
import typing
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from chronolog.domain.errors import EventDefinitionError, UnknownEventTypeError
from chronolog.domain.events import DomainEvent, EventCodec, codec_of

__all__ = ["Aggregate", "event"]

Handler = Callable[[Any, Any], None]

# Class attributes of every DomainEvent: not usable as the names of its fields.
_RESERVED_FIELDS = ("event_type", "schema_version", "encoding")


class _EventMethod:
    """The descriptor @event puts on a class: calling it records an event and applies it."""

    def __init__(self, fn: Callable[..., Any], spec: str | type[DomainEvent],
                 schema_version: int) -> None:
        self.fn = fn
        self.spec = spec
        self.schema_version = schema_version
        self._cls: type[DomainEvent] | None = None
        self._params: tuple[str, ...] | None = None
        self._positional = False
        # Threads using the class for the first time at once must get one event class (two
        # made side by side: the dispatch table knew one, trigger() raised for the other).
        self._resolving = threading.Lock()
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def event_class(self) -> type[DomainEvent]:
        """The DomainEvent class this method records (made from the signature when needed).

        Example:
            >>> Order.place.event_class.event_type  # doctest: +SKIP
            'OrderPlaced'
        """
        if self._cls is None:
            self._resolve()
        assert self._cls is not None
        return self._cls

    def _resolve(self) -> None:
        with self._resolving:
            if self._cls is None:
                self._resolve_unlocked()

    def _resolve_unlocked(self) -> None:
        sig = inspect.signature(self.fn)
        params = [p for p in list(sig.parameters.values())[1:]]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise EventDefinitionError(
                    f"@event method {self.fn.__qualname__}: parameter {p.name!r} must be a plain "
                    "(positional-or-keyword or keyword-only) parameter, it becomes an event field")
        names = tuple(p.name for p in params)
        reserved = [n for n in names if n in _RESERVED_FIELDS]
        if reserved:
            raise EventDefinitionError(
                f"@event method {self.fn.__qualname__}: parameter {reserved[0]!r} is a reserved "
                f"name of every event (reserved: {', '.join(_RESERVED_FIELDS)}); rename it")
        if isinstance(self.spec, str):
            hints = typing.get_type_hints(self.fn)
            fields: list[Any] = []
            for p in params:
                typ = hints.get(p.name, Any)
                fields.append((p.name, typ) if p.default is p.empty else (p.name, typ, p.default))
            cls_name = self.spec if self.spec.isidentifier() and not keyword.iskeyword(self.spec) \
                else "Event"
            self._cls = typing.cast("type[DomainEvent]", msgspec.defstruct(
                cls_name, fields, bases=(DomainEvent,), kw_only=True, frozen=True,
                module=self.fn.__module__,
                namespace={"event_type": self.spec, "schema_version": self.schema_version}))
            self._positional = True
        else:
            cls = self.spec
            missing = [n for n in names if n not in cls.__struct_fields__]
            if missing:
                raise EventDefinitionError(
                    f"@event method {self.fn.__qualname__}: parameters {missing} are not fields "
                    f"of {cls.__name__}; name the parameters after the event's fields")
            self._cls = cls
            self._positional = names == cls.__struct_fields__
        self._params = names

    def handler(self) -> Handler:
        """The function that applies a recorded event: the method body, fed the fields."""
        if self._cls is None:
            self._resolve()
        fn = self.fn
        if self._positional:
            astuple = msgspec.structs.astuple
            return lambda agg, ev: fn(agg, *astuple(ev))
        names = self._params or ()
        return lambda agg, ev: fn(agg, **{n: getattr(ev, n) for n in names})

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self._record, obj)

    def _record(self, agg: Aggregate, *args: Any, **kwargs: Any) -> None:
        cls = self.event_class
        names = self._params or ()
        if not kwargs and len(args) == len(names):
            fields = dict(zip(names, args))
        else:
            bound = inspect.signature(self.fn).bind(agg, *args, **kwargs)
            bound.apply_defaults()
            fields = dict(list(bound.arguments.items())[1:])
        agg.trigger(cls(**fields))


def event(spec: str | type[DomainEvent], *, schema_version: int = 1) -> Callable[[Callable[..., Any]], Any]:
    """Decorate an aggregate method so that calling it records an event and applies it.

    The method's parameters become the event's fields (typed by their annotations) and its
    body is how the event changes state: it runs when the command is given and again on
    every replay. Check the domain rules at the top of the body (raise your own exception):
    when the body raises, no event is recorded. Pass an existing DomainEvent class instead of
    a name to use its fields.

    Raises:
        EventDefinitionError: a parameter cannot become an event field.

    Example:
        >>> class Counter(Aggregate):
        ...     def __init__(self, id):
        ...         super().__init__(id)
        ...         self.total = 0
        ...     @event("Added")
        ...     def add(self, n: int) -> None:
        ...         if n <= 0:
        ...             raise ValueError("n must be positive")
        ...         self.total += n
        >>> c = Counter("c1"); c.add(2); c.total, c.version, len(c.pending_events)
        (2, 0, 1)
    """
    if isinstance(spec, str):
        if not spec or spec.startswith("$"):
            raise EventDefinitionError(f"event type must be a non-empty name not starting with '$', got {spec!r}")
    elif not (isinstance(spec, type) and issubclass(spec, DomainEvent)):
        raise EventDefinitionError(f"@event takes an event type name or a DomainEvent class, got {spec!r}")

    def decorate(fn: Callable[..., Any]) -> _EventMethod:
        return _EventMethod(fn, spec, schema_version)
    return decorate


class _Table:
    """What an aggregate class knows: event class -> handler, type name -> (codec, handler)."""

    __slots__ = ("by_class", "by_type", "overrides_apply")

    def __init__(self, by_class: dict[type, Handler],
                 by_type: dict[str, tuple[EventCodec, Handler | None]], overrides_apply: bool):
        self.by_class = by_class
        self.by_type = by_type
        # When apply() is overridden, replay must go through it, not the handlers.
        self.overrides_apply = overrides_apply


class Aggregate:
    """A consistency boundary: an id, a version and state changed only by applying events.

    Stream naming: an aggregate lives in the stream f"{stream_prefix}-{id}", where
    `stream_prefix` defaults to the class name in lower case; override `stream_prefix`, or
    the classmethods `stream_name` and `id_from_stream` together, to change the rule.

    `__init__(self, id)` sets the initial state (before any event); the repository calls it
    with the id alone, so give every other parameter a default. State is the instance's
    public attributes; annotate them at class level so snapshots restore exact types.

    Invariants:
        - `version` is the version of the last event applied (-1 before the first), counting
          pending events; the stream holds `version + 1 - len(pending_events)` events;
        - an event is recorded only after it applied without raising.

    Thread-safety: an aggregate instance belongs to one thread at a time.

    Example:
        >>> class Placed(DomainEvent):
        ...     amount: int
        >>> class Order(Aggregate):
        ...     amount: int = 0
        ...     def place(self, amount: int) -> None:
        ...         if amount <= 0:
        ...             raise ValueError("amount must be positive")
        ...         self.trigger(Placed(amount=amount))
        ...     def apply_placed(self, e: Placed) -> None:
        ...         self.amount = e.amount
        >>> o = Order("7"); o.place(3); o.amount, Order.stream_name("7")
        (3, 'order-7')
    """

    stream_prefix: ClassVar[str] = ""
    snapshot_version: ClassVar[int] = 1
    #: Extra event classes to decode when you override apply() instead of apply_* methods.
    event_classes: ClassVar[tuple[type[DomainEvent], ...]] = ()

    id: Any
    version: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "stream_prefix" not in cls.__dict__:
            cls.stream_prefix = cls.__name__.lower()

    def __init__(self, id: Any) -> None:
        self.id = id
        self.version = -1
        self._pending: list[tuple[DomainEvent, bytes]] = []  # (the event, its payload)

    # ------------------------------------------------------------------ naming

    @classmethod
    def stream_name(cls, id: Any) -> str:
        """The stream of the aggregate with this id: f"{stream_prefix}-{id}".

        Example:
            >>> Aggregate.stream_name("7")
            '-7'
        """
        return f"{cls.stream_prefix}-{id}"

    @classmethod
    def id_from_stream(cls, stream: str) -> Any:
        """The id of the aggregate stored in `stream` (the inverse of stream_name).

        Example:
            >>> Aggregate.id_from_stream("-7")
            '7'
        """
        return stream[len(cls.stream_prefix) + 1:]

    # ------------------------------------------------------------------ events

    @property
    def pending_events(self) -> tuple[DomainEvent, ...]:
        """The events recorded since the last load or save, oldest first.

        Example:
            >>> Aggregate("x").pending_events
            ()
        """
        return tuple(event for event, _ in self._pending)

    def trigger(self, event: DomainEvent) -> None:
        """Encode `event` as it will be stored, apply the event decoded from that payload to
        the state (what every replay applies, so the state now is the state after a replay,
        and later changes to objects the state shares with the event do not change what is
        stored), and record it as pending. Nothing is recorded when encoding or apply raises.

        Raises:
            InvalidEventError: the event's payload cannot be stored or would not read back
                (a value its field's annotation does not allow, NaN in a float field).
            UnknownEventTypeError: the class has no handler for the event's class.

        Example:
            >>> order.trigger(Placed(amount=3))  # doctest: +SKIP
        """
        data, stored = codec_of(type(event)).seal(event)
        self.apply(stored)
        self.version += 1
        self._pending.append((event, data))

    def apply(self, event: DomainEvent) -> None:
        """Change the state by one event, dispatching on its class to the `apply_*` method
        whose parameter is annotated with that class (or to the body of an @event method).
        Override it to dispatch yourself (e.g. with `match event:`).

        Raises:
            UnknownEventTypeError: no handler for the event's class.

        Example:
            >>> order.apply(Placed(amount=3))  # doctest: +SKIP
        """
        handler = _table(type(self)).by_class.get(type(event))
        if handler is None:
            raise UnknownEventTypeError(type(self).__name__, getattr(event, "event_type", type(event).__name__))
        handler(self, event)

    def _collect(self) -> list[DomainEvent]:
        pending, self._pending = self._pending, []
        return [event for event, _ in pending]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, version={self.version})"


def _table(cls: type[Aggregate]) -> _Table:
    """The class's dispatch table, built on first use (when every annotation resolves)."""
    table: _Table | None = cls.__dict__.get("_chronolog_table")
    if table is not None:
        return table
    by_class: dict[type, Handler] = {}
    for name in dir(cls):
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, _EventMethod):
            by_class[attr.event_class] = attr.handler()
        elif name.startswith("apply_") and inspect.isfunction(attr):
            params = list(inspect.signature(attr).parameters)
            if len(params) != 2:
                raise EventDefinitionError(
                    f"{cls.__name__}.{name} must take (self, event) to be an apply method")
            typ = typing.get_type_hints(attr).get(params[1])
            if not (isinstance(typ, type) and issubclass(typ, DomainEvent)):
                raise EventDefinitionError(
                    f"{cls.__name__}.{name}: annotate its parameter with the DomainEvent class "
                    f"it applies, e.g. def {name}(self, e: OrderPlaced)")
            by_class[typ] = attr
    by_type: dict[str, tuple[EventCodec, Handler | None]] = {}
    pairs: list[tuple[type, Handler | None]] = list(by_class.items())
    pairs += [(c, None) for c in getattr(cls, "event_classes", ()) if c not in by_class]
    for ev_cls, handler in pairs:
        codec = codec_of(ev_cls)
        if codec.event_type in by_type and by_type[codec.event_type][0].cls is not ev_cls:
            raise EventDefinitionError(
                f"{cls.__name__} applies two classes with the event type {codec.event_type!r}")
        by_type[codec.event_type] = (codec, handler)
    table = _Table(by_class, by_type, cls.apply is not Aggregate.apply)
    type.__setattr__(cls, "_chronolog_table", table)
    return table
