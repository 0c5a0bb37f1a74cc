"""``phaselocknet merge``: shard outputs -> the output one unsharded run would write.

Shards are checked against each other through their sidecars: same models, data and
options (everything but the shard), all N shards present once. The merged files are the
shards' rows and arrays concatenated in example order, so with a fixed ``--seed`` they
equal a single run's byte for byte (CSV) and value for value (arrays).
"""

from __future__ import annotations

import csv
import glob
import os
import shlex
import sys
from pathlib import Path

from ..bundle import file_sha256
from .assemble import Part, assemble, read_sidecar, remove_outputs
from .join import merge_model_sets, model_sets
from .plan import OutputPaths, PlanError
from .resume import fingerprint_differences
from .writers import array_file_keys, array_shape_dtype


def merge(inputs: list[str], out: Path, *, overwrite: bool = False, command: list[str] | None = None,
          quiet: bool = False) -> tuple[int, int]:
    """Merge shard outputs into ``out``; returns (examples, flagged examples).

    Outputs of different model sets over the same examples (the groups of a job plan)
    are merged per set and joined column-wise (see ``join``)."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise PlanError(f"--out {out}: name the merged results file with a .csv suffix")
    shards = _read_shards(_expand(inputs))
    sets = model_sets(shards)
    if len(sets) > 1:
        return merge_model_sets(sets, out, overwrite=overwrite, command=command, merge_one=merge)
    by_index = _check_shards(shards)
    first_path, first = shards[0]
    count = first["shard"]["count"]
    activations_format = first["fingerprint"].get("activations_format")
    paths = OutputPaths.of(out, activations_format)
    if paths.csv.exists() and not overwrite:
        raise PlanError(f"{out} exists; pass --overwrite to replace it")
    if overwrite:
        remove_outputs(paths)
    parts = []
    for index in range(count):
        path, sidecar = by_index[index]
        shard_paths = OutputPaths.of(path, activations_format)
        start, stop = sidecar["shard"]["examples"]
        parts.append(Part(csv=path, start=start, stop=stop,
                          probs=shard_paths.probs if first["fingerprint"]["probs"] else None,
                          acts=shard_paths.activations))
    with open(first_path, newline="") as handle:
        header_cells = next(csv.reader(handle))
    prob_keys = _array_keys(parts[0].probs) if parts[0].probs else []
    activation_keys = _array_keys(parts[0].acts) if parts[0].acts else []
    total = first["fingerprint"]["examples"]
    sidecar = _merged_sidecar(shards, by_index, paths, command, with_probs=bool(prob_keys))
    errors = assemble(parts, paths, header_cells, range(0, total), prob_keys=prob_keys,
                      activation_keys=activation_keys, sidecar=sidecar)
    flagged = f"; {errors} flagged (see the 'error' column)" if errors else ""
    if isinstance(sidecar["seed"], list):
        flagged += "; note: the shards drew different seeds (no --seed), so a rerun will not reproduce them"
    if not quiet:
        print(f"phaselocknet merge: {count} shards, {total} examples{flagged}; wrote {out}", file=sys.stderr)
    return total, errors


def _read_shards(csvs: list[Path]) -> list[tuple[Path, dict]]:
    """(results CSV, its sidecar) of each shard; an output without a readable sidecar is refused."""
    shards = []
    for path in csvs:
        sidecar = read_sidecar(OutputPaths.of(path, None).sidecar)
        if sidecar is None or sidecar.get("tool") != "phaselocknet eval":
            raise PlanError(f"{path}: no readable sidecar {OutputPaths.of(path, None).sidecar.name} beside it; "
                            "merge takes the outputs of phaselocknet eval --shard I/N")
        shards.append((path, sidecar))
    return shards


def _check_shards(shards: list[tuple[Path, dict]]) -> dict[int, tuple[Path, dict]]:
    """Shard index -> shard, once every shard is of the same run and all of 0..N-1 are there."""
    first_path, first = shards[0]
    count = first["shard"]["count"]
    reference = {k: v for k, v in first["fingerprint"].items() if k != "shard"}
    for path, sidecar in shards[1:]:
        other = {k: v for k, v in sidecar["fingerprint"].items() if k != "shard"}
        if other != reference:
            raise PlanError(f"{path} and {first_path} come from different runs: "
                            + "; ".join(fingerprint_differences(reference, other)))
        if sidecar["shard"]["count"] != count:
            raise PlanError(f"{path} is one of {sidecar['shard']['count']} shards, {first_path} one of {count}")
    by_index: dict[int, tuple[Path, dict]] = {}
    for path, sidecar in shards:
        index = sidecar["shard"]["index"]
        if index in by_index:
            raise PlanError(f"shard {index}/{count} given twice: {by_index[index][0]} and {path}")
        by_index[index] = (path, sidecar)
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        raise PlanError(f"shards {', '.join(f'{i}/{count}' for i in missing)} are missing; merge needs all {count}")
    return by_index


def _merged_sidecar(shards, by_index, paths: OutputPaths, command, *, with_probs: bool) -> dict:
    """The merged output's sidecar: the first shard's, with the sessions, seeds and shards of all."""
    first = shards[0][1]
    count, total = first["shard"]["count"], first["fingerprint"]["examples"]
    sidecar = dict(first)
    sidecar["command"] = shlex.join(command) if command else None
    sidecar["tool"] = "phaselocknet eval"
    sidecar["started"] = min(s["started"] for _, s in shards)
    sidecar["sessions"] = [session for index in range(count) for session in by_index[index][1]["sessions"]]
    seeds = sorted({s["seed"] for _, s in shards})
    sidecar["seed"] = seeds[0] if len(seeds) == 1 else seeds
    sidecar["shard"] = {"index": 0, "count": 1, "examples": [0, total],
                        "merged_from": [{"csv": str(by_index[i][0]), "sha256": file_sha256(by_index[i][0]),
                                         "shard": f"{i}/{count}", "seed": by_index[i][1]["seed"]} for i in range(count)]}
    sidecar["fingerprint"] = {**first["fingerprint"], "shard": [0, 1]}
    sidecar["outputs"] = {"csv": paths.csv.name,
                          "probs": paths.probs.name if with_probs else None,
                          "activations": paths.activations.name if paths.activations else None}
    return sidecar


def _expand(inputs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for argument in inputs:
        if os.path.isfile(os.path.join(argument, "plan.json")):  # a job plan folder: its tasks' outputs, in order
            from .jobs import task_outputs

            paths += task_outputs(argument)
        elif not os.path.exists(argument) and glob.has_magic(argument):
            matches = sorted(glob.glob(argument))
            if not matches:
                raise PlanError(f"{argument} matches no files")
            paths += [Path(m) for m in matches]
        elif not os.path.exists(argument):
            raise PlanError(f"no shard output at {argument}")
        else:
            paths.append(Path(argument))
    if not paths:
        raise PlanError("give the shard outputs (the .csv files of phaselocknet eval --shard I/N)")
    return paths


def _array_keys(path: Path) -> list[tuple[str, tuple]]:
    """(key, per-example shape) of every array but ``example``, in file order."""
    return [(key, array_shape_dtype(path, key)[0][1:]) for key in array_file_keys(path) if key != "example"]
