"""CRC32C: the published check vectors, and the hardware path agreeing with the portable one."""

from __future__ import annotations

import random

import pytest

from chronolog._core.crc import crc32c, crc32c_portable


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
    ids=["check-string", "32-zeros", "32-ones", "ascending", "descending"],
)
def test_crc32c_matches_the_published_check_vectors(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"123456789", 0xE3069283), (bytes(32), 0x8A9136AA), (bytes(range(32)), 0x46DD794E)],
)
def test_crc32c_portable_matches_the_published_check_vectors(data: bytes, expected: int) -> None:
    assert crc32c_portable(data) == expected


def test_crc32c_of_empty_input_is_the_seed() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"", 0x1234) == 0x1234


def test_crc32c_portable_agrees_with_crc32c_on_every_length_up_to_300() -> None:
    rng = random.Random(20240611)
    blob = rng.randbytes(300)
    for n in range(301):
        assert crc32c_portable(blob[:n]) == crc32c(blob[:n]), n


def test_crc32c_portable_agrees_with_crc32c_at_every_alignment() -> None:
    rng = random.Random(7)
    blob = rng.randbytes(400)
    view = memoryview(blob)
    for start in range(16):
        for n in (0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 64, 100, 255, 300):
            chunk = view[start : start + n]
            assert crc32c_portable(chunk) == crc32c(chunk), (start, n)


def test_crc32c_continued_over_two_pieces_equals_crc32c_of_the_whole() -> None:
    rng = random.Random(11)
    blob = rng.randbytes(300)
    for cut in (0, 1, 5, 8, 63, 150, 299, 300):
        assert crc32c(blob[cut:], crc32c(blob[:cut])) == crc32c(blob)
        assert crc32c_portable(blob[cut:], crc32c_portable(blob[:cut])) == crc32c(blob)


def test_crc32c_accepts_bytearray_and_memoryview() -> None:
    assert crc32c(bytearray(b"123456789")) == 0xE3069283
    assert crc32c(memoryview(b"123456789")) == 0xE3069283
