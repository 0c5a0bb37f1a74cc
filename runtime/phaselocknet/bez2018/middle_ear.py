"""Human middle-ear filter of BEZ2018 (species 2, after Pascal et al. 1998).

Three bilinear-transformed (prewarped at 1 kHz) biquads in cascade, output divided by the
maximum gain 2. It is linear and fixed, so ``middle_ear_filter`` runs it over a whole chunk
(``iir.sosfilt``) ahead of the per-sample loop of the cochlea.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .iir import sosfilt, zero_state

# (s^2 + n1 s + n0) / (s^2 + d1 s + d0) per section, Pascal et al. (1998) as in BEZ2018.
_HUMAN_SECTIONS = (
    ((1.0, 5.6665e3, 0.0), (5.9761e3, 2.5255e7)),
    ((1.0, 5.8934e3, 1.7926e8), (6.4255e3, 1.3975e8)),
    ((0.0, 3.1137e3, 6.9768e8), (2.4891e4, 1.2700e9)),
)
_HUMAN_MAX_GAIN = 2.0
_PREWARP_HZ = 1e3
# The C model's truncated 2*pi; used everywhere so coefficients match it to the last bit.
TWOPI = 6.28318530717959


def middle_ear_sos(pin_fs: float) -> np.ndarray:
    """(3, 6) second-order sections [b0 b1 b2 1 a1 a2]; the 1/max-gain is folded into the last b."""
    tdres = 1.0 / pin_fs
    c = TWOPI * _PREWARP_HZ / math.tan(TWOPI / 2 * _PREWARP_HZ * tdres)
    sos = np.zeros((3, 6))
    for k, ((n2, n1, n0), (d1, d0)) in enumerate(_HUMAN_SECTIONS):
        norm = 1.0 / (c * c + d1 * c + d0)
        b = np.array([n2 * c * c + n1 * c + n0, 2 * (n0 - n2 * c * c), n2 * c * c - n1 * c + n0])
        a = np.array([1.0, (2 * d0 - 2 * c * c) * norm, (c * c - d1 * c + d0) * norm])
        sos[k, :3] = b * norm
        sos[k, 3:] = a
    sos[-1, :3] /= _HUMAN_MAX_GAIN
    return sos


def middle_ear_filter(pin: torch.Tensor, pin_fs: float = 100e3) -> torch.Tensor:
    """Middle-ear output (Pa scaled by 1/2) of ``pin`` (..., time) from rest (the stream carries state itself)."""
    sos = middle_ear_sos(pin_fs)
    return sosfilt(sos, pin, zero_state(sos, pin.shape[:-1]))[0]
