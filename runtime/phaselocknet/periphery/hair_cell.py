"""Inner-hair-cell lowpass filter (FIR approximation of the BEZ2018 IHC filter) + downsampling."""
from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch
from torch import nn

from ..backend import FRONT_END_FFT_DTYPE, DerivedCache, TwoPath, good_fft_size


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


def fold_spectrum(spectrum: torch.Tensor, down: int, n_fft: int) -> torch.Tensor:
    """One-sided spectrum of y[::down] times `down`, from the one-sided spectrum of y (length n_fft).

    Decimation aliases the full spectrum: Y_down[j] = sum_p Y[j + p*n], n = n_fft // down.
    Block p of the full spectrum lies either in the stored half (p*n + n/2 <= n_fft/2) or
    in the mirrored half, where Y[k] = conj(Y[n_fft - k]); `down` blocks of n/2 + 1 bins.
    """
    n = n_fft // down
    half_block = n // 2
    direct, mirrored = None, None
    for p in range(down):
        start = p * n
        if start + half_block <= n_fft // 2:
            block = spectrum[..., start : start + half_block + 1]
            direct = block if direct is None else direct + block
        else:
            end = n_fft - start  # Y[start + j] = conj(Y[end - j]), j = 0..half_block
            block = spectrum[..., end - half_block : end + 1]
            mirrored = block if mirrored is None else mirrored + block
    if mirrored is not None:
        direct = direct + mirrored.flip(-1).conj()
    return direct


class HairCellLowpass(TwoPath):
    """Subbands (batch, freq, time) at sr_in -> (batch, freq, ceil(time/down)) at sr_out.

    reference: strided direct convolution with the 2501-tap FIR; fast: real FFT, product
    with the FIR spectrum, then decimation in the frequency domain (the spectrum folded
    onto 1/down of its length) and a short inverse FFT (`fft_lowpass`).
    """

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
        self._spectra = DerivedCache()

    def output_length(self, n_in: int) -> int:
        return -(-int(n_in) // self.down)

    @property
    def n_taps(self) -> int:
        return int(self.filt.shape[-1])

    @staticmethod
    def _check(x: torch.Tensor) -> None:
        if x.dim() != 3:
            raise ValueError(f"expected subbands of shape (batch, freq, time), got {tuple(x.shape)}")

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self._direct_strided_conv(x)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        n_time = x.shape[-1]
        return self.fft_lowpass(x, self.fft_length(n_time + self.n_taps - 1), n_time).to(x.dtype)

    def fft_length(self, minimum: int) -> int:
        """A fast FFT length >= minimum that `fft_lowpass` can decimate: a multiple of 2*down."""
        return good_fft_size(minimum, multiple_of=2 * self.down)

    def fft_lowpass(self, x: torch.Tensor, n_fft: int, n_time: int) -> torch.Tensor:
        """The causal lowpass of x[..., :n_time] at the kept samples m*down, m < ceil(n_time/down),
        computed in FRONT_END_FFT_DTYPE.

        x may be longer than n_time only if its extra samples are zeros (a zero-padded buffer).
        n_fft >= n_time + n_taps - 1 keeps the circular wrap-around away from every kept sample.
        """
        if n_fft < n_time + self.n_taps - 1 or n_fft % (2 * self.down):
            raise ValueError(f"n_fft={n_fft} must be a multiple of {2 * self.down} and >= {n_time + self.n_taps - 1}")
        spectra = self._spectra.get(n_fft, [self.filt], lambda: torch.fft.rfft(self.filt.to(FRONT_END_FFT_DTYPE), n_fft))
        spectrum = torch.fft.rfft(x.to(FRONT_END_FFT_DTYPE), n_fft)
        spectrum *= spectra
        folded = fold_spectrum(spectrum, self.down, n_fft)
        # irfft of the folded spectrum is down * y[m*down]; scale the spectrum (1/down of the data).
        return torch.fft.irfft(folded / self.down, n_fft // self.down)[..., : self.output_length(n_time)]

    def _direct_strided_conv(self, x: torch.Tensor) -> torch.Tensor:
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
