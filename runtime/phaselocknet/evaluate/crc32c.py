"""CRC-32C (Castagnoli), as TFRecord files checksum their records.

Uses the ``crc32c`` or ``google-crc32c`` package when installed (the ``tfrecord`` extra:
hardware-accelerated, GB/s); otherwise a numpy implementation fast enough for the authors'
~8 MB nervegram records (tens of ms each; ``benchmarks/bench_tfrecord.py``). It runs the
byte-wise table algorithm on many slices of the data at once, one numpy step per byte
position, then joins the slices' registers pairwise with the linear map "advance the
register over n zero bytes" (a 32x32 matrix over GF(2)), which is what makes the slices
independent.
"""

from __future__ import annotations

import numpy as np

_POLY = 0x82F63B78  # CRC-32C, reflected
_MASK_DELTA = 0xA282EAD8
_LANES = 1 << 14  # slices processed together; a power of two for the pairwise join
_SMALL = 1 << 16  # below this many bytes the plain loop is as fast


def _table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _native():
    try:
        import crc32c as package

        return package.crc32c
    except ImportError:
        pass
    try:
        import google_crc32c

        return google_crc32c.value
    except ImportError:
        return None


_NATIVE = _native()


def _loop(data, crc: int = 0) -> int:
    """Register update over ``data`` from ``crc`` (no final inversion)."""
    table = _TABLE_LIST
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def _apply(columns: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The GF(2) matrix with these 32 columns applied to each uint32 of x."""
    out = np.zeros_like(x)
    for bit in range(32):
        out ^= ((x >> np.uint32(bit)) & np.uint32(1)) * columns[bit]
    return out


def _one_zero_byte() -> np.ndarray:
    units = np.uint32(1) << np.arange(32, dtype=np.uint32)
    return (_TABLE[units & np.uint32(0xFF)] ^ (units >> np.uint32(8))).astype(np.uint32)


def _numpy_crc(data) -> int:
    a = np.frombuffer(data, dtype=np.uint8).copy()
    n = a.size
    # The initial register 0xFFFFFFFF is the same as xoring the first four bytes with 0xFF
    # and starting from 0; a zero register stays zero over zero bytes, so zeros prepended to
    # reach a whole number of lanes change nothing.
    a[:4] ^= 0xFF
    lanes = _LANES
    length = -(-n // lanes)
    padded = np.zeros(lanes * length, dtype=np.uint8)
    padded[padded.size - n:] = a
    columns_major = np.ascontiguousarray(padded.reshape(lanes, length).T)
    registers = np.zeros(lanes, dtype=np.uint32)
    for column in columns_major:
        registers = _TABLE[(registers ^ column) & np.uint32(0xFF)] ^ (registers >> np.uint32(8))
    shift = _power(length)  # a left slice's register, carried over its right neighbour
    while registers.size > 1:
        registers = _apply(shift, registers[0::2]) ^ registers[1::2]
        shift = _apply(shift, shift)
    return int(registers[0]) ^ 0xFFFFFFFF


def _power(n: int) -> np.ndarray:
    """Columns of the matrix advancing a register over n zero bytes (square and multiply)."""
    result = np.uint32(1) << np.arange(32, dtype=np.uint32)  # identity
    base = _one_zero_byte()
    while n:
        if n & 1:
            result = _apply(base, result)
        base = _apply(base, base)
        n >>= 1
    return result


def crc32c(data) -> int:
    """CRC-32C of a bytes-like object."""
    if _NATIVE is not None:
        return int(_NATIVE(bytes(data) if not isinstance(data, (bytes, bytearray)) else data))
    return _pure(data)


def _pure(data) -> int:
    view = memoryview(data).cast("B")
    if view.nbytes < _SMALL:
        return _loop(view, 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _numpy_crc(view)


def masked_crc32c(data) -> int:
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def backend() -> str:
    return "native" if _NATIVE is not None else "numpy"
