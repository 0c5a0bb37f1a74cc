"""One module per arch.json layer type, reproducing the authors' Keras 2 network semantics.

Layout: activations are channels first, (batch, channels, freq, time) for 4D tensors and
(batch, features) for 2D ones; the authors' TensorFlow graph was channels last
(batch, freq, time, channels). Every "TF axis" below refers to that channels-last layout.

Each class has
  LAYER_TYPES  the arch.json ``layer_type`` strings it implements,
  TF_PARAMS    Keras variable name -> parameter/buffer name in this module,
  from_arch()  construction from an arch.json ``args`` dict (rejects anything unsupported),
  output_shape(input_shape)  per-example shape inference without running data,
  tf_to_torch_param(tf_name, array)  Keras variable -> (torch name, array in torch layout).

Parameter names and layouts (the converter relies on this table; ``TF_PARAMS`` is the code form):

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
      "<layer name>_<head>" when there are several; see ClassificationHeads.tf_dense_names.)
  hpool, maxpool, relu, dropout, flatten, reshape: no variables (the hpool window is a fixed,
  non-persistent buffer).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backend import DerivedCache, TwoPath
from .fftconv import MIN_SPEEDUP, fft_conv2d, fft_plan, weight_spectra

Shape = tuple[int, ...]  # one example's shape, channels first, no batch dim

_REQUIRED = object()


class ArchArgs:
    """The ``args`` of one arch.json layer, read so that every error names the layer,
    its type and the offending arg, and so that args nobody read are reported."""

    def __init__(self, name: str, layer_type: str, args: Mapping[str, Any]):
        self.name = name
        self.layer_type = layer_type
        self._args = dict(args)
        self._read: set[str] = set()

    def error(self, key: str | None, why: str) -> ValueError:
        where = f"layer {self.name!r} (type {self.layer_type!r})"
        if key is None:
            return ValueError(f"{where}: {why}")
        value = self._args.get(key, "<absent>")
        return ValueError(f"{where}: arg {key!r}={value!r}: {why}")

    def get(self, key: str, default: Any = _REQUIRED) -> Any:
        self._read.add(key)
        if key in self._args:
            return self._args[key]
        if default is _REQUIRED:
            raise self.error(key, "is required")
        return default

    def int(self, key: str, default: Any = _REQUIRED, minimum: int = 1) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"must be an integer >= {minimum}")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def pair(self, key: str, default: Any = _REQUIRED) -> tuple[int, int]:
        """Keras accepts an int or a pair for kernel sizes and strides."""
        value = self.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
        ):
            raise self.error(key, "must be a positive integer or a pair of them")
        return int(value[0]), int(value[1])

    def padding(self, key: str, default: str, allowed: Sequence[str]) -> str:
        value = self.get(key, default)
        # Keras lower-cases padding names and the authors' wrappers upper-case them.
        if not isinstance(value, str) or value.upper() not in allowed:
            raise self.error(key, f"must be one of {list(allowed)}")
        return value.upper()

    def no_activation(self) -> None:
        value = self.get("activation", None)
        if value not in (None, "linear"):
            raise self.error("activation", "only null (no activation) is supported")

    def finish(self) -> None:
        unread = sorted(set(self._args) - self._read - {"name"})
        if unread:
            key = unread[0]
            raise self.error(key, "is not supported by this port (no published model uses it)")


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding of one axis: the output has ceil(size / stride) samples and an odd
    total pad puts the extra sample after the data."""
    if size % stride == 0:
        total = kernel - stride
    else:
        total = kernel - size % stride
    total = max(total, 0)
    return total // 2, total - total // 2


def _window_output_size(size: int, kernel: int, stride: int) -> int:
    if size < kernel:
        raise ValueError(f"window of {kernel} does not fit in {size} samples")
    return (size - kernel) // stride + 1


class ArchLayer(nn.Module):
    """Common interface of all arch.json layers."""

    LAYER_TYPES: ClassVar[tuple[str, ...]] = ()
    TF_PARAMS: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_arch(
        cls,
        args: ArchArgs,
        input_shape: Shape,
        n_classes_dict: Mapping[str, int],
        factory: dict[str, Any],
    ) -> "ArchLayer":
        raise NotImplementedError

    def output_shape(self, input_shape: Shape) -> Any:
        return tuple(input_shape)

    def _tf_layout_to_torch(self, torch_name: str, array: np.ndarray) -> np.ndarray:
        return array

    def tf_to_torch_param(self, tf_name: str, array: Any) -> tuple[str, np.ndarray]:
        """Keras variable (name without the layer prefix, e.g. "kernel") -> (name in this
        module's state_dict, float32 array in torch layout). Raises ValueError when the
        name is not a variable of this layer or the converted shape does not match."""
        if tf_name not in self.TF_PARAMS:
            raise ValueError(
                f"{type(self).__name__} has no TF variable {tf_name!r}; "
                f"expected one of {sorted(self.TF_PARAMS)}"
            )
        torch_name = self.TF_PARAMS[tf_name]
        return torch_name, self._checked(torch_name, self._tf_layout_to_torch(torch_name, np.asarray(array)))

    def _checked(self, torch_name: str, array: np.ndarray) -> np.ndarray:
        target = self.state_dict(keep_vars=True).get(torch_name)
        if target is None:
            raise ValueError(f"{type(self).__name__} has no tensor {torch_name!r} (disabled by its args)")
        if tuple(array.shape) != tuple(target.shape):
            raise ValueError(
                f"{torch_name}: converted TF array has shape {tuple(array.shape)}, "
                f"expected {tuple(target.shape)}"
            )
        return np.ascontiguousarray(array, dtype=np.float32)


class _WindowedPadding:
    """TF padding modes for 2D windows (conv, pools) on NCHW tensors.

    VALID_TIME is the authors' mode: TF-SAME padding of the frequency axis only, VALID
    along time."""

    def _init_windows(self, kernel_size: tuple[int, int], strides: tuple[int, int], padding: str) -> None:
        self.window_size = kernel_size
        self.window_strides = strides
        self.tf_padding = padding

    def _pads(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) in F.pad order."""
        (kh, kw), (sh, sw) = self.window_size, self.window_strides
        top = bottom = left = right = 0
        if self.tf_padding in ("SAME", "VALID_TIME"):
            top, bottom = tf_same_padding(height, kh, sh)
        if self.tf_padding == "SAME":
            left, right = tf_same_padding(width, kw, sw)
        return left, right, top, bottom

    def _pad(self, x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        pads = self._pads(x.shape[-2], x.shape[-1])
        if any(pads):
            x = F.pad(x, pads, value=value)
        return x

    def _spatial_output(self, input_shape: Shape) -> tuple[int, int]:
        if len(input_shape) != 3:
            raise ValueError(f"expects a 4D (batch, channels, freq, time) input, got per-example shape {input_shape}")
        _, height, width = input_shape
        left, right, top, bottom = self._pads(height, width)
        (kh, kw), (sh, sw) = self.window_size, self.window_strides
        return (
            _window_output_size(height + top + bottom, kh, sh),
            _window_output_size(width + left + right, kw, sw),
        )


class Conv2d(TwoPath, nn.Conv2d, _WindowedPadding, ArchLayer):
    """Keras Conv2D (+ the authors' VALID_TIME padding); no activation.

    reference: F.conv2d. fast (`fast_forward`): FFT along time where `fftconv.fft_plan`
    predicts a gain, else F.conv2d; optionally with a preceding eval-mode batch norm folded
    into the weights and a following relu applied as the output is written.
    """

    LAYER_TYPES = ("conv2d", "tf.layers.conv2d")
    TF_PARAMS = {"kernel": "weight", "bias": "bias"}
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
        self._derived = DerivedCache()
        self._fft_lengths: dict[tuple[int, int], int] = {}

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

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self._pad(x), self.weight, self.bias, self.stride, 0, 1, self.groups)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        return self.fast_forward(x)

    def fast_forward(self, x: torch.Tensor, input_bn: "BatchNorm | None" = None, relu: bool = False) -> torch.Tensor:
        """relu?(conv(bn(x))) with `input_bn` (eval mode) folded into the weights."""
        weight, bias = self._folded(input_bn, x.shape[-2])
        sources = self._fold_sources(input_bn)
        nb = self.fft_length(x)
        if nb:
            spectra = self._derived.get(
                ("spectra", nb, id(input_bn)), sources, lambda: weight_spectra(weight, self.groups, nb)
            )
            _, _, top, bottom = self._pads(x.shape[-2], x.shape[-1])
            return fft_conv2d(x, spectra, *self.window_size, top, bottom, bias, relu)
        padded = self._pad(x)
        if x.device.type == "cpu" and self._prefers_channels_last(x.dtype):
            padded = padded.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(padded, weight.to(x.dtype), None if bias is None or bias.dim() > 1 else bias.to(x.dtype),
                     self.stride, 0, 1, self.groups)
        if bias is not None and bias.dim() > 1:
            y = y.add_(bias.to(x.dtype))
        return y.relu_() if relu else y

    # Direct convolutions with a short reduction (input channels x kernel taps) run faster on
    # channels-last data with oneDNN on the project's CPU. Measured, one core: 6 -> 32 (1x8)
    # 5.6x faster channels-last, 32 -> 64 (2x4) 2.5x, 3 -> 32 (2x42) 1.7x; 64 -> 128 (3x8)
    # equal. Longer reductions keep the layout they arrive in, as the reference does: NCHW
    # would be faster (256 -> 512 (8x8) 1.4x) but its rounding differs by up to 9e-6 of the
    # output's range from the reference's (32768-term sums), too close to the 1e-5 contract.
    CHANNELS_LAST_MAX_REDUCTION = 256

    def _prefers_channels_last(self, dtype: torch.dtype) -> bool:
        if dtype in (torch.bfloat16, torch.float16):
            return True  # no fast NCHW kernels in these types without native support (50x slower)
        reduction = self.in_channels // self.groups * self.window_size[0] * self.window_size[1]
        return reduction <= self.CHANNELS_LAST_MAX_REDUCTION

    def fft_length(self, x: torch.Tensor) -> int:
        """The FFT block length for input x, or 0 for a direct convolution (see fftconv)."""
        if (
            x.device.type != "cpu"
            or x.dtype not in (torch.float32, torch.float64)
            or self.window_strides != (1, 1)
            or self.tf_padding == "SAME"
        ):
            return 0
        t_out = x.shape[-1] - self.window_size[1] + 1
        _, _, top, bottom = self._pads(x.shape[-2], x.shape[-1])
        h_out = x.shape[-2] + top + bottom - self.window_size[0] + 1
        if (h_out, t_out) not in self._fft_lengths:
            speedup, nb = fft_plan(
                self.in_channels // self.groups, self.out_channels // self.groups, *self.window_size, t_out, h_out,
                self.groups,
            )
            self._fft_lengths[h_out, t_out] = nb if speedup >= MIN_SPEEDUP else 0
        return self._fft_lengths[h_out, t_out]

    def _fold_sources(self, bn: "BatchNorm | None") -> list:
        bn_tensors = [] if bn is None else [bn.weight, bn.bias, bn.running_mean, bn.running_var]
        return [self.weight, self.bias, *bn_tensors]

    def _folded(self, bn: "BatchNorm | None", height: int):
        """(weight, bias) of conv(pad(bn(x))) as one convolution of pad(x).

        bn(x) = s*x + t per input channel. Scaling commutes with zero padding, so s goes into
        the weights exactly; the shift t does not: padded rows stay 0, not t. Its contribution
        is the convolution of the constant t with the valid rows only, a bias that differs
        on the output rows whose window reaches the padding: bias (out, freq_out, 1) then.
        """
        if bn is None:
            return self.weight, self.bias
        return self._derived.get(("fold", height, id(bn)), self._fold_sources(bn), lambda: self._fold(bn, height))

    def _fold(self, bn: "BatchNorm", height: int):
        if self.tf_padding == "SAME":
            raise ValueError("a batch norm is folded only into convolutions that are VALID along time")
        scale, shift = bn.affine()
        weight = self.weight.double()
        c_out, in_per_group, kh, _ = weight.shape
        groups = self.groups
        per_output = lambda v: v.view(groups, 1, in_per_group).expand(groups, c_out // groups, in_per_group).reshape(c_out, in_per_group)
        folded = weight * per_output(scale)[:, :, None, None]
        tap_sums = (weight.sum(-1) * per_output(shift)[:, :, None]).sum(1)  # (out, kh)
        stride = self.window_strides[0]
        top, bottom = tf_same_padding(height, kh, stride) if self.tf_padding == "VALID_TIME" else (0, 0)
        h_out = (height + top + bottom - kh) // stride + 1
        if top == bottom == 0:  # every window lies on data rows: one bias per channel
            bias = tap_sums.sum(1, keepdim=True)
        else:
            row = torch.arange(h_out, device=weight.device)[:, None] * stride + torch.arange(kh, device=weight.device) - top
            valid = ((row >= 0) & (row < height)).double()  # (freq_out, kh)
            bias = tap_sums @ valid.T  # (out, freq_out)
        if self.bias is not None:
            bias = bias + self.bias.double()[:, None]
        bias = bias[:, 0] if top == bottom == 0 else bias[:, :, None]
        dtype = self.weight.dtype
        return folded.to(dtype), bias.to(dtype)

    def output_shape(self, input_shape: Shape) -> Shape:
        if input_shape[0] != self.in_channels:
            raise ValueError(f"expects {self.in_channels} input channels, got {input_shape[0]}")
        return (self.out_channels, *self._spatial_output(input_shape))

    def _tf_layout_to_torch(self, torch_name, array):
        if torch_name == "weight":
            if array.ndim != 4:
                raise ValueError(f"TF conv kernel must be 4D (kh, kw, cin/groups, cout), got {array.shape}")
            return array.transpose(3, 2, 0, 1)
        return array

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.tf_padding!r}, groups={self.groups}, bias={self.bias is not None}"
        )


class MaxPool2d(TwoPath, _WindowedPadding, ArchLayer):
    """Keras MaxPool2D: VALID keeps only whole windows (floor); SAME pads with -inf.

    fast: the same maxima, on channels-last data with F.max_pool2d (10x faster than on
    NCHW with oneDNN here), and on NCHW data with tiling windows as a reshape + amax (2.5x).
    """

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

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        if self.window_size == (1, 1) and self.window_strides == (1, 1):
            return x  # the published [1, 1] pools are identities
        return F.max_pool2d(self._pad(x, -math.inf), self.window_size, self.window_strides)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        tiling = self.window_size == self.window_strides and self.tf_padding == "VALID"
        if x.is_contiguous(memory_format=torch.channels_last) or not tiling or self.window_size == (1, 1):
            return self._reference(x)
        (kh, kw), (height, width) = self.window_size, x.shape[-2:]
        y = x[..., : width // kw * kw].unflatten(-1, (width // kw, kw)).amax(-1)
        return y if kh == 1 else y[:, :, : height // kh * kh].unflatten(2, (height // kh, kh)).amax(3)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], *self._spatial_output(input_shape))

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


class HanningPool2d(TwoPath, _WindowedPadding, ArchLayer):
    """The authors' "hpool": per-channel (depthwise) strided convolution with a fixed Hann window.

    reference: one 2-D depthwise convolution. fast: the window is an outer product (its sqrt
    and normalisation too), so two 1-D depthwise convolutions, time first (it has the larger
    stride), on channels-last data (oneDNN's fast depthwise layout).
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
        freq, time = (hanning_window((size, 1), sqrt_window, normalize)[:, 0] for size in pool_size)
        self.register_buffer("window_freq", torch.tensor(freq, dtype=torch.float32, device=device), persistent=False)
        self.register_buffer("window_time", torch.tensor(time, dtype=torch.float32, device=device), persistent=False)

    @classmethod
    def from_arch(cls, args, input_shape, n_classes_dict, factory):
        strides = args.pair("strides", [2, 2])
        pool_size = args.pair("pool_size", [8, 8])
        padding = args.padding("padding", "SAME", cls.PADDINGS)
        sqrt_window = args.bool("sqrt_window", False)
        normalize = args.bool("normalize", False)
        args.finish()
        return cls(pool_size, strides, padding, sqrt_window, normalize, device=factory.get("device"))

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.window.to(x.dtype).expand(channels, 1, *self.window_size)
        return F.conv2d(self._pad(x), weight, None, self.window_strides, 0, 1, channels)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        if self.window_size == (1, 1) and self.window_strides == (1, 1) and not self.normalize:
            return x * self.window.to(x.dtype)[0, 0]
        channels = x.shape[1]
        (size_f, size_t), (stride_f, stride_t) = self.window_size, self.window_strides
        y = self._pad(x).contiguous(memory_format=torch.channels_last)
        if size_t > 1 or stride_t > 1:
            weight = self.window_time.to(x.dtype).view(1, 1, 1, size_t).expand(channels, 1, 1, size_t)
            y = F.conv2d(y, weight, None, (1, stride_t), 0, 1, channels)
        if size_f > 1 or stride_f > 1:
            weight = self.window_freq.to(x.dtype).view(1, 1, size_f, 1).expand(channels, 1, size_f, 1)
            y = F.conv2d(y, weight, None, (stride_f, 1), 0, 1, channels)
        return y

    def output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], *self._spatial_output(input_shape))

    def extra_repr(self) -> str:
        return (
            f"pool_size={self.window_size}, strides={self.window_strides}, padding={self.tf_padding!r}, "
            f"sqrt_window={self.sqrt_window}, normalize={self.normalize}"
        )


class BatchNorm(ArchLayer):
    """Keras BatchNormalization over the channel axis (TF axis -1 = our dim 1), epsilon 1e-3.

    Eval mode (the published behaviour): y = (x - running_mean) / sqrt(running_var + eps)
    * weight + bias. Train mode is torch's usual batch-statistics normalisation with running
    averages at Keras' momentum 0.99 (torch momentum 0.01); it is not a replica of Keras
    training. Exactly four tensors: no num_batches_tracked."""

    LAYER_TYPES = ("tf.layers.batch_normalization",)
    TF_PARAMS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}

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
        epsilon = args.get("epsilon", 1e-3)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
            raise args.error("epsilon", "must be a positive number")
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

    def output_shape(self, input_shape: Shape) -> Shape:
        if input_shape[0] != self.num_features:
            raise ValueError(f"expects {self.num_features} channels, got {input_shape[0]}")
        return tuple(input_shape)

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
    TF_PARAMS = {"gamma": "weight", "beta": "bias"}

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
        epsilon = args.get("epsilon", 1e-3)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
            raise args.error("epsilon", "must be a positive number")
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

    def output_shape(self, input_shape: Shape) -> Shape:
        if tuple(input_shape) != self._input_shape:
            raise ValueError(f"was built for per-example shape {self._input_shape}, got {tuple(input_shape)}")
        return tuple(input_shape)

    def _tf_layout_to_torch(self, torch_name, array):
        # TF stores the sizes of tf_axes in that order; we store them in torch dim order.
        torch_dims_of_tf = [tf_axis_to_torch_dim(a, self.input_ndim) for a in self.tf_axes]
        if array.ndim != len(torch_dims_of_tf):
            raise ValueError(f"TF {torch_name} must have {len(torch_dims_of_tf)} dims, got shape {array.shape}")
        return array.transpose([torch_dims_of_tf.index(d) for d in self.dims])

    def extra_repr(self) -> str:
        return f"tf_axes={self.tf_axes}, dims={self.dims}, param_shape={self.param_shape}, epsilon={self.epsilon}"


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

    def output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)


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

    def output_shape(self, input_shape: Shape) -> Shape:
        total = math.prod(input_shape)
        known = math.prod(v for v in self.target_shape if v != -1)
        if -1 in self.target_shape:
            if total % known:
                raise ValueError(f"cannot reshape {total} elements into {list(self.target_shape)}")
            tf_shape = tuple(total // known if v == -1 else v for v in self.target_shape)
        else:
            tf_shape = self.target_shape
            if known != total:
                raise ValueError(f"cannot reshape {total} elements into {list(self.target_shape)}")
        return (tf_shape[-1], *tf_shape[:-1]) if len(tf_shape) > 1 else tf_shape

    def extra_repr(self) -> str:
        return f"target_shape={list(self.target_shape)}"


class Dense(nn.Linear, ArchLayer):
    """Keras Dense on a flattened (batch, features) input; no activation."""

    LAYER_TYPES = ("tf.layers.dense",)
    TF_PARAMS = {"kernel": "weight", "bias": "bias"}

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

    def output_shape(self, input_shape: Shape) -> Shape:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"expects ({self.in_features},) features, got {tuple(input_shape)}")
        return (self.out_features,)

    def _tf_layout_to_torch(self, torch_name, array):
        if torch_name == "weight":
            if array.ndim != 2:
                raise ValueError(f"TF dense kernel must be 2D (in, out), got {array.shape}")
            return array.T
        return array


class ClassificationHeads(nn.ModuleDict, ArchLayer):
    """One Dense (no activation) per task head, keyed by head name in sorted order;
    forward returns {head: logits (batch, n_classes)}."""

    LAYER_TYPES = ("fc_top", "multi_fc_top_classification")
    TF_PARAMS = {"kernel": "weight", "bias": "bias"}

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

    def output_shape(self, input_shape: Shape) -> dict[str, Shape]:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"expects ({self.in_features},) features, got {tuple(input_shape)}")
        return {head: (n,) for head, n in self.n_classes_dict.items()}

    def tf_dense_names(self, layer_name: str) -> dict[str, str]:
        """head -> name of its Keras Dense layer in the authors' graph."""
        if len(self) == 1:
            return {head: layer_name for head in self.keys()}
        return {head: f"{layer_name}_{head}" for head in self.keys()}

    def tf_to_torch_param(self, tf_name: str, array: Any) -> tuple[str, np.ndarray]:
        """tf_name is "<head>/kernel" or "<head>/bias"."""
        head, _, var = tf_name.rpartition("/")
        if head not in self or var not in self.TF_PARAMS:
            raise ValueError(
                f"expected '<head>/kernel' or '<head>/bias' with head in {list(self.keys())}, got {tf_name!r}"
            )
        array = np.asarray(array)
        if var == "kernel":
            if array.ndim != 2:
                raise ValueError(f"TF dense kernel must be 2D (in, out), got {array.shape}")
            array = array.T
        torch_name = f"{head}.{self.TF_PARAMS[var]}"
        return torch_name, self._checked(torch_name, array)


LAYER_CLASSES: tuple[type[ArchLayer], ...] = (
    Conv2d, MaxPool2d, HanningPool2d, BatchNorm, LayerNorm, ReLU, Dropout, Flatten, Reshape, Dense,
    ClassificationHeads,
)

# arch.json layer_type (lower-cased, as the authors' builder compared it) -> class
LAYER_TYPES: dict[str, type[ArchLayer]] = {t: cls for cls in LAYER_CLASSES for t in cls.LAYER_TYPES}


def tf_to_torch_param(layer: nn.Module, tf_name: str, array: Any) -> tuple[str, np.ndarray]:
    """Convert one Keras variable of `layer` (a module of a Network) to (state_dict name
    relative to the layer, float32 array in torch layout)."""
    if not isinstance(layer, ArchLayer):
        raise ValueError(f"{type(layer).__name__} is not an arch.json layer")
    return layer.tf_to_torch_param(tf_name, array)
