"""Shape inference: each layer's per-example output shape, without running data.

Kept apart from the numerics so a whole architecture can be checked (and the meta-device
build sized) from arch.json alone; `build_network` records every layer's output shape.
"""

from __future__ import annotations

import math
from typing import Any

from .args import Shape
from .conv import Conv2d
from .dense import ClassificationHeads, Dense
from .normalization import BatchNorm, LayerNorm
from .pooling import HanningPool2d, MaxPool2d
from .reshape import Flatten, Reshape


def window_output_size(size: int, kernel: int, stride: int) -> int:
    if size < kernel:
        raise ValueError(f"window of {kernel} does not fit in {size} samples")
    return (size - kernel) // stride + 1


def _windowed(layer, input_shape: Shape) -> tuple[int, int]:
    """(freq, time) out of a convolution or pool, after its TF padding."""
    if len(input_shape) != 3:
        raise ValueError(f"expects a 4D (batch, channels, freq, time) input, got per-example shape {input_shape}")
    _, height, width = input_shape
    left, right, top, bottom = layer._pads(height, width)
    (kh, kw), (sh, sw) = layer.window_size, layer.window_strides
    return window_output_size(height + top + bottom, kh, sh), window_output_size(width + left + right, kw, sw)


def _conv(layer: Conv2d, input_shape: Shape) -> Shape:
    if input_shape[0] != layer.in_channels:
        raise ValueError(f"expects {layer.in_channels} input channels, got {input_shape[0]}")
    return (layer.out_channels, *_windowed(layer, input_shape))


def _pool(layer, input_shape: Shape) -> Shape:
    return (input_shape[0], *_windowed(layer, input_shape))


def _batch_norm(layer: BatchNorm, input_shape: Shape) -> Shape:
    if input_shape[0] != layer.num_features:
        raise ValueError(f"expects {layer.num_features} channels, got {input_shape[0]}")
    return input_shape


def _layer_norm(layer: LayerNorm, input_shape: Shape) -> Shape:
    if input_shape != layer._input_shape:
        raise ValueError(f"was built for per-example shape {layer._input_shape}, got {input_shape}")
    return input_shape


def _reshape(layer: Reshape, input_shape: Shape) -> Shape:
    """Keras reshapes the channels-last tensor; a 3-element result is returned channels first."""
    total = math.prod(input_shape)
    known = math.prod(v for v in layer.target_shape if v != -1)
    if -1 in layer.target_shape:
        if total % known:
            raise ValueError(f"cannot reshape {total} elements into {list(layer.target_shape)}")
        tf_shape = tuple(total // known if v == -1 else v for v in layer.target_shape)
    else:
        tf_shape = layer.target_shape
        if known != total:
            raise ValueError(f"cannot reshape {total} elements into {list(layer.target_shape)}")
    return (tf_shape[-1], *tf_shape[:-1]) if len(tf_shape) > 1 else tf_shape


def _features(in_features: int, input_shape: Shape) -> None:
    if input_shape != (in_features,):
        raise ValueError(f"expects ({in_features},) features, got {input_shape}")


def _dense(layer: Dense, input_shape: Shape) -> Shape:
    _features(layer.in_features, input_shape)
    return (layer.out_features,)


def _heads(layer: ClassificationHeads, input_shape: Shape) -> dict[str, Shape]:
    _features(layer.in_features, input_shape)
    return {head: (n,) for head, n in layer.n_classes_dict.items()}


_RULES = (
    (Conv2d, _conv), (MaxPool2d, _pool), (HanningPool2d, _pool), (BatchNorm, _batch_norm),
    (LayerNorm, _layer_norm), (Flatten, lambda layer, shape: (math.prod(shape),)), (Reshape, _reshape),
    (Dense, _dense), (ClassificationHeads, _heads),
)


def output_shape(layer, input_shape: Shape) -> Any:
    """Per-example output shape of `layer` for a per-example input shape (elementwise layers
    keep it); the heads give {head: (n_classes,)}. ValueError when the input does not fit."""
    input_shape = tuple(input_shape)
    for cls, rule in _RULES:
        if isinstance(layer, cls):
            return rule(layer, input_shape)
    return input_shape
