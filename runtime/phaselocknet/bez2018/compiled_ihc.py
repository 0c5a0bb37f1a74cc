"""The BEZ2018 periphery (middle ear to IHC lowpass) as a compiled CPU loop (numba).

On the CPU the per-sample tensor ops of ``cochlea_step`` are bound by dispatch (~125 ops a
sample whatever the batch); a compiled loop per (ear, CF) keeps the filter states in registers
and costs the same per fibre at any batch. It follows ``model_IHC_BEZ2018.c`` expression by
expression: the same per-CF set-up (``compiled_constants``), the same association of every sum and product, libm's
exp/log/atan/tan/pow where the C code calls them (numba compiles without fast-math: no
reassociation, no fused multiply-adds), and the middle ear, C2 filter and IHC lowpass as the C
model runs them. Values the C code recomputes identically every sample (the C2 poles and zero,
the wideband carrier, which does not depend on the ear) are computed once. The tensor-op version
(timeloop.py, cochlea_step.py) is what other devices use.

``CompiledPeriphery`` carries every state between chunks, so consecutive chunks equal one call.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .compiled_constants import (
    K_BM_TAUMAX, K_BM_TAUMIN, K_C2_POLES, K_C2_RZERO, K_CF, K_COHC, K_DELTA_PHASE, K_FS, K_GD_COS, K_INIT_PHASE,
    K_IPB, K_IPW, K_MIN_R, K_NORM_GAIN, K_OMEGA, K_POW_HALF, K_POW_THREE, K_RPA, K_S0, K_SIGMA0, K_TAUWB0,
    K_TAUWB_MAX, K_TAUWB_MIN, K_WBGAIN0, all_cf_constants, gain_groupdelay)
from .hair_cell import MAX_IHC_ORDER
from .middle_ear import TWOPI

# per-(ear, CF) state: columns of ``CompiledPeriphery.fibre``
S_WBPHASE, S_TAUWB, S_WBGAIN = range(3)  # column 3 is unused
S_WB = 4            # the wideband filter's last outputs wbgtfl[0..3], (re, im) each: 8
S_OHC = 12          # OHC lowpass ohcl[0..2]: 3
S_C1 = 15           # C1: input x[n-1], x[n-2], then each section's y[n-1], y[n-2]: 12
S_C2 = 27           # C2 likewise: 12
S_IHC = 39          # IHC lowpass ihcl[0..7]: 8
N_STATE = 47
N_ME_STATE = 8      # per ear: px[n-1], px[n-2], mey1..3 at n-1 and n-2
OK, GROUP_DELAY_OUT_OF_RANGE = 0, 1


@njit(cache=True, nogil=True, error_model="numpy")
def _nl_logarithm(x, slope, asym, strength):
    xx = math.log(1.0 + strength * abs(x)) * slope
    if x < 0:
        if asym == 1.0:  # asym_t is exactly 1 then: -1 / 1 * xx
            return -xx
        splx = 20 * math.log10(-x / 20e-6)
        asym_t = asym - (asym - 1) / (1 + math.exp(splx / 5.0))
        xx = -1 / asym_t * xx
    return xx


@njit(inline="always", nogil=True, error_model="numpy")
def _chirp_section(in1, in2, in3, out1, out2, fs, preal, pimg, rzero):
    """One pole-pair/zero section of C1ChirpFilt / C2ChirpFilt's time loop: its new output from
    its inputs x[n], x[n-1], x[n-2] and outputs y[n-1], y[n-2] (the chain is unrolled by the caller:
    a section's inputs are the previous section's new and last two outputs)."""
    temp = (fs - preal) * (fs - preal) + pimg * pimg
    dy = (in1 * (fs - rzero) - 2 * rzero * in2 - (fs + rzero) * in3
          + 2 * out1 * (fs * fs - preal * preal - pimg * pimg)
          - out2 * ((fs + preal) * (fs + preal) + pimg * pimg))
    return dy / temp


@njit(cache=True, nogil=True, error_model="numpy")
def middle_ear_chunk(px, me_state, n0, tdres, meout):
    """Human middle ear (IHCAN's n == 0, n == 1 and general branches), px (E, K) -> meout (E, K)."""
    c = TWOPI * 1e3 / math.tan(TWOPI / 2 * 1e3 * tdres)
    cc = c * c
    m11 = 1 / (cc + 5.9761e+003 * c + 2.5255e+007)
    m12 = (-2 * cc + 2 * 2.5255e+007)
    m13 = (cc - 5.9761e+003 * c + 2.5255e+007)
    m14 = (cc + 5.6665e+003 * c)
    m15 = -2 * cc
    m16 = (cc - 5.6665e+003 * c)
    m21 = 1 / (cc + 6.4255e+003 * c + 1.3975e+008)
    m22 = (-2 * cc + 2 * 1.3975e+008)
    m23 = (cc - 6.4255e+003 * c + 1.3975e+008)
    m24 = (cc + 5.8934e+003 * c + 1.7926e+008)
    m25 = (-2 * cc + 2 * 1.7926e+008)
    m26 = (cc - 5.8934e+003 * c + 1.7926e+008)
    m31 = 1 / (cc + 2.4891e+004 * c + 1.2700e+009)
    m32 = (-2 * cc + 2 * 1.2700e+009)
    m33 = (cc - 2.4891e+004 * c + 1.2700e+009)
    m34 = (3.1137e+003 * c + 6.9768e+008)
    m35 = 2 * 6.9768e+008
    m36 = (-3.1137e+003 * c + 6.9768e+008)
    for e in range(px.shape[0]):
        st = me_state[e]
        x1, x2, a1, a2, b1, b2, d1, d2 = st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]
        for i in range(px.shape[1]):
            n, x = n0 + i, px[e, i]
            if n == 0:
                a = m11 * m14 * x
                b = a * m24 * m21
                d = b * m34 * m31
            elif n == 1:
                a = m11 * (-m12 * a1 + m14 * x + m15 * x1)
                b = m21 * (-m22 * b1 + m24 * a + m25 * a1)
                d = m31 * (-m32 * d1 + m34 * b + m35 * b1)
            else:
                a = m11 * (-m12 * a1 - m13 * a2 + m14 * x + m15 * x1 + m16 * x2)
                b = m21 * (-m22 * b1 - m23 * b2 + m24 * a + m25 * a1 + m26 * a2)
                d = m31 * (-m32 * d1 - m33 * d2 + m34 * b + m35 * b1 + m36 * b2)
            meout[e, i] = d / 2
            x2, x1, a2, a1, b2, b1, d2, d1 = x1, x, a1, a, b1, b, d1, d
        st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7] = x1, x2, a1, a2, b1, b2, d1, d2


@njit(cache=True, nogil=True, error_model="numpy")
def ihc_chunk(meout, consts, cihc, ihc_cutoff, ihc_order, tdres, n0, fibre, gains, out):
    """meout (E, K) -> IHC lowpass output (E, C, K) before the path delay; fibre (E, C, N_STATE)
    and gains (E, C, G) (the C code's tmpgain as a ring of G slots) carry over. Returns OK, or
    GROUP_DELAY_OUT_OF_RANGE if a group delay did not fit the ring (then ``out`` is incomplete).

    Per fibre, the C model's sample loop is cut into passes over the chunk (each stage's state
    is its own, so the numbers are the same): the control path, the only true feedback loop,
    runs two fibres side by side (their dependency chains overlap in the CPU); C1's pole and
    zero positions, its sections, C2's, the transduction and the IHC lowpass stage by stage are
    each a short loop the CPU pipelines across samples."""
    n_ears, n_samples = meout.shape
    n_cf = consts.shape[0]
    carrier = _carriers(consts, fibre, n_samples)
    rsigma = np.empty((2, n_samples))
    work = np.empty((8, n_samples))
    n_fibres = n_ears * n_cf
    for f in range(0, n_fibres, 2):
        lanes = min(2, n_fibres - f)
        if _control_path(meout, consts, fibre, gains, carrier, f, lanes, n0, tdres, rsigma) != OK:
            return GROUP_DELAY_OUT_OF_RANGE
        for j in range(lanes):
            e, c = (f + j) // n_cf, (f + j) % n_cf
            _signal_path(meout[e], consts[c], fibre[e, c], rsigma[j], cihc, ihc_cutoff, ihc_order, tdres, work, out[e, c])
    return OK


@njit(cache=True, nogil=True, error_model="numpy")
def _carriers(consts, fibre, n_samples):
    """cos and sin of each CF's wideband phase (a running sum, the same for every ear), (C, 2, K)."""
    carrier = np.empty((consts.shape[0], 2, n_samples))
    for c in range(consts.shape[0]):
        phase = fibre[0, c, S_WBPHASE]
        for i in range(n_samples):
            phase += consts[c, K_DELTA_PHASE]
            carrier[c, 0, i] = math.cos(phase)
            carrier[c, 1, i] = math.sin(phase)
        fibre[:, c, S_WBPHASE] = phase
    return carrier


@njit(inline="always", nogil=True, error_model="numpy")
def _control_step(x, cos_p, sin_p, cs, wbgain, k, tdres, x0, shift, ohc_c1, ohc_c2):
    """One sample of WbGammaTone, Boltzman, OhcLowPass, NLafterohc and the retuning of C1 and of
    the wideband filter. cs: (tauwb, wbgtfl re/im x 4, ohcl x 3); returns (rsigma, the new
    wideband gain, its group delay, new cs)."""
    tauwb, l0r, l0i, l1r, l1i, l2r, l2i, l3r, l3i, ol0, ol1, ol2 = cs
    dtmp = tauwb * 2.0 / tdres
    c1lp = (dtmp - 1) / (dtmp + 1)
    c2lp = 1.0 / (dtmp + 1)
    cg = c2lp * wbgain
    g0r, g0i = x * cos_p, x * sin_p
    g1r, g1i = cg * (g0r + l0r) + c1lp * l1r, cg * (g0i + l0i) + c1lp * l1i
    g2r, g2i = cg * (g1r + l1r) + c1lp * l2r, cg * (g1i + l1i) + c1lp * l2i
    g3r, g3i = cg * (g2r + l2r) + c1lp * l3r, cg * (g2i + l2i) + c1lp * l3i
    # REAL(compprod(compexp(-phase), g3)): cos(-p) = cos(p), sin(-p) = -sin(p) exactly
    wbout1 = cos_p * g3r + sin_p * g3i
    wbout = math.pow((tauwb / k[K_TAUWB_MAX]), k[K_POW_THREE]) * wbout1 * 10e3 * max(1.0, k[K_CF] / 5e3)
    boltz = (1.0 / (1.0 + math.exp(-(wbout - x0) / 12.0) * (1.0 + math.exp(-(wbout - 5.0) / 5.0))) - shift) / (1 - shift)
    o1 = ohc_c1 * ol1 + ohc_c2 * (boltz + ol0)
    o2 = ohc_c1 * ol2 + ohc_c2 * (o1 + ol1)
    bm_taumax, bm_taumin, min_r = k[K_BM_TAUMAX], k[K_BM_TAUMIN], k[K_MIN_R]
    tmptauc1 = bm_taumax * (min_r + (1.0 - min_r) * math.exp(-abs(o2) / k[K_S0]))
    tmptauc1 = min(max(tmptauc1, bm_taumin), bm_taumax)
    tauc1 = k[K_COHC] * (tmptauc1 - bm_taumin) + bm_taumin
    rsigma = 1 / tauc1 - 1 / bm_taumax
    tauwb_max, tauwb_min = k[K_TAUWB_MAX], k[K_TAUWB_MIN]
    tauwb = tauwb_max + (tauc1 - bm_taumax) * (tauwb_max - tauwb_min) / (bm_taumax - bm_taumin)
    wb_gain, grd = gain_groupdelay(tdres, k[K_GD_COS], tauwb, k[K_POW_HALF])
    return rsigma, wb_gain, grd, (tauwb, g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, boltz, o1, o2)


@njit(inline="always", nogil=True, error_model="numpy")
def _schedule(slots, now, grd, wb_gain, wbgain):
    """tmpgain[n + grd] = wb_gain; the gain for the next sample is tmpgain[n], or the last one
    where no gain was written for n. ``now``: n's slot; the slot is cleared for sample n + ring."""
    ring = slots.shape[0]
    ahead = now + grd
    slots[ahead - ring if ahead >= ring else ahead] = wb_gain
    scheduled = slots[now]
    slots[now] = 0.0
    return wbgain if scheduled == 0 else scheduled


@njit(inline="always", nogil=True)
def _load_control(st):
    return (st[S_TAUWB], st[S_WB], st[S_WB + 1], st[S_WB + 2], st[S_WB + 3], st[S_WB + 4], st[S_WB + 5],
            st[S_WB + 6], st[S_WB + 7], st[S_OHC], st[S_OHC + 1], st[S_OHC + 2])


@njit(inline="always", nogil=True)
def _store_control(st, cs, wbgain):
    (st[S_TAUWB], st[S_WB], st[S_WB + 1], st[S_WB + 2], st[S_WB + 3], st[S_WB + 4], st[S_WB + 5],
     st[S_WB + 6], st[S_WB + 7], st[S_OHC], st[S_OHC + 1], st[S_OHC + 2]) = cs
    st[S_WBGAIN] = wbgain


@njit(cache=True, nogil=True, error_model="numpy")
def _control_path(meout, consts, fibre, gains, carrier, f, lanes, n0, tdres, rsigma):
    """The control path of fibres f and f + 1 (flat index ear * C + CF) side by side -> rsigma
    rows 0 and 1. With one fibre left (lanes == 1) the second lane runs a copy of it, discarded."""
    n_cf, n_samples, ring = consts.shape[0], meout.shape[1], gains.shape[2]
    shift = 1.0 / (1.0 + 7.0)
    x0 = 12.0 * math.log((1.0 / shift - 1) / (1 + math.exp(5.0 / 5.0)))
    c_lp = 2.0 / tdres
    ohc_c1 = (c_lp - TWOPI * 600.0) / (c_lp + TWOPI * 600.0)
    ohc_c2 = TWOPI * 600.0 / (TWOPI * 600.0 + c_lp)
    ea, ca = f // n_cf, f % n_cf
    eb, cb = (f + lanes - 1) // n_cf, (f + lanes - 1) % n_cf
    st_a, st_b = fibre[ea, ca], fibre[eb, cb]
    slots_a, slots_b = gains[ea, ca], gains[eb, cb]
    if lanes == 1:
        st_b, slots_b = st_b.copy(), slots_b.copy()
    ka, kb = consts[ca], consts[cb]
    cs_a, cs_b = _load_control(st_a), _load_control(st_b)
    gain_a, gain_b = st_a[S_WBGAIN], st_b[S_WBGAIN]
    now = n0 % ring  # the ring slot of sample n, kept as a counter
    for i in range(n_samples):
        ra, wa, grd_a, cs_a = _control_step(meout[ea, i], carrier[ca, 0, i], carrier[ca, 1, i], cs_a, gain_a, ka,
                                            tdres, x0, shift, ohc_c1, ohc_c2)
        rb, wb, grd_b, cs_b = _control_step(meout[eb, i], carrier[cb, 0, i], carrier[cb, 1, i], cs_b, gain_b, kb,
                                            tdres, x0, shift, ohc_c1, ohc_c2)
        if grd_a < 0 or grd_a >= ring or grd_b < 0 or grd_b >= ring:
            return GROUP_DELAY_OUT_OF_RANGE
        gain_a = _schedule(slots_a, now, grd_a, wa, gain_a)
        gain_b = _schedule(slots_b, now, grd_b, wb, gain_b)
        now = now + 1 if now + 1 < ring else 0
        rsigma[0, i] = ra
        rsigma[1, i] = rb
    _store_control(st_a, cs_a, gain_a)
    _store_control(st_b, cs_b, gain_b)
    return OK


@njit(cache=True, nogil=True, error_model="numpy")
def _signal_path(x, k, st, rsigma, cihc, ihc_cutoff, ihc_order, tdres, work, out):
    """C1 (poles moved by rsigma), C2, the transduction and the IHC lowpass of one fibre."""
    n_samples = x.shape[0]
    p1y = k[K_IPW]
    p5y = p1y - k[K_IPB]
    p3y = (p1y + p5y) * 0.5
    omega, sigma0, rpa, init_phase = k[K_OMEGA], k[K_SIGMA0], k[K_RPA], k[K_INIT_PHASE]
    p1x, p3x, p5x, rzero = work[0], work[1], work[2], work[3]
    for i in range(n_samples):  # C1ChirpFilt: the poles and the zero that keeps the phase
        a = -sigma0 - rsigma[i]
        b = a - rpa
        m = (a + b) * 0.5
        t1 = math.atan((omega - p1y) / (-a))
        u1 = math.atan((omega + p1y) / (-a))
        t3 = math.atan((omega - p3y) / (-m))
        u3 = math.atan((omega + p3y) / (-m))
        t5 = math.atan((omega - p5y) / (-b))
        u5 = math.atan((omega + p5y) / (-b))
        phi = 0.0 - t1 - u1 - t3 - u3 - t5 - u5 - t1 - u1 - t5 - u5
        rzero[i] = -omega / math.tan((init_phase - phi) / 5)
        p1x[i], p3x[i], p5x[i] = a, m, b
    fs, norm_gain = k[K_FS], k[K_NORM_GAIN]
    c1, c2 = work[4], work[5]
    _chirp_pass(x, p1x, p3x, p5x, rzero, p1y, p3y, p5y, fs, st[S_C1: S_C1 + 12], c1)
    for row, value in ((0, k[K_C2_POLES]), (1, k[K_C2_POLES + 2]), (2, k[K_C2_POLES + 4]), (3, k[K_C2_RZERO])):
        work[row, :] = value
    _chirp_pass(x, p1x, p3x, p5x, rzero, k[K_C2_POLES + 1], k[K_C2_POLES + 3], k[K_C2_POLES + 5], fs,
                st[S_C2: S_C2 + 12], c2)
    strength = 20.0e6 / math.pow(10.0, 80.0 / 20)
    cf = k[K_CF]
    for i in range(n_samples):  # NLogarithm of each path, C1 asymmetric, C2 squared and CF-weighted
        c1out = c1[i] * norm_gain / 4.0
        c2out = c2[i] * norm_gain / 4.0
        c1v = _nl_logarithm(cihc * c1out, 0.1, 3.0, strength)
        c2v = -_nl_logarithm(c2out * abs(c2out) * cf / 10 * cf / 2e3, 0.2, 1.0, strength)
        c1[i] = (c1v + c2v) * 1.0
    _ihc_lowpass(c1, st[S_IHC: S_IHC + MAX_IHC_ORDER + 1], ihc_cutoff, ihc_order, tdres, out)


@njit(cache=True, nogil=True, error_model="numpy")
def _chirp_pass(x, p1x, p3x, p5x, rzero, p1y, p3y, p5y, fs, hist, y):
    """The five sections (p1, p3, p5, p1, p5) of C1ChirpFilt's / C2ChirpFilt's time loop over
    the chunk; hist: x[n-1], x[n-2], then each section's y[n-1], y[n-2], carried over."""
    ax1, ax2, a1o, a1p, a2o, a2p, a3o, a3p, a4o, a4p, a5o, a5p = (
        hist[0], hist[1], hist[2], hist[3], hist[4], hist[5], hist[6], hist[7], hist[8], hist[9], hist[10], hist[11])
    for i in range(x.shape[0]):
        xi, rz = x[i], rzero[i]
        y1 = _chirp_section(xi, ax1, ax2, a1o, a1p, fs, p1x[i], p1y, rz)
        y2 = _chirp_section(y1, a1o, a1p, a2o, a2p, fs, p3x[i], p3y, rz)
        y3 = _chirp_section(y2, a2o, a2p, a3o, a3p, fs, p5x[i], p5y, rz)
        y4 = _chirp_section(y3, a3o, a3p, a4o, a4p, fs, p1x[i], p1y, rz)
        y5 = _chirp_section(y4, a4o, a4p, a5o, a5p, fs, p5x[i], p5y, rz)
        ax2, ax1 = ax1, xi
        a1p, a1o, a2p, a2o, a3p, a3o, a4p, a4o, a5p, a5o = a1o, y1, a2o, y2, a3o, y3, a4o, y4, a5o, y5
        y[i] = y5
    (hist[0], hist[1], hist[2], hist[3], hist[4], hist[5], hist[6], hist[7], hist[8], hist[9], hist[10],
     hist[11]) = ax1, ax2, a1o, a1p, a2o, a2p, a3o, a3p, a4o, a4p, a5o, a5p


@njit(cache=True, nogil=True, error_model="numpy")
def _ihc_lowpass(x, last, cutoff, order, tdres, out):
    """IhcLowPass (``order`` one-poles) stage by stage over the chunk, x -> out (x is overwritten):
    ihc[j+1][n] = c1 ihc[j+1][n-1] + c2 (ihc[j][n] + ihc[j][n-1]); last: ihcl[0..order], carried over."""
    c = 2.0 / tdres
    c1 = (c - TWOPI * cutoff) / (c + TWOPI * cutoff)
    c2 = TWOPI * cutoff / (TWOPI * cutoff + c)
    n = x.shape[0]
    if n == 0:
        return
    for j in range(order):
        x_prev, y_prev = last[j], last[j + 1]
        for i in range(n):
            xi = x[i]
            y_prev = c1 * y_prev + c2 * (xi + x_prev)
            x_prev = xi
            x[i] = y_prev
        last[j] = x_prev
    last[order] = x[n - 1]
    out[:] = x


class CompiledPeriphery:
    """The compiled middle ear .. IHC lowpass of ``n_ears`` ears x the CFs, from rest; each call
    takes the next chunk of the sound and carries every state over."""

    def __init__(self, cf, tdres, cohc, bandwidth_scale_factor, n_ears, ring, cihc, ihc_cutoff, ihc_order):
        self.consts = all_cf_constants(np.asarray(cf, dtype=np.float64), tdres, np.asarray(cohc, dtype=np.float64),
                                       np.broadcast_to(np.asarray(bandwidth_scale_factor, dtype=np.float64), np.shape(cf)))
        n_cf = self.consts.shape[0]
        self.tdres, self.cihc, self.ihc_cutoff, self.ihc_order = tdres, float(cihc), float(ihc_cutoff), int(ihc_order)
        self.me = np.zeros((n_ears, N_ME_STATE))
        self.fibre = np.zeros((n_ears, n_cf, N_STATE))
        self.fibre[:, :, S_TAUWB] = self.consts[:, K_TAUWB0]
        self.fibre[:, :, S_WBGAIN] = self.consts[:, K_WBGAIN0]
        self.gains = np.zeros((n_ears, n_cf, ring))
        self.gains[:, :, 0] = self.consts[:, K_WBGAIN0]  # tmpgain[0] = wbgain
        self.n = 0  # samples so far

    def __call__(self, pin: np.ndarray) -> np.ndarray:
        """pin (ears, K) Pa -> IHC lowpass output (ears, CFs, K), before the path delay."""
        meout = np.empty_like(pin)
        middle_ear_chunk(pin, self.me, self.n, self.tdres, meout)
        out = np.empty((pin.shape[0], self.consts.shape[0], pin.shape[1]))
        status = ihc_chunk(meout, self.consts, self.cihc, self.ihc_cutoff, self.ihc_order, self.tdres, self.n,
                           self.fibre, self.gains, out)
        if status != OK:
            raise ValueError("a control-path group delay fell outside the range this CF's parameters allow")
        self.n += pin.shape[1]
        return out
