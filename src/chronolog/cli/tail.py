"""`chronolog tail PATH`: follow the events appended to a store, as JSON lines."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from chronolog._args import options_not_negative
from chronolog.cli.dump import event_json_line
from chronolog.cli.output import write_lines
from chronolog.errors import InvalidArgumentError
from chronolog.store import EventStore


def add_parser(sub: Any) -> None:
    """Register `tail`.

    Example:
        >>> import argparse; p = argparse.ArgumentParser(); add_parser(p.add_subparsers())
    """
    p = sub.add_parser(
        "tail", help="follow new events as they are appended (JSON lines)",
        description="Print the events appended to the store from now on (or from --from, "
                    "catching up first) as JSON lines, the format of `dump`, as the writer "
                    "appends them, also from another process: a read-only subscription, so it "
                    "never slows or blocks the writer. Runs until interrupted (Ctrl-C), until "
                    "--limit events were printed, or until --idle seconds pass with none.")
    p.add_argument("path", metavar="PATH", help="the store directory")
    p.add_argument("--from", dest="start", type=int, default=None, metavar="N",
                   help="first position (default: the head, only new events)")
    p.add_argument("--last", type=int, default=None, metavar="N",
                   help="start N positions before the head (the last N events, before filters)")
    p.add_argument("--type", dest="types", action="append", default=None, metavar="T",
                   help="only events of type T (repeat for several)")
    p.add_argument("--stream-prefix", default=None, metavar="P",
                   help="only events of streams whose name starts with P")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="stop after N events")
    p.add_argument("--idle", type=float, default=None, metavar="SECONDS",
                   help="stop when nothing new arrives for this long (default: never)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Follow the store at args.path, printing each event; return the exit code.

    Example:
        >>> from chronolog.cli.main import build_parser
        >>> run(build_parser().parse_args(["tail", "data/shop", "--limit", "1"]))  # doctest: +SKIP
        0
    """
    options_not_negative(("--from", args.start), ("--last", args.last), ("--limit", args.limit))
    if args.start is not None and args.last is not None:
        raise InvalidArgumentError("give --from or --last, not both")
    if args.idle is not None and not args.idle >= 0:  # also refuses NaN
        raise InvalidArgumentError(f"--idle must be a number of seconds >= 0, got {args.idle}")
    if args.limit == 0:
        return 0
    with EventStore.open(args.path, readonly=True) as store:
        if args.start is not None:
            start = args.start
        else:
            start = max(0, store.head - (args.last or 0))

        def lines() -> Iterator[str]:
            with store.subscribe(start, types=args.types, stream_prefix=args.stream_prefix,
                                 timeout=args.idle) as sub:
                for printed, event in enumerate(sub, 1):
                    yield event_json_line(event)
                    if args.limit is not None and printed >= args.limit:
                        return

        try:
            return write_lines(lines(), "the events", flush_each=True)
        except KeyboardInterrupt:
            return 0  # Ctrl-C is how a tail ends

