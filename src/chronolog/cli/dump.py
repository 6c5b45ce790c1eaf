"""`chronolog dump PATH`: events as JSON lines, in position order or one stream's order."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Iterable
from typing import Any

from chronolog._args import options_not_negative
from chronolog._core.events import RecordedEvent
from chronolog.cli.output import write_lines
from chronolog.store import EventStore


def add_parser(sub: Any) -> None:
    """Register `dump`.

    Example:
        >>> import argparse; p = argparse.ArgumentParser(); add_parser(p.add_subparsers())
    """
    p = sub.add_parser(
        "dump", help="print events as JSON lines",
        description="Print events as JSON lines: position, stream, version, type, timestamp "
                    "(ns since the epoch, UTC), id, and data/metadata as UTF-8 text, or as "
                    "data_base64/metadata_base64 when they are not valid UTF-8.")
    p.add_argument("path", metavar="PATH", help="the store directory")
    p.add_argument("--from", dest="start", type=int, default=None, metavar="N",
                   help="first position (with --stream: first version); default 0")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="print at most N events")
    p.add_argument("--stream", default=None, metavar="S",
                   help="only the events of stream S, by version")
    p.set_defaults(func=run)


def _bytes_field(out: dict[str, Any], name: str, value: bytes) -> None:
    try:
        out[name] = value.decode("utf-8")
    except UnicodeDecodeError:
        out[f"{name}_base64"] = base64.b64encode(value).decode("ascii")


def event_json(e: RecordedEvent) -> dict[str, Any]:
    """A RecordedEvent as a JSON-ready dict (bytes as text, or base64 when not UTF-8).

    Example:
        >>> event_json(store.read_stream("order-7")[0])["version"]  # doctest: +SKIP
        0
    """
    out: dict[str, Any] = {
        "position": e.position, "stream": e.stream, "version": e.version, "type": e.type,
        "timestamp": e.timestamp, "id": str(e.id) if e.id is not None else None,
    }
    _bytes_field(out, "data", e.data)
    _bytes_field(out, "metadata", e.metadata)
    return out


def event_json_line(e: RecordedEvent) -> str:
    """One event as the JSON line `dump` and `tail` print.

    Example:
        >>> event_json_line(store.read_stream("order-7")[0])  # doctest: +SKIP
        '{"position": 0, "stream": "order-7", ...}\\n'
    """
    return json.dumps(event_json(e), ensure_ascii=False) + "\n"


def run(args: argparse.Namespace) -> int:
    """Dump the events of the store at args.path; return the exit code.

    Example:
        >>> run(argparse.Namespace(path="data/shop", start=None, limit=10, stream=None))  # doctest: +SKIP
        0
    """
    options_not_negative(("--from", args.start), ("--limit", args.limit))
    with EventStore.open(args.path, readonly=True) as store:
        if args.stream is not None:
            events: Iterable[RecordedEvent] = store.read_stream(
                args.stream, from_version=args.start, limit=args.limit)
        else:
            events = store.read_all(from_position=args.start, limit=args.limit)
        return write_lines(map(event_json_line, events), "the dump")

