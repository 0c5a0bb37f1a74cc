"""CRC-32C of TFRecord records: the numpy fallback against published check values and, where
installed, the `crc32c` package (an independent C implementation)."""

from __future__ import annotations

import numpy as np
import pytest

from phaselocknet.evaluate import crc32c as c


@pytest.mark.parametrize("data, value", [
    (b"123456789", 0xE3069283),  # the CRC-32C check value (RFC 3720 / Castagnoli catalogue)
    (bytes(32), 0x8A9136AA),  # RFC 3720 B.4: 32 bytes of zeros
    (b"\xff" * 32, 0x62A8AB43),  # RFC 3720 B.4: 32 bytes of 0xFF
    (bytes(range(32)), 0x46DD794E),  # RFC 3720 B.4: incrementing bytes
])
def test_check_values(data, value):
    assert c._pure(data) == value
    # The same bytes at the vectorized path's sizes (zeros prepended change the CRC, so compare
    # against the plain loop on a long buffer ending in them instead).
    long = bytes(np.random.default_rng(0).integers(0, 256, 1 << 17, dtype=np.uint8)) + data
    assert c._numpy_crc(long) == c._loop(long, 0xFFFFFFFF) ^ 0xFFFFFFFF


@pytest.mark.parametrize("n", [4, 5, 65535, 65536, 65537, (1 << 20) + 3, 8 * 2**20 + 13])
def test_fallback_equals_the_crc32c_package(n):
    package = pytest.importorskip("crc32c")
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert c._pure(data) == package.crc32c(data)


def test_masked_crc_of_a_tfrecord_length_field():
    # TFRecord masks the CRC: rotate right 15, add 0xa282ead8 (tensorflow/core/lib/hash/crc32c.h).
    crc = c.crc32c(b"123456789")
    assert c.masked_crc32c(b"123456789") == ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
