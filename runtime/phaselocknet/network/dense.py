"""Dense layers and the classification heads."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from .args import ArchLayer


class Dense(nn.Linear, ArchLayer):
    """Keras Dense on a flattened (batch, features) input; no activation."""

    LAYER_TYPES = ("tf.layers.dense",)

    def __init__(self, in_features: int, units: int, use_bias: bool = True, device: Any = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__(in_features, units, bias=use_bias, device=device, dtype=dtype)

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        units = args.int("units")
        use_bias = args.bool("use_bias", True)
        args.no_activation()
        args.finish()
        if len(input_shape) != 1:
            raise args.error(None, f"needs a flattened (batch, features) input, got per-example shape {input_shape}")
        return cls(input_shape[0], units, use_bias, **factory)

class ClassificationHeads(nn.ModuleDict, ArchLayer):
    """One Dense (no activation) per task head, keyed by head name in sorted order;
    forward returns {head: logits (batch, n_classes)}."""

    LAYER_TYPES = ("fc_top", "multi_fc_top_classification")

    def __init__(self, in_features: int, n_classes_dict: Mapping[str, int], use_bias: bool = True,
                 device: Any = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if not n_classes_dict:
            raise ValueError("n_classes_dict is empty: a classification layer needs at least one head")
        self.in_features = in_features
        for head in sorted(n_classes_dict):
            n = n_classes_dict[head]
            if not isinstance(head, str) or not head or "." in head:
                raise ValueError(f"head name {head!r} must be a non-empty string without '.'")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"head {head!r}: n_classes {n!r} must be a positive integer")
            try:
                self[head] = nn.Linear(in_features, n, bias=use_bias, device=device, dtype=dtype)
            except KeyError as err:
                raise ValueError(f"head name {head!r} cannot be used: {err}") from None

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        use_bias = args.bool("use_bias", True)
        args.no_activation()
        args.finish()
        if len(input_shape) != 1:
            raise args.error(None, f"needs a flattened (batch, features) input, got per-example shape {input_shape}")
        try:
            return cls(input_shape[0], n_classes_dict, use_bias, **factory)
        except ValueError as err:
            raise args.error(None, str(err)) from None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {head: linear(x) for head, linear in self.items()}

    @property
    def n_classes_dict(self) -> dict[str, int]:
        return {head: linear.out_features for head, linear in self.items()}
