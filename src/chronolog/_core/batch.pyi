"""Type stubs of chronolog._core.batch (compiled): what an append is made of."""

def expected_code(expected: object) -> int:
    """Map an expected_version argument to the core's integer code, refusing bad values."""

__all__ = ["expected_code"]
