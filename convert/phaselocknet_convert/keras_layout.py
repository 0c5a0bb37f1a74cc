"""How the authors' Keras graph names and lays out each runtime layer's variables.

  layer type                        Keras variable     torch name      layout change
  conv2d, tf.layers.conv2d          kernel             weight          (kh, kw, cin/groups, cout)
                                                                       -> (cout, cin/groups, kh, kw)
                                    bias               bias            (cout,) unchanged
  tf.layers.dense                   kernel             weight          (in, out) -> (out, in)
                                    bias               bias            unchanged
  tf.layers.batch_normalization     gamma              weight          (C,) unchanged
                                    beta               bias            (C,) unchanged
                                    moving_mean        running_mean    (C,) unchanged
                                    moving_variance    running_var     (C,) unchanged
  tf.keras.layers.LayerNormalization gamma             weight          sizes of the normalized TF axes
                                    beta               bias            in TF axis order -> torch dim
                                                                       order (axis -1: (C,) unchanged;
                                                                       axis [1,2,3]: (H,W,C) -> (C,H,W))
  fc_top, multi_fc_top_classification
                                    <head>/kernel      <head>.weight   (in, n_classes) -> (n_classes, in)
                                    <head>/bias        <head>.bias     unchanged
     (Keras names the Dense of a head "<layer name>" when there is one head and
      "<layer name>_<head>" when there are several; see `tf_dense_names`.)
  hpool, maxpool, relu, dropout, flatten, reshape: no variables (the hpool window is a fixed,
  non-persistent buffer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from phaselocknet.network.layers import (
    BatchNorm, ClassificationHeads, Conv2d, Dense, LayerNorm, tf_axis_to_torch_dim,
)

_KERNEL_BIAS = {"kernel": "weight", "bias": "bias"}


def tf_params(layer: nn.Module) -> dict[str, str]:
    """Keras variable name -> parameter/buffer name of `layer` (empty: no variables)."""
    if isinstance(layer, (Conv2d, Dense, ClassificationHeads)):
        return _KERNEL_BIAS
    if isinstance(layer, BatchNorm):
        return {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    if isinstance(layer, LayerNorm):
        return {"gamma": "weight", "beta": "bias"}
    return {}


def tf_dense_names(heads: ClassificationHeads, layer_name: str) -> dict[str, str]:
    """head -> name of its Keras Dense layer in the authors' graph."""
    if len(heads) == 1:
        return {head: layer_name for head in heads.keys()}
    return {head: f"{layer_name}_{head}" for head in heads.keys()}


def _to_torch_layout(layer: nn.Module, torch_name: str, array: np.ndarray) -> np.ndarray:
    if isinstance(layer, Conv2d) and torch_name == "weight":
        if array.ndim != 4:
            raise ValueError(f"TF conv kernel must be 4D (kh, kw, cin/groups, cout), got {array.shape}")
        return array.transpose(3, 2, 0, 1)
    if isinstance(layer, (Dense, ClassificationHeads)) and torch_name.endswith("weight"):
        if array.ndim != 2:
            raise ValueError(f"TF dense kernel must be 2D (in, out), got {array.shape}")
        return array.T
    if isinstance(layer, LayerNorm):
        # TF stores the sizes of tf_axes in that order; the runtime stores them in torch dim order.
        torch_dims_of_tf = [tf_axis_to_torch_dim(a, layer.input_ndim) for a in layer.tf_axes]
        if array.ndim != len(torch_dims_of_tf):
            raise ValueError(f"TF {torch_name} must have {len(torch_dims_of_tf)} dims, got shape {array.shape}")
        return array.transpose([torch_dims_of_tf.index(d) for d in layer.dims])
    return array


def tf_to_torch_param(layer: nn.Module, tf_name: str, array: Any) -> tuple[str, np.ndarray]:
    """One Keras variable of `layer` (e.g. "kernel"; "<head>/kernel" for the heads) ->
    (name in the layer's state_dict, float32 array in torch layout). ValueError when the
    name is not a variable of this layer or the converted shape does not match."""
    params = tf_params(layer)
    if isinstance(layer, ClassificationHeads):
        head, _, var = tf_name.rpartition("/")
        if head not in layer or var not in params:
            raise ValueError(
                f"expected '<head>/kernel' or '<head>/bias' with head in {list(layer.keys())}, got {tf_name!r}"
            )
        torch_name = f"{head}.{params[var]}"
    else:
        if tf_name not in params:
            raise ValueError(f"{type(layer).__name__} has no TF variable {tf_name!r}; expected one of {sorted(params)}")
        torch_name = params[tf_name]
    return torch_name, _checked(layer, torch_name, _to_torch_layout(layer, torch_name, np.asarray(array)))


def _checked(layer: nn.Module, torch_name: str, array: np.ndarray) -> np.ndarray:
    target = layer.state_dict(keep_vars=True).get(torch_name)
    if target is None:
        raise ValueError(f"{type(layer).__name__} has no tensor {torch_name!r} (disabled by its args)")
    if tuple(array.shape) != tuple(target.shape):
        raise ValueError(
            f"{torch_name}: converted TF array has shape {tuple(array.shape)}, expected {tuple(target.shape)}"
        )
    return np.ascontiguousarray(array, dtype=np.float32)
