"""Per-CF constants of the compiled BEZ2018 periphery (compiled_ihc), computed as the C model does.

``cf_constants`` follows IHCAN's set-up, Get_tauwb, Get_taubm, gain_groupdelay and the n == 0
branches of C1ChirpFilt / C2ChirpFilt expression by expression, with libm's functions (numba,
no fast-math), so the loop starts from the C model's very numbers.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .middle_ear import TWOPI

# per-CF constants: columns of ``cf_constants``
(K_CF, K_TAUWB_MAX, K_TAUWB_MIN, K_BM_TAUMAX, K_BM_TAUMIN, K_COHC, K_TAUWB0, K_WBGAIN0, K_DELTA_PHASE,
 K_GD_COS, K_MIN_R, K_S0, K_SIGMA0, K_IPW, K_IPB, K_RPA, K_FS, K_OMEGA, K_INIT_PHASE, K_NORM_GAIN,
 K_C2_RZERO, K_POW_HALF, K_POW_THREE, K_C2_POLES) = range(24)
N_CONSTANTS = K_C2_POLES + 6  # C2: (real, imag) of its fixed p1, p3, p5
# The exponents of the C code's pow(x, 1.0/2.0) and pow(x, 3) reach the loop as data: with a
# constant exponent LLVM turns pow(x, 0.5) into sqrt(x), which differs from libm's pow in the
# last bit now and then, and the wideband gain schedule (floor of a group delay) amplifies that.
SECTIONS = np.array([0, 1, 2, 0, 2])  # the pole pair of each C1/C2 section: p1, p3, p5, p7 = p1, p9 = p5
# C1gain_norm's factors p1 .. p10: pole pair, and +1 for p / -1 for its conjugate
NORM_POLES = np.array([0, 0, 1, 1, 2, 2, 0, 0, 2, 2])
NORM_SIGNS = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0])

@njit(cache=True, nogil=True, error_model="numpy")
def gain_groupdelay(tdres, gd_cos, tau, pow_half):
    dtmp2 = tau * 2.0 / tdres
    c1 = (dtmp2 - 1) / (dtmp2 + 1)
    c2 = 1.0 / (dtmp2 + 1)
    tmp1 = 1 + c1 * c1 - 2 * c1 * gd_cos
    tmp2 = 2 * c2 * c2 * (1 + gd_cos)
    grd = math.floor((0.5 - (c1 * c1 - c1 * gd_cos) / (1 + c1 * c1 - 2 * c1 * gd_cos)))
    return math.pow(tmp1 / tmp2, pow_half), int(grd)


@njit(cache=True, nogil=True, error_model="numpy")
def _poles(p1x, ipw, ipb, rpa):
    """(real, imag) of p1, p3, p5 given p1's real part."""
    p5x = p1x - rpa
    p5y = ipw - ipb
    return np.array([p1x, (p1x + p5x) * 0.5, p5x]), np.array([ipw, (ipw + p5y) * 0.5, p5y])


@njit(cache=True, nogil=True, error_model="numpy")
def cf_constants(cf, tdres, cohc, bandwidth_scale_factor, pow_half, pow_three, pow_five):
    """One CF's constants (human, species 2) as IHCAN, Get_tauwb, Get_taubm, gain_groupdelay
    and the n == 0 branch of C1ChirpFilt / C2ChirpFilt compute them."""
    k = np.zeros(N_CONSTANTS)
    gain = 52.0 / 2.0 * (math.tanh(2.2 * math.log10(cf / 0.6e3) + 0.15) + 1.0)
    gain = min(max(gain, 15.0), 60.0)
    ratio = math.pow(10.0, (-gain / (20.0 * 3)))
    q10 = math.pow((cf / 1000), 0.3) * 12.7 * 0.505 + 0.2085
    taumax = 2.0 / (TWOPI * (bandwidth_scale_factor * (cf / q10)))
    taumin = taumax * ratio
    ratiobm = math.pow(10.0, (-gain / (20.0 * 2.5)))
    bm_taumax = taumax / 0.7
    bm_taumin = bm_taumax * ratiobm
    bm_taubm = cohc * (bm_taumax - bm_taumin) + bm_taumin
    tauwb_max = taumin + 0.2 * (taumax - taumin)
    tauwb_min = tauwb_max / taumax * taumin
    tauwb0 = tauwb_max + (bm_taubm - bm_taumax) * (tauwb_max - tauwb_min) / (bm_taumax - bm_taumin)
    bmplace = (35 / 2.1) * math.log10(1.0 + cf / 165.4)
    centerfreq = 165.4 * (math.pow(10.0, (bmplace + 1.2) / (35 / 2.1)) - 1.0)
    gd_cos = math.cos(TWOPI * (centerfreq - cf) * tdres)
    min_r = 0.05
    r = bm_taumin / bm_taumax
    if r < min_r:
        min_r = 0.5 * r
    dc = (7.0 - 1) / (7.0 + 1.0) / 2.0 - min_r
    sigma0 = 1 / bm_taumax
    ipw = 1.01 * cf * TWOPI - 50
    ipb = 0.2343 * TWOPI * cf - 1104
    rpa = math.pow(10.0, math.log10(cf) * 0.9 + 0.55) + 2000
    pzero = math.pow(10.0, math.log10(cf) * 0.7 + 1.6) + 500
    fs = TWOPI * cf / math.tan(TWOPI * cf * tdres / 2)
    omega = TWOPI * cf
    px, py = _poles(-sigma0, ipw, ipb, rpa)
    init_phase = 0.0
    for s in SECTIONS:  # the zero starts at rzero = -pzero
        init_phase = (init_phase + math.atan(omega / pzero) - math.atan((omega - py[s]) / (-px[s]))
                      - math.atan((omega + py[s]) / (-px[s])))
    norm = 1.0
    for j in range(10):
        s = NORM_POLES[j]
        norm = norm * ((omega - NORM_SIGNS[j] * py[s]) * (omega - NORM_SIGNS[j] * py[s]) + px[s] * px[s])
    # C2: the same filter with the poles fixed at -sigma0 * fcohc, fcohc = 1 / ratiobm (its call in IHCAN)
    px2, py2 = _poles(-sigma0 * (1 / ratiobm), ipw, ipb, rpa)
    phase2 = 0.0
    for s in SECTIONS:
        phase2 = phase2 - math.atan((omega - py2[s]) / (-px2[s])) - math.atan((omega + py2[s]) / (-px2[s]))
    k[K_CF], k[K_TAUWB_MAX], k[K_TAUWB_MIN], k[K_BM_TAUMAX], k[K_BM_TAUMIN] = cf, tauwb_max, tauwb_min, bm_taumax, bm_taumin
    k[K_COHC], k[K_TAUWB0], k[K_WBGAIN0] = cohc, tauwb0, gain_groupdelay(tdres, gd_cos, tauwb0, pow_half)[0]
    k[K_POW_HALF], k[K_POW_THREE] = pow_half, pow_three
    k[K_DELTA_PHASE], k[K_GD_COS], k[K_MIN_R] = -TWOPI * centerfreq * tdres, gd_cos, min_r
    k[K_S0] = -dc / math.log((r - min_r) / (1 - min_r))
    k[K_SIGMA0], k[K_IPW], k[K_IPB], k[K_RPA], k[K_FS], k[K_OMEGA] = sigma0, ipw, ipb, rpa, fs, omega
    k[K_INIT_PHASE] = init_phase
    k[K_NORM_GAIN] = math.sqrt(norm) / math.pow(math.sqrt(omega * omega + pzero * pzero), pow_five)
    k[K_C2_RZERO] = -omega / math.tan((init_phase - phase2) / 5)
    for s in range(3):
        k[K_C2_POLES + 2 * s] = px2[s]
        k[K_C2_POLES + 2 * s + 1] = py2[s]
    return k


def all_cf_constants(cf: np.ndarray, tdres: float, cohc: np.ndarray, bandwidth_scale_factor: np.ndarray) -> np.ndarray:
    return np.stack([cf_constants(float(f), tdres, float(o), float(b), 1.0 / 2.0, 3.0, 5.0)
                     for f, o, b in zip(cf, cohc, bandwidth_scale_factor)])
