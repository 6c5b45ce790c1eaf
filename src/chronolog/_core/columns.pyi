"""Type stubs of chronolog._core.columns (compiled): the Arrow columns of a scan."""

from collections.abc import Iterable

import pyarrow as pa

COLUMNS: tuple[str, ...]
SCHEMA: pa.Schema

def schema_of(columns: Iterable[str] | None = None) -> pa.Schema:
    """The Arrow schema of a scan with these columns (all, in the standard order, when None)."""

__all__ = ["COLUMNS", "SCHEMA", "schema_of"]
