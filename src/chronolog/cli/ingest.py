"""`chronolog ingest PATH FILE`: append NDJSON events with append_batch, 10,000 per batch.

Each line of FILE is one event: {"stream": str, "type": str, "data": object|array|string,
"metadata": object|array|string (optional), "id": UUID string (optional)}; any other key is
refused. Objects and arrays are stored as their JSON text, strings as their UTF-8 text. FILE
is UTF-8 (a leading byte order mark is skipped). The whole file is checked before anything is
written. Lines with ids make a re-run idempotent: see docs/idempotency.md, "chronolog ingest".
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shlex
import stat
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec

from chronolog._args import store_path
from chronolog._core.log import DEFAULT_MAX_EVENT_BYTES
from chronolog.cli.output import error, fmt_int, fmt_rate, make_console, make_progress
from chronolog.errors import ChronologError, InvalidArgumentError, StoreFailedError
from chronolog.store import EventStore

BATCH_EVENTS = 10_000
MAX_STREAM_NAME_BYTES = 1024
MAX_TYPE_NAME_BYTES = 255
RECORD_OVERHEAD_BYTES = 48 + 16  # record header and an event id (format.pxd)
UTF8_BOM = b"\xef\xbb\xbf"  # Windows tools (PowerShell's `>`, Notepad) start files with it


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as main() answers Ctrl-C
FIND_ID_CHUNK = 4096  # events read per step while looking for a line's id in its stream


class _Line(msgspec.Struct, forbid_unknown_fields=True):
    stream: str
    type: str
    data: msgspec.Raw
    metadata: msgspec.Raw = msgspec.Raw()
    id: uuid.UUID | None = None


FIELDS = ", ".join(_Line.__struct_fields__)
Event = tuple[str, str, bytes, bytes, "uuid.UUID | None"]  # stream, type, data, metadata, id


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


def parse_line(text: bytes, file: str, line: int, max_event_bytes: int) -> Event:
    """One NDJSON line as (stream, type, data, metadata, id), checked against the store's
    limits.

    Raises:
        InputError: the line is not valid JSON or not a valid event.

    Example:
        >>> parse_line(b'{"stream": "a-1", "type": "Made", "data": {"x": 1}}', "f", 1, 1 << 24)
        ('a-1', 'Made', b'{"x": 1}', b'', None)
    """
    try:
        ev = msgspec.json.decode(text, type=_Line)
    except UnicodeDecodeError as exc:  # msgspec decodes str fields strictly
        raise _not_utf8(file, line, exc, "in a string") from None
    except msgspec.ValidationError as exc:
        unknown = re.match(r"Object contains unknown field `(.*)`$", str(exc))
        if unknown:  # a misspelt "metdata" would otherwise lose the metadata without a word
            raise InputError(file, line, f"unknown field {unknown[1]!r} (the fields are: "
                                         f"{FIELDS})") from None
        if str(exc).endswith("at `$.id`"):
            raise InputError(file, line, "id must be a UUID string, like "
                                         f"\"{uuid.UUID(int=1)}\"") from None
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
    return ev.stream, ev.type, data, meta, ev.id


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
    """Lines of FILE that are in the store: first_line..last_line, at positions
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

    def __str__(self) -> str:
        return (f"lines {self.first_line}..{self.last_line} ({fmt_int(self.events)} "
                f"event{'s' if self.events != 1 else ''}, "
                f"positions {self.first_position}..{self.last_position})")


def _report(args: argparse.Namespace, found: _Committed, done: _Committed,
            retried: _Committed) -> str:
    """What of FILE is in the store (found by id: a re-run; appended by this run; a batch the
    store recognised by its ids), and the command that appends the rest."""
    parts = [f"{found} were already in the store (recognised by their ids)"] if found.events else []
    parts += [f"{done} were appended"] if done.events else ["nothing was written"]
    if retried.events:
        parts.append(f"{retried} were already in the store (the store recognised their ids)")
    last = max(args.skip, found.last_line, done.last_line, retried.last_line)
    if last > args.skip:
        parts.append(f"the lines from {last + 1} on are not in the store")
    return "; ".join(parts) + f"; resume with `{_command(args, last)}`"


def _command(args: argparse.Namespace, skip: int) -> str:
    words = ["chronolog", "ingest", args.path, args.file] + (["--skip", str(skip)] if skip else [])
    return shlex.join(words)


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
                    "\"metadata\"?, \"id\"?}; any other key is refused) to the store at PATH "
                    "(created when missing) with append_batch, 10,000 events per atomic batch, "
                    "durability 'os', then one final sync. The whole file is checked before "
                    "anything is written. An \"id\" is a UUID string, stored with the event: "
                    "when the first lines of FILE are already in the store with the same ids "
                    "in the same order (a run before stored them), a re-run does not write "
                    "them again; lines without ids are appended again on every run.")
    p.add_argument("path", metavar="PATH", help="the store directory")
    p.add_argument("file", metavar="FILE", help="the NDJSON file (a regular file, not stdin or a "
                   "pipe: it is read twice)")
    p.add_argument("--skip", metavar="N", type=int, default=0,
                   help="leave out the first N lines of FILE (neither checked nor appended): "
                        "resumes an ingest that stopped, whose message names N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Ingest args.file into the store at args.path; return the exit code.

    Example:
        >>> run(argparse.Namespace(path="data/shop", file="events.ndjson", skip=0))  # doctest: +SKIP
        0
    """
    if args.file == "-" or _is_pipe(args.file):
        raise InvalidArgumentError(
            f"{args.file!r} is {'stdin' if args.file == '-' else 'a pipe'}, and ingest reads FILE "
            "twice (every line is checked before any is written); write the events to a file "
            "first, e.g. `zcat events.ndjson.gz > events.ndjson`, and ingest that file")
    if not os.path.isfile(args.file):
        raise InvalidArgumentError(f"{args.file!r} is not a readable file; give an NDJSON file")
    if args.skip < 0:
        raise InvalidArgumentError(f"--skip must be 0 or more lines, got {args.skip}")
    store_path(args.path)  # a path that cannot be a store is refused before the file is read
    console = make_console()
    # Pass 1: check every line, so bad input is refused before anything is written.
    limit = DEFAULT_MAX_EVENT_BYTES
    total = 0
    checked = _Span()
    try:
        for number, text in _lines(args.file, span=checked):
            if number > args.skip:
                parse_line(text, args.file, number, limit)
                total += 1
    except KeyboardInterrupt:
        error(f"interrupted while checking {args.file}; nothing was written")
        return EXIT_INTERRUPTED
    if args.skip > checked.lines:
        raise InvalidArgumentError(f"--skip {args.skip}: {args.file} has {checked.lines} lines; "
                                   "nothing was written")
    # Pass 2: append in atomic batches, then one sync (close) for the whole file. It reads
    # only the bytes pass 1 checked: a live log may have grown (or got a torn last line).
    store = EventStore.open(args.path, durability="os", max_event_bytes=limit)
    found, done, retried = _Committed(), _Committed(), _Committed()
    number = batch_first = 0
    batch: list[Event] = []
    try:
        with store, make_progress(console, "ingest") as progress:
            started = time.perf_counter()
            head = store.head
            try:
                # A re-run: the lines a run before stored (with ids) are not written again.
                _find_stored(store, args.file, checked.bytes, args.skip, limit, found)
                task = progress.add_task("ingest", total=total, completed=found.events)
                for number, text in _lines(args.file, end=checked.bytes):
                    if number <= args.skip or number <= found.last_line:
                        continue
                    batch_first = batch_first or number
                    batch.append(parse_line(text, args.file, number, limit))
                    if len(batch) == BATCH_EVENTS:
                        _append(store, batch, batch_first, number, done, retried)
                        progress.advance(task, len(batch))
                        batch, batch_first = [], 0
                if batch:
                    _append(store, batch, batch_first, number, done, retried)
                    progress.advance(task, len(batch))
                    batch = []
            except BaseException:
                # Ctrl-C can land after append_batch committed and before it returned: we
                # hold the write lock, so a head past what `done` counts is that batch.
                if batch and _head(store) == head + done.events + len(batch):
                    done.add(batch_first, number, head + done.events,
                             head + done.events + len(batch) - 1, len(batch))
                    batch_first = number + 1
                raise
    except KeyboardInterrupt:
        error(f"{args.file} line {batch_first or number or 1}: ingest stopped: interrupted; "
              f"{_report(args, found, done, retried)}")
        return EXIT_INTERRUPTED
    except (ChronologError, OSError) as exc:
        line = exc.line if isinstance(exc, InputError) else batch_first or number or 1
        raise IngestStoppedError(args.file, line, _why(exc), _report(args, found, done, retried)) from exc
    seconds = time.perf_counter() - started  # includes the final sync done by close
    grown = _size(args.file) - checked.bytes
    if grown > 0:
        console.print(f"{args.file} grew by {fmt_int(grown)} bytes after it was checked; "
                      f"they were not ingested (they follow line {checked.lines}): add them "
                      f"with `{_command(args, checked.lines)}`", soft_wrap=True)
    if found.events:
        console.print(f"{found} were already in the store, recognised by their ids; they were "
                      "not written again", soft_wrap=True)
    if retried.events:
        console.print(f"{retried} were already in the store: the store recognised their ids "
                      "(a retry of its last append to their stream) and wrote nothing",
                      soft_wrap=True)
    if done.events == 0:
        if not found.events and not retried.events:
            console.print(f"{args.file} holds no events"
                          f"{f' after line {args.skip}' if args.skip else ''}; nothing was written")
        return 0
    console.print(f"ingested {fmt_int(done.events)} events (positions "
                  f"{fmt_int(done.first_position)}..{fmt_int(done.last_position)}) in "
                  f"{seconds:.2f} s ({fmt_rate(done.events, seconds)} events/s)")
    return 0


def _is_pipe(file: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(file).st_mode)
    except OSError:
        return False


def _head(store: EventStore) -> int:
    try:
        return store.head
    except ChronologError:
        return -1


def _size(file: str) -> int:
    try:
        return os.path.getsize(file)
    except OSError:
        return 0


def _find_stored(store: EventStore, file: str, end: int, skip: int, limit: int,
                 found: _Committed) -> None:
    """Record in `found` the longest run of FILE's first lines (after `skip`) that the store
    holds in order, by id and stream: what a run before appended. It starts where the first
    line's id is in its stream (read backwards from the stream's end); a first line without
    id finds nothing.

    The store's own retry rule (docs/idempotency.md) cannot do this with expected version
    ANY: it recognises only the latest append to a stream, not the earlier batches of a file.
    """
    lines = (line for line in _lines(file, end=end) if line[0] > skip)
    head = next(lines, None)
    if head is None:
        return
    stream, _, _, _, ident = parse_line(head[1], file, head[0], limit)
    at = None if ident is None else _position_of(store, stream, ident)
    if at is None:
        return
    stored = store.read_all(from_position=at)
    for number, text in itertools.chain([head], lines):
        ev = parse_line(text, file, number, limit)
        rec = next(stored, None)
        if rec is None or ev[4] is None or rec.id != ev[4] or rec.stream != ev[0]:
            return
        found.add(number, number, rec.position, rec.position, 1)


def _position_of(store: EventStore, stream: str, ident: uuid.UUID) -> int | None:
    """The position of the latest event of `stream` with id `ident`, or None."""
    version: int | None = None  # from the stream's last event
    while True:
        chunk = store.read_stream(stream, version, backwards=True, limit=FIND_ID_CHUNK)
        for rec in chunk:
            if rec.id == ident:
                return rec.position
        if len(chunk) < FIND_ID_CHUNK or chunk[-1].version == 0:
            return None
        version = chunk[-1].version - 1


def _append(store: EventStore, batch: list[Event], first_line: int, last_line: int,
            done: _Committed, retried: _Committed) -> None:
    streams, types, datas, metas, ids = zip(*batch)
    head = store.head
    res = store.append_batch(list(streams), list(types), list(datas),
                             metadatas=list(metas) if any(metas) else None,
                             ids=list(ids) if any(i is not None for i in ids) else None)
    if res.last_position < head:
        # Every event had an id and the store took the batch for a retry of an append it holds
        # (docs/idempotency.md): it wrote nothing and returned that append's positions.
        retried.add(first_line, last_line, res.first_position, res.last_position, len(batch))
    else:
        done.add(first_line, last_line, res.first_position, res.last_position, len(batch))
