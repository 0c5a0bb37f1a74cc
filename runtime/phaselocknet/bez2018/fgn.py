"""Fractional Gaussian noise of BEZ2018's synapse (``noiseType=1``), as the wrapper's ``ffGn``.

The noise is synthesised at 10 Hz from two standard-normal draws (real and imaginary parts of
an FFT-domain spectrum of Hurst exponent 0.9), Fourier-resampled to the synapse's 10 kHz and
scaled by a spontaneous-rate-dependent sigma; sizes follow the wrapper's arithmetic because
they decide how many random numbers it draws.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

SAMP_FREQ = 10e3  # the synapse's internal sampling rate (Hz)
FGN_HURST = 0.9


class FGNError(ValueError):
    """Normals of the wrong shape for the requested noise length."""


def fgn_sizes(n_noise: int) -> tuple[int, int, int]:
    """(resampling factor, fGn length at 10 Hz, FFT length) of the wrapper's ``ffGn`` for N=n_noise."""
    resamp = int(math.ceil(1e-1 / (1.0 / SAMP_FREQ)))
    n = int(math.ceil(n_noise / resamp) + 1)
    n = max(n, 10)
    nfft = int(2 ** math.ceil(math.log2(2 * (n - 1))))
    return resamp, n, nfft


@lru_cache(maxsize=16)
def _fgn_magnitude(nfft: int) -> np.ndarray:
    h = FGN_HURST
    half = int(round(nfft / 2))
    k = np.concatenate((np.arange(0, half), np.arange(half, 0, -1))).astype(np.float64)
    zmag = 0.5 * ((k + 1) ** (2 * h) - 2 * k ** (2 * h) + np.abs(k - 1) ** (2 * h))
    zmag = np.real(np.fft.fft(zmag))
    return np.sqrt(zmag)


def _fourier_resample(y: torch.Tensor, num: int) -> torch.Tensor:
    """``scipy.signal.resample(y, num)`` (num > len) along the last dim for real y, as scipy's
    real-input path: one-sided spectrum, the unpaired bin of an even length halved."""
    n = y.shape[-1]
    spec = torch.fft.rfft(y)[..., : n // 2 + 1]
    if n % 2 == 0:
        spec[..., n // 2] *= 0.5
    return torch.fft.irfft(spec / (n / num), n=num)


def fractional_gaussian_noise(normals: torch.Tensor, n_noise: int, spont: torch.Tensor) -> torch.Tensor:
    """The wrapper's ``ffGn(n_noise, 1e-4, 0.9, 1, spont)`` from its two standard-normal draws.

    normals (..., 2, nfft): the real then the imaginary part's ``randn(nfft)``; spont broadcasts
    against (..., 1). Returns (..., n_noise).
    """
    resamp, n, nfft = fgn_sizes(n_noise)
    if normals.shape[-2:] != (2, nfft):
        raise FGNError(f"fGn of {n_noise} samples needs normals (..., 2, {nfft}), got {tuple(normals.shape)}")
    zmag = torch.as_tensor(_fgn_magnitude(nfft), dtype=normals.dtype, device=normals.device)
    z = torch.complex(zmag * normals[..., 0, :], zmag * normals[..., 1, :])
    y = torch.fft.ifft(z).real[..., :n] * math.sqrt(nfft)
    y = _fourier_resample(y, resamp * n)
    sigma = torch.where(spont < 0.2, torch.ones_like(spont), torch.where(spont < 20, 10.0 * torch.ones_like(spont), spont / 2))
    return (y * sigma)[..., :n_noise]
