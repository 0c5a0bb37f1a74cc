"""Elementwise layers: relu and dropout."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .args import ArchLayer


class ReLU(ArchLayer):
    LAYER_TYPES = ("tf.nn.relu",)

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        args.finish()
        return cls()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class Dropout(ArchLayer):
    """Keras Dropout: inverted dropout in train mode, identity in eval mode."""

    LAYER_TYPES = ("tf.layers.dropout",)

    def __init__(self, rate: float):
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"rate {rate} must be in [0, 1)")
        self.rate = float(rate)

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        rate = args.get("rate", 0.5)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise args.error("rate", "must be a number in [0, 1)")
        args.finish()
        return cls(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
