"""Binomial auditory-nerve spike-count generator."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..constants import SPIKE_MODES

SAMPLING_METHODS = ("approx", "exact")


class BinomialSpikeGenerator(nn.Module):
    """Rates (batch, C, freq, time) in spikes/s -> spike counts per time bin.

    Each bin of channel c pools n_per_channel[c] fibres firing with probability
    p = rate / sample_rate. C may be a multiple of len(n_per_channel) (binaural: ear-major
    channel order, the per-ear counts repeat).
    method "approx" rounds a rectified normal with the binomial's mean and variance (the
    published models' sampler); "exact" draws Binomial(n, p).
    """

    def __init__(self, n_per_channel: Sequence[int], sample_rate: float, method: str = "approx"):
        super().__init__()
        n_per_channel = [int(n) for n in n_per_channel]
        if not n_per_channel or any(n < 0 for n in n_per_channel):
            raise ValueError(f"n_per_channel={n_per_channel} must be a non-empty list of counts >= 0")
        if method not in SAMPLING_METHODS:
            raise ValueError(f"method={method!r}; expected one of {SAMPLING_METHODS}")
        if not sample_rate > 0:
            raise ValueError(f"sample_rate={sample_rate} must be positive")
        self.n_per_channel = n_per_channel
        self.sample_rate = float(sample_rate)
        self.method = method

    def _counts(self, n_channels: int, like: torch.Tensor) -> torch.Tensor:
        n_groups = len(self.n_per_channel)
        if n_channels % n_groups:
            raise ValueError(
                f"rates have {n_channels} channels, not a multiple of "
                f"len(n_per_channel)={n_groups}"
            )
        n = torch.tensor(self.n_per_channel, dtype=like.dtype, device=like.device)
        return n.repeat(n_channels // n_groups).view(-1, 1, 1)

    def spike_probability(self, rates: torch.Tensor) -> torch.Tensor:
        # Multiply by the reciprocal (not divide by sr) to match the original's rounding.
        return rates * (1.0 / self.sample_rate)

    def forward(
        self,
        rates: torch.Tensor,
        spikes: str = "sample",
        generators: Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        if rates.dim() != 4:
            raise ValueError(f"expected rates of shape (batch, C, freq, time), got {tuple(rates.shape)}")
        if spikes not in SPIKE_MODES:
            raise ValueError(f"spikes={spikes!r}; expected one of {SPIKE_MODES}")
        n = self._counts(rates.shape[1], rates)
        p = self.spike_probability(rates)
        if spikes == "mean":
            return n * p
        if generators is not None and len(generators) != rates.shape[0]:
            raise ValueError(
                f"got {len(generators)} generators for a batch of {rates.shape[0]}; "
                "pass one per example"
            )
        # Sampling is not differentiable; keep it out of the autograd graph.
        p = p.detach().clamp(0.0, 1.0)
        if generators is None:
            return self._sample(n, p, None)
        return torch.stack([self._sample(n, p[i], g) for i, g in enumerate(generators)])

    def _sample(self, n: torch.Tensor, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # Draw on the generator's device so that a seed gives the same noise wherever the
        # rates live (a CPU generator can drive a CUDA model), then move back.
        device = p.device if generator is None else generator.device
        p_draw = p.to(device)
        n_draw = n.to(device)
        if self.method == "exact":
            counts = torch.binomial(n_draw.expand_as(p_draw).contiguous(), p_draw, generator=generator)
        else:
            z = torch.randn(p_draw.shape, generator=generator, device=device, dtype=p_draw.dtype)
            mean = n_draw * p_draw
            std = torch.sqrt(mean * (1.0 - p_draw))
            counts = torch.round(torch.relu(mean + std * z))
        return counts.to(p.device)

    def extra_repr(self) -> str:
        return f"n_per_channel={self.n_per_channel}, sample_rate={self.sample_rate:g}, method={self.method!r}"
