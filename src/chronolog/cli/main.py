"""The `chronolog` entry point: the argument parser, dispatch to one module per subcommand,
and the one place that turns Chronolog errors into messages and exit codes.

Exit codes: 0 success, 1 the command ran and found a problem (damage, bad input, a Chronolog
error), 2 a usage error or a command that is not available yet.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

import chronolog
from chronolog.cli import demo, dump, export, ingest, repair, store_info, tail, verify
from chronolog.cli.output import error
from chronolog.errors import ChronologError

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2

# Named by the design, not built yet: they answer with a clear error instead of pretending.
NOT_AVAILABLE = {
    "project": "run a read model over the store",
    "bench": "run the benchmark suite",
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand.

    Example:
        >>> build_parser().parse_args(["info", "data/shop"]).path
        'data/shop'
    """
    parser = argparse.ArgumentParser(
        prog="chronolog",
        description="Chronolog: an embedded event store. Inspect, verify, repair, ingest, "
                    "follow, export and demo.")
    parser.add_argument("--version", action="version",
                        version=f"chronolog {chronolog.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    store_info.add_init_parser(sub)
    store_info.add_info_parser(sub)
    verify.add_parser(sub)
    dump.add_parser(sub)
    ingest.add_parser(sub)
    demo.add_parser(sub)
    repair.add_parser(sub)
    tail.add_parser(sub)
    export.add_parser(sub)
    for name, what in NOT_AVAILABLE.items():
        p = sub.add_parser(name, help=f"({what}: not available yet)", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=None)
    return parser


def os_error_message(command: str, exc: OSError) -> str:
    """One line for an OSError no Chronolog error wrapped: the path, the OS error, what to do.

    Example:
        >>> os_error_message("init", OSError(28, "No space left on device", "data/shop"))
        "'data/shop': No space left on device (ENOSPC); `chronolog init` stopped: free space on that disk and run the command again"
    """
    code = errno.errorcode.get(exc.errno or 0, "")
    what = exc.strerror or str(exc)
    where = " -> ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free space on that disk and run the command again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = "check the permissions (and that the disk is not read-only) and run it again"
    else:
        todo = "fix the cause and run the command again"
    return (f"{where + ': ' if where else ''}{what}{f' ({code})' if code else ''}; "
            f"`chronolog {command}` stopped: {todo}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script exits with it).

    Example:
        >>> main(["verify", "data/shop"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in NOT_AVAILABLE:  # whatever follows (--help included: argparse
        command = words[0]                   # took it for an unknown option)
        error(f"`chronolog {command}` ({NOT_AVAILABLE[command]}) is not available "
              f"yet in chronolog {chronolog.__version__}; available: init, info, verify, dump, "
              "ingest, repair, tail, export, demo")
        return EXIT_USAGE
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except ChronologError as exc:
        error(str(exc))
        return EXIT_PROBLEM
    except OSError as exc:  # a full disk, a permission: a message, not a traceback
        error(os_error_message(args.command, exc))
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        error("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
