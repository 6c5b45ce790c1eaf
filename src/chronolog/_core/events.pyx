"""The event value types that cross the core's boundary: NewEvent in, RecordedEvent out."""
cimport cython

import datetime as _dt
import uuid as _uuid

from chronolog.errors import InvalidEventError
from chronolog._core.format cimport MAX_TYPE_NAME_BYTES

_UTC = _dt.timezone.utc


cdef str _typename(object value):
    return "None" if value is None else type(value).__name__


cdef bytes _as_bytes(object value, str what):
    if type(value) is bytes:
        return <bytes>value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, bytes):
        return bytes(value)
    hint = " (encode it first, e.g. json.dumps(obj).encode())" if isinstance(value, str) else ""
    raise InvalidEventError(f"event {what} must be bytes, got {type(value).__name__}{hint}")


cdef bytes _id_bytes(object value):
    if value is None:
        return None
    if isinstance(value, _uuid.UUID):
        return (<object>value).bytes
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return bytes(value)
    if isinstance(value, str):
        try:
            return _uuid.UUID(value).bytes
        except ValueError:
            pass
    raise InvalidEventError(
        f"event id must be a uuid.UUID, 16 bytes or a UUID string, got {value!r}")


cdef class NewEvent:
    """An event to append: its type name, payload bytes, optional metadata and optional id.

    Args:
        type: the event type name (non-empty, at most 255 bytes of UTF-8).
        data: the payload (bytes; JSON by convention).
        metadata: optional bytes stored beside the payload.
        id: optional uuid.UUID (or 16 bytes): makes retries of the same append idempotent.

    Raises:
        InvalidEventError: a field has the wrong type or shape.

    Example:
        >>> e = NewEvent("OrderPlaced", b'{"amount": 3.5}')
        >>> e.type, e.data
        ('OrderPlaced', b'{"amount": 3.5}')
    """

    def __init__(self, type, data=b"", metadata=b"", id=None):
        cdef bytes t
        if not isinstance(type, str):
            raise InvalidEventError(f"event type must be a str, got {_typename(type)}")
        try:
            t = type.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEventError(f"event type {type!r} is not valid UTF-8: {exc}") from None
        if len(t) == 0 or len(t) > MAX_TYPE_NAME_BYTES:
            raise InvalidEventError(
                f"event type must be 1..{MAX_TYPE_NAME_BYTES} bytes of UTF-8, got {len(t)}")
        self.type = type
        self._type_utf8 = t
        self.data = _as_bytes(data, "data")
        self.metadata = b"" if metadata is None else _as_bytes(metadata, "metadata")
        self._id = _id_bytes(id)

    @property
    def id(self):
        """The event id as a uuid.UUID, or None."""
        return None if self._id is None else _uuid.UUID(bytes=self._id)

    def __repr__(self):
        return f"NewEvent({self.type!r}, {self.data!r}, metadata={self.metadata!r}, id={self.id!r})"

    def __eq__(self, other):
        if not isinstance(other, NewEvent):
            return NotImplemented
        cdef NewEvent o = other
        return (self.type == o.type and self.data == o.data and self.metadata == o.metadata
                and self._id == o._id)

    def __reduce__(self):
        return (NewEvent, (self.type, self.data, self.metadata, self.id))


# Reads make and drop them by the hundred: a free list skips the allocator, and since every
# field is a str, bytes, int or None (no cycle can pass through one) the cycle collector need
# not track them, which also keeps reads from triggering collections.
@cython.freelist(1024)
@cython.no_gc
cdef class RecordedEvent:
    """An event as stored: where it is (position, stream, version), when, and what.

    Attributes:
        position: the global, dense, 0-based number of the event in the store.
        stream: the stream name.
        version: the dense, 0-based number of the event within its stream.
        type: the event type name.
        data: the payload bytes.
        metadata: the metadata bytes (b"" when none).
        timestamp: when it was appended, ns since the Unix epoch (UTC).
        id: the event id as a uuid.UUID, or None.

    Example:
        >>> store.read_stream("order-7")[0].version  # doctest: +SKIP
        0
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("RecordedEvent is made by the store; read it with read_stream/read_all")

    @property
    def id(self):
        """The event id as a uuid.UUID, or None."""
        return None if self._id is None else _uuid.UUID(bytes=self._id)

    @property
    def id_bytes(self):
        """The event id as 16 bytes, or None."""
        return self._id

    @property
    def recorded_at(self):
        """The append time as a timezone-aware datetime (UTC, microsecond precision)."""
        return _dt.datetime.fromtimestamp(self.timestamp / 1e9, tz=_UTC)

    def __repr__(self):
        return (f"RecordedEvent(position={self.position}, stream={self.stream!r}, "
                f"version={self.version}, type={self.type!r}, data={self.data!r})")

    def __eq__(self, other):
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        cdef RecordedEvent o = other
        return (self.position == o.position and self.version == o.version
                and self.stream == o.stream and self.type == o.type and self.data == o.data
                and self.metadata == o.metadata and self._id == o._id
                and self.timestamp == o.timestamp)

    def __hash__(self):
        return hash((self.position, self.stream, self.version))


cdef class AppendResult:
    """What an append did: the positions it took and the stream's next version.

    Attributes:
        first_position: the position of the first event appended.
        last_position: the position of the last event appended.
        next_version: the version the stream's next event will get (None for an
            append_batch that touched several streams).

    Example:
        >>> r = store.append("order-7", [NewEvent("OrderPlaced", b"{}")])  # doctest: +SKIP
        >>> r.next_version  # doctest: +SKIP
        1
    """

    def __init__(self, uint64_t first_position, uint64_t last_position, next_version=None):
        self.first_position = first_position
        self.last_position = last_position
        self.next_version = next_version

    def __repr__(self):
        return (f"AppendResult(first_position={self.first_position}, "
                f"last_position={self.last_position}, next_version={self.next_version})")

    def __eq__(self, other):
        if not isinstance(other, AppendResult):
            return NotImplemented
        cdef AppendResult o = other
        return (self.first_position == o.first_position
                and self.last_position == o.last_position and self.next_version == o.next_version)

    def __hash__(self):
        return hash((self.first_position, self.last_position, self.next_version))
