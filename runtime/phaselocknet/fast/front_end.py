"""The front end by FFT: gammatone filterbank, IHC lowpass with decimation in the frequency
domain, and the rate-level sigmoid as one multiply-add, built from a reference `Cochlea`.

Per chunk of waveforms the filterbank's inverse FFTs land in one zero-tailed buffer that is
rectified in place and transformed again by the IHC lowpass (no copy or re-padding in
between). Filter spectra are computed once per FFT length and kept for the life of this
object (the executor that owns it is rebuilt whenever weights, device or dtype change).
"""

from __future__ import annotations

import numpy as np
import torch

from ..periphery.rate_level import P_REF, hilbert_transform
from .fft import FRONT_END_FFT_DTYPE, good_fft_size

# Work sizes: blocks of channels keep each FFT buffer small (cache-resident, and under glibc's
# largest mmap threshold, 32 MB: larger buffers are fresh pages on every call, and first-touch
# page faults then cost as much as the FFTs).
CHUNK_BYTES = 32 * 2**20
BLOCK_BYTES = 4 * 2**20


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


class FastFrontEnd:
    """`cochlea(x)` by FFT; the stages are also callable one by one (for tests)."""

    def __init__(self, cochlea):
        self.cochlea = cochlea
        self._spectra: dict = {}

    def _spectrum(self, taps: torch.Tensor, n_fft: int) -> torch.Tensor:
        key = (id(taps), n_fft)
        if key not in self._spectra:
            self._spectra[key] = torch.fft.rfft(taps.to(FRONT_END_FFT_DTYPE), n_fft)
        return self._spectra[key]

    # ------------------------------------------------------------ filterbank
    def filterbank(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time) -> (batch, n_cf, time): one real FFT of the waveform, one inverse per channel."""
        bank = self.cochlea.filterbank
        bank.check(x)
        n_time = x.shape[-1]
        n_fft = good_fft_size(n_time + bank.n_taps - 1)
        return self._subbands(self._input_spectrum(x, n_fft), n_fft)[..., :n_time].to(x.dtype)

    def _input_spectrum(self, x: torch.Tensor, n_fft: int) -> torch.Tensor:
        return torch.fft.rfft(x.to(FRONT_END_FFT_DTYPE), n_fft)

    def _subbands(self, spectrum: torch.Tensor, n_fft: int, channels: slice = slice(None)) -> torch.Tensor:
        """Circular convolution with each FIR; with n_fft >= time + n_taps - 1 its first `time`
        samples are the causal output (no wrap-around reaches them)."""
        spectra = self._spectrum(self.cochlea.filterbank.fir, n_fft)
        return torch.fft.irfft(spectrum.unsqueeze(-2) * spectra[channels], n_fft)

    # ------------------------------------------------------------ IHC lowpass
    def _lowpass_fft_length(self, minimum: int) -> int:
        return good_fft_size(minimum, multiple_of=2 * self.cochlea.hair_cell.down)

    def hair_cell(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, freq, time) -> (batch, freq, ceil(time / down))."""
        lowpass = self.cochlea.hair_cell
        lowpass.check(x)
        n_time = x.shape[-1]
        return self._lowpass(x, self._lowpass_fft_length(n_time + lowpass.n_taps - 1), n_time).to(x.dtype)

    def _lowpass(self, x: torch.Tensor, n_fft: int, n_time: int) -> torch.Tensor:
        """The causal lowpass of x[..., :n_time] at the kept samples m*down: real FFT, product
        with the FIR spectrum, the spectrum folded onto 1/down of its length, a short inverse
        FFT. x may be longer than n_time only if its extra samples are zeros."""
        lowpass = self.cochlea.hair_cell
        down = lowpass.down
        spectrum = torch.fft.rfft(x.to(FRONT_END_FFT_DTYPE), n_fft)
        spectrum *= self._spectrum(lowpass.filt, n_fft)
        folded = fold_spectrum(spectrum, down, n_fft)
        # irfft of the folded spectrum is down * y[m*down]; scale the spectrum (1/down of the data).
        return torch.fft.irfft(folded / down, n_fft // down)[..., : lowpass.output_length(n_time)]

    # ------------------------------------------------------------ rate level
    def rate_level(self, subbands: torch.Tensor) -> torch.Tensor:
        """The envelope as |x + j hilbert(x)| from real FFTs, and the sigmoid's argument as one
        multiply-add on log10(pressure) with the dB conversion folded into per-channel constants."""
        stage = self.cochlea.rate_level
        stage.check(subbands)
        if stage.envelope_mode:
            pa = torch.hypot(subbands, hilbert_transform(subbands))
            # env >= |x|, so x is 0 wherever env is: the guarded quotient is 0 there.
            tfs = subbands / torch.where(pa > 0, pa, 1.0)
        else:
            pa = subbands
        tiny = torch.finfo(pa.dtype).tiny
        # k * (20 log10(pa / P_REF) - x0) = slope * log10(pa) + offset
        k, x0 = stage.k.double(), stage.x0.double()
        slope = (20.0 * k).to(pa.dtype)
        offset = (-k * (20.0 * np.log10(P_REF) + x0)).to(pa.dtype)
        y = torch.sigmoid(torch.addcmul(offset, slope, torch.log10(pa.clamp(min=tiny)).unsqueeze(1)))
        if stage.envelope_mode:
            y = y * tfs.unsqueeze(1)
        else:
            y = torch.where((pa > 0).unsqueeze(1), y, 0.0)
        rate_spont = stage.rate_spont.to(pa.dtype)
        return torch.addcmul(rate_spont, stage.rate_max.to(pa.dtype) - rate_spont, y)

    # ------------------------------------------------------------ whole front end
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cochlea = self.cochlea
        if cochlea.input_kind != "waveform":
            return cochlea(x)  # nervegram models only slice their input
        cochlea.check_waveform(x)
        batch, n_time = x.shape[0], x.shape[-1]
        rows = x.reshape(-1, n_time)
        n_fft = self._lowpass_fft_length(n_time + max(cochlea.filterbank.n_taps, cochlea.hair_cell.n_taps) - 1)
        per_channel = n_fft * FRONT_END_FFT_DTYPE.itemsize
        # A GPU has no page-fault or cache concern at these sizes, only launch overhead.
        scale = 1 if x.device.type == "cpu" else 64
        rows_per_chunk = max(1, scale * CHUNK_BYTES // (cochlea.n_freq * per_channel))
        channels_per_block = max(1, min(cochlea.n_freq, scale * BLOCK_BYTES // per_channel))
        rates = [
            self._chunk_rates(rows[start : start + rows_per_chunk], n_fft, channels_per_block)
            for start in range(0, rows.shape[0], rows_per_chunk)
        ]
        rates = rates[0] if len(rates) == 1 else torch.cat(rates)
        return rates.reshape(batch, -1, *rates.shape[-2:])

    def _chunk_rates(self, rows: torch.Tensor, n_fft: int, channels_per_block: int) -> torch.Tensor:
        cochlea, n_time = self.cochlea, rows.shape[-1]
        spectrum = self._input_spectrum(rows, n_fft)
        blocks = []
        for first in range(0, cochlea.n_freq, channels_per_block):
            subbands = self._subbands(spectrum, n_fft, slice(first, first + channels_per_block))
            # The samples past n_time are circular-convolution tail, not signal: zeroed, the
            # buffer is the zero-padded subband the lowpass's FFT needs.
            subbands[..., n_time:] = 0
            if cochlea.rectify:
                subbands = subbands.relu_()
            blocks.append(self._lowpass(subbands, n_fft, n_time).to(rows.dtype))
        subbands = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
        if cochlea.rectify:
            subbands = subbands.relu_()
        return self.rate_level(subbands)
