"""The CNN as the fast executor runs it: the plan of fused, streamed steps (see `plan`)."""

from __future__ import annotations

from typing import Iterable

import torch

from .plan import build_plan


class FastNetwork:
    """Runs `network` (a reference `Network`, eval mode) by its fast plans, one plan per set
    of requested activations and device type. Built for the weights as they are."""

    def __init__(self, network):
        self.network = network
        self._plans: dict = {}

    def run(self, x: torch.Tensor, keep: Iterable[str] = (), stop_early: bool = False):
        """(logits, {name: activation}) like `Network._run`, each requested activation being the
        reference layer's output (a requested layer ends any fusion at it)."""
        network = self.network
        network._check_input(x)
        x = x.to(network.parameter_dtype())
        keep = frozenset(keep)
        key = (keep, x.device.type)
        if key not in self._plans:
            self._plans[key] = build_plan(network, keep, x.device.type)
        activations = {}
        for step in self._plans[key]:
            x = step.run(x)
            for name in step.names:
                if name in keep:
                    activations[name] = x
            if stop_early and keep and len(activations) == len(keep):
                break
        return x, activations

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.run(x)[0]
