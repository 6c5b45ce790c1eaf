"""CRC32C: the published check vectors, and the hardware path agreeing with the portable one."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronolog._core.crc import (
    crc32c,
    crc32c_3,
    crc32c_combine,
    crc32c_extend_record,
    crc32c_portable,
)


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


@given(a=st.binary(max_size=300), b=st.binary(max_size=9000))
@settings(max_examples=300, deadline=None)
def test_combining_two_crcs_gives_the_crc_of_the_concatenation(a: bytes, b: bytes) -> None:
    assert crc32c_combine(crc32c(a), crc32c(b), len(b)) == crc32c(a + b)


def _record(n: int, seed: int) -> bytes:
    body = bytes((seed * 31 + i * 7) & 0xFF for i in range(n - 8))
    return n.to_bytes(4, "little") + crc32c(body).to_bytes(4, "little") + body


@pytest.mark.parametrize("n", [8, 9, 12, 13, 14, 56, 300, 4095, 4096 + 7, 4096 + 8, 4096 + 9, 70000])
@pytest.mark.parametrize("start", [0, 0xDEADBEEF])
def test_extending_over_a_record_by_its_stored_crc_equals_extending_over_its_bytes(
        n: int, start: int) -> None:
    rec = _record(n, n)
    assert crc32c_extend_record(rec, start) == crc32c(rec, start)


def test_extending_over_a_record_with_a_wrong_stored_crc_differs_where_combining_is_used() -> None:
    rec = bytearray(_record(300, 1))
    rec[4] ^= 1  # the stored CRC no longer matches: the body CRC must not match either
    assert crc32c_extend_record(bytes(rec)) != crc32c(_record(300, 1))


@given(a=st.binary(max_size=700), b=st.binary(max_size=700), c=st.binary(max_size=700),
       skew=st.integers(0, 7))
@settings(max_examples=300, deadline=None)
def test_three_crcs_side_by_side_equal_three_alone(a: bytes, b: bytes, c: bytes, skew: int) -> None:
    buf = bytes(skew) + a  # unaligned starts too
    assert crc32c_3(memoryview(buf)[skew:], b, c) == (crc32c(a), crc32c(b), crc32c(c))


def test_three_crcs_side_by_side_for_every_order_of_lengths_and_every_tail() -> None:
    """Lengths 0-19 and a few longer ones in every combination: each buffer may be the
    shortest, the middle or the longest, with every 0-7 byte tail after its last whole word."""
    data = bytes((i * 37 + 11) & 0xFF for i in range(300))
    lengths = [*range(20), 63, 64, 65, 71, 270, 277]
    for la, lb, lc in itertools.product(lengths, repeat=3):
        a, b, c = data[1:1 + la], data[3:3 + lb], data[6:6 + lc]
        assert crc32c_3(a, b, c) == (crc32c(a), crc32c(b), crc32c(c)), (la, lb, lc)
