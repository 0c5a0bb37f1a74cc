"""Pooling: Keras MaxPool2D and the authors' Hann-window pooling ("hpool")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .args import ArchLayer
from .padding import WindowedPadding


class MaxPool2d(WindowedPadding, ArchLayer):
    """Keras MaxPool2D: VALID keeps only whole windows (floor); SAME pads with -inf."""

    LAYER_TYPES = ("maxpool",)
    PADDINGS = ("VALID", "SAME")

    def __init__(self, pool_size: tuple[int, int], strides: tuple[int, int] | None = None, padding: str = "VALID"):
        super().__init__()
        if padding not in self.PADDINGS:
            raise ValueError(f"padding {padding!r} not in {self.PADDINGS}")
        pool_size = tuple(pool_size)
        self._init_windows(pool_size, tuple(strides) if strides is not None else pool_size, padding)

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        pool_size = args.pair("pool_size", [2, 2])
        strides = args.pair("strides") if args.get("strides", None) is not None else None
        padding = args.padding("padding", "VALID", cls.PADDINGS)
        args.finish()
        return cls(pool_size, strides, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.window_size == (1, 1) and self.window_strides == (1, 1):
            return x  # the published [1, 1] pools are identities
        return F.max_pool2d(self._pad(x, -math.inf), self.window_size, self.window_strides)

    def extra_repr(self) -> str:
        return f"pool_size={self.window_size}, strides={self.window_strides}, padding={self.tf_padding!r}"


def hanning_window(pool_size: tuple[int, int], sqrt_window: bool = False, normalize: bool = False) -> np.ndarray:
    """The authors' separable Hann window (float64): per axis (1 - cos(2 pi n / (N - 1))) / 2,
    ones for N == 1; outer product; optional sqrt, then optional unit-sum normalisation."""
    axes = []
    for size in pool_size:
        if size == 1:
            axes.append(np.ones(1))
        else:
            axes.append((1 - np.cos(2 * np.pi * np.arange(size) / (size - 1))) / 2)
    window = np.outer(axes[0], axes[1])
    if sqrt_window:
        window = np.sqrt(window)
    if normalize:
        window = window / window.sum()
    return window


class HanningPool2d(WindowedPadding, ArchLayer):
    """The authors' "hpool": per-channel (depthwise) strided convolution with a fixed Hann window.

    forward: one 2-D depthwise convolution; the separable fast form is in `phaselocknet.fast.layers`.
    """

    LAYER_TYPES = ("hpool",)
    PADDINGS = ("VALID", "SAME", "VALID_TIME")

    def __init__(
        self,
        pool_size: tuple[int, int],
        strides: tuple[int, int],
        padding: str = "SAME",
        sqrt_window: bool = False,
        normalize: bool = False,
        device: Any = None,
    ):
        super().__init__()
        if padding not in self.PADDINGS:
            raise ValueError(f"padding {padding!r} not in {self.PADDINGS}")
        self._init_windows(tuple(pool_size), tuple(strides), padding)
        self.sqrt_window = sqrt_window
        self.normalize = normalize
        window = hanning_window(tuple(pool_size), sqrt_window, normalize)
        # A constant of the architecture, not a weight: recomputed, never stored in bundles.
        self.register_buffer(
            "window", torch.tensor(window, dtype=torch.float32, device=device), persistent=False
        )

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        strides = args.pair("strides", [2, 2])
        pool_size = args.pair("pool_size", [8, 8])
        padding = args.padding("padding", "SAME", cls.PADDINGS)
        sqrt_window = args.bool("sqrt_window", False)
        normalize = args.bool("normalize", False)
        args.finish()
        return cls(pool_size, strides, padding, sqrt_window, normalize, device=factory.get("device"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.window.to(x.dtype).expand(channels, 1, *self.window_size)
        return F.conv2d(self._pad(x), weight, None, self.window_strides, 0, 1, channels)

    def extra_repr(self) -> str:
        return (
            f"pool_size={self.window_size}, strides={self.window_strides}, padding={self.tf_padding!r}, "
            f"sqrt_window={self.sqrt_window}, normalize={self.normalize}"
        )
