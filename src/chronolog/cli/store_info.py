"""`chronolog init PATH` creates a store; `chronolog info PATH` prints its figures."""

from __future__ import annotations

import argparse
import os
from typing import Any

from rich.table import Table

from chronolog.cli.output import fmt_int, fmt_mb, make_console, print_json
from chronolog.store import EventStore

STORE_FILE = "chronolog.store"


def add_init_parser(sub: Any) -> None:
    """Register `init`.

    Example:
        >>> import argparse; p = argparse.ArgumentParser(); add_init_parser(p.add_subparsers())
    """
    p = sub.add_parser("init", help="create an empty store (a directory)",
                       description="Create an empty store at PATH; an existing store is left "
                                   "as it is.")
    p.add_argument("path", metavar="PATH", help="the store directory")
    p.set_defaults(func=run_init)


def add_info_parser(sub: Any) -> None:
    """Register `info`.

    Example:
        >>> import argparse; p = argparse.ArgumentParser(); add_info_parser(p.add_subparsers())
    """
    p = sub.add_parser("info", help="print a store's figures (events, streams, bytes)",
                       description="Open the store read-only and print its figures.")
    p.add_argument("path", metavar="PATH", help="the store directory")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    p.set_defaults(func=run_info)


def run_init(args: argparse.Namespace) -> int:
    """Create the store at args.path (idempotent); return the exit code.

    Example:
        >>> run_init(argparse.Namespace(path="data/shop"))  # doctest: +SKIP
        0
    """
    existed = os.path.exists(os.path.join(args.path, STORE_FILE))
    with EventStore.open(args.path) as store:
        head = store.head
        path = store.path
    console = make_console()
    if existed:
        console.print(f"store {path} already exists ({fmt_int(head)} events); left unchanged")
    else:
        console.print(f"created an empty store at {path}")
    return 0


def index_bytes(path: str) -> int:
    """Bytes of the derived index files of the store at `path` (0 when none).

    Example:
        >>> index_bytes("/nonexistent")
        0
    """
    idx = os.path.join(path, "index")
    if not os.path.isdir(idx):
        return 0
    return sum(e.stat().st_size for e in os.scandir(idx) if e.is_file())


def run_info(args: argparse.Namespace) -> int:
    """Print the figures of the store at args.path; return the exit code.

    Example:
        >>> run_info(argparse.Namespace(path="data/shop", json=False))  # doctest: +SKIP
        0
    """
    with EventStore.open(args.path, readonly=True) as store:
        stats = store.stats()
    stats["index_bytes"] = index_bytes(stats["path"])
    stats.pop("durability", None)  # a property of this read-only handle, not of the store
    stats.pop("readonly", None)
    if args.json:
        print_json(stats)
        return 0
    table = Table(title=f"Chronolog store {stats['path']}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("events (head)", fmt_int(stats["events"]))
    table.add_row("streams", fmt_int(stats["streams"]))
    table.add_row("segments", fmt_int(stats["segments"]))
    table.add_row("segment bytes", f"{fmt_int(stats['bytes'])} ({fmt_mb(stats['bytes'])} MB)")
    table.add_row("index bytes (derived)", fmt_int(stats["index_bytes"]))
    table.add_row("format version", str(stats["format_version"]))
    table.add_row("max segment bytes (this handle)", fmt_int(stats["max_segment_bytes"]))
    table.add_row("max event bytes (this handle)", fmt_int(stats["max_event_bytes"]))
    make_console().print(table)
    return 0
