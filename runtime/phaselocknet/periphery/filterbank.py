"""Gammatone cochlear filterbank (Slaney 1998 coefficients, applied as a truncated FIR)."""
from __future__ import annotations

import numpy as np
import scipy.signal
import torch
from torch import nn



def freq2erb(freq):
    """Hz -> ERB-number (Cams), Glasberg & Moore (1990) eq. 4."""
    return 21.4 * np.log10(0.00437 * np.asarray(freq, dtype=np.float64) + 1.0)


def erb2freq(erb):
    """ERB-number (Cams) -> Hz, inverse of `freq2erb`."""
    return (np.power(10.0, np.asarray(erb, dtype=np.float64) / 21.4) - 1.0) / 0.00437


def erbspace(min_cf: float, max_cf: float, num_cf: int) -> np.ndarray:
    """`num_cf` frequencies (Hz, ascending) evenly spaced on the ERB-number scale."""
    return erb2freq(np.linspace(freq2erb(min_cf), freq2erb(max_cf), num=int(num_cf)))


def gammatone_biquads(sr: float, cfs, EarQ: float = 9.2644, minBW: float = 24.7, order: int = 1):
    """Four second-order sections of Slaney's 4th-order gammatone, one column per cf.

    Returns [(b, a)] * 4, each array float64 of shape (3, n_cf). The overall gain is folded
    into the first section's numerator so that the cascade has unit gain at cf.
    """
    cfs = np.asarray(cfs, dtype=np.float64).reshape(-1)
    T = 1.0 / sr
    erb = ((cfs / EarQ) ** order + minBW**order) ** (1.0 / order)
    B = 1.019 * 2 * np.pi * erb
    theta = 2 * np.pi * cfs * T
    decay = np.exp(B * T)

    A0 = T * np.ones_like(cfs)
    A2 = np.zeros_like(cfs)
    a = np.stack([np.ones_like(cfs), -2 * np.cos(theta) / decay, np.exp(-2 * B * T)])

    tmp0 = 2 * T * np.cos(theta) / decay
    tmp1 = T * np.sin(theta) / decay
    s_plus = np.sqrt(3 + 2**1.5)
    s_minus = np.sqrt(3 - 2**1.5)
    A11 = -(tmp0 + 2 * s_plus * tmp1) / 2
    A12 = -(tmp0 - 2 * s_plus * tmp1) / 2
    A13 = -(tmp0 + 2 * s_minus * tmp1) / 2
    A14 = -(tmp0 - 2 * s_minus * tmp1) / 2

    # |H(exp(j 2 pi cf T))| of the unnormalised cascade, in Slaney's closed form.
    tmp2 = np.exp(4j * cfs * np.pi * T)
    tmp3 = 2 * np.exp(-(B * T) + 2j * cfs * np.pi * T) * T
    tmp4 = np.cos(theta)
    tmp5 = np.sin(theta)
    numerator = (
        (-2 * tmp2 * T + tmp3 * (tmp4 - s_minus * tmp5))
        * (-2 * tmp2 * T + tmp3 * (tmp4 + s_minus * tmp5))
        * (-2 * tmp2 * T + tmp3 * (tmp4 - s_plus * tmp5))
        * (-2 * tmp2 * T + tmp3 * (tmp4 + s_plus * tmp5))
    )
    denominator = (-2 / np.exp(2 * B * T) - 2 * tmp2 + 2 * (1 + tmp2) / decay) ** 4
    gain = np.abs(numerator / denominator)

    return [
        (np.stack([A0, A11, A2]) / gain, a),
        (np.stack([A0, A12, A2]), a.copy()),
        (np.stack([A0, A13, A2]), a.copy()),
        (np.stack([A0, A14, A2]), a.copy()),
    ]


def gammatone_impulse_responses(sr: float, fir_dur: float, cfs, **coef_kwargs) -> np.ndarray:
    """Impulse responses (n_cf, int(fir_dur * sr)) float64 of the biquad cascade."""
    cfs = np.asarray(cfs, dtype=np.float64).reshape(-1)
    n_taps = int(fir_dur * sr)
    if n_taps < 1:
        raise ValueError(f"fir_dur={fir_dur} s at sr={sr} Hz gives an empty impulse response")
    fir = np.zeros((cfs.size, n_taps), dtype=np.float64)
    fir[:, 0] = 1.0
    for b, a in gammatone_biquads(sr, cfs, **coef_kwargs):
        for i in range(cfs.size):
            fir[i] = scipy.signal.lfilter(b[:, i], a[:, i], fir[i])
    return fir


class GammatoneFilterbank(nn.Module):
    """Waveform (batch, time) -> subbands (batch, n_cf, time), causal truncated-FIR gammatone,
    by direct convolution with the full impulse responses (2500 taps at 50 kHz). The FFT form
    is in `phaselocknet.fast.front_end`."""

    def __init__(self, sr: float, fir_dur: float, cfs, **coef_kwargs):
        super().__init__()
        self.sr = float(sr)
        self.fir_dur = float(fir_dur)
        self.cfs = np.asarray(cfs, dtype=np.float64).reshape(-1)
        fir = gammatone_impulse_responses(self.sr, self.fir_dur, self.cfs, **coef_kwargs)
        # Not persistent: a pure function of the config, so bundles must not carry it.
        # torch.tensor (unlike from_numpy) honours a `with torch.device(...)` context.
        self.register_buffer("fir", torch.tensor(fir, dtype=torch.float32), persistent=False)

    @property
    def n_cf(self) -> int:
        return int(self.cfs.size)

    @property
    def n_taps(self) -> int:
        return int(self.fir.shape[-1])

    @staticmethod
    def check(x: torch.Tensor) -> None:
        if x.dim() != 2:
            raise ValueError(f"expected waveform of shape (batch, time), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        # conv1d is a cross-correlation: flipping the kernel and left-padding L-1 zeros gives
        # y[n] = sum_k fir[k] x[n-k], truncated to the input length (the TF graph's semantics).
        n_taps = self.fir.shape[-1]
        kernel = self.fir.flip(-1).unsqueeze(1).to(x.dtype)
        x = nn.functional.pad(x.unsqueeze(1), (n_taps - 1, 0))
        return nn.functional.conv1d(x, kernel)

    def extra_repr(self) -> str:
        return (
            f"sr={self.sr:g}, fir_dur={self.fir_dur:g}, n_cf={self.n_cf}, "
            f"cf_range=({self.cfs.min():.1f}, {self.cfs.max():.1f}) Hz"
        )
