"""Type stubs of chronolog._core.batch (compiled): what an append is made of."""

from typing_extensions import Self, disjoint_base

@disjoint_base
class ArrowColumn:
    """A binary/string Arrow array (64-bit offsets, no nulls) seen as raw pointers."""

    def __new__(cls, arr: object, what: str) -> Self: ...

def expected_code(expected: object) -> int:
    """Map an expected_version argument to the core's integer code, refusing bad values."""

def check_kinds(values: list[object] | tuple[object, ...], what: str) -> None:
    """Refuse a list or tuple column holding a value of the wrong kind (str for streams and
    types, bytes-like for datas and metadatas), with the error short lists get."""

__all__ = ["check_kinds", "expected_code"]
