"""Which implementation of the sequential BEZ2018 stages runs: compiled CPU loops or tensor ops.

On the CPU the per-sample recurrences run as numba-compiled loops (``compiled_ihc``,
``compiled_synapse``), which follow the C model operation for operation; on other devices
(CUDA) they run as batched tensor ops (``timeloop``/``cochlea_step``, ``synapse``,
``spike_generator``). ``PHASELOCKNET_BEZ2018_KERNELS=torch`` runs the tensor ops on the CPU too,
to compare the two (tests do).
"""
from __future__ import annotations

import os

import torch

ENV = "PHASELOCKNET_BEZ2018_KERNELS"


class DispatchError(ValueError):
    """A bad PHASELOCKNET_BEZ2018_KERNELS value."""


def use_compiled(x: torch.Tensor) -> bool:
    """Whether the stage of tensor ``x`` runs as a compiled CPU loop."""
    choice = os.environ.get(ENV, "numba").strip().lower()
    if choice not in {"numba", "torch"}:
        raise DispatchError(f"{ENV}={choice!r}: use numba (compiled CPU loops) or torch (tensor ops)")
    return x.device.type == "cpu" and choice == "numba"
