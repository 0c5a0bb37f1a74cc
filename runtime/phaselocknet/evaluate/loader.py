"""Reading and preparing batches in the background (torch DataLoader workers).

A worker turns a list of example numbers into a :class:`Batch`: each example is read
once and prepared once per input spec, whatever the number of models. Examples that
cannot be read or prepared stay in the batch with their error and no input. The
loader yields batches in order, so output order never depends on worker timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..audio import centre_pad_or_trim
from .preprocess import InputSpec, Preprocessing, prepare
from .sources import Reader, describe_error


@dataclass
class Batch:
    examples: list[int]
    sources: list[str]
    indices: list[int]
    metadata: list[dict]
    errors: list[str | None]
    # spec -> (rows of this batch that have an input, stacked inputs for those rows)
    inputs: dict[InputSpec, tuple[list[int], torch.Tensor]] = field(default_factory=dict)

    def pin_memory(self) -> "Batch":
        # DataLoader(pin_memory=True) calls this on custom batch types.
        self.inputs = {spec: (rows, x.pin_memory()) for spec, (rows, x) in self.inputs.items()}
        return self


class BatchDataset(Dataset):
    """Item k is the k-th batch of example numbers, read and prepared."""

    def __init__(self, reader: Reader, batches: list[list[int]], specs: list[InputSpec], options: Preprocessing):
        self.reader = reader
        self.batches = batches
        self.specs = specs
        self.options = options

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> Batch:
        examples = self.batches[k]
        raws = self.reader.read(examples)
        located = [self.reader.source_and_index(e) for e in examples]
        errors: list[str | None] = [raw.error for raw in raws]
        prepared: dict[InputSpec, list[tuple[int, np.ndarray]]] = {spec: [] for spec in self.specs}
        for row, raw in enumerate(raws):
            if raw.error is not None:
                continue
            for spec in self.specs:
                try:
                    prepared[spec].append((row, prepare(raw, spec, self.options)))
                except Exception as error:  # noqa: BLE001 - a bad example must not stop the run
                    message = describe_error(error)
                    if len(self.specs) > 1:
                        message = f"for {spec.describe()}: {message}"
                    errors[row] = message if errors[row] is None else f"{errors[row]}; {message}"
        inputs = {}
        for spec, items in prepared.items():
            # An example is run only if every model can take it, so all column groups of a row agree.
            items = [(row, x) for row, x in items if errors[row] is None]
            if items:
                rows = [row for row, _ in items]
                inputs[spec] = (rows, torch.from_numpy(_stack([x for _, x in items])))
        return Batch(
            examples=list(examples),
            sources=[source for source, _ in located],
            indices=[index for _, index in located],
            metadata=[raw.metadata for raw in raws],
            errors=errors,
            inputs=inputs,
        )


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """One batch; nervegrams longer than the model's length but of unequal lengths are
    centre trimmed to the shortest of them, so the model's excerpt still has room to move."""
    shortest = min(x.shape[-1] for x in arrays)
    return np.stack([centre_pad_or_trim(x, shortest) if x.shape[-1] > shortest else x for x in arrays])


def _worker_init(_worker_id: int) -> None:
    # Workers only read and resample; one thread each leaves the cores to the models.
    torch.set_num_threads(1)


def make_loader(dataset: BatchDataset, *, workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )
