"""Domain events: msgspec Structs with a stable type name and a schema version, and their
codecs (compact JSON by default, msgpack on request; never pickle)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from chronolog.domain.errors import EventDefinitionError
from chronolog.errors import InvalidEventError

__all__ = ["DomainEvent", "EventCodec", "codec_of"]

_ENCODINGS = ("json", "msgpack")


class DomainEvent(msgspec.Struct, kw_only=True):
    """The base of every domain event: typed fields, encoded as data (compact JSON).

    Class attributes (set them in the class body to override the defaults):
        event_type: the stable name stored with each event (default: the class name). Keep it
            when you rename the class, or old events will no longer be recognised.
        schema_version: the version of the payload's shape (default 1). Bump it when the
            fields change and register an upcaster from the old version.
        encoding: "json" (default) or "msgpack".

    Invariants:
        - the payload on disk is the Struct's fields only (never pickle, never a class path);
        - the schema version travels in each event's metadata as compact JSON, {"v":2}.

    Thread-safety: instances are plain values; share them freely (declare frozen=True to
    forbid mutation).

    Example:
        >>> class OrderPlaced(DomainEvent, frozen=True):
        ...     customer: str
        ...     amount: float
        >>> OrderPlaced.event_type, OrderPlaced.schema_version
        ('OrderPlaced', 1)
        >>> codec_of(OrderPlaced).encode(OrderPlaced(customer="ada", amount=3.5))
        b'{"customer":"ada","amount":3.5}'
    """

    event_type: ClassVar[str] = "DomainEvent"
    schema_version: ClassVar[int] = 1
    encoding: ClassVar[str] = "json"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__
        if not isinstance(cls.event_type, str) or not cls.event_type \
                or cls.event_type.startswith("$"):
            raise EventDefinitionError(
                f"{cls.__name__}.event_type must be a non-empty str not starting with '$' "
                f"(reserved for system events), got {cls.event_type!r}")
        if isinstance(cls.schema_version, bool) or not isinstance(cls.schema_version, int) \
                or cls.schema_version < 1:
            raise EventDefinitionError(
                f"{cls.__name__}.schema_version must be an int >= 1, got {cls.schema_version!r}")
        if cls.encoding not in _ENCODINGS:
            raise EventDefinitionError(
                f"{cls.__name__}.encoding must be one of {_ENCODINGS}, got {cls.encoding!r}")


def _dec_hook(typ: type, obj: Any) -> Any:
    raise NotImplementedError(f"cannot decode {typ}")


class EventCodec:
    """The cached encoder and decoders of one event class (built once per class).

    Attributes:
        cls: the event class.
        event_type: its stored type name.
        metadata: the metadata bytes written with each event of the current schema version.
        decode: bytes -> instance, for payloads of the current schema version.

    Thread-safety: msgspec encoders and decoders are safe to share between threads.

    Example:
        >>> class Paid(DomainEvent):
        ...     amount: int
        >>> c = codec_of(Paid)
        >>> c.decode(c.encode(Paid(amount=2))), c.metadata
        (Paid(amount=2), b'{"v":1}')
    """

    __slots__ = (
        "cls",
        "decode",
        "decode_raw",
        "encode",
        "encoding",
        "event_type",
        "metadata",
        "schema_version",
    )

    def __init__(self, cls: type[DomainEvent]) -> None:
        self.cls = cls
        self.event_type = cls.event_type
        self.schema_version = cls.schema_version
        self.encoding = cls.encoding
        self.encode: Callable[[Any], bytes]
        self.decode: Callable[[bytes], DomainEvent]
        self.decode_raw: Callable[[bytes], Any]
        if cls.encoding == "json":
            self.metadata = b'{"v":%d}' % cls.schema_version
            self.encode = msgspec.json.Encoder().encode
            self.decode = msgspec.json.Decoder(cls).decode
            self.decode_raw = msgspec.json.Decoder().decode
        else:
            self.metadata = b'{"v":%d,"enc":"msgpack"}' % cls.schema_version
            self.encode = msgspec.msgpack.Encoder().encode
            self.decode = msgspec.msgpack.Decoder(cls).decode
            self.decode_raw = msgspec.msgpack.Decoder().decode

    def seal(self, event: DomainEvent) -> tuple[bytes, DomainEvent]:
        """The payload `event` is stored as, and the event decoded from it: what every replay
        will see. Refuses (before anything is applied or written) an event whose payload
        cannot be stored or would not decode again: a value its field's annotation does not
        allow (a str for an int), a float that JSON cannot hold (NaN, infinity), an object
        with no encoding.

        Raises:
            InvalidEventError: the payload cannot be stored as it is.

        Example:
            >>> class Paid(DomainEvent):
            ...     amount: int
            >>> codec_of(Paid).seal(Paid(amount=2))
            (b'{"amount":2}', Paid(amount=2))
        """
        try:
            data = self.encode(event)
        except (TypeError, ValueError, msgspec.MsgspecError) as exc:  # (UnicodeError: a ValueError)
            raise InvalidEventError(
                f"event {self.event_type} cannot be stored: {exc}; nothing was recorded. Give "
                "each field a value of its annotated type (str, int, float, bool, bytes, "
                "datetime, Decimal, UUID, lists, dicts of those, Structs)") from None
        try:
            return data, self.decode(data)
        except msgspec.MsgspecError as exc:
            hint = " (JSON has no NaN or infinity: a float field stores them as null)" \
                if b"null" in data else ""
            raise InvalidEventError(
                f"event {self.event_type} would not read back: {exc}{hint}; nothing was "
                "recorded. Give each field a value its annotation allows") from None

    def from_builtins(self, data: Any) -> DomainEvent:
        """Build an instance from upcast plain data (dicts, lists, str, numbers)."""
        return msgspec.convert(data, self.cls, strict=self.encoding == "msgpack")

    def __repr__(self) -> str:
        return f"EventCodec({self.event_type!r}, v{self.schema_version}, {self.encoding})"


def codec_of(cls: type[DomainEvent]) -> EventCodec:
    """The (cached) codec of an event class.

    Example:
        >>> class Shipped(DomainEvent):
        ...     carrier: str
        >>> codec_of(Shipped) is codec_of(Shipped)
        True
    """
    codec = cls.__dict__.get("_chronolog_codec")
    if codec is None:
        if not (isinstance(cls, type) and issubclass(cls, DomainEvent)):
            raise EventDefinitionError(f"{cls!r} is not a DomainEvent subclass")
        codec = EventCodec(cls)
        # type.__setattr__: the codec is derived from the class, not state of the program.
        type.__setattr__(cls, "_chronolog_codec", codec)
    return codec
