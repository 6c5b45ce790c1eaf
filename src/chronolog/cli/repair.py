"""`chronolog repair PATH [--salvage]`: check and rebuild the indexes; salvage cuts damage away."""

from __future__ import annotations

import argparse
from typing import Any

from chronolog.cli.output import fmt_int, make_console, print_json
from chronolog.repair import repair


def add_parser(sub: Any) -> None:
    """Register `repair`.

    Example:
        >>> import argparse; p = argparse.ArgumentParser(); add_parser(p.add_subparsers())
    """
    p = sub.add_parser(
        "repair", help="rebuild the indexes; --salvage cuts damage away (offline)",
        description="Take the store's write lock (no writer may run), check every frame and "
                    "record, and rebuild the indexes from the segments. Damage exits 1 and "
                    "changes nothing, unless --salvage: then the damaged part of its segment "
                    "and every later segment are moved into salvage-<time>/ in the store, with "
                    "a log, until the events before the damage open. Nothing is deleted.")
    p.add_argument("path", metavar="PATH", help="the store directory")
    p.add_argument("--salvage", action="store_true",
                   help="keep the events before the damage; move the rest aside")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Repair the store at args.path; return 0 (chronolog errors exit 1 through main).

    Example:
        >>> run(argparse.Namespace(path="data/shop", salvage=False, json=False))  # doctest: +SKIP
        0
    """
    result = repair(args.path, salvage=args.salvage)
    if args.json:
        print_json(result)
        return 0
    console = make_console()
    for step in result["salvaged"]:
        console.print(step)
    if result["salvage_dir"] is not None:
        console.print(f"salvaged: {fmt_int(result['events'])} events kept; what was cut is in "
                      f"{result['salvage_dir']} (see its repair.log)")
    else:
        console.print(f"OK: {fmt_int(result['events'])} events check; indexes rebuilt")
    return 0
