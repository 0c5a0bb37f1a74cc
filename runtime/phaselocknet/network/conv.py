"""Convolution (Keras Conv2D with the authors' padding modes)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .args import ArchLayer
from .padding import WindowedPadding


class Conv2d(nn.Conv2d, WindowedPadding, ArchLayer):
    """Keras Conv2D (+ the authors' VALID_TIME padding); no activation. forward: F.conv2d.
    The fast forms (FFT along time, folded batch norm, fused relu) are in `phaselocknet.fast.conv`."""

    LAYER_TYPES = ("conv2d", "tf.layers.conv2d")
    PADDINGS = ("VALID", "SAME", "VALID_TIME")

    def __init__(
        self,
        in_channels: int,
        filters: int,
        kernel_size: tuple[int, int],
        strides: tuple[int, int] = (1, 1),
        padding: str = "VALID",
        groups: int = 1,
        use_bias: bool = True,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ):
        if padding not in self.PADDINGS:
            raise ValueError(f"padding {padding!r} not in {self.PADDINGS}")
        if in_channels % groups or filters % groups:
            raise ValueError(f"groups={groups} must divide both input channels {in_channels} and filters {filters}")
        # Padding is done explicitly in forward because TF's SAME can be asymmetric.
        super().__init__(
            in_channels, filters, tuple(kernel_size), stride=tuple(strides), padding=0,
            groups=groups, bias=use_bias, device=device, dtype=dtype,
        )
        self._init_windows(tuple(kernel_size), tuple(strides), padding)

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        filters = args.int("filters")
        kernel_size = args.pair("kernel_size")
        strides = args.pair("strides", [1, 1])
        padding = args.padding("padding", "VALID", cls.PADDINGS)
        if args.pair("dilation_rate", [1, 1]) != (1, 1):
            raise args.error("dilation_rate", "only [1, 1] is supported")
        groups = args.int("groups", 1)
        use_bias = args.bool("use_bias", True)
        args.no_activation()
        args.finish()
        if len(input_shape) != 3:
            raise args.error(None, f"needs a 4D input, got per-example shape {input_shape}")
        in_channels = input_shape[0]
        if in_channels % groups or filters % groups:
            raise args.error("groups", f"must divide input channels ({in_channels}) and filters ({filters})")
        return cls(in_channels, filters, kernel_size, strides, padding, groups, use_bias, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self._pad(x), self.weight, self.bias, self.stride, 0, 1, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.tf_padding!r}, groups={self.groups}, bias={self.bias is not None}"
        )
