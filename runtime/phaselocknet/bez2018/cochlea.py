"""BEZ2018 basilar membrane: control path (wideband gammatone, OHC), C1 and C2 chirp filters.

Zilany & Bruce (2006) / Zilany et al. (2009, 2014) as in the C model ``model_IHC_BEZ2018.c``
(species 2: human, Shera et al. 2002 tuning). Everything per CF is a constant of
``cochlea_params``; the per-sample recurrences (control path, C1) are in ``cochlea_step.py``, the
fixed C2 filter is ``c2_sos`` for whole-chunk filtering.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from .middle_ear import TWOPI

OHC_ASYM = 7.0
WB_ORDER = 3
OHC_LOWPASS_HZ = 600.0
C1_SECTIONS = (0, 1, 2, 0, 2)  # the ten poles are p1, p3, p5 (+conjugates) with p1 and p5 twice


class CochleaParameterError(ValueError):
    """A cochlear parameter outside the range the BEZ2018 model accepts."""


@dataclass(frozen=True)
class CochleaParams:
    """Per-CF constants (float64 tensors of shape (n_cf,)) of the cochlear filters."""

    cf: torch.Tensor
    tau_wb_max: torch.Tensor
    tau_wb_min: torch.Tensor
    bm_tau_max: torch.Tensor
    bm_tau_min: torch.Tensor
    tau_wb0: torch.Tensor
    wb_gain0: torch.Tensor
    wb_delta_phase: torch.Tensor
    wb_out_scale: torch.Tensor
    gd_cos: torch.Tensor
    nl_min_r: torch.Tensor
    nl_s0: torch.Tensor
    cohc: torch.Tensor
    fs_bilinear: torch.Tensor
    omega: torch.Tensor        # 2 pi cf
    pole_imag: torch.Tensor    # (3, n_cf): imaginary parts of p1, p3, p5
    rpa: torch.Tensor
    c1_init_phase: torch.Tensor
    c1_norm_gain: torch.Tensor
    c2_coefs: tuple            # 5 sections x (b0 b1 b2 a1 a2) tensors (n_cf,): y = b.x + a.y
    c2_norm_gain: torch.Tensor
    max_group_delay: int

    def to(self, device) -> "CochleaParams":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device)
            elif isinstance(value, tuple):
                moved[name] = tuple(tuple(v.to(device) for v in row) for row in value)
        return CochleaParams(**moved)


def _gain_db(cf: np.ndarray) -> np.ndarray:
    return np.clip(52.0 / 2.0 * (np.tanh(2.2 * np.log10(cf / 0.6e3) + 0.15) + 1.0), 15.0, 60.0)


def _gain_groupdelay_np(tdres, gd_cos, tau):
    dtmp = tau * 2.0 / tdres
    c1 = (dtmp - 1) / (dtmp + 1)
    c2 = 1.0 / (dtmp + 1)
    gain = np.sqrt((1 + c1 * c1 - 2 * c1 * gd_cos) / (2 * c2 * c2 * (1 + gd_cos)))
    grd = np.floor(0.5 - (c1 * c1 - c1 * gd_cos) / (1 + c1 * c1 - 2 * c1 * gd_cos))
    return gain, grd


def _chirp_poles(sigma_real: np.ndarray, ipw: np.ndarray, ipb: np.ndarray, rpa: np.ndarray):
    """(real, imag) of p1, p3, p5 for a given real part of p1, in the C model's arithmetic."""
    p1x, p1y = sigma_real, ipw
    p5x, p5y = p1x - rpa, p1y - ipb
    p3x, p3y = (p1x + p5x) * 0.5, (p1y + p5y) * 0.5
    return (p1x, p3x, p5x), (p1y, p3y, p5y)


def _phase(omega, preal, pimag):
    phase = 0.0
    for s in C1_SECTIONS:
        phase = phase - np.arctan((omega - pimag[s]) / (-preal[s])) - np.arctan((omega + pimag[s]) / (-preal[s]))
    return phase


def _section_coefs(fs, pr, pi, rzero):
    """Bilinear biquad of one pole pair and one zero: y = b0 x0 + b1 x1 + b2 x2 + a1 y1 + a2 y2."""
    temp = (fs - pr) ** 2 + pi**2
    return np.stack([(fs - rzero) / temp, -2 * rzero / temp, -(fs + rzero) / temp,
                     2 * (fs * fs - pr * pr - pi * pi) / temp, -((fs + pr) ** 2 + pi * pi) / temp])


def _chirp_constants(cf, tdres, bm_tau_max, ratiobm):
    """Fixed pole/zero data of the C1 and C2 chirp filters (their n == 0 initialisation)."""
    sigma0 = 1 / bm_tau_max
    ipw = 1.01 * cf * TWOPI - 50
    ipb = 0.2343 * TWOPI * cf - 1104
    rpa = 10 ** (np.log10(cf) * 0.9 + 0.55) + 2000
    pzero = 10 ** (np.log10(cf) * 0.7 + 1.6) + 500
    fs = TWOPI * cf / np.tan(TWOPI * cf * tdres / 2)
    omega = TWOPI * cf
    preal, pimag = _chirp_poles(-sigma0, ipw, ipb, rpa)
    init_phase = 0.0
    for s in C1_SECTIONS:
        init_phase = (init_phase + np.arctan(omega / pzero)
                      - np.arctan((omega - pimag[s]) / (-preal[s])) - np.arctan((omega + pimag[s]) / (-preal[s])))
    # p1..p10 = p1, p1*, p3, p3*, p5, p5*, p1, p1*, p5, p5*  (sign of the imaginary part)
    gain_norm = 1.0
    for s, sign in ((0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1), (0, 1), (0, -1), (2, 1), (2, -1)):
        gain_norm = gain_norm * ((omega - sign * pimag[s]) ** 2 + preal[s] * preal[s])
    norm_gain = np.sqrt(gain_norm) / np.sqrt(omega * omega + pzero * pzero) ** 5
    # C2: the same filter with its poles fixed at the fully impaired-OHC position.
    c2_real, c2_imag = _chirp_poles(-sigma0 * (1 / ratiobm), ipw, ipb, rpa)
    rzero2 = -omega / np.tan((init_phase - _phase(omega, c2_real, c2_imag)) / 5)
    c2_coefs = np.stack([_section_coefs(fs, c2_real[s], c2_imag[s], rzero2) for s in C1_SECTIONS])
    return dict(fs_bilinear=fs, omega=omega, pole_imag=np.stack(pimag), rpa=rpa,
                c1_init_phase=init_phase, c1_norm_gain=norm_gain, c2_coefs=c2_coefs, c2_norm_gain=norm_gain)


def cochlea_params(cf, pin_fs: float, species: int = 2, bandwidth_scale_factor=1.0, cohc=1.0) -> CochleaParams:
    """Per-CF constants of the human (species 2) BEZ2018 cochlea at sampling rate ``pin_fs``."""
    if species != 2:
        raise CochleaParameterError(f"species={species!r} is not implemented; only species=2 (human, Shera et al. 2002 tuning) is")
    cf = np.asarray(torch.as_tensor(cf, dtype=torch.float64).cpu(), dtype=np.float64).reshape(-1)
    if cf.size == 0 or not np.all((cf > 124.9) & (cf < 20001.0)):
        raise CochleaParameterError(f"every CF must lie in 125 Hz..20 kHz for the human model, got {cf.tolist()}")
    if not 100e3 <= pin_fs <= 500e3:
        raise CochleaParameterError(f"pin_fs={pin_fs} Hz is outside the model's 100..500 kHz; resample the input first")
    bsf = np.broadcast_to(np.asarray(bandwidth_scale_factor, dtype=np.float64), cf.shape).copy()
    cohc = np.broadcast_to(np.asarray(cohc, dtype=np.float64), cf.shape).copy()
    if not np.all(bsf > 0):
        raise CochleaParameterError(f"bandwidth_scale_factor must be positive, got {bsf.tolist()}")
    if not np.all((cohc >= 0) & (cohc <= 1)):
        raise CochleaParameterError(f"cohc must lie in [0, 1], got {cohc.tolist()}")
    tdres = 1.0 / pin_fs
    bmplace = (35 / 2.1) * np.log10(1.0 + cf / 165.4)
    centerfreq = 165.4 * (10 ** ((bmplace + 1.2) / (35 / 2.1)) - 1.0)
    gain = _gain_db(cf)
    q10 = (cf / 1000) ** 0.3 * 12.7 * 0.505 + 0.2085
    tau_max = 2.0 / (TWOPI * (bsf * (cf / q10)))
    tau_min = tau_max * 10 ** (-gain / (20.0 * WB_ORDER))
    ratiobm = 10 ** (-gain / (20.0 * 2.5))
    bm_tau_max = tau_max / 0.7
    bm_tau_min = bm_tau_max * ratiobm
    bm_taubm = cohc * (bm_tau_max - bm_tau_min) + bm_tau_min
    tau_wb_max = tau_min + 0.2 * (tau_max - tau_min)
    tau_wb_min = tau_wb_max / tau_max * tau_min
    tau_wb0 = tau_wb_max + (bm_taubm - bm_tau_max) * (tau_wb_max - tau_wb_min) / (bm_tau_max - bm_tau_min)
    gd_cos = np.cos(TWOPI * (centerfreq - cf) * tdres)
    wb_gain0, _ = _gain_groupdelay_np(tdres, gd_cos, tau_wb0)
    taus = np.linspace(tau_wb_min, tau_wb_max, 257)
    max_grd = int(np.max(_gain_groupdelay_np(tdres, gd_cos, taus)[1])) + 2
    # NLafterohc: floor of the tau ratio and the exponential's scale.
    ratio = bm_tau_min / bm_tau_max
    min_r = np.where(ratio < 0.05, 0.5 * ratio, 0.05)
    dc = (OHC_ASYM - 1) / (OHC_ASYM + 1.0) / 2.0 - min_r
    s0 = -dc / np.log((ratio - min_r) / (1 - min_r))
    consts = dict(
        cf=cf, tau_wb_max=tau_wb_max, tau_wb_min=tau_wb_min, bm_tau_max=bm_tau_max, bm_tau_min=bm_tau_min,
        tau_wb0=tau_wb0, wb_gain0=wb_gain0, wb_delta_phase=-TWOPI * centerfreq * tdres,
        wb_out_scale=10e3 * np.maximum(1, cf / 5e3), gd_cos=gd_cos, nl_min_r=min_r, nl_s0=s0, cohc=cohc,
        **_chirp_constants(cf, tdres, bm_tau_max, ratiobm),
    )
    tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in consts.items()}
    tensors["c2_coefs"] = tuple(tuple(row) for row in tensors["c2_coefs"].unbind(0))
    return CochleaParams(max_group_delay=max_grd, **tensors)


def lowpass_coefficients(cutoff_hz: float, tdres: float) -> tuple[float, float]:
    c = 2.0 / tdres
    return (c - TWOPI * cutoff_hz) / (c + TWOPI * cutoff_hz), TWOPI * cutoff_hz / (TWOPI * cutoff_hz + c)


def c2_sos(p: CochleaParams) -> np.ndarray:
    """Parallel-path C2 filter (the C1 filter frozen at its widest, OHC fully impaired, poles) as
    second-order sections per CF, (n_cf, 5, 6), its output gain ``c2_norm_gain / 4`` folded into
    the first section: a fixed linear filter, run over whole chunks by ``iir.sosfilt_per_channel``."""
    coefs = np.stack([np.stack([c.cpu().numpy() for c in row]) for row in p.c2_coefs])  # (5, 5, n_cf)
    b, a = coefs[:, :3], coefs[:, 3:]
    sos = np.concatenate([b, np.ones_like(a[:, :1]), -a], axis=1).transpose(2, 0, 1).copy()
    sos[:, 0, :3] *= (p.c2_norm_gain.cpu().numpy() / 4.0)[:, None]
    return sos
