"""append_batch's columns as the Arrow arrays the compiled core encodes: coercion and checks."""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa

from chronolog._core.batch import check_kinds
from chronolog.errors import InvalidArgumentError, InvalidEventError, InvalidStreamNameError


def as_arrays(streams: Any, types: Any, datas: Any, metadatas: Any, ids: Any
              ) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array | None, pa.Array | None]:
    """The columns of one append_batch as parallel Arrow arrays (large_string streams and types,
    large_binary datas and metadatas, binary(16) ids; None when not given), or the
    InvalidEventError / InvalidStreamNameError / InvalidArgumentError that says which is wrong.

    Example:
        >>> [len(a) for a in as_arrays(["s", "s"], ["T", "T"], [b"1", b"2"], None, None)[:3]]
        [2, 2, 2]
    """
    s = _as_strings(streams, None, "streams")
    n = len(s)
    return (s, _as_strings(types, n, "types"), _as_bytes(datas, n, "datas"),
            _as_bytes(metadatas, n, "metadatas") if metadatas is not None else None,
            _as_ids(ids, n) if ids is not None else None)


def _as_strings(values: Any, n: int | None, what: str) -> pa.Array:
    arr = _as_array(values, pa.large_string(), what)
    if arr.null_count and what == "streams":
        raise InvalidStreamNameError(None, "a stream name must be a str, streams holds a null")
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
            or pa.types.is_string_view(arr.type)):
        if (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)
                or pa.types.is_binary_view(arr.type)):
            try:
                arr = arr.cast(pa.large_string())
            except pa.ArrowInvalid as exc:
                raise InvalidEventError(f"{what} must be valid UTF-8: {exc}") from None
        else:
            raise InvalidEventError(f"{what} must be strings, got Arrow type {arr.type}")
    arr = arr.cast(pa.large_string())
    _check_len(arr, n, what)
    return arr


def _as_bytes(values: Any, n: int | None, what: str) -> pa.Array:
    arr = _as_array(values, pa.large_binary(), what)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not any(f(arr.type) for f in (pa.types.is_binary, pa.types.is_large_binary,
                                      pa.types.is_binary_view, pa.types.is_string,
                                      pa.types.is_large_string, pa.types.is_string_view)):
        raise InvalidEventError(f"{what} must be bytes, got Arrow type {arr.type}")
    arr = arr.cast(pa.large_binary())
    _check_len(arr, n, what)
    return arr


def _as_array(values: Any, typ: pa.DataType, what: str) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, (str, bytes)):
        raise InvalidEventError(f"{what} must be a sequence (one value per event), not a single {type(values).__name__}")
    kind = getattr(getattr(values, "dtype", None), "kind", None)  # numpy (or alike) arrays
    if type(values) in (list, tuple):
        check_kinds(values, what)
    elif kind is not None and kind != "O":
        # Text or bytes only: pyarrow would store an int, float, bool or datetime array's raw
        # element bytes as binary values.
        want = "U" if pa.types.is_large_string(typ) else "S"
        if kind != want:
            raise InvalidEventError(f"{what} must hold {'str' if want == 'U' else 'bytes'}, got a "
                                    f"numpy array of dtype {values.dtype}")
    try:
        return pa.array(values, type=typ)
    except UnicodeEncodeError as exc:
        if what == "streams":
            raise InvalidStreamNameError(exc.object, "a stream name must be valid Unicode "
                                         "(no lone surrogates)") from None
        raise InvalidEventError(f"{what} must be valid Unicode (no lone surrogates): {exc}") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        kind = "str" if pa.types.is_large_string(typ) else "bytes"
        raise InvalidEventError(f"{what} must be a sequence of {kind}: {exc}") from None


def _check_len(arr: pa.Array, n: int | None, what: str) -> None:
    if n is not None and len(arr) != n:
        raise InvalidArgumentError(f"{what} has {len(arr)} values, streams has {n}; the columns must be parallel")


def _as_ids(values: Any, n: int) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if values.type != pa.binary(16):
            try:
                values = values.cast(pa.binary(16))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidEventError(f"ids must be 16-byte values: {exc}") from None
        arr = values
    else:
        out: list[bytes | None] = []
        for v in values:
            if v is None:
                out.append(None)
            elif isinstance(v, uuid.UUID):
                out.append(v.bytes)
            elif isinstance(v, (bytes, bytearray)) and len(v) == 16:
                out.append(bytes(v))
            else:
                try:
                    out.append(uuid.UUID(v).bytes)  # a UUID string, as NewEvent takes
                except (ValueError, TypeError, AttributeError):
                    raise InvalidEventError(f"each id must be a uuid.UUID, 16 bytes, a UUID "
                                            f"string or None, got {v!r}") from None
        arr = pa.array(out, type=pa.binary(16))
    _check_len(arr, n, "ids")
    return arr
