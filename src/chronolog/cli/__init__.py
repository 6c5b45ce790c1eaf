"""The `chronolog` command line: one module per subcommand, wired together in main.py.

Example:
    >>> from chronolog.cli.main import main
    >>> main(["info", "data/shop"])  # doctest: +SKIP
    0
"""
