"""CRC32C on long buffers: the three-stream hardware path agrees with the portable table code.

csrc/chl_crc32c.c splits a buffer into three-stream blocks of 3*N bytes (N = 32768, 256 and 64
today, longest first) and runs the rest on one chain. These tests hit every length around each
of those boundaries, and around 3*N for every power of two N from 8 to 65536, so that retuning
the block sizes keeps them covered; at every start alignment; continued from non-zero CRCs.
"""

from __future__ import annotations

import platform
import random
import sys
from pathlib import Path

import pytest

from chronolog._core.crc import crc32c, crc32c_portable, is_hardware

BLOCK_STRIDES = [32768, 256, 64]  # bytes per stream, CHL_CRC_LONG/_MID/_SHORT
POWER_OF_TWO_STRIDES = [1 << k for k in range(3, 17)]
BLOB = random.Random(20261126).randbytes(8 * 1024 * 1024 + 64)
VIEW = memoryview(BLOB)


def _boundary_lengths(stride: int) -> list[int]:
    block = 3 * stride
    return sorted({n for k in (1, 2) for d in range(-9, 10) if (n := k * block + d) >= 0})


def _reference_crc32c(data: bytes, crc: int = 0) -> int:
    """Bytewise CRC32C in pure Python, independent of the C code."""
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _cpu_has_crc_instruction() -> bool:
    flags = Path("/proc/cpuinfo").read_text().split()
    machine = platform.machine()
    if machine == "x86_64":
        return "sse4_2" in flags
    if machine == "aarch64":
        return "crc32" in flags
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_crc32c_uses_the_hardware_path_when_the_cpu_has_a_crc_instruction() -> None:
    # Without this the agreement tests below would compare the table code with itself.
    assert is_hardware() == _cpu_has_crc_instruction()


def test_crc32c_agrees_with_portable_on_every_length_up_to_4_kib() -> None:
    for n in range(4097):
        assert crc32c(VIEW[:n]) == crc32c_portable(VIEW[:n]), n


@pytest.mark.parametrize("stride", sorted(set(BLOCK_STRIDES + POWER_OF_TWO_STRIDES)))
def test_crc32c_agrees_with_portable_around_each_block_boundary(stride: int) -> None:
    for n in _boundary_lengths(stride):
        assert crc32c(VIEW[:n]) == crc32c_portable(VIEW[:n]), n


@pytest.mark.parametrize("start", range(1, 8))
def test_crc32c_agrees_with_portable_around_block_boundaries_at_an_unaligned_start(
    start: int,
) -> None:
    # The hardware path first runs up to 7 bytes to an 8-byte boundary, which moves every
    # block edge; the lengths here put the edges right after that prefix too.
    for stride in BLOCK_STRIDES:
        for n in _boundary_lengths(stride):
            for shifted in (n, n + (8 - start)):
                chunk = VIEW[start : start + shifted]
                assert crc32c(chunk) == crc32c_portable(chunk), (stride, shifted)


def test_crc32c_agrees_with_portable_on_mixed_block_lengths_up_to_8_mib() -> None:
    rng = random.Random(5)
    lengths = [
        3 * 32768 * k + 3 * 256 * j + 3 * 64 * i + r
        for k, j, i, r in [(85, 127, 3, 191), (1, 1, 1, 1), (10, 0, 0, 0), (40, 3, 0, 7)]
    ]
    lengths += [rng.randrange(len(BLOB) - 64) for _ in range(6)] + [len(BLOB) - 64]
    for n in lengths:
        start = rng.randrange(64)
        chunk = VIEW[start : start + n]
        assert crc32c(chunk) == crc32c_portable(chunk), (start, n)


def test_crc32c_continued_from_a_nonzero_crc_agrees_with_portable() -> None:
    rng = random.Random(9)
    for stride in BLOCK_STRIDES:
        for n in (3 * stride - 1, 3 * stride, 3 * stride + 1, 7 * stride + 13):
            seed = rng.getrandbits(32)
            start = rng.randrange(8)
            chunk = VIEW[start : start + n]
            assert crc32c(chunk, seed) == crc32c_portable(chunk, seed), (stride, n, seed)


def test_crc32c_continued_over_pieces_equals_crc32c_of_the_whole_long_buffer() -> None:
    whole = VIEW[: 3 * 3 * 32768 + 1000]
    expected = crc32c(whole)
    for cuts in [(1, 98304), (98303, 196609), (767, 768 + 191), (5, 6, 7, 200000)]:
        crc, previous = 0, 0
        for cut in (*cuts, len(whole)):
            crc = crc32c(whole[previous:cut], crc)
            previous = cut
        assert crc == expected, cuts


def test_crc32c_of_a_buffer_longer_than_a_long_block_matches_a_bytewise_reference() -> None:
    # An independent check: the portable table code is the reference everywhere else.
    data = bytes(VIEW[3 : 3 + 3 * 32768 + 3 * 256 + 3 * 64 + 11])
    assert crc32c(data, 0x1234ABCD) == _reference_crc32c(data, 0x1234ABCD)
