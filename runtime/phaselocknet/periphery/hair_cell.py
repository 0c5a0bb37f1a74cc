"""Inner-hair-cell lowpass filter (FIR approximation of the BEZ2018 IHC filter) + downsampling."""
from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch
from torch import nn



def _resampling_factors(sr_in: float, sr_out: float) -> tuple[int, int]:
    g = math.gcd(int(sr_in), int(sr_out))
    return int(sr_in) // g, int(sr_out) // g


def ihc_lowpass_impulse_response(
    sr_in: float, sr_out: float, cutoff: float, order: int, fir_dur: float
) -> tuple[np.ndarray, int]:
    """Windowed, unit-DC-gain IHC lowpass FIR (float64) and the integer downsampling factor.

    Reproduces the published models' filter, including its aliasing quirk: after the
    first sample the "previous state" array is the current state array itself.
    """
    down, up = _resampling_factors(sr_in, sr_out)
    if up != 1:
        raise ValueError(
            f"IHC lowpass from {sr_in} Hz to {sr_out} Hz needs upsampling by {up}; "
            "no published model uses that (sr_output must divide sr_cochlea)"
        )
    if cutoff > sr_out / 2:
        raise ValueError(f"IHC lowpass cutoff={cutoff} Hz exceeds the output Nyquist {sr_out / 2} Hz")
    sr_filt = sr_in * up
    numtaps = int(2 * (fir_dur * sr_filt // 2)) + 1
    c1 = (sr_filt - 2 * np.pi * cutoff) / (sr_filt + 2 * np.pi * cutoff)
    c2 = (np.pi * cutoff) / (sr_filt + 2 * np.pi * cutoff)

    filt = np.zeros(numtaps, dtype=np.float64)
    state = np.zeros(order + 1, dtype=np.float64)
    previous = np.zeros(order + 1, dtype=np.float64)
    for n in range(numtaps):
        state[0] = 1.0 if n == 0 else 0.0
        for i in range(order):
            state[i + 1] = c1 * previous[i + 1] + c2 * (state[i] + previous[i])
        # Deliberately an alias, not a copy: the published filters were built this way, and
        # the trained networks expect exactly that filter.
        previous = state
        filt[n] = state[order]

    filt = filt * scipy.signal.windows.hann(numtaps)
    filt = filt / filt.sum()
    filt = filt * up
    return filt, down


class HairCellLowpass(nn.Module):
    """Subbands (batch, freq, time) at sr_in -> (batch, freq, ceil(time/down)) at sr_out, by
    strided direct convolution with the 2501-tap FIR. The FFT form (decimation in the
    frequency domain) is in `phaselocknet.fast.front_end`."""

    def __init__(self, sr_in: float, sr_out: float, cutoff: float, order: int, fir_dur: float):
        super().__init__()
        self.sr_in = float(sr_in)
        self.sr_out = float(sr_out)
        self.cutoff = float(cutoff)
        self.order = int(order)
        self.fir_dur = float(fir_dur)
        filt, down = ihc_lowpass_impulse_response(sr_in, sr_out, cutoff, order, fir_dur)
        self.down = int(down)
        # Not persistent: a pure function of the config, so bundles must not carry it.
        # torch.tensor (unlike from_numpy) honours a `with torch.device(...)` context.
        self.register_buffer("filt", torch.tensor(filt, dtype=torch.float32), persistent=False)

    def output_length(self, n_in: int) -> int:
        return -(-int(n_in) // self.down)

    @property
    def n_taps(self) -> int:
        return int(self.filt.shape[-1])

    @staticmethod
    def check(x: torch.Tensor) -> None:
        if x.dim() != 3:
            raise ValueError(f"expected subbands of shape (batch, freq, time), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        # Reference math: out[m] = sum_k filt[k] x[m*down - k], zeros before the start.
        # Left-padding numtaps-1 zeros and a strided VALID cross-correlation with the flipped
        # filter yields exactly ceil(T/down) outputs, matching the TF graph. Frequency rows are
        # depthwise groups: same math as folding them into the batch, several times faster on CPU.
        n_freq = x.shape[1]
        n_taps = self.filt.shape[-1]
        kernel = self.filt.flip(-1).to(x.dtype).expand(n_freq, 1, n_taps).contiguous()
        x = nn.functional.pad(x, (n_taps - 1, 0))
        return nn.functional.conv1d(x, kernel, stride=self.down, groups=n_freq)

    def extra_repr(self) -> str:
        return (
            f"sr_in={self.sr_in:g}, sr_out={self.sr_out:g}, cutoff={self.cutoff:g}, "
            f"order={self.order}, fir_dur={self.fir_dur:g}, down={self.down}"
        )
