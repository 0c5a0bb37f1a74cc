"""Output files: CSV rows, probability and activation arrays, the JSON sidecar.

During a run, results go to chunk files in a work folder beside the output (see
``resume``); each chunk is one CSV plus, when asked for, one ``.npz`` of probabilities
and one of activations, all rows in example order. Assembling the final files only
concatenates chunks, so a resumed run produces the bytes an uninterrupted one would.
Every file is written to a temporary name and renamed into place, so a reader (or a
kill) never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..atomic import temporary_path  # noqa: F401  (used by assemble)

NAN_FILL = np.float32("nan")
HDF5_CHUNK_BYTES = 1 << 20


# ------------------------------------------------------------------------- CSV
def format_value(value) -> str:
    """Shortest text that reads back as the same number (numpy's float repr)."""
    if value is None:
        return ""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    if isinstance(value, (np.floating, float)):
        return str(value if isinstance(value, np.floating) else np.float64(value))
    return str(value)


def csv_text(header: list[str], rows: Iterable[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# ------------------------------------------------------------------ arrays
def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_npz_streaming(path: Path, entries: list[tuple[str, tuple, np.dtype, Iterable[np.ndarray]]]) -> None:
    """An ``.npz`` (readable by ``np.load``) whose arrays are written block by block.

    ``entries``: (key, shape, dtype, blocks) where the blocks, concatenated along the
    first axis, make the array; nothing bigger than a block is held in memory.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, shape, dtype, blocks in entries:
            dtype = np.dtype(dtype)
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
                np.lib.format.write_array_header_1_0(member, header)
                written = 0
                for block in blocks:
                    block = np.ascontiguousarray(block, dtype=dtype)
                    member.write(block.tobytes())
                    written += block.shape[0] if block.ndim else 1
                if shape and written != shape[0]:
                    raise RuntimeError(f"{path}: {key} got {written} rows, expected {shape[0]}")


def write_hdf5_streaming(path: Path, entries: list[tuple[str, tuple, np.dtype, Iterable[np.ndarray]]]) -> None:
    import h5py

    with h5py.File(path, "w") as handle:
        for key, shape, dtype, blocks in entries:
            # About 1 MiB per HDF5 chunk: whole examples, few enough chunks for small layers.
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
            rows = min(shape[0], max(1, HDF5_CHUNK_BYTES // max(row_bytes, 1)))
            chunks = (rows, *shape[1:]) if shape[0] else None
            dataset = handle.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks)
            row = 0
            for block in blocks:
                dataset[row : row + len(block)] = block
                row += len(block)
            if row != shape[0]:
                raise RuntimeError(f"{path}: {key} got {row} rows, expected {shape[0]}")


def array_file_keys(path: Path) -> list[str]:
    if path.suffix == ".npz":
        with np.load(path) as handle:
            return list(handle.files)
    import h5py

    keys: list[str] = []
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: keys.append(name) if isinstance(item, h5py.Dataset) else None)
    return keys


def iter_array_blocks(path: Path, key: str, block_rows: int = 256) -> Iterator[np.ndarray]:
    """Blocks of rows of one array in an ``.npz`` or HDF5 file."""
    if path.suffix == ".npz":
        with np.load(path) as handle:
            yield handle[key]
        return
    import h5py

    with h5py.File(path, "r") as handle:
        dataset = handle[key]
        for start in range(0, dataset.shape[0], block_rows):
            yield dataset[start : start + block_rows]


def array_shape_dtype(path: Path, key: str) -> tuple[tuple, np.dtype]:
    if path.suffix == ".npz":
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(member)
            return tuple(shape), dtype
    import h5py

    with h5py.File(path, "r") as handle:
        return tuple(handle[key].shape), handle[key].dtype


# ------------------------------------------------------------------ sidecar
def write_json(path: Path, payload: dict) -> None:
    """Write to ``path`` in place (callers pass a temporary name and rename it)."""
    with open(path, "w") as handle:
        handle.write(json.dumps(payload, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def package_versions() -> dict[str, str | None]:
    import platform
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("phaselocknet", "torch", "numpy", "scipy", "safetensors", "h5py", "soundfile", "tqdm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
