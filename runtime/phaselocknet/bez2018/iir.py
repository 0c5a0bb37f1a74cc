"""Whole-chunk linear IIR filtering for the fixed-coefficient BEZ2018 stages (middle ear, C2, IHC lowpass).

These stages are linear and time-invariant, so they need not run inside the per-sample loop of
the nonlinear control path: ``scipy.signal.sosfilt`` runs a cascade over a whole chunk in one C
loop, and its final state (``zi``) carries over to the next chunk, so chunked filtering equals
one call. The C model's direct form I and sosfilt's transposed direct form II compute the same
recurrence with different rounding only (~1e-15 relative). It runs on the CPU in float64; tensors
on another device make a round trip, which costs little next to the per-sample loop.
"""
from __future__ import annotations

import numpy as np
import scipy.signal
import torch


def zero_state(sos: np.ndarray, batch_shape) -> np.ndarray:
    """Zero initial state of a cascade ``sos`` (sections, 6) for signals of shape (*batch_shape, time)."""
    return np.zeros((sos.shape[0], *batch_shape, 2))


def sosfilt(sos: np.ndarray, x: torch.Tensor, zi: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Filter ``x`` (..., time) along time from state ``zi``; returns (output on x's device, final state)."""
    y, zf = scipy.signal.sosfilt(sos, x.detach().to("cpu", torch.float64).numpy(), axis=-1, zi=zi)
    return torch.from_numpy(y).to(x.device), zf


def sosfilt_per_channel(sos: np.ndarray, x: torch.Tensor, zi: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """The same input (ears, time) through one cascade per channel: sos (n_ch, sections, 6),
    zi (n_ch, sections, ears, 2) -> output (ears, n_ch, time), final states."""
    xn = x.detach().to("cpu", torch.float64).numpy()
    out = np.empty((xn.shape[0], sos.shape[0], xn.shape[-1]))
    zf = np.empty_like(zi)
    for ch in range(sos.shape[0]):
        out[:, ch], zf[ch] = scipy.signal.sosfilt(sos[ch], xn, axis=-1, zi=zi[ch])
    return torch.from_numpy(out).to(x.device), zf
