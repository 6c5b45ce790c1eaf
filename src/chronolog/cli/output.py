"""How the command line prints: a rich console per run, number formats, JSON lines."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from chronolog.errors import ChronologError

MB = 1_000_000


def make_console(file: TextIO | None = None) -> Console:
    """A console on stdout (or `file`); colour and progress bars only on a terminal.

    Example:
        >>> make_console().print("hello")  # doctest: +SKIP
    """
    out = file if file is not None else sys.stdout
    # Tables must not be squeezed when the output is a pipe or a file.
    width = None if out.isatty() else max(120, int(os.environ.get("COLUMNS", "120") or 120))
    return Console(file=out, width=width, highlight=False, markup=False)


def make_progress(console: Console, what: str) -> Progress:
    """A progress bar for a long step, silent unless the console is a terminal.

    Example:
        >>> with make_progress(make_console(), "ingest") as p:  # doctest: +SKIP
        ...     task = p.add_task("ingest", total=10)
    """
    return Progress(
        TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not console.is_terminal)


def fmt_int(n: float) -> str:
    """Thousands separators: 1234567 -> '1,234,567'.

    Example:
        >>> fmt_int(1234567)
        '1,234,567'
    """
    return f"{int(n):,}"


def fmt_rate(n: float, seconds: float) -> str:
    """A per-second rate with thousands separators, or '-' when nothing was timed.

    Example:
        >>> fmt_rate(1000, 0.5)
        '2,000'
    """
    return f"{n / seconds:,.0f}" if seconds > 0 else "-"


def fmt_mb(n_bytes: float) -> str:
    """Bytes in MB (10^6 bytes) with one decimal.

    Example:
        >>> fmt_mb(2_500_000)
        '2.5'
    """
    return f"{n_bytes / MB:,.1f}"


def print_json(obj: Any, file: TextIO | None = None) -> None:
    """One JSON document on one line (sorted keys), for scripts.

    Example:
        >>> print_json({"ok": True})
        {"ok": true}
    """
    out = file if file is not None else sys.stdout
    out.write(json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n")


def error(message: str) -> None:
    """Print an error message to stderr, prefixed with the program name.

    Example:
        >>> error("no store here")  # doctest: +SKIP
    """
    sys.stderr.write(f"chronolog: error: {message}\n")


def stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so nothing tries to flush a dead pipe or full disk at exit.

    Example:
        >>> stdout_to_devnull()  # doctest: +SKIP
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def write_lines(lines: Iterable[str], what: str, *, flush_each: bool = False) -> int:
    """Write `lines` to stdout and return the exit code: 0, also when the reader went away
    (`chronolog dump ... | head`: stop quietly), 1 with a message when the output cannot take
    them (a full disk, an I/O error). A Chronolog error (CorruptionError is an OSError too)
    is the store's, and goes on to be reported as such.

    Example:
        >>> write_lines(iter(()), "the dump")
        0
    """
    try:
        for line in lines:
            sys.stdout.write(line)
            if flush_each:
                sys.stdout.flush()  # a follower reads each line as it comes
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_to_devnull()
    except ChronologError:
        raise
    except OSError as exc:
        # Let nothing try to flush the rest at exit.
        stdout_to_devnull()
        error(f"cannot write {what} to its output: {exc.strerror or exc}")
        return 1
    return 0
