"""CRC32C for Python callers (tests, tools): the same C code the log uses."""
from chronolog._core.format cimport chl_crc32c_extend, chl_crc32c_portable, chl_crc32c_is_hardware


def crc32c(data, unsigned int crc=0):
    """Return the CRC32C of `data` (bytes-like), continuing from `crc`.

    Example:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    cdef size_t n = view.shape[0]
    if n == 0:
        return crc
    with nogil:
        crc = chl_crc32c_extend(crc, &view[0], n)
    return crc


def crc32c_portable(data, unsigned int crc=0):
    """Return the CRC32C of `data` computed by the portable table code (for tests)."""
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    if view.shape[0] == 0:
        return crc
    return chl_crc32c_portable(crc, &view[0], view.shape[0])


def is_hardware():
    """True when CRC32C runs on the CPU's CRC instruction (SSE4.2 or ARMv8 CRC)."""
    return bool(chl_crc32c_is_hardware())
