"""TF padding of 2D windows (convolutions, pools) on channels-first tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding of one axis: the output has ceil(size / stride) samples and an odd
    total pad puts the extra sample after the data."""
    if size % stride == 0:
        total = kernel - stride
    else:
        total = kernel - size % stride
    total = max(total, 0)
    return total // 2, total - total // 2


class WindowedPadding:
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
