"""Normalization: Keras BatchNormalization and LayerNormalization."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .args import ArchLayer, Shape


class BatchNorm(ArchLayer):
    """Keras BatchNormalization over the channel axis (TF axis -1 = our dim 1), epsilon 1e-3.

    Eval mode (the published behaviour): y = (x - running_mean) / sqrt(running_var + eps)
    * weight + bias. Train mode is torch's usual batch-statistics normalisation with running
    averages at Keras' momentum 0.99 (torch momentum 0.01); it is not a replica of Keras
    training. Exactly four tensors: no num_batches_tracked."""

    LAYER_TYPES = ("tf.layers.batch_normalization",)

    def __init__(
        self,
        num_features: int,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.epsilon = float(epsilon)
        self.weight = nn.Parameter(torch.ones(num_features, **kw)) if scale else None
        self.bias = nn.Parameter(torch.zeros(num_features, **kw)) if center else None
        self.register_buffer("running_mean", torch.zeros(num_features, **kw))
        self.register_buffer("running_var", torch.ones(num_features, **kw))

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        axis = args.get("axis", -1)
        if axis not in (-1, len(input_shape)):
            raise args.error("axis", "only the channel axis (-1) is supported")
        epsilon = args.positive_number("epsilon", 1e-3)
        center = args.bool("center", True)
        scale = args.bool("scale", True)
        args.finish()
        return cls(input_shape[0], epsilon, center, scale, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias,
            training=self.training, momentum=0.01, eps=self.epsilon,
        )

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), float64: eval-mode output = scale * x + shift per channel."""
        scale = torch.rsqrt(self.running_var.double() + self.epsilon)
        if self.weight is not None:
            scale = scale * self.weight.double()
        shift = -self.running_mean.double() * scale
        if self.bias is not None:
            shift = shift + self.bias.double()
        return scale, shift

    def extra_repr(self) -> str:
        return f"{self.num_features}, epsilon={self.epsilon}"


def tf_axis_to_torch_dim(tf_axis: int, ndim: int) -> int:
    """Channels-last TF axis -> channels-first torch dim for an ndim-D tensor (batch included)."""
    if tf_axis < 0:
        tf_axis += ndim
    if not 1 <= tf_axis < ndim:
        raise ValueError(f"axis {tf_axis} is not a non-batch axis of a {ndim}D tensor")
    return 1 if tf_axis == ndim - 1 else tf_axis + 1


class LayerNorm(ArchLayer):
    """Keras LayerNormalization: per-example mean and biased variance over the given TF axes,
    y = (x - mean) / sqrt(var + eps) * weight + bias; weight/bias span the normalised axes
    and are stored in torch dim order."""

    LAYER_TYPES = ("tf.keras.layers.layernormalization",)

    def __init__(
        self,
        input_shape: Shape,
        axis: int | Sequence[int] = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        ndim = len(input_shape) + 1
        tf_axes = [axis] if isinstance(axis, int) else list(axis)
        tf_axes = [a + ndim if a < 0 else a for a in tf_axes]
        if not tf_axes or len(set(tf_axes)) != len(tf_axes) or tf_axes != sorted(tf_axes):
            # Keras reshapes (does not transpose) gamma for unsorted axes; nobody used that.
            raise ValueError(f"axis {axis!r} must be distinct axes in increasing order")
        self.tf_axes = tuple(tf_axes)
        self.dims = tuple(sorted(tf_axis_to_torch_dim(a, ndim) for a in tf_axes))
        self.input_ndim = ndim
        self.epsilon = float(epsilon)
        full = (1, *input_shape)
        self.param_shape = tuple(full[d] for d in self.dims)
        # F.layer_norm normalises trailing dims: move the normalised dims last (in torch order,
        # matching param_shape) and back. Much faster than reducing over a strided dim.
        self._perm = [d for d in range(ndim) if d not in self.dims] + list(self.dims)
        self._inverse_perm = [self._perm.index(d) for d in range(ndim)]
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.ones(self.param_shape, **kw)) if scale else None
        self.bias = nn.Parameter(torch.zeros(self.param_shape, **kw)) if center else None
        self._input_shape = tuple(input_shape)

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        axis = args.get("axis", -1)
        ints = [axis] if isinstance(axis, int) else axis
        if (
            not isinstance(ints, (list, tuple))
            or not ints
            or any(isinstance(a, bool) or not isinstance(a, int) for a in ints)
        ):
            raise args.error("axis", "must be an integer or a list of integers")
        epsilon = args.positive_number("epsilon", 1e-3)
        center = args.bool("center", True)
        scale = args.bool("scale", True)
        args.finish()
        try:
            return cls(input_shape, axis, epsilon, center, scale, **factory)
        except ValueError as err:
            raise args.error("axis", str(err)) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        permute = self._perm != list(range(x.dim()))
        y = x.permute(self._perm) if permute else x
        y = F.layer_norm(y, self.param_shape, self.weight, self.bias, self.epsilon)
        return y.permute(self._inverse_perm) if permute else y

    def extra_repr(self) -> str:
        return f"tf_axes={self.tf_axes}, dims={self.dims}, param_shape={self.param_shape}, epsilon={self.epsilon}"
