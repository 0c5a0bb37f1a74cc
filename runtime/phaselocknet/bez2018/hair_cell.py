"""BEZ2018 inner hair cell: logarithmic transduction of the C1 and C2 outputs, order-7 lowpass.

The IHC lowpass cutoff is the authors' modification for the phaselocknet models (50, 320, 1000
or 3000 Hz; BEZ2018 itself uses 3000 Hz). ``ihc_potential`` is the public entry point: the whole
``model_IHC_BEZ2018.c`` IHCAN path (middle ear, cochlea, IHC, delay) for every CF at once.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .cochlea import lowpass_coefficients
from .iir import sosfilt, zero_state

_CORNER_DB = 80.0
MAX_IHC_ORDER = 7  # the C model's IhcLowPass keeps static ihc[8]: at most 7 one-poles
_STRENGTH = 20.0e6 / 10 ** (_CORNER_DB / 20)


def nl_logarithm(x: torch.Tensor, slope: float, asym: float) -> torch.Tensor:
    """Saturating logarithmic transduction; negative inputs are compressed by a level-dependent asymmetry."""
    xx = torch.log(1.0 + _STRENGTH * x.abs()) * slope
    if asym == 1.0:
        return torch.where(x < 0, -xx, xx)
    splx = 20 * torch.log10(-x / 20e-6)  # NaN for x >= 0: those lanes take the other branch
    asym_t = asym - (asym - 1) / (1 + torch.exp(splx / 5.0))
    return torch.where(x < 0, -1 / asym_t * xx, xx)


def ihc_transduction(c1_out: torch.Tensor, c2_out: torch.Tensor, cf: torch.Tensor, cihc) -> torch.Tensor:
    """Sum of the C1 (asymmetry 3) and C2 (symmetric, squared and CF-weighted) transduction outputs."""
    c1_vihc = nl_logarithm(cihc * c1_out, 0.1, 3.0)
    c2_vihc = -nl_logarithm(c2_out * c2_out.abs() * cf / 10 * cf / 2e3, 0.2, 1.0)
    return c1_vihc + c2_vihc


def ihc_lowpass_sos(cutoff: float, pin_fs: float, order: int = 7) -> np.ndarray:
    """The lowpass as ``order`` identical first-order sections [c2 c2 0 1 -c1 0] (bilinear one-poles)."""
    c1, c2 = lowpass_coefficients(cutoff, 1.0 / pin_fs)
    return np.tile([c2, c2, 0.0, 1.0, -c1, 0.0], (int(order), 1))


def ihc_lowpass_filter(x: torch.Tensor, pin_fs: float, cutoff: float, order: int = 7) -> torch.Tensor:
    """The IHC lowpass on a whole signal (..., time) from rest (the stream carries state itself)."""
    sos = ihc_lowpass_sos(cutoff, pin_fs, order)
    return sosfilt(sos, x, zero_state(sos, x.shape[:-1]))[0]


def delay_samples(cf, pin_fs: float) -> list[int]:
    """Total path delay in samples: the cat function (BEZ2018 v5.2 uses it for human too)."""
    tdres = 1.0 / pin_fs
    out = []
    for f in torch.as_tensor(cf, dtype=torch.float64).reshape(-1).tolist():
        delay = 3.0 * math.exp(-(11.9 * math.log10(0.80 + f / 456.0)) / 12.5) * 1e-3
        out.append(max(0, int(math.ceil(delay / tdres))))
    return out


def ihc_potential(pin: torch.Tensor, cf, *, pin_fs: float = 100e3, species: int = 2,
                  bandwidth_scale_factor=1.0, cohc=1.0, cihc=1.0,
                  ihc_lowpass_cutoff: float = 3000.0, ihc_lowpass_order: int = 7) -> torch.Tensor:
    """IHC receptor potential (V) of ``pin`` (..., time) Pa at ``pin_fs``: (..., n_cf, time), float64.

    Equals the C model's ``ihcout`` (``cython_bez2018.run_ihc``) for each CF, delay included.
    """
    from .timeloop import IHCStream  # noqa: PLC0415  (timeloop imports this module)

    stream = IHCStream(cf, pin.shape[:-1], pin_fs=pin_fs, species=species,
                       bandwidth_scale_factor=bandwidth_scale_factor, cohc=cohc, cihc=cihc,
                       ihc_lowpass_cutoff=ihc_lowpass_cutoff, ihc_lowpass_order=ihc_lowpass_order,
                       device=pin.device)
    return stream.run(pin)
