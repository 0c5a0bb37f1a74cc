"""One sample of the BEZ2018 control path and C1 filter, as few (stacked) tensor ops as possible.

The per-sample loop is bound by per-op dispatch (~3 us an op on (ears, n_cf) tensors), so the
state is kept in stacked tensors and every part that does not depend on a value computed in the
same sample is one op over the stack: the wideband gammatone's 4 x (re, im) stages as (4, 2, E, C),
the OHC lowpass stages as (3, E, C), C1's last two inputs/outputs of its 5 sections as (6, E, C),
C1's three distinct pole pairs (p1, p3, p5) as (3, E, C), their twelve arctangents in one atan2.
Only what chains inside a sample (one gammatone stage into the next, one section into the next)
stays a Python loop. Arithmetic is that of ``model_IHC_BEZ2018.c`` up to reordering of sums
(~1e-16 relative per sample). Constants come from ``loop_constants``; E = ears, C = CFs.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
from torch import Tensor

from .cochlea import C1_SECTIONS, OHC_ASYM, OHC_LOWPASS_HZ, CochleaParams, lowpass_coefficients

_BOLTZMANN_SHIFT = 1.0 / (1.0 + OHC_ASYM)
_BOLTZMANN_X0 = 12.0 * math.log((1.0 / _BOLTZMANN_SHIFT - 1) / (1 + math.exp(5.0 / 5.0)))


def loop_constants(p: CochleaParams, tdres: float) -> tuple[dict, dict]:
    """Per-CF constants shaped to broadcast against (E, C) and stacked (k, E, C) states, and the
    scalar ones (Python floats: TorchScript wants one value type per dict)."""
    col = lambda *rows: torch.stack(rows)[:, None]  # noqa: E731  (k rows of (C,) -> (k, 1, C))
    like = lambda values: torch.tensor(values, dtype=torch.float64, device=p.cf.device)  # noqa: E731
    pimag, fs, omega = p.pole_imag, p.fs_bilinear, p.omega
    weights = torch.bincount(torch.tensor(C1_SECTIONS), minlength=3).to(p.cf) / 5.0  # p1, p5 twice
    ohc_c1, ohc_c2 = lowpass_coefficients(OHC_LOWPASS_HZ, tdres)
    scalars = dict(half_tdres=tdres * 0.5, ohc_c1=ohc_c1, ohc_c2=ohc_c2, boltz_shift=_BOLTZMANN_SHIFT,
                   boltz_norm=1 - _BOLTZMANN_SHIFT)
    return dict(
        wb_delta_phase=p.wb_delta_phase, tau_wb_max=p.tau_wb_max, wb_out_scale=p.wb_out_scale,
        boltz_x0=like([_BOLTZMANN_X0, 5.0])[:, None, None], boltz_div=like([12.0, 5.0])[:, None, None],
        bm_tau_max=p.bm_tau_max, bm_tau_min=p.bm_tau_min, nl_min_r=p.nl_min_r,
        nl_one_minus_min_r=1.0 - p.nl_min_r, nl_neg_s0=-p.nl_s0, cohc=p.cohc, inv_bm_tau_max=1 / p.bm_tau_max,
        tau_wb_min=p.tau_wb_min, tau_wb_slope=(p.tau_wb_max - p.tau_wb_min) / (p.bm_tau_max - p.bm_tau_min),
        gd_cos=p.gd_cos, gain_den=2 * (1 + p.gd_cos),
        rpa_offsets=col(torch.zeros_like(p.rpa), p.rpa * 0.5, p.rpa),
        atan_num=torch.stack([omega - pimag, omega + pimag])[:, :, None],  # (2, 3, 1, C)
        phase_weights=torch.stack([weights, weights])[:, :, None, None], init_phase5=p.c1_init_phase / 5,
        neg_omega=-omega, zero_c=col(fs, torch.zeros_like(fs), -fs), zero_m=like([-1.0, -2.0, -1.0])[:, None, None],
        fs=fs, pimag2=pimag[:, None] ** 2, fs2_pimag2=fs * fs - pimag[:, None] ** 2, neg_pimag2=-pimag[:, None] ** 2,
        sections=torch.tensor(C1_SECTIONS, device=p.cf.device), c1_gain=p.c1_norm_gain / 4.0,
    ), scalars


def initial_state(p: CochleaParams, kf: dict, n_ears: int) -> dict:
    """Rest: zero filter histories, the wideband filter at its cohc-given tau and gain."""
    shape = (n_ears, p.cf.shape[0])
    zeros = lambda *lead: torch.zeros(*lead, *shape, dtype=torch.float64, device=p.cf.device)  # noqa: E731
    tau_wb = p.tau_wb0.expand(shape).clone()
    g1, g2 = _bilinear_pole(kf, tau_wb)
    return {"wb_phase": torch.zeros_like(p.cf), "wb": zeros(4, 2), "tau_wb": tau_wb, "g1": g1, "g2": g2,
            "wb_gain": p.wb_gain0.expand(shape).clone(), "ohc": zeros(3), "h1": zeros(6), "h2": zeros(6)}


def _bilinear_pole(kf: Dict[str, float], tau: Tensor) -> Tuple[Tensor, Tensor]:
    """Coefficients (c1, c2) of the bilinear one-pole of time constant ``tau``: tau * 2 / tdres as tau / (tdres / 2)."""
    dtmp = tau / kf["half_tdres"]
    dp1 = dtmp + 1
    return (dtmp - 1) / dp1, torch.reciprocal(dp1)


def _boltzmann(k: Dict[str, Tensor], kf: Dict[str, float], x: Tensor) -> Tensor:
    """OHC nonlinearity (asymmetry 7, s0 = 12, s1 = x1 = 5), normalised to a maximum of 1."""
    e = torch.exp((k["boltz_x0"] - x) / k["boltz_div"])
    out1 = torch.reciprocal(1.0 + e[0] * (1.0 + e[1])) - kf["boltz_shift"]
    return out1 / kf["boltz_norm"]


def wideband_carrier(k: Dict[str, Tensor], s: Dict[str, Tensor], n: int) -> Tensor:
    """cos and sin of the wideband filter's phase for the next ``n`` samples, (n, 2, 1, C); the
    phase does not depend on the sound, so this is one op per block instead of three per sample.
    The phase accumulates one increment per sample as in the C model; ``s`` is advanced."""
    phis: List[Tensor] = []
    phi = s["wb_phase"]
    for _ in range(n):
        phi = phi + k["wb_delta_phase"]
        phis.append(phi)
    s["wb_phase"] = phi
    phase = torch.stack(phis)
    return torch.stack((torch.cos(phase), torch.sin(phase)), 1)[:, :, None]


def control_path_step(k: Dict[str, Tensor], kf: Dict[str, float], s: Dict[str, Tensor], x: Tensor, cs: Tensor):
    """Wideband gammatone -> Boltzmann -> OHC lowpass -> NLafterohc; updates ``s`` in place.

    ``cs``: this sample's (cos, sin) of the wideband phase, (2, 1, C), from ``wideband_carrier``.
    Returns (rsigma, new wideband gain, its group delay): the gain is scheduled by the caller."""
    c2g = s["g2"] * s["wb_gain"]
    prev = s["wb"]
    pre = s["g1"] * prev[1:]
    stages: List[Tensor] = [x * cs]
    for j in range(3):
        stages.append(torch.addcmul(pre[j], c2g, stages[-1] + prev[j]))
    ratio = s["tau_wb"] / k["tau_wb_max"]
    wb_out = ratio * ratio * ratio * (cs * stages[-1]).sum(0) * k["wb_out_scale"]
    b = _boltzmann(k, kf, wb_out)
    o = s["ohc"]
    pre_o = kf["ohc_c1"] * o[1:]
    o1 = torch.add(pre_o[0], b + o[0], alpha=kf["ohc_c2"])
    o2 = torch.add(pre_o[1], o1 + o[1], alpha=kf["ohc_c2"])
    tmp_tau = k["bm_tau_max"] * torch.addcmul(k["nl_min_r"], k["nl_one_minus_min_r"], torch.exp(o2.abs() / k["nl_neg_s0"]))
    tmp_tau = torch.clamp(tmp_tau, k["bm_tau_min"], k["bm_tau_max"])
    tau_c1 = torch.addcmul(k["bm_tau_min"], k["cohc"], tmp_tau - k["bm_tau_min"])
    rsigma = torch.reciprocal(tau_c1) - k["inv_bm_tau_max"]
    tau_wb = torch.addcmul(k["tau_wb_max"], tau_c1 - k["bm_tau_max"], k["tau_wb_slope"])
    g1, g2 = _bilinear_pole(kf, tau_wb)
    g1sq, g1gd = g1 * g1, g1 * k["gd_cos"]
    tmp1 = torch.sub(g1sq + 1, g1gd, alpha=2)
    gain = torch.sqrt(tmp1 / (g2 * g2 * k["gain_den"]))
    group_delay = torch.floor(0.5 - (g1sq - g1gd) / tmp1)
    s["wb"], s["ohc"] = torch.stack(stages), torch.stack((b, o1, o2))
    s["tau_wb"], s["g1"], s["g2"] = tau_wb, g1, g2
    return rsigma, gain, group_delay


def c1_step(k: Dict[str, Tensor], s: Dict[str, Tensor], x: Tensor, rsigma: Tensor) -> Tensor:
    """Signal-path C1 chirp filter with poles moved by ``rsigma`` and the zero re-placed to keep its
    phase; updates ``s`` and returns the output (E, C).

    atan(q) is atan2 and tan is sin / cos: the same values to an ulp, but torch's float64 atan and
    tan kernels on this CPU build cost ~30 us per element (measured), atan2/sin/cos ~5 ns."""
    negp = (rsigma + k["inv_bm_tau_max"]) + k["rpa_offsets"]  # (3, E, C): -real part of p1, p3, p5
    half = (torch.atan2(k["atan_num"], negp) * k["phase_weights"]).sum(dim=[0, 1]) + k["init_phase5"]
    rzero = k["neg_omega"] * torch.cos(half) / torch.sin(half)
    zero_terms = torch.addcmul(k["zero_c"], k["zero_m"], rzero)  # fs - rzero, -2 rzero, -fs - rzero
    fsp, fsm = k["fs"] + negp, k["fs"] - negp
    inv = torch.reciprocal(fsp * fsp + k["pimag2"])
    a1 = (k["fs2_pimag2"] - negp * negp) * inv * 2
    a2 = (k["neg_pimag2"] - fsm * fsm) * inv
    coefs = torch.cat((zero_terms[:, None] * inv, a1[None], a2[None])).index_select(1, k["sections"])  # (5, 5, E, C)
    h1, h2 = s["h1"], s["h2"]
    partial = (coefs[1:] * torch.stack((h1[:5], h2[:5], h1[1:], h2[1:]))).sum(0)
    y = x
    outs: List[Tensor] = [x.expand_as(rsigma)]
    for part, b0 in zip(partial.unbind(0), coefs[0].unbind(0)):
        y = torch.addcmul(part, b0, y)
        outs.append(y)
    s["h2"], s["h1"] = h1, torch.stack(outs)
    return y * k["c1_gain"]
