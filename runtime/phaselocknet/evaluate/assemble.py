"""Concatenating parts (a run's chunks, or the outputs of shards) into final files.

Parts must tile a range of example numbers in order, each part holding exactly its own
consecutive examples; anything else (a duplicate, a gap, a foreign header) is an error,
never a silently repaired output. Arrays are streamed part by part. All files are
written under temporary names first; the CSV is renamed into place last, so an existing
CSV with a matching sidecar always means a complete run.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import fsync_folder

from .writers import (
    iter_array_blocks,
    temporary_path,
    write_hdf5_streaming,
    write_json,
    write_npz_streaming,
)


@dataclass(frozen=True)
class Part:
    csv: Path
    start: int
    stop: int
    probs: Path | None = None
    acts: Path | None = None


def read_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())



def remove_stale_partials(paths) -> list[Path]:
    """Temporary files of a final assembly that was killed (the run's lock is held: none is live)."""
    removed = []
    for path in (paths.csv, paths.sidecar, paths.probs, paths.activations):
        if path is not None:
            for stale in Path(path).parent.glob(f".{Path(path).name}.*.partial"):
                stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed


def remove_outputs(paths) -> None:
    for path in (paths.csv, paths.sidecar, paths.probs, paths.activations):
        if path is not None:
            Path(path).unlink(missing_ok=True)


def assemble(parts: list[Part], paths, header: list[str], examples: range, *, prob_keys: list[tuple[str, int | tuple]],
             activation_keys: list[tuple[str, tuple]], sidecar: dict) -> int:
    """Write the final CSV, arrays and sidecar; returns the number of flagged examples.

    ``prob_keys``/``activation_keys``: (key, classes or per-example shape) of each array.
    """
    position = examples.start
    for part in parts:
        if part.start != position:
            raise ValueError(f"{part.csv} starts at example {part.start}; expected {position} (a part is missing or repeated)")
        position = part.stop
    if position != examples.stop:
        raise ValueError(f"the parts end at example {position}; expected {examples.stop} (a part is missing)")
    n = len(examples)
    staged: list[tuple[Path, Path]] = []
    try:
        csv_tmp = temporary_path(paths.csv)
        staged.append((csv_tmp, paths.csv))
        errors = _write_csv(csv_tmp, parts, header)
        example_blocks = lambda: (np.arange(p.start, p.stop, dtype=np.int64) for p in parts)  # noqa: E731
        if prob_keys:
            tmp = temporary_path(paths.probs)
            staged.append((tmp, paths.probs))
            entries = [("example", (n,), np.int64, example_blocks())]
            entries += [(key, (n, *_shape(k)), np.float32, _blocks(parts, "probs", key)) for key, k in prob_keys]
            write_npz_streaming(tmp, entries)
        if activation_keys:
            tmp = temporary_path(paths.activations)
            staged.append((tmp, paths.activations))
            entries = [("example", (n,), np.int64, example_blocks())]
            entries += [(key, (n, *_shape(k)), np.float32, _blocks(parts, "acts", key)) for key, k in activation_keys]
            (write_npz_streaming if paths.activations.suffix == ".npz" else write_hdf5_streaming)(tmp, entries)
        sidecar = dict(sidecar)
        sidecar["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        sidecar["examples"] = {**sidecar.get("examples", {}), "evaluated": n, "errors": errors}
        tmp = temporary_path(paths.sidecar)
        staged.append((tmp, paths.sidecar))
        write_json(tmp, sidecar)
        # The CSV goes last: its presence marks the whole output complete.
        for tmp, final in staged[1:] + staged[:1]:
            _fsync(tmp)  # data on disk before the rename makes it visible
            os.replace(tmp, final)
        fsync_folder(paths.csv.parent)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return errors


def _write_csv(path: Path, parts: list[Part], header: list[str]) -> int:
    errors = 0
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for part in parts:
            with open(part.csv, newline="") as handle:
                reader = csv.reader(handle)
                if next(reader, None) != header:
                    raise ValueError(f"{part.csv} has other columns than this run's output")
                expected = part.start
                for row in reader:
                    if row[0] != str(expected):
                        raise ValueError(f"{part.csv}: row for example {row[0]} where {expected} belongs")
                    errors += bool(row[-1])
                    writer.writerow(row)
                    expected += 1
                if expected != part.stop:
                    raise ValueError(f"{part.csv} ends at example {expected - 1}; expected {part.stop - 1}")
        out.flush()
        os.fsync(out.fileno())
    return errors


def _blocks(parts: list[Part], kind: str, key: str):
    for part in parts:
        path = getattr(part, kind)
        if path is None or not Path(path).is_file():
            raise ValueError(f"{part.csv}: its {kind} file {path} is missing")
        for block in iter_array_blocks(Path(path), key):
            yield block


def _shape(size: int | tuple) -> tuple:
    return (size,) if isinstance(size, (int, np.integer)) else tuple(size)
