"""Reshaping layers: Keras Flatten and Reshape, which act on the channels-last tensor."""

from __future__ import annotations

from typing import Sequence

import torch

from .args import ArchLayer


def _to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1) if x.dim() > 2 else x


class Flatten(ArchLayer):
    """Keras Flatten of the channels-last tensor: element [b, c, h, w] lands at (h*W + w)*C + c."""

    LAYER_TYPES = ("tf.layers.flatten",)

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        args.finish()
        return cls()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _to_channels_last(x).reshape(x.shape[0], -1)

class Reshape(ArchLayer):
    """Keras Reshape(target_shape) of the channels-last tensor; a 3-element target gives a
    (batch, freq, time, channels) TF tensor, returned channels first."""

    LAYER_TYPES = ("reshape",)

    def __init__(self, target_shape: Sequence[int]):
        super().__init__()
        target_shape = tuple(int(v) for v in target_shape)
        if len(target_shape) not in (1, 3):
            raise ValueError(f"target_shape {list(target_shape)} must have 1 or 3 elements")
        if sum(v == -1 for v in target_shape) > 1 or any(v == 0 or v < -1 for v in target_shape):
            raise ValueError(f"target_shape {list(target_shape)} needs positive sizes and at most one -1")
        self.target_shape = target_shape

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        target = args.get("target_shape")
        if not isinstance(target, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in target):
            raise args.error("target_shape", "must be a list of integers")
        args.finish()
        try:
            return cls(target)
        except ValueError as err:
            raise args.error("target_shape", str(err)) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _to_channels_last(x).reshape(x.shape[0], *self.target_shape)
        return y.movedim(-1, 1) if y.dim() > 2 else y

    def extra_repr(self) -> str:
        return f"target_shape={list(self.target_shape)}"
