"""Reading the authors' TFRecords: CRC-32C backends and whole-record throughput, as ratios.

    PYTHONPATH=runtime python benchmarks/bench_tfrecord.py

Writes one GZIP and one uncompressed file of localization-sized records (float16 nervegrams of
(50, 13000, 3, 2), 7.8 MB) with the project's own record framing (no TensorFlow needed), then
times: the numpy CRC-32C fallback against the `crc32c` package (when installed) on one record,
and scanning + reading + parsing every record of each file. Prints seconds and ratios measured in
this run.
"""

from __future__ import annotations

import gzip
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from phaselocknet.evaluate import crc32c as c
from phaselocknet.evaluate.tfrecord import open_records, parse_example, read_record, scan_offsets

N_RECORDS = 4


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def example(nervegram: np.ndarray) -> bytes:
    feature = _field(1, _field(1, nervegram.tobytes()))  # Feature{bytes_list{value}}
    entry = _field(1, b"nervegram_meanrates") + _field(2, feature)
    return _field(1, _field(1, entry))  # Example{features{feature{entry}}}


def frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", c.masked_crc32c(length)) + data + struct.pack("<I", c.masked_crc32c(data))


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    rng = np.random.default_rng(0)
    record = example(rng.uniform(0, 300, (50, 13000, 3, 2)).astype(np.float16))
    with tempfile.TemporaryDirectory() as tmp:
        raw = b"".join(frame(record) for _ in range(N_RECORDS))
        plain, packed = Path(tmp) / "plain.tfrecords", Path(tmp) / "gzip.tfrecords"
        plain.write_bytes(raw)
        packed.write_bytes(gzip.compress(raw, compresslevel=6))
        numpy_s = timed(lambda: c._pure(record))
        print(f"record: {len(record) / 1e6:.1f} MB")
        print(f"crc32c numpy fallback: {numpy_s:.3f} s/record")
        if c.backend() == "native":
            native_s = timed(lambda: c.crc32c(record))
            print(f"crc32c package:        {native_s:.4f} s/record  (fallback / package = {numpy_s / native_s:.0f}x)")
        for path in (plain, packed):
            def read_all(path=path):
                offsets = scan_offsets(str(path))
                with open_records(str(path)) as stream:
                    for i in range(len(offsets)):
                        parse_example(read_record(stream, str(path), i))
            seconds = timed(read_all, repeats=2) / N_RECORDS
            print(f"{path.name}: scan + read + parse {seconds:.3f} s/record ({c.backend()} CRC)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
