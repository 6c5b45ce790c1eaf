"""Type stubs of chronolog._core.crc (compiled): CRC32C for Python callers."""

from typing_extensions import Buffer

def crc32c(data: Buffer, crc: int = 0) -> int:
    """Return the CRC32C of `data`, continuing from `crc`."""

def crc32c_portable(data: Buffer, crc: int = 0) -> int:
    """Return the CRC32C of `data` computed by the portable table code (for tests)."""

def is_hardware() -> bool:
    """True when CRC32C runs on the CPU's CRC instruction (SSE4.2 or ARMv8 CRC)."""

def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """Return the CRC32C of A + B from crc32c(A), crc32c(B) and len(B)."""

def crc32c_extend_record(record: Buffer, crc: int = 0) -> int:
    """Continue `crc` over a record whose bytes 4..8 hold the CRC32C of its bytes 8.."""

def crc32c_3(a: Buffer, b: Buffer, c: Buffer) -> tuple[int, int, int]:
    """The CRC32C of three buffers, computed side by side."""
