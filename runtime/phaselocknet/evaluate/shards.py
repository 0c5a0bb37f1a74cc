"""Splitting the global example sequence into shards, and the seeds of its examples.

A shard is a contiguous block of example numbers (``I*n//N`` up to ``(I+1)*n//N``):
contiguous so that the rows one job reads from a compressed HDF5 file share chunks.

Every random draw for an example (spike sampling, localization excerpt) comes from a
seed computed from the run seed, the example number and the model, never from the
batch, worker or shard that processed it; so any split of the work gives the same
numbers. The model enters through its bundle's content checksum, so the models of an
ensemble get independent draws, as when each was evaluated on its own, and a model
gets the same draws whichever other models share the run.
"""

from __future__ import annotations

import os
import re

import numpy as np

SEED_BITS = 63


SLURM_TASK_ID = "SLURM_ARRAY_TASK_ID"
SLURM_TASK_COUNT = "SLURM_ARRAY_TASK_COUNT"
SLURM_TASK_MIN = "SLURM_ARRAY_TASK_MIN"


def slurm_array_task(environ: dict | None = None) -> tuple[int, int] | None:
    """(index from 0, count) of this SLURM job-array task, or None outside a job array.

    SLURM numbers tasks as the ``--array`` range says (``--array=1-8`` starts at 1), so
    the index is counted from ``SLURM_ARRAY_TASK_MIN``; a stepped range (``0-15:2``)
    cannot map onto contiguous shards and is refused.
    """
    environ = os.environ if environ is None else environ
    if SLURM_TASK_ID not in environ:
        return None
    try:
        task = int(environ[SLURM_TASK_ID])
        count = int(environ.get(SLURM_TASK_COUNT, ""))
        first = int(environ.get(SLURM_TASK_MIN, "0"))
    except ValueError:
        raise ValueError(f"{SLURM_TASK_ID}/{SLURM_TASK_COUNT}/{SLURM_TASK_MIN} are not integers in this "
                         "environment; submit with sbatch --array=0-(N-1)") from None
    index = task - first
    if not 0 <= index < count:
        raise ValueError(f"SLURM array task {task} is not in {first}..{first + count - 1}: use a contiguous "
                         "--array range such as --array=0-(N-1) (no step)")
    return index, count


def parse_shard(text: str | None, environ: dict | None = None) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; 'slurm' -> this job-array task's shard.

    ``None`` (no --shard given) is 'slurm' inside a SLURM job array, else 0/1.
    """
    if text is None:
        return slurm_array_task(environ) or (0, 1)
    if text.strip().lower() == "slurm":
        task = slurm_array_task(environ)
        if task is None:
            raise ValueError(f"--shard slurm: {SLURM_TASK_ID} is not set (not a SLURM job-array task); "
                             "submit with sbatch --array=0-(N-1), or give --shard I/N")
        return task
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise ValueError(f"--shard {text!r}: use I/N, e.g. 0/4 (shards are numbered from 0)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise ValueError(f"--shard {text}: I must be in 0..N-1 (shards are numbered from 0)")
    return index, count


def shard_range(n_examples: int, index: int, count: int) -> range:
    return range(index * n_examples // count, (index + 1) * n_examples // count)


def model_key(content_sha256: str) -> int:
    """A model's share of its example seeds, from its bundle content checksum."""
    return int(content_sha256[:15], 16)


def example_seed(run_seed: int, example: int, key: int) -> int:
    """The seed of the random stream of ``example`` in model ``key`` under ``run_seed``."""
    state = np.random.SeedSequence([int(run_seed), int(key), int(example)]).generate_state(2, np.uint32)
    return (int(state[0]) << 32 | int(state[1])) >> (64 - SEED_BITS)
