"""Fingerprints of a data set by content, for resume and merge.

A path and an example count do not identify data: a file rewritten between a kill and the
rerun would silently mix old and new rows. Each file contributes its size and a SHA-256 of
its bytes: all of them up to FULL_HASH_BYTES, above that SAMPLES evenly spaced blocks of
SAMPLE_BYTES (first and last included), so fingerprinting a large HDF5 file costs a few
megabytes of reads, not a second pass over the data. File names are not included, so
shards run where the data is mounted elsewhere still merge; mtimes neither (a copy
changes them).
"""

from __future__ import annotations

import hashlib
import os

FULL_HASH_BYTES = 64 * 2**20
SAMPLES = 64
SAMPLE_BYTES = 64 * 2**10


def file_fingerprint(path: str | os.PathLike) -> str:
    """size:sha256 of the file's bytes (sampled above FULL_HASH_BYTES)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= FULL_HASH_BYTES:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        else:
            step = (size - SAMPLE_BYTES) / (SAMPLES - 1)
            for k in range(SAMPLES):
                handle.seek(int(k * step))
                digest.update(handle.read(SAMPLE_BYTES))
    return f"{size}:{digest.hexdigest()}"


def catalog_fingerprint(catalog) -> str:
    """One digest over every data file of a catalog, in order."""
    digest = hashlib.sha256()
    for source in catalog.sources:
        # An audio source is many files; an HDF5 or TFRecord source is one.
        paths = source.paths if hasattr(source, "paths") else [source.path]
        for path in paths:
            digest.update(file_fingerprint(path).encode() + b"\0")
    return digest.hexdigest()
