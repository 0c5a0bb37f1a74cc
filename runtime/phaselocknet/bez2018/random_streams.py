"""Random numbers of the BEZ2018 nervegram: numpy's legacy stream in the wrapper's order, or torch.

rng="numpy": ``bez2018model.nervegram(..., random_seed=s)`` seeds numpy's global legacy
MT19937 and then, for each ear, each CF (ascending), each spont (as listed):
  1. ``ffGn`` (noiseType 1 only): ``randn(nfft)`` for the real part, then ``randn(nfft)`` for the
     imaginary part (nfft from the fibre's length, see `fgn.fgn_sizes`);
  2. ``SpikeGenerator``: one ``rand(L)`` per spike train (one train: the wrapper uses 1 when no
     spikes are returned), L = ``randBufLen`` (`spike_generator.random_buffer_length`: in this
     build it depends on spont and the length only, not on the synapse output); the wrapper has
     no refills: a fibre that would need more raises (``run_anf`` failed), and so does this port;
and finally, if a clip is asked for, ``uniform(buffer_start_dur, dur - nervegram_dur - buffer_end_dur)``.
`NumpyFibreDraws` replays that with ``numpy.random.RandomState(seed)``: since no draw count
depends on the simulation, all draws are made first, in order, and every fibre is then
simulated at once (vectorised).

rng="torch": one ``torch.Generator`` per example on the model's device, seeded with the
example's seed: normals (rows, 2, nfft_max) for the fGn, then uniforms (rows, 2 * L_max) for
the spike generator, then one uniform for the clip. An example's numbers depend only on its
seed and its own sound, not on the batch it is in.
"""
from __future__ import annotations

import numpy as np
import torch

from .spike_generator import random_buffer_length


class RandomStreamError(ValueError):
    """Bad seed or rng, or a fibre needing more random numbers than the wrapper allows."""


def example_seeds(seed, batch: int, rng: str) -> list[int]:
    """One seed per example: an int is used for every example (as calling the wrapper on each
    with random_seed=seed); a sequence gives one per example; None draws them from torch's
    global generator."""
    if seed is None:
        return [int(s) for s in torch.randint(0, 2**32, (batch,)).tolist()]
    seeds = [seed] * batch if np.ndim(seed) == 0 else list(np.asarray(seed).reshape(-1))
    if len(seeds) != batch:
        raise RandomStreamError(f"seed has {len(seeds)} entries for a batch of {batch}: give one int or one per example")
    out = []
    for s in seeds:
        if int(s) != s or s < 0 or (rng == "numpy" and s >= 2**32):
            raise RandomStreamError(f"seed {s!r} must be a whole number in [0, 2**32) (numpy.random.RandomState)")
        out.append(int(s))
    return out


def buffer_lengths(bank, max_spikes: int) -> list[int]:
    return [random_buffer_length(float(sp), bank.n, bank.tdres, max_spikes) for sp in bank.spont_of_row.tolist()]


class NumpyFibreDraws:
    """The wrapper's draws for the fibres of one example (all its ears) from RandomState(seed)."""

    def __init__(self, bank, seed: int, noise_type: int, max_spikes: int):
        self.bank, self.noise_type, self.max_spikes = bank, noise_type, max_spikes
        self.rs = np.random.RandomState(seed)

    def run(self):
        """(fGn (rows, K) or None, uniforms (rows, L_max), L per row), drawn in the wrapper's order."""
        bank = self.bank
        lengths = buffer_lengths(bank, self.max_spikes)
        nfft_max = max(bank.nfft)
        normals = np.zeros((bank.n_rows, 2, nfft_max))
        uniforms = []
        for r in range(bank.n_rows):
            if self.noise_type == 1:
                nfft = bank.nfft_of_row(r)
                normals[r, 0, :nfft] = self.rs.randn(nfft)
                normals[r, 1, :nfft] = self.rs.randn(nfft)
            uniforms.append(self.rs.random_sample(lengths[r]))
        noise = bank.noise(torch.as_tensor(normals, device=bank.samp.device)) if self.noise_type == 1 else None
        return noise, self._uniform_buffers(uniforms), lengths

    def _uniform_buffers(self, uniforms: list[np.ndarray]) -> torch.Tensor:
        out = np.full((len(uniforms), max(len(u) for u in uniforms)), 0.5)
        for i, u in enumerate(uniforms):
            out[i, : len(u)] = u
        return torch.as_tensor(out, device=self.bank.samp.device)

    def clip_start(self, low: float, high: float) -> float:
        return float(self.rs.uniform(low=low, high=high, size=None))


def torch_generators(seeds: list[int], device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]


def torch_normals(gen: torch.Generator, rows: int, nfft: int, device) -> torch.Tensor:
    return torch.randn((rows, 2, nfft), generator=gen, dtype=torch.float64, device=device)


def torch_uniforms(gen: torch.Generator, rows: int, length: int, device) -> torch.Tensor:
    # open interval (0, 1): log(0) has no meaning in the spike generator
    u = torch.rand((rows, length), generator=gen, dtype=torch.float64, device=device)
    return torch.clamp_min(u, 2.0**-60)


def torch_clip_start(gen: torch.Generator, low: float, high: float, device) -> float:
    u = float(torch.rand((1,), generator=gen, dtype=torch.float64, device=device))
    return low + (high - low) * u
