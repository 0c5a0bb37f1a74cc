"""Merging across model groups: the tasks of a job plan -> one results table.

``phaselocknet merge`` hands over here when its inputs come from runs of different
model sets over the same examples (the groups of ``phaselocknet plan``). The shards of
each model set are first merged as usual; the sets are then joined column-wise on the
example: the shared columns (example, source, index, metadata) once, then each set's
model (and ensemble) columns in input order, then ``error`` (the sets' messages joined).
With the plan's one seed this is the table a single unsharded run of all the models
writes (tests/test_jobs.py), arrays included.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from .assemble import read_sidecar, remove_outputs
from .plan import OutputPaths, PlanError
from .resume import fingerprint_differences
from .writers import (
    array_file_keys,
    array_shape_dtype,
    iter_array_blocks,
    temporary_path,
    write_hdf5_streaming,
    write_json,
    write_npz_streaming,
)

# Fingerprint entries that describe the models, which differ between groups by design.
MODEL_KEYS = ("bundles", "names", "columns", "ensemble", "shard")


def model_sets(shards: list[tuple[Path, dict]]) -> list[list[tuple[Path, dict]]]:
    """Shards grouped by the model set that wrote them, in first-appearance order."""
    sets: dict[tuple, list] = {}
    for path, sidecar in shards:
        sets.setdefault(tuple(sidecar["fingerprint"]["bundles"]), []).append((path, sidecar))
    return list(sets.values())


def merge_model_sets(sets: list[list[tuple[Path, dict]]], out: Path, *, overwrite: bool, command, merge_one) -> tuple[int, int]:
    """Merge each set's shards with ``merge_one`` (``merge.merge``), then join the sets into ``out``."""
    _check_same_run(sets)
    seen: dict[str, Path] = {}
    for shard_set in sets:
        for bundle in shard_set[0][1]["fingerprint"]["bundles"]:
            if bundle in seen:
                raise PlanError(f"a model is in two groups ({seen[bundle]} and {shard_set[0][0]}); give each once")
            seen[bundle] = shard_set[0][0]
    activations_format = sets[0][0][1]["fingerprint"].get("activations_format")
    paths = OutputPaths.of(out, activations_format)
    if paths.csv.exists() and not overwrite:
        raise PlanError(f"{out} exists; pass --overwrite to replace it")
    staging = out.with_name(f".{out.name}.groups")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        merged = []
        for k, shard_set in enumerate(sets):
            part = staging / f"group-{k}.csv"
            merge_one([str(p) for p, _ in shard_set], part, quiet=True)
            merged.append((part, read_sidecar(OutputPaths.of(part, None).sidecar)))
        if overwrite:
            remove_outputs(paths)
        total, errors = _join(merged, paths, command)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    flagged = f"; {errors} flagged (see the 'error' column)" if errors else ""
    print(f"phaselocknet merge: {len(sets)} model groups, {sum(len(s) for s in sets)} outputs, {total} examples"
          f"{flagged}; wrote {out}", file=sys.stderr)
    return total, errors


def _check_same_run(sets) -> None:
    first_path, first = sets[0][0]
    reference = {k: v for k, v in first["fingerprint"].items() if k not in MODEL_KEYS}
    for shard_set in sets[1:]:
        path, sidecar = shard_set[0]
        other = {k: v for k, v in sidecar["fingerprint"].items() if k not in MODEL_KEYS}
        if other != reference:
            raise PlanError(f"{path} and {first_path} evaluated different data or options: "
                            + "; ".join(fingerprint_differences(reference, other)))


def _join(merged: list[tuple[Path, dict]], paths: OutputPaths, command) -> tuple[int, int]:
    headers = [_header(p) for p, _ in merged]
    shared = len(os.path.commonprefix(headers))
    header = headers[0][:shared] + [c for h in headers for c in h[shared:-1]] + ["error"]
    clash = sorted({c for c in header if header.count(c) > 1})
    if clash:
        raise PlanError(f"models of different groups write the same columns ({', '.join(clash[:4])}): their bundles "
                        "carry the same model id; give each model its own id (phaselocknet.save(..., model_id=...))")
    staged: list[tuple[Path, Path]] = []
    try:
        tmp = temporary_path(paths.csv)
        staged.append((tmp, paths.csv))
        total, errors = _join_csv(tmp, [p for p, _ in merged], shared, header)
        for kind, final in (("probs", paths.probs), ("activations", paths.activations)):
            files = [OutputPaths.of(p, s["fingerprint"].get("activations_format")) for p, s in merged]
            files = [getattr(f, kind) for f in files]
            if final is not None and files[0] is not None and files[0].is_file():
                tmp = temporary_path(final)
                staged.append((tmp, final))
                _join_arrays(tmp, files, total, npz=final.suffix == ".npz")
        sidecar = _sidecar(merged, paths, header, total, errors, command)
        tmp = temporary_path(paths.sidecar)
        staged.append((tmp, paths.sidecar))
        write_json(tmp, sidecar)
        for tmp, final in staged[1:] + staged[:1]:  # the CSV last: it marks the output complete
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return total, errors


def _header(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return next(csv.reader(handle))


def _join_csv(tmp: Path, parts: list[Path], shared: int, header: list[str]) -> tuple[int, int]:
    handles = [open(p, newline="") for p in parts]
    total = errors = 0
    try:
        readers = [csv.reader(h) for h in handles]
        for reader in readers:
            next(reader)
        with open(tmp, "w", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
            for rows in zip(*readers, strict=True):
                if any(row[:shared] != rows[0][:shared] for row in rows):
                    raise PlanError(f"example {rows[0][0]}: the groups' rows describe different examples")
                messages = list(dict.fromkeys(row[-1] for row in rows if row[-1]))
                writer.writerow(rows[0][:shared] + [c for row in rows for c in row[shared:-1]] + ["; ".join(messages)])
                total += 1
                errors += bool(messages)
            out.flush()
            os.fsync(out.fileno())
    finally:
        for handle in handles:
            handle.close()
    return total, errors


def _join_arrays(tmp: Path, files: list[Path], total: int, npz: bool) -> None:
    entries = [("example", (total,), np.int64, iter([np.arange(total, dtype=np.int64)]))]
    for path in files:
        for key in array_file_keys(path):
            if key != "example":
                shape, dtype = array_shape_dtype(path, key)
                entries.append((key, shape, dtype, iter_array_blocks(path, key)))
    (write_npz_streaming if npz else write_hdf5_streaming)(tmp, entries)


def _sidecar(merged, paths: OutputPaths, header: list[str], total: int, errors: int, command) -> dict:
    import datetime as _dt
    import shlex

    first = dict(merged[0][1])
    fingerprints = [s["fingerprint"] for _, s in merged]
    first["command"] = shlex.join(command) if command else None
    first["bundles"] = [b for _, s in merged for b in s["bundles"]]
    first["sessions"] = [session for _, s in merged for session in s["sessions"]]
    first["groups"] = [{"bundles": [b["name"] for b in s["bundles"]], "shard": s["shard"]} for _, s in merged]
    first["fingerprint"] = {**fingerprints[0], "bundles": [b for f in fingerprints for b in f["bundles"]],
                            "names": [n for f in fingerprints for n in f["names"]], "columns": header,
                            "ensemble": any(f["ensemble"] for f in fingerprints), "shard": [0, 1]}
    first["outputs"] = {"csv": paths.csv.name, "probs": paths.probs.name if first["fingerprint"]["probs"] else None,
                        "activations": paths.activations.name if paths.activations else None}
    first["examples"] = {"evaluated": total, "errors": errors}
    first["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return first
