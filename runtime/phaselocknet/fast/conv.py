"""One convolution as the fast executor runs it: relu?(conv(bn?(x))).

An eval-mode batch norm directly before the convolution is folded into its weights (exact,
padded border rows included); a relu after it is applied as the output is written; long
time kernels go by FFT (`conv_fft`) where its cost model predicts a gain; short reductions
run on channels-last data. Folded weights and weight spectra are computed on first use and
kept for the life of this object: the executor owning it is rebuilt when weights change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..network.conv import Conv2d
from ..network.normalization import BatchNorm
from ..network.padding import tf_same_padding
from .conv_fft import MIN_SPEEDUP, fft_conv2d, fft_plan, weight_spectra

# Direct convolutions with a short reduction (input channels x kernel taps) run faster on
# channels-last data with oneDNN on the project's CPU. Measured, one core: 6 -> 32 (1x8)
# 5.6x faster channels-last, 32 -> 64 (2x4) 2.5x, 3 -> 32 (2x42) 1.7x; 64 -> 128 (3x8)
# equal. Longer reductions keep the layout they arrive in, as the reference does: NCHW
# would be faster (256 -> 512 (8x8) 1.4x) but its rounding differs by up to 9e-6 of the
# output's range from the reference's (32768-term sums), too close to the 1e-5 contract.
CHANNELS_LAST_MAX_REDUCTION = 256


class FastConv:
    def __init__(self, conv: Conv2d, input_bn: BatchNorm | None = None, relu: bool = False):
        if input_bn is not None and conv.tf_padding == "SAME":
            raise ValueError("a batch norm is folded only into convolutions that are VALID along time")
        self.conv, self.input_bn, self.relu = conv, input_bn, relu
        self._folded: dict[int, tuple] = {}  # input height -> (weight, bias)
        self._spectra: dict[tuple, torch.Tensor] = {}  # (height, nb) -> weight spectra
        self._fft_lengths: dict[tuple[int, int], int] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        weight, bias = self.folded(x.shape[-2])
        nb = self.fft_length(x)
        if nb:
            key = (x.shape[-2], nb)
            if key not in self._spectra:
                self._spectra[key] = weight_spectra(weight, conv.groups, nb)
            _, _, top, bottom = conv._pads(x.shape[-2], x.shape[-1])
            return fft_conv2d(x, self._spectra[key], *conv.window_size, top, bottom, bias, self.relu)
        padded = conv._pad(x)
        if x.device.type == "cpu" and self._prefers_channels_last(x.dtype):
            padded = padded.contiguous(memory_format=torch.channels_last)
        per_row = bias is not None and bias.dim() > 1
        y = F.conv2d(padded, weight.to(x.dtype), None if bias is None or per_row else bias.to(x.dtype),
                     conv.stride, 0, 1, conv.groups)
        if per_row:
            y = y.add_(bias.to(x.dtype))
        return y.relu_() if self.relu else y

    def _prefers_channels_last(self, dtype: torch.dtype) -> bool:
        if dtype in (torch.bfloat16, torch.float16):
            return True  # no fast NCHW kernels in these types without native support (50x slower)
        conv = self.conv
        reduction = conv.in_channels // conv.groups * conv.window_size[0] * conv.window_size[1]
        return reduction <= CHANNELS_LAST_MAX_REDUCTION

    def fft_length(self, x: torch.Tensor) -> int:
        """The FFT block length for input x, or 0 for a direct convolution (see conv_fft)."""
        conv = self.conv
        if (
            x.device.type != "cpu"
            or x.dtype not in (torch.float32, torch.float64)
            or conv.window_strides != (1, 1)
            or conv.tf_padding == "SAME"
        ):
            return 0
        t_out = x.shape[-1] - conv.window_size[1] + 1
        _, _, top, bottom = conv._pads(x.shape[-2], x.shape[-1])
        h_out = x.shape[-2] + top + bottom - conv.window_size[0] + 1
        if (h_out, t_out) not in self._fft_lengths:
            speedup, nb = fft_plan(
                conv.in_channels // conv.groups, conv.out_channels // conv.groups, *conv.window_size, t_out, h_out,
                conv.groups,
            )
            self._fft_lengths[h_out, t_out] = nb if speedup >= MIN_SPEEDUP else 0
        return self._fft_lengths[h_out, t_out]

    def folded(self, height: int):
        """(weight, bias) of conv(pad(bn(x))) as one convolution of pad(x)."""
        if self.input_bn is None:
            return self.conv.weight, self.conv.bias
        if height not in self._folded:
            self._folded[height] = fold_batch_norm(self.conv, self.input_bn, height)
        return self._folded[height]


def fold_batch_norm(conv: Conv2d, bn: BatchNorm, height: int):
    """bn(x) = s*x + t per input channel. Scaling commutes with zero padding, so s goes into
    the weights exactly; the shift t does not: padded rows stay 0, not t. Its contribution
    is the convolution of the constant t with the valid rows only, a bias that differs on
    the output rows whose window reaches the padding: bias (out, freq_out, 1) then."""
    scale, shift = bn.affine()
    weight = conv.weight.double()
    c_out, in_per_group, kh, _ = weight.shape
    groups = conv.groups

    def per_output(v):
        return v.view(groups, 1, in_per_group).expand(groups, c_out // groups, in_per_group).reshape(c_out, in_per_group)

    folded = weight * per_output(scale)[:, :, None, None]
    tap_sums = (weight.sum(-1) * per_output(shift)[:, :, None]).sum(1)  # (out, kh)
    stride = conv.window_strides[0]
    top, bottom = tf_same_padding(height, kh, stride) if conv.tf_padding == "VALID_TIME" else (0, 0)
    h_out = (height + top + bottom - kh) // stride + 1
    if top == bottom == 0:  # every window lies on data rows: one bias per channel
        bias = tap_sums.sum(1, keepdim=True)
    else:
        row = torch.arange(h_out, device=weight.device)[:, None] * stride + torch.arange(kh, device=weight.device) - top
        valid = ((row >= 0) & (row < height)).double()  # (freq_out, kh)
        bias = tap_sums @ valid.T  # (out, freq_out)
    if conv.bias is not None:
        bias = bias + conv.bias.double()[:, None]
    bias = bias[:, 0] if top == bottom == 0 else bias[:, :, None]
    dtype = conv.weight.dtype
    return folded.to(dtype), bias.to(dtype)
