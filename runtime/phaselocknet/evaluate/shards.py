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

import re

import numpy as np

SEED_BITS = 63


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N."""
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
