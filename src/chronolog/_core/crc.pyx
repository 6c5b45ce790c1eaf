"""CRC32C for Python callers (tests, tools): the same C code the log uses."""
from libc.stdint cimport uint32_t
from chronolog._core.format cimport (
    chl_crc32c_extend, chl_crc32c_portable, chl_crc32c_is_hardware, chl_crc32c_combine,
    chl_crc32c_extend_record, chl_crc32c_3)


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


def crc32c_combine(unsigned int crc1, unsigned int crc2, size_t len2):
    """Return the CRC32C of A + B from crc1 = crc32c(A), crc2 = crc32c(B) and len2 = len(B).

    Example:
        >>> crc32c_combine(crc32c(b"1234"), crc32c(b"56789"), 5) == crc32c(b"123456789")
        True
    """
    return chl_crc32c_combine(crc1, crc2, len2)


def crc32c_extend_record(record, unsigned int crc=0):
    """Continue `crc` over a record (bytes-like, at least 8 bytes) whose bytes 4..8 hold the
    CRC32C of its bytes 8.. (little-endian), reading only its first 8 bytes where the CPU can
    combine CRCs: what the append path uses for a frame's body CRC (for tests)."""
    cdef const unsigned char[::1] view = memoryview(record).cast("B")
    if view.shape[0] < 8:
        raise ValueError("a record has at least 8 bytes")
    return chl_crc32c_extend_record(crc, &view[0], view.shape[0])


def crc32c_3(a, b, c):
    """The CRC32C of three buffers, computed side by side (what the append path uses for
    records; for tests).

    Example:
        >>> crc32c_3(b"123456789", b"", b"x") == (crc32c(b"123456789"), 0, crc32c(b"x"))
        True
    """
    cdef const unsigned char[::1] va = memoryview(a).cast("B")
    cdef const unsigned char[::1] vb = memoryview(b).cast("B")
    cdef const unsigned char[::1] vc = memoryview(c).cast("B")
    cdef uint32_t out[3]
    cdef unsigned char z = 0
    chl_crc32c_3(&va[0] if va.shape[0] else &z, va.shape[0], &vb[0] if vb.shape[0] else &z,
                 vb.shape[0], &vc[0] if vc.shape[0] else &z, vc.shape[0], out)
    return (out[0], out[1], out[2])
