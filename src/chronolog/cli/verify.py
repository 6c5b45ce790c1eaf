"""`chronolog verify PATH`: check every frame and record and the indexes; exit 1 on damage."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from chronolog.cli.output import fmt_int, make_console, print_json
from chronolog.errors import CorruptionError
from chronolog.store import EventStore


def add_parser(sub: Any) -> None:
    """Register `verify`.

    Example:
        >>> import argparse; p = argparse.ArgumentParser(); add_parser(p.add_subparsers())
    """
    p = sub.add_parser(
        "verify", help="check every checksum, position and version; exit 1 on damage",
        description="Open the store read-only and check every frame and record (CRC32C, dense "
                    "positions and versions) and the indexes against them. Exit 1 and name the "
                    "first problem's segment and offset when anything is wrong.")
    p.add_argument("path", metavar="PATH", help="the store directory")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify the store at args.path; return 0 when sound, 1 on damage.

    Example:
        >>> run(argparse.Namespace(path="data/shop", json=False))  # doctest: +SKIP
        0
    """
    console = make_console()
    try:
        with EventStore.open(args.path, readonly=True) as store:
            report = store.verify()
    except CorruptionError as exc:
        # Damage that stops even a read-only open (a sealed segment or header that fails).
        report = {"ok": False, "events": None, "frames": None, "segments": None, "bytes": None,
                  "problems": [{"segment": exc.path, "offset": exc.offset,
                                "reason": exc.reason}]}
    if args.json:
        print_json(report)
        return 0 if report["ok"] else 1
    if report["events"] is not None:
        table = Table(title=f"verify {args.path}", title_justify="left")
        table.add_column("checked")
        table.add_column("count", justify="right")
        table.add_row("events", fmt_int(report["events"]))
        table.add_row("frames", fmt_int(report["frames"]))
        table.add_row("segments", fmt_int(report["segments"]))
        table.add_row("bytes", fmt_int(report["bytes"]))
        console.print(table)
    if report["ok"]:
        console.print("OK: every frame, record and index entry checks")
        return 0
    first = report["problems"][0]
    where = first["segment"] if first["segment"] is not None else "(index)"
    offset = first["offset"] if first["offset"] is not None else "-"
    console.print(f"DAMAGED: first problem in segment {where} at offset {offset}: "
                  f"{first['reason']}")
    if len(report["problems"]) > 1:
        console.print(f"({len(report['problems']) - 1} more problem(s) reported)")
    return 1
