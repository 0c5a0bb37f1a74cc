"""Polyphase rational resampling equal to ``scipy.signal.resample_poly`` (default settings).

The BEZ2018 wrapper resamples the input sound to 100 kHz and decimates the IHC potential and
the mean rates to 10 kHz with ``resample_poly(x, up, down)``: Kaiser(beta=5) windowed-sinc FIR of
``20 * max(up, down) + 1`` taps, gain ``up``, zero padding, output length ``ceil(n * up / down)``.
Written out, output sample m is  y[m] = sum_n x[n] * h[m * down + half_len - n * up].

Splitting m = q * up + r turns that into ``up`` ordinary FIR phases, each a strided correlation
of x with every ``up``-th tap of h; all phases run as the output channels of one strided
``conv1d`` (cheap and device-agnostic), chunked along time to bound memory.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.signal
import torch

# Output samples per conv1d call (per phase block): keeps the im2col buffer of long batched
# signals to a few hundred MB.
_CHUNK_OUTPUTS = 1 << 17


class ResampleError(ValueError):
    """Bad resampling factors or input."""


@lru_cache(maxsize=32)
def _polyphase_kernel(up: int, down: int) -> tuple[np.ndarray, int, int]:
    """(up, 1, K) correlation kernels, left padding of x, and half_len, for reduced up/down."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = scipy.signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
    r = np.arange(up)
    start = r * down + half_len           # index into h of the tap meeting x[n = 0 phase origin]
    a, p = start // up, start % up        # output q*up+r uses x[q*down + a_r - i] * h[i*up + p_r]
    n_taps = (2 * half_len - p) // up + 1  # taps per phase
    pad_left = int(np.max(n_taps - 1 - a)) if np.any(n_taps - 1 - a > 0) else 0
    kernel_len = int(np.max(a)) + pad_left + 1
    kernel = np.zeros((up, 1, kernel_len))
    for phase in range(up):
        i = np.arange(n_taps[phase])
        kernel[phase, 0, a[phase] - i + pad_left] = h[i * up + p[phase]]
    return kernel, pad_left, half_len


def decimation_taps(down: int) -> tuple[np.ndarray, int]:
    """(h, half_len) of ``resample_poly(x, 1, down)``: y[m] = sum_n x[n] h[m * down + half_len - n]."""
    half_len = 10 * int(down)  # as _polyphase_kernel for up = 1
    return scipy.signal.firwin(2 * half_len + 1, 1.0 / down, window=("kaiser", 5.0)), half_len


def resample_poly(x: torch.Tensor, up: int, down: int) -> torch.Tensor:
    """Resample ``x`` along its last dimension by ``up / down``, as ``scipy.signal.resample_poly``.

    float64 in, float64 out (other floating dtypes are computed in their own precision).
    """
    if not isinstance(x, torch.Tensor):
        raise ResampleError(f"resample_poly needs a torch.Tensor, got {type(x).__name__}; wrap it with torch.as_tensor")
    if int(up) != up or int(down) != down or up < 1 or down < 1:
        raise ResampleError(f"up and down must be positive integers, got up={up!r}, down={down!r}")
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ResampleError(f"resample_poly needs a non-empty last (time) dimension, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    g = math.gcd(int(up), int(down))
    up, down = int(up) // g, int(down) // g
    if up == down == 1:
        return x.clone()

    kernel_np, pad_left, _ = _polyphase_kernel(up, down)
    n_in = x.shape[-1]
    n_out = -(-n_in * up // down)
    lead = x.shape[:-1]
    if up == 1:
        return _decimate_by_blocks(x.reshape(-1, n_in), kernel_np[0, 0], pad_left, down, n_out).reshape(*lead, n_out)
    kernel = torch.as_tensor(kernel_np, dtype=x.dtype, device=x.device)
    kernel_len = kernel.shape[-1]
    n_blocks = -(-n_out // up)  # q = 0 .. n_blocks - 1
    flat = x.reshape(-1, 1, n_in)
    # x index q*down + k - pad_left for conv position q, tap k: pad so every index exists.
    pad_right = max(0, (n_blocks - 1) * down + kernel_len - pad_left - n_in)
    padded = torch.nn.functional.pad(flat, (pad_left, pad_right))

    blocks_per_chunk = max(1, _CHUNK_OUTPUTS // up)
    pieces = []
    for q0 in range(0, n_blocks, blocks_per_chunk):
        q1 = min(n_blocks, q0 + blocks_per_chunk)
        seg = padded[..., q0 * down : (q1 - 1) * down + kernel_len]
        out = torch.nn.functional.conv1d(seg, kernel, stride=down)  # (N, up, q1 - q0)
        pieces.append(out.transpose(1, 2).reshape(flat.shape[0], -1))
    y = torch.cat(pieces, dim=-1)[:, :n_out]
    return y.reshape(*lead, n_out)


@lru_cache(maxsize=8)
def _block_matrix(kernel: tuple, down: int) -> tuple[np.ndarray, int]:
    """(T, B): B outputs per input block of B*down samples; padded block j and j+1 times T's
    two halves give outputs jB .. jB+B-1 (T[i*down + k, i] = kernel[k], spilling into the second
    half past the block's end). B is the smallest that keeps every tap within two blocks."""
    taps = len(kernel)
    b = max(16, -(-(taps - down) // down))
    width = b * down
    t = np.zeros((2 * width, b))
    for i in range(b):
        t[i * down: i * down + taps, i] = kernel
    return np.concatenate([t[:width], t[width:]], axis=1), b


def _decimate_by_blocks(flat: torch.Tensor, kernel: np.ndarray, pad_left: int, down: int, n_out: int) -> torch.Tensor:
    """y[:, q] = sum_k padded[:, q*down + k] * kernel[k] (up = 1) as one matrix product over
    non-overlapping input blocks: a strided float64 conv1d copies every input sample once per
    tap (im2col) and was 10x slower for the wrapper's 100 -> 10 kHz decimation of rates."""
    t_np, b = _block_matrix(tuple(kernel.tolist()), down)
    t = torch.as_tensor(t_np, dtype=flat.dtype, device=flat.device)
    rows, n_in = flat.shape
    width = b * down
    nb = -(-max(n_out * down, pad_left + n_in) // width) + 1  # one more block for the last spill
    out = []
    rows_per_chunk = max(1, (_CHUNK_OUTPUTS * 16) // (nb * b))
    for r0 in range(0, rows, rows_per_chunk):
        part = flat[r0: r0 + rows_per_chunk]
        padded = torch.nn.functional.pad(part, (pad_left, nb * width - pad_left - n_in))
        prod = (padded.view(-1, width) @ t).view(part.shape[0], nb, 2 * b)
        y = prod[:, :-1, :b] + prod[:, 1:, b:]
        out.append(y.reshape(part.shape[0], -1)[:, :n_out])
    return torch.cat(out)
