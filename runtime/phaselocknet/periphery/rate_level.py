"""Hilbert envelope and the sigmoid auditory-nerve rate-level function."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

# dB SPL reference pressure (P_REF: the name the formulas below use).
from ..constants import REFERENCE_PRESSURE_PA as P_REF


def analytic_signal(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Analytic signal x + j*hilbert(x) along `dim` (same h weights as scipy.signal.hilbert)."""
    n = x.shape[dim]
    spectrum = torch.fft.rfft(x, dim=dim)
    weights = torch.full((spectrum.shape[dim],), 2.0, dtype=x.dtype, device=x.device)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0  # the Nyquist bin is its own mirror image
    shape = [1] * x.dim()
    shape[dim] = -1
    spectrum = spectrum * weights.view(shape)
    # ifft zero-pads the one-sided spectrum to n, i.e. the negative frequencies are removed.
    return torch.fft.ifft(spectrum, n=n, dim=dim)


def hilbert_envelope(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """|analytic signal| along `dim`."""
    return analytic_signal(x, dim=dim).abs()


def hilbert_transform(x: torch.Tensor) -> torch.Tensor:
    """Imaginary part of the analytic signal along the last dim, from real FFTs only:
    irfft(-j * X) with the DC and Nyquist bins (their own mirror images) zeroed."""
    n = x.shape[-1]
    spectrum = torch.fft.rfft(x)
    weights = torch.full((spectrum.shape[-1],), -1j, dtype=spectrum.dtype, device=x.device)
    weights[0] = 0
    if n % 2 == 0:
        weights[-1] = 0
    return torch.fft.irfft(spectrum * weights, n)


def _per_channel(value, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


class SigmoidRateLevel(nn.Module):
    """Subbands in Pa (batch, freq, time) -> firing rates (batch, n_channels, freq, time) in spikes/s.

    One sigmoid per channel (spontaneous-rate group); each parameter is a scalar or a list
    with one value per channel. With `envelope_mode` only the Hilbert envelope is compressed
    and the temporal fine structure is kept.

    The complex analytic signal and the formula step by step; the faster form is in
    `phaselocknet.fast.front_end`.
    """

    def __init__(
        self,
        rate_spont,
        rate_max,
        threshold,
        dynamic_range,
        dynamic_range_interval: float = 0.95,
        envelope_mode: bool = False,
    ):
        super().__init__()
        params = {
            "rate_spont": _per_channel(rate_spont, "rate_spont"),
            "rate_max": _per_channel(rate_max, "rate_max"),
            "threshold": _per_channel(threshold, "threshold"),
            "dynamic_range": _per_channel(dynamic_range, "dynamic_range"),
        }
        n_channels = max(p.size for p in params.values())
        for name, p in params.items():
            if p.size not in (1, n_channels):
                raise ValueError(
                    f"{name} has {p.size} values; expected 1 or {n_channels} (one per channel)"
                )
            params[name] = np.broadcast_to(p, (n_channels,)).copy()
        if not np.all(params["rate_max"] > params["rate_spont"]):
            raise ValueError("rate_max must be greater than rate_spont")
        if not 0.0 < dynamic_range_interval < 1.0:
            raise ValueError(f"dynamic_range_interval={dynamic_range_interval} must be in (0, 1)")
        self.n_channels = int(n_channels)
        self.envelope_mode = bool(envelope_mode)
        self.dynamic_range_interval = float(dynamic_range_interval)
        self.rate_spont_values = params["rate_spont"]
        self.rate_max_values = params["rate_max"]
        self.threshold_values = params["threshold"]
        self.dynamic_range_values = params["dynamic_range"]

        # Parameters derived in float64 then cast, as the published graph did.
        y_threshold = (1.0 - dynamic_range_interval) / 2.0
        log_odds = np.log(1.0 / y_threshold - 1.0)
        k = log_odds / (params["dynamic_range"] / 2.0)
        x0 = params["threshold"] - log_odds / (-k)
        for name, value in (
            ("rate_spont", params["rate_spont"]),
            ("rate_max", params["rate_max"]),
            ("k", k),
            ("x0", x0),
        ):
            # Not persistent: pure functions of the config. torch.tensor (unlike from_numpy)
            # honours a `with torch.device(...)` context.
            tensor = torch.tensor(value, dtype=torch.float32).view(-1, 1, 1)
            self.register_buffer(name, tensor, persistent=False)

    @staticmethod
    def check(subbands: torch.Tensor) -> None:
        if subbands.dim() != 3:
            raise ValueError(
                f"expected subbands of shape (batch, freq, time), got {tuple(subbands.shape)}"
            )

    def forward(self, subbands: torch.Tensor) -> torch.Tensor:
        self.check(subbands)
        if self.envelope_mode:
            env = hilbert_envelope(subbands, dim=-1).to(subbands.dtype)
            nonzero = env > 0
            # Guarded division (0 where the envelope is 0) keeps values and gradients finite.
            tfs = torch.where(nonzero, subbands / torch.where(nonzero, env, torch.ones_like(env)), 0.0)
            pa = env
        else:
            pa = subbands
        positive = pa > 0
        # Clamp before the log so silent bins give finite values and gradients; such bins are
        # then set to the sigmoid's limit (0) exactly, as log(0) = -inf did in the original.
        tiny = torch.finfo(pa.dtype).tiny
        db_spl = 20.0 * torch.log10(pa.clamp(min=tiny) / P_REF)
        db_spl = db_spl.unsqueeze(1)
        y = torch.sigmoid(self.k.to(pa.dtype) * (db_spl - self.x0.to(pa.dtype)))
        y = torch.where(positive.unsqueeze(1), y, 0.0)
        if self.envelope_mode:
            y = y * tfs.unsqueeze(1)
        rate_spont = self.rate_spont.to(pa.dtype)
        # The range is formed in the working precision, as the original graph did.
        return rate_spont + (self.rate_max.to(pa.dtype) - rate_spont) * y

    def extra_repr(self) -> str:
        return (
            f"n_channels={self.n_channels}, rate_spont={self.rate_spont_values.tolist()}, "
            f"rate_max={self.rate_max_values.tolist()}, threshold={self.threshold_values.tolist()}, "
            f"dynamic_range={self.dynamic_range_values.tolist()}, "
            f"dynamic_range_interval={self.dynamic_range_interval:g}, envelope_mode={self.envelope_mode}"
        )
