"""`chronolog ingest PATH FILE`: append NDJSON events with append_batch, 10,000 per batch.

Each line of FILE is one event: {"stream": str, "type": str, "data": object|array|string,
"metadata": object|array|string (optional)}. Objects and arrays are stored as their JSON text,
strings as their UTF-8 text. FILE is UTF-8 (a leading byte order mark is skipped). The whole
file is checked before anything is written.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from chronolog._args import store_path
from chronolog._core.log import DEFAULT_MAX_EVENT_BYTES
from chronolog.cli.output import fmt_int, fmt_rate, make_console, make_progress
from chronolog.errors import InvalidArgumentError
from chronolog.store import EventStore

BATCH_EVENTS = 10_000
MAX_STREAM_NAME_BYTES = 1024
MAX_TYPE_NAME_BYTES = 255
RECORD_OVERHEAD_BYTES = 48 + 16  # record header and an event id (format.pxd)
UTF8_BOM = b"\xef\xbb\xbf"  # Windows tools (PowerShell's `>`, Notepad) start files with it


class _Line(msgspec.Struct):
    stream: str
    type: str
    data: msgspec.Raw
    metadata: msgspec.Raw = msgspec.Raw()


class InputError(InvalidArgumentError):
    """Raised when a line of an ingest file is not a valid event; nothing was written.

    Example:
        >>> str(InputError("events.ndjson", 3, "data is missing"))
        'events.ndjson line 3: data is missing; nothing was written'
    """

    def __init__(self, file: str, line: int, reason: str) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        super().__init__(f"{file} line {line}: {reason}; nothing was written")


def _not_utf8(file: str, line: int, exc: UnicodeDecodeError, where: str) -> InputError:
    bad = exc.object[exc.start:exc.start + 1].hex()
    return InputError(file, line, f"byte 0x{bad} {where} is not UTF-8; the file must be UTF-8: "
                                  "convert it first (e.g. `iconv -f latin1 -t utf-8`)")


def _payload(raw: msgspec.Raw, what: str, file: str, line: int) -> bytes:
    body = bytes(raw).strip()
    if not body.isascii():  # msgspec hands objects and arrays over raw, undecoded
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(file, line, exc, f"in {what}") from None
    if not body or body == b"null":
        if what == "data":
            raise InputError(file, line, "data must be a JSON object, array or string")
        return b""
    if body[:1] == b'"':
        return msgspec.json.decode(body, type=str).encode("utf-8")
    if body[:1] in (b"{", b"["):
        return body
    raise InputError(file, line, f"{what} must be a JSON object, array or string, "
                                 f"got {body[:20].decode('utf-8', 'replace')}")


def parse_line(text: bytes, file: str, line: int,
               max_event_bytes: int) -> tuple[str, str, bytes, bytes]:
    """One NDJSON line as (stream, type, data, metadata), checked against the store's limits.

    Raises:
        InputError: the line is not valid JSON or not a valid event.

    Example:
        >>> parse_line(b'{"stream": "a-1", "type": "Made", "data": {"x": 1}}', "f", 1, 1 << 24)
        ('a-1', 'Made', b'{"x": 1}', b'')
    """
    try:
        ev = msgspec.json.decode(text, type=_Line)
    except UnicodeDecodeError as exc:  # msgspec decodes str fields strictly
        raise _not_utf8(file, line, exc, "in a string") from None
    except msgspec.ValidationError as exc:
        raise InputError(file, line, f"not a valid event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InputError(file, line, f"not valid JSON: {exc}") from None
    s = ev.stream.encode("utf-8", "surrogatepass")
    t = ev.type.encode("utf-8", "surrogatepass")
    if not 1 <= len(s) <= MAX_STREAM_NAME_BYTES or b"\0" in s:
        raise InputError(file, line, f"stream must be 1..{MAX_STREAM_NAME_BYTES} bytes of "
                                     "UTF-8 without NUL")
    if not 1 <= len(t) <= MAX_TYPE_NAME_BYTES:
        raise InputError(file, line, f"type must be 1..{MAX_TYPE_NAME_BYTES} bytes of UTF-8")
    data = _payload(ev.data, "data", file, line)
    meta = _payload(ev.metadata, "metadata", file, line)
    size = RECORD_OVERHEAD_BYTES + len(s) + len(t) + len(data) + len(meta)
    if size > max_event_bytes:
        raise InputError(file, line, f"the event is {size} bytes, over the store's limit of "
                                     f"{max_event_bytes}")
    return ev.stream, ev.type, data, meta


def _lines(file: str) -> Iterator[tuple[int, bytes]]:
    with open(file, "rb") as f:
        for number, text in enumerate(f, start=1):
            if number == 1 and text.startswith(UTF8_BOM):
                text = text[len(UTF8_BOM):]
            if text.strip():
                yield number, text


def add_parser(sub: Any) -> None:
    """Register `ingest`.

    Example:
        >>> import argparse; p = argparse.ArgumentParser(); add_parser(p.add_subparsers())
    """
    p = sub.add_parser(
        "ingest", help="append the events of an NDJSON file",
        description="Append every line of FILE ({\"stream\", \"type\", \"data\", "
                    "\"metadata\"?}) to the store at PATH (created when missing) with "
                    "append_batch, 10,000 events per atomic batch, durability 'os', then one "
                    "final sync. The whole file is checked before anything is written.")
    p.add_argument("path", metavar="PATH", help="the store directory")
    p.add_argument("file", metavar="FILE", help="the NDJSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Ingest args.file into the store at args.path; return the exit code.

    Example:
        >>> run(argparse.Namespace(path="data/shop", file="events.ndjson"))  # doctest: +SKIP
        0
    """
    if not os.path.isfile(args.file):
        raise InvalidArgumentError(f"{args.file!r} is not a readable file; give an NDJSON file")
    store_path(args.path)  # a path that cannot be a store is refused before the file is read
    console = make_console()
    # Pass 1: check every line, so bad input is refused before anything is written.
    limit = DEFAULT_MAX_EVENT_BYTES
    total = 0
    for number, text in _lines(args.file):
        parse_line(text, args.file, number, limit)
        total += 1
    # Pass 2: append in atomic batches, then one sync (close) for the whole file.
    with EventStore.open(args.path, durability="os", max_event_bytes=limit) as store:
        first = store.head
        started = time.perf_counter()
        with make_progress(console, "ingest") as progress:
            task = progress.add_task("ingest", total=total)
            batch: list[tuple[str, str, bytes, bytes]] = []
            for number, text in _lines(args.file):
                batch.append(parse_line(text, args.file, number, limit))
                if len(batch) == BATCH_EVENTS:
                    _append(store, batch)
                    progress.advance(task, len(batch))
                    batch = []
            if batch:
                _append(store, batch)
                progress.advance(task, len(batch))
        last = store.head
    seconds = time.perf_counter() - started  # includes the final sync done by close
    if total == 0:
        console.print(f"{args.file} holds no events; nothing was written")
        return 0
    console.print(f"ingested {fmt_int(total)} events (positions {fmt_int(first)}.."
                  f"{fmt_int(last - 1)}) in {seconds:.2f} s ({fmt_rate(total, seconds)} "
                  "events/s)")
    return 0


def _append(store: EventStore, batch: list[tuple[str, str, bytes, bytes]]) -> None:
    streams, types, datas, metas = zip(*batch)
    has_meta = any(metas)
    store.append_batch(list(streams), list(types), list(datas),
                       metadatas=list(metas) if has_meta else None)
