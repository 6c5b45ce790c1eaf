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
from chronolog.errors import ChronologError, InvalidArgumentError, StoreFailedError
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


class _Span:
    """How far a read of FILE got: every line and byte, blank lines included."""

    __slots__ = ("bytes", "lines")

    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0


def _lines(file: str, end: int | None = None,
           span: _Span | None = None) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of `file` and their numbers (a leading UTF-8 BOM dropped), up to
    byte `end` (to the end of the file when None); `span` counts what was read."""
    with open(file, "rb") as f:
        left = -1 if end is None else end
        number = 0
        while left:
            text = f.readline(left)  # readline(-1): the whole line
            if not text:
                break
            number += 1
            if left > 0:
                left -= len(text)
            if span is not None:
                span.lines = number
                span.bytes += len(text)
            if number == 1 and text.startswith(UTF8_BOM):
                text = text[len(UTF8_BOM):]
            if text.strip():
                yield number, text


class _Committed:
    """What pass 2 has appended so far: the file's lines first..last, at positions
    first_position..last_position (one run holds the write lock: they are contiguous)."""

    __slots__ = ("events", "first_line", "first_position", "last_line", "last_position")

    def __init__(self) -> None:
        self.events = 0
        self.first_line = self.last_line = 0
        self.first_position = self.last_position = 0

    def add(self, first_line: int, last_line: int, first_position: int, last_position: int,
            events: int) -> None:
        if not self.events:
            self.first_line, self.first_position = first_line, first_position
        self.last_line, self.last_position = last_line, last_position
        self.events += events

    def report(self) -> str:
        if not self.events:
            return "nothing was written"
        return (f"lines {self.first_line}..{self.last_line} ({fmt_int(self.events)} events, "
                f"positions {self.first_position}..{self.last_position}) are in the store; "
                f"the lines from {self.last_line + 1} on are not")


class IngestStoppedError(ChronologError, RuntimeError):
    """Raised when an ingest stops after its check passed (a full disk, a file that changed
    meanwhile): it says which lines were committed and which were not.

    Example:
        >>> str(IngestStoppedError("e.ndjson", 7, "the store failed", "nothing was written"))
        'e.ndjson line 7: ingest stopped: the store failed; nothing was written'
    """

    def __init__(self, file: str, line: int, reason: str, committed: str) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        super().__init__(f"{file} line {line}: ingest stopped: {reason}; {committed}")


def _why(exc: Exception) -> str:
    if isinstance(exc, InputError):
        return f"{exc.reason} (the file changed after it was checked)"
    if isinstance(exc, StoreFailedError):
        return f"the store stopped accepting writes ({exc.cause}); free space or fix the cause"
    return str(exc)


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
    checked = _Span()
    for number, text in _lines(args.file, span=checked):
        parse_line(text, args.file, number, limit)
        total += 1
    # Pass 2: append in atomic batches, then one sync (close) for the whole file. It reads
    # only the bytes pass 1 checked: a live log may have grown (or got a torn last line).
    store = EventStore.open(args.path, durability="os", max_event_bytes=limit)
    done = _Committed()
    number = 0
    try:
        with store, make_progress(console, "ingest") as progress:
            started = time.perf_counter()
            task = progress.add_task("ingest", total=total)
            batch: list[tuple[str, str, bytes, bytes]] = []
            batch_first = 0
            for number, text in _lines(args.file, end=checked.bytes):
                batch_first = batch_first or number
                batch.append(parse_line(text, args.file, number, limit))
                if len(batch) == BATCH_EVENTS:
                    _append(store, batch, batch_first, number, done)
                    progress.advance(task, len(batch))
                    batch, batch_first = [], 0
            if batch:
                _append(store, batch, batch_first, number, done)
                progress.advance(task, len(batch))
    except (ChronologError, OSError) as exc:
        line = exc.line if isinstance(exc, InputError) else batch_first or number or 1
        raise IngestStoppedError(args.file, line, _why(exc), done.report()) from exc
    seconds = time.perf_counter() - started  # includes the final sync done by close
    grown = _size(args.file) - checked.bytes
    if grown > 0:
        console.print(f"{args.file} grew by {fmt_int(grown)} bytes after it was checked; "
                      f"they were not ingested (they follow line {checked.lines})", soft_wrap=True)
    if done.events == 0:
        console.print(f"{args.file} holds no events; nothing was written")
        return 0
    console.print(f"ingested {fmt_int(done.events)} events (positions "
                  f"{fmt_int(done.first_position)}..{fmt_int(done.last_position)}) in "
                  f"{seconds:.2f} s ({fmt_rate(done.events, seconds)} events/s)")
    return 0


def _size(file: str) -> int:
    try:
        return os.path.getsize(file)
    except OSError:
        return 0


def _append(store: EventStore, batch: list[tuple[str, str, bytes, bytes]], first_line: int,
            last_line: int, done: _Committed) -> None:
    streams, types, datas, metas = zip(*batch)
    has_meta = any(metas)
    res = store.append_batch(list(streams), list(types), list(datas),
                             metadatas=list(metas) if has_meta else None)
    done.add(first_line, last_line, res.first_position, res.last_position, len(batch))
