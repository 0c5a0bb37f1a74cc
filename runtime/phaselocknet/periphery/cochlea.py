"""The auditory-nerve front end built from a published config's `kwargs_cochlea`."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .config import parse_kwargs_cochlea
from .filterbank import GammatoneFilterbank
from .hair_cell import HairCellLowpass
from .rate_level import SigmoidRateLevel
from .spikes import BinomialSpikeGenerator


class Cochlea(nn.Module):
    """Waveform (Pa) or user nervegram -> auditory-nerve firing rates (spikes/s).

    forward: waveform (batch, time) or (batch, ears, time) -> (batch, ears*3, freq, time_out);
    nervegram (batch, C, freq, time) or (batch, ears, C, freq, time) -> custom-sliced rates.
    Spike counts are drawn separately with `self.spike_generator`. The stages run one after
    the other, each by direct convolution (the numerical reference); the FFT form of the
    whole front end is `phaselocknet.fast.front_end.FastFrontEnd`.
    """

    def __init__(self, kwargs_cochlea: Mapping[str, Any]):
        super().__init__()
        spec = parse_kwargs_cochlea(kwargs_cochlea)
        self.input_kind = spec.input_kind
        self.sr_input, self.sr_cochlea, self.sr_output = spec.sr_input, spec.sr_cochlea, spec.sr_output
        self.n_freq = spec.n_freq
        self.rectify = spec.rectify
        self.custom_slice = spec.custom_slice
        waveform = spec.input_kind == "waveform"
        self.filterbank = GammatoneFilterbank(**spec.filterbank) if waveform else None
        self.hair_cell = HairCellLowpass(**spec.hair_cell) if waveform else None
        self.rate_level = SigmoidRateLevel(**spec.rate_level) if waveform else None
        self.spike_generator = BinomialSpikeGenerator(**spec.spike_generator)
        self.n_channels = spec.n_channels

    def output_length(self, n_in: int) -> int:
        """Time samples out for `n_in` samples in."""
        return self.hair_cell.output_length(n_in) if self.hair_cell is not None else int(n_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_kind == "waveform":
            return self._waveform_to_rates(x)
        return self._nervegram_to_rates(x)

    @staticmethod
    def check_waveform(x: torch.Tensor) -> None:
        if x.dim() not in (2, 3):
            raise ValueError(
                f"expected a waveform of shape (batch, time) or (batch, ears, time), got {tuple(x.shape)}"
            )

    def _waveform_to_rates(self, x: torch.Tensor) -> torch.Tensor:
        self.check_waveform(x)
        batch = x.shape[0]
        # Ears are independent cochleae: fold them into the batch, then stack their channels ear-major.
        x = x.reshape(-1, x.shape[-1])
        subbands = self.filterbank(x)
        if self.rectify:
            subbands = torch.relu(subbands)
        subbands = self.hair_cell(subbands)
        if self.rectify:
            subbands = torch.relu(subbands)
        rates = self.rate_level(subbands)
        return rates.reshape(batch, -1, *rates.shape[-2:])

    def _nervegram_to_rates(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (4, 5):
            raise ValueError(
                "expected a nervegram of shape (batch, channels, freq, time) or "
                f"(batch, ears, channels, freq, time), got {tuple(x.shape)}"
            )
        if self.custom_slice is not None:
            x = x[(slice(None),) * (x.dim() - 3) + (self.custom_slice,)]
        return x.reshape(x.shape[0], -1, *x.shape[-2:])

    def extra_repr(self) -> str:
        return (
            f"input_kind={self.input_kind!r}, sr_input={self.sr_input:g}, sr_output={self.sr_output:g}, "
            f"rectify={self.rectify}, custom_slice={self.custom_slice}"
        )
