"""IHC-AN synapse of BEZ2018 (Bruce, Erfani & Zilany 2018), as ``Synapse`` in the authors' wrapper.

Per fibre (CF x spontaneous rate): the cf- and spont-dependent mapping of the IHC potential,
the delayed and end-extended power-law input, its decimation to 10 kHz (the wrapper's
``decimate`` callback: ``filtfilt`` with an 11-tap Hamming FIR, every 10th sample), approximate
power-law adaptation (``implnt=0``: the two IIR approximations of the slow and fast power-law
kernels inside the rectifying feedback loops), fractional Gaussian noise (``noiseType`` 1) on
the slow branch, and linear interpolation back to 100 kHz with the cf-dependent delay removed.

Sizes follow the C code's arithmetic exactly (``floor``/``ceil`` of the same double products),
because they decide how many random numbers the wrapper draws.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.signal
import torch

from .dispatch import use_compiled
from .fgn import SAMP_FREQ, fgn_sizes, fractional_gaussian_noise

_ALPHA1, _ALPHA2 = 1.5e-6 * 100e3, 1e-2 * 100e3
# Approximate power-law kernels (implnt=0): cascades of second-order sections
# (gain, b1, b2, a1, a2): y[k] = a1*y[k-1] + a2*y[k-2] + gain*(x[k] + b1*x[k-1] + b2*x[k-2]),
# published constants, evaluated in the C code's operation order (gain 1 is left out there).
_SLOW_SECTIONS = (
    (0.2, -0.173492003319319, 0.000000172983796, 0.491115852967412, -0.055050209956838),
    (None, -0.803462163297112, 0.154962026341513, 1.084520302502860, -0.288760329320566),
    (None, -1.416084732997016, 0.496615555008723, 1.588427084535629, -0.628138993662508),
    (None, -1.830362725074550, 0.836399964176882, 1.886287488516458, -0.888972875389923),
    (None, -1.983165053215032, 0.983193027347456, 1.989549282714008, -0.989558985673023),
)
_FAST_SECTIONS = (
    (1.0e-3, -0.994466986569624, 0.000000000002347, 1.992127932802320, -0.992140616993846),
    (None, -1.997855276593802, 0.997855827934345, 1.999195329360981, -0.999195402928777),
    (None, 0.798261718184977, 0.199131619874064, -0.798261718183851, -0.199131619873480),
)


@contextmanager
def sequential_loop_threads():
    """One intra-op thread while a per-sample loop runs: its tensor ops are tiny, and with more
    threads each op pays a thread hand-off (measured 7x to 40x slower on a loaded 2-core CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SynapseError(ValueError):
    """Bad synapse settings."""


@dataclass(frozen=True)
class FibreGeometry:
    """Lengths the C code derives for one CF (all at 100 kHz unless named ``*_10k``)."""

    delaypoint: int   # cf-dependent synaptic delay in samples
    n_in: int         # length of the power-law input (n + 3 * delaypoint)
    n_pla: int        # power-law adaptation steps at 10 kHz
    n_noise: int      # fGn samples requested at 10 kHz
    n_read: int       # leading 10 kHz steps the 100 kHz output reads (the adaptation is causal)


def resample_factor(tdres: float) -> int:
    return int(math.ceil(1.0 / (tdres * SAMP_FREQ)))


def fibre_geometry(cf: float, n: int, tdres: float) -> FibreGeometry:
    dp = int(math.floor(7500.0 / (cf / 1e3)))
    span = float(n + 2 * dp) * tdres * SAMP_FREQ
    n_pla = int(math.floor(span))
    q = resample_factor(tdres)
    # upsample_delayed interpolates 10 kHz samples z, z + 1 for z = (dp + i) // q, i < n
    return FibreGeometry(dp, n + 3 * dp, n_pla, int(math.ceil(span)), min(n_pla, (dp + n - 1) // q + 2))


def mapping_constants(cf: float, spont: float) -> tuple[float, float]:
    """(cf_factor, multFac) of the IHC-to-synapse mapping, in C double arithmetic (libm)."""
    cfslope = math.pow(spont, 0.19) * math.pow(10, -0.87)
    lsp = math.log10(spont)
    cfconst = 0.1 * math.pow(lsp, 2) + 0.56 * lsp - 0.84
    cfsat = math.pow(10, cfslope * 8965.5 / 1e3 + cfconst)
    cf_factor = min(cfsat, math.pow(10, cfslope * cf / 1e3 + cfconst)) * 2.0
    mult_fac = max(2.95 * max(1.0, 1.5 - spont / 100), 4.3 - 0.2 * cf / 1e3)
    return cf_factor, mult_fac


def power_law_input(vihc: torch.Tensor, spont: torch.Tensor, cf_factor: torch.Tensor,
                    mult_fac: torch.Tensor, dp: int, tail: int | None = None) -> torch.Tensor:
    """Mapped IHC potential plus 3*spont, delayed by ``dp`` and extended by ``2*dp`` (..., n + 3dp).

    vihc (..., n); spont, cf_factor, mult_fac broadcast against (..., 1). The tail keeps adding
    3*spont per sample, as the C code does (a sequential ramp, reproduced with a cumsum);
    ``tail`` gives only its first samples (default: all 2*dp).
    """
    tail = 2 * dp if tail is None else tail
    # in place on one (..., n) buffer per spont (the same operations; the sign is a product
    # with +-1, exact)
    x = (vihc.abs() * cf_factor).log10_().mul_(0.9).add_(mult_fac)
    mapped = torch.pow(10.0, x, out=x).mul_(torch.where(vihc < 0, -1.0, 1.0)).add_(3.0 * spont)
    head = mapped[..., :1].expand(*mapped.shape[:-1], dp)
    steps = (3.0 * spont).expand(*mapped.shape[:-1], tail)
    tail = torch.cumsum(torch.cat([mapped[..., -1:], steps], dim=-1), dim=-1)[..., 1:]
    return torch.cat([head, mapped, tail], dim=-1)


# Samples of constant head the decimation window keeps: more than filtfilt's odd extension
# (3 * 11 + 1) and the filter's reach (10) need, so the window's edge sees what the full head gives.
_HEAD_KEEP = 40


def decimated_power_law_input(vihc: torch.Tensor, spont: torch.Tensor, cf_factor: torch.Tensor,
                              mult_fac: torch.Tensor, dp: int, q: int, k: int) -> torch.Tensor:
    """``decimate(power_law_input(...), q)[..., :k]`` without building the long padded input.

    The head is ``dp`` copies of the first mapped sample: every decimated sample whose filter
    reach (+-10 samples, both passes) lies in it is the same number, so the head is cut to
    ``_HEAD_KEEP`` samples (at a multiple of q) and its first output repeated; the tail is cut
    where the last wanted output stops reaching (filtfilt's end extension then touches nothing
    wanted). Same operations on the same values as the full-length call."""
    n = vihc.shape[-1]
    skip = max(0, (dp - _HEAD_KEEP) // q) * q
    tail = max(0, min(2 * dp, (k - 1) * q + q + 11 - (dp + n)))
    window = power_law_input(vihc, spont, cf_factor, mult_fac, dp - skip, tail)
    y = decimate(window, q)
    head = y[..., :1].expand(*y.shape[:-1], skip // q)
    return torch.cat([head, y], dim=-1)[..., :k]


@lru_cache(maxsize=4)
def _decimation_fir(q: int) -> np.ndarray:
    return scipy.signal.firwin(q + 1, 1.0 / q, window="hamming")


def decimate(x: torch.Tensor, q: int) -> torch.Tensor:
    """``scipy.signal.filtfilt(firwin(q+1, 1/q, 'hamming'), [1], x)[..., ::q]`` along the last dim.

    filtfilt's defaults: odd extension by 3*len(b) samples, each pass started in the steady
    state of its first input sample (for an FIR: that sample repeated into the past).
    On the CPU a compiled loop (``compiled_synapse``), elsewhere tensor ops (``decimate_tensor_ops``).
    """
    pad = 3 * (q + 1)
    if x.shape[-1] <= pad:
        raise SynapseError(f"decimate needs more than {pad} samples, got {x.shape[-1]}")
    if not use_compiled(x):
        return decimate_tensor_ops(x, q)
    from . import compiled_synapse  # noqa: PLC0415  (numba: imported when first needed)

    rows = x.detach().reshape(-1, x.shape[-1]).to(torch.float64).contiguous().numpy()
    out = np.empty((rows.shape[0], -(-x.shape[-1] // q)))
    compiled_synapse.fir_filtfilt_decimate_rows(rows, _decimation_fir(q), q, out.shape[1], out)
    return torch.from_numpy(out).reshape(*x.shape[:-1], -1)


def decimate_tensor_ops(x: torch.Tensor, q: int) -> torch.Tensor:
    """``decimate`` as tensor ops on x's device."""
    b = torch.as_tensor(_decimation_fir(q), dtype=x.dtype, device=x.device)
    pad = 3 * b.numel()
    lead, n = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, 1, n)
    first, last = flat[..., :1], flat[..., -1:]
    ext = torch.cat([2 * first - flat[..., 1:pad + 1].flip(-1), flat, 2 * last - flat[..., -pad - 1:-1].flip(-1)], dim=-1)
    fwd = _fir_from_steady_state(ext, b).flip(-1)
    # backward pass only where the decimated output is read: ext index pad + j*q, i.e.
    # reversed index m = len - 1 - pad - j*q
    m = ext.shape[-1] - 1 - pad - torch.arange(0, n, q, device=x.device)
    y = _fir_from_steady_state(fwd, b, at=m)
    return y.reshape(*lead, -1)


def _fir_from_steady_state(x: torch.Tensor, b: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
    """lfilter(b, [1], x) started as if x[0] had always been the input (at output indices
    ``at`` only, if given); taps are summed from the oldest to the newest, the order of
    lfilter's transposed direct form."""
    nb, n = b.numel(), x.shape[-1]
    xp = torch.cat([x[..., :1].expand(*x.shape[:-1], nb - 1), x], dim=-1)
    if at is None:
        # one product buffer reused over the taps (these are long arrays: fresh ones cost
        # page faults); b[k] * x, then + acc, as before
        acc = b[nb - 1] * xp[..., :n]
        prod = torch.empty_like(acc)
        for k in range(nb - 2, -1, -1):
            acc.add_(torch.mul(xp[..., nb - 1 - k: nb - 1 - k + n], b[k], out=prod))
        return acc
    acc = b[nb - 1] * xp.index_select(-1, at)
    for k in range(nb - 2, -1, -1):
        acc = b[k] * xp.index_select(-1, at + (nb - 1 - k)) + acc
    return acc


def _sections_step(sections, x_now, x_hist, y_hist):
    """Advance a cascade one sample: x_hist/y_hist hold (k-1, k-2) values per section."""
    for i, (gain, b1, b2, a1, a2) in enumerate(sections):
        feedback = a1 * y_hist[i][0] + a2 * y_hist[i][1]
        if gain is None:
            y_now = feedback + x_now + b1 * x_hist[i][0] + b2 * x_hist[i][1]
        else:
            y_now = feedback + gain * (x_now + b1 * x_hist[i][0] + b2 * x_hist[i][1])
        x_hist[i] = (x_now, x_hist[i][0])
        y_hist[i] = (y_now, y_hist[i][0])
        x_now = y_now
    return x_now


@lru_cache(maxsize=1)
def _adaptation_matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two kernels' state update as matrices: state' = state @ A + sout @ B, I = state @ C.

    State: each section's input and output at k-1 and k-2 (slow then fast branch); A, B found
    by running one step of the sections' recurrences on unit vectors (the map is linear)."""
    layout = [(secs, 2 * len(secs)) for secs in (_SLOW_SECTIONS, _FAST_SECTIONS)]
    dim = sum(2 * size for _, size in layout)

    def step(state: np.ndarray, sout: np.ndarray):
        out, at, feedback = [], 0, []
        for branch, (secs, size) in enumerate(layout):
            hist = state[at:at + 2 * size].reshape(len(secs), 2, 2)  # section, (x, y), (k-1, k-2)
            x_hist = [tuple(h[0]) for h in hist]
            y_hist = [tuple(h[1]) for h in hist]
            feedback.append(y_hist[-1][0])
            _sections_step(secs, sout[branch], x_hist, y_hist)
            out.append(np.array([[x_hist[i], y_hist[i]] for i in range(len(secs))]).reshape(-1))
            at += 2 * size
        return np.concatenate(out), np.array(feedback)

    eye = np.eye(dim)
    a = np.stack([step(eye[i], np.zeros(2))[0] for i in range(dim)])
    b = np.stack([step(np.zeros(dim), np.eye(2)[j])[0] for j in range(2)])
    c = np.stack([step(eye[i], np.zeros(2))[1] for i in range(dim)])
    return a, b, c


@lru_cache(maxsize=1)
def _adaptation_step_matrix() -> np.ndarray:
    """W (34, 34): [state, sout] @ W = [state', -alpha * I'] (next state, next feedback)."""
    a, b, c = _adaptation_matrices()
    ab = np.concatenate([a, b])
    return np.concatenate([ab, (ab @ c) * -np.array([_ALPHA1, _ALPHA2])], axis=1)


def power_law_adaptation(samp_ihc: torch.Tensor, noise: torch.Tensor, lengths=None) -> torch.Tensor:
    """Approximate power-law adaptation (implnt=0) along the last dim, at 10 kHz.

    samp_ihc, noise (..., K). Slow branch: sout1 = max(0, in + noise - alpha1 * I1), fast:
    sout2 = max(0, in - alpha2 * I2); I1, I2 the kernels' outputs up to the previous sample.
    lengths (rows,): steps each row needs (default all K); the rest of a row is 0. Returns
    sout1 + sout2 (..., K). On the CPU the C code's loop compiled (``compiled_synapse``), elsewhere
    ``power_law_adaptation_tensor_ops``.
    """
    if not use_compiled(samp_ihc):
        return power_law_adaptation_tensor_ops(samp_ihc, noise, lengths)
    from . import compiled_synapse  # noqa: PLC0415

    lead, k_all = samp_ihc.shape[:-1], samp_ihc.shape[-1]
    samp = samp_ihc.reshape(-1, k_all).to(torch.float64).contiguous().numpy()
    drive = noise.reshape(-1, k_all).to(torch.float64).contiguous().numpy()
    steps = np.full(samp.shape[0], k_all, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    out = np.empty_like(samp)
    compiled_synapse.power_law_adaptation_rows(samp, drive, steps, out)
    return torch.from_numpy(out).reshape(*lead, k_all)


def power_law_adaptation_tensor_ops(samp_ihc: torch.Tensor, noise: torch.Tensor, lengths=None) -> torch.Tensor:
    """``power_law_adaptation`` as tensor ops on the inputs' device.

    The kernels' second-order sections and both feedbacks run as one (rows, 34) x (34, 34)
    matrix product per sample into preallocated buffers (four tensor ops per sample; float64
    rounding of a different operation order than the C code's). Rows past their length cost
    nothing (rows are processed longest first, the loop narrowing to the rows still running).
    """
    lead, k_all = samp_ihc.shape[:-1], samp_ihc.shape[-1]
    samp_ihc, noise = samp_ihc.reshape(-1, k_all), noise.reshape(-1, k_all)
    f, opts = samp_ihc.shape[0], dict(dtype=samp_ihc.dtype, device=samp_ihc.device)
    lengths = np.full(f, k_all) if lengths is None else np.minimum(np.asarray(lengths, dtype=np.int64), k_all)
    order = np.argsort(-lengths, kind="stable")
    idx = torch.as_tensor(order, device=samp_ihc.device)
    w = torch.as_tensor(_adaptation_step_matrix(), **opts)
    dim = w.shape[0] - 2
    drive = torch.stack([samp_ihc + noise, samp_ihc], dim=0)[:, idx].permute(2, 1, 0).contiguous()  # (K, F, 2)
    souts = torch.zeros(k_all, f, 2, **opts)
    z, z_next = torch.zeros(f, dim + 2, **opts), torch.empty(f, dim + 2, **opts)
    active = (lengths[order][None, :] > np.arange(k_all)[:, None]).sum(axis=1) if f else np.zeros(k_all, int)
    with sequential_loop_threads():
        for k in range(k_all):
            r = int(active[k])
            if r == 0:
                break
            sout = souts[k, :r]
            if k:
                torch.mm(z[:r], w, out=z_next[:r])
                z, z_next = z_next, z
                torch.add(drive[k, :r], z[:r, dim:], out=sout)
            else:
                sout.copy_(drive[0, :r])
            sout.clamp_min_(0.0)
            z[:r, dim:] = sout
    out = torch.empty(f, k_all, **opts)
    out[idx] = souts.sum(dim=2).T
    return out.reshape(*lead, -1)


def upsample_delayed(syn_10k: torch.Tensor, n_pla: int, resamp: int, dp: int, n: int) -> torch.Tensor:
    """Linear interpolation of the first ``n_pla`` 10 kHz samples to 100 kHz, delay ``dp`` removed.

    Samples past the interpolated range stay 0, as in the C code's zeroed buffer.
    """
    p = torch.arange(dp, dp + n, device=syn_10k.device)
    z, b = p // resamp, (p % resamp).to(syn_10k.dtype)
    valid = z < n_pla - 1
    z = torch.clamp(z, max=min(n_pla, syn_10k.shape[-1]) - 2)
    s0, s1 = syn_10k[..., z], syn_10k[..., z + 1]
    return torch.where(valid, s0 + b * ((s1 - s0) / resamp), torch.zeros_like(s0))


class SynapseBank:
    """The synapse of every fibre of a set of ears, rows in the wrapper's order (ear, CF, spont).

    Holds the noise-free 10 kHz power-law input of each row; `synout` adds a row's fGn, runs the
    adaptation and returns the 100 kHz synapse output.
    vihc (E, C, N) float64 at 1/tdres; cf (C,) Hz; spont (S,) spikes/s.
    """

    def __init__(self, vihc: torch.Tensor, cf, spont, tdres: float):
        n_ears, n_cf, n = vihc.shape
        self.n, self.tdres, self.q = n, tdres, resample_factor(tdres)
        self.cf, self.spont = [float(c) for c in cf], [float(s) for s in spont]
        if len(self.cf) != n_cf:
            raise SynapseError(f"vihc has {n_cf} CFs but {len(self.cf)} were given")
        self.geoms = [fibre_geometry(c, n, tdres) for c in self.cf]
        n_sp, dev = len(self.spont), vihc.device
        opts = dict(dtype=torch.float64, device=dev)
        sp = torch.tensor(self.spont, **opts)[:, None]
        k_max = max(g.n_read for g in self.geoms)
        samp = torch.zeros(n_ears, n_cf, n_sp, k_max, **opts)
        for c, g in enumerate(self.geoms):
            consts = torch.tensor([mapping_constants(self.cf[c], s) for s in self.spont], **opts)
            samp[:, c, :, : g.n_read] = decimated_power_law_input(
                vihc[:, c, None, :], sp, consts[:, :1], consts[:, 1:], g.delaypoint, self.q, g.n_read)
        self.samp = samp.reshape(-1, k_max)
        rows = torch.arange(self.samp.shape[0], device=dev)
        self.cf_of_row = ((rows // n_sp) % n_cf).tolist()
        self.spont_of_row = torch.tensor(self.spont, **opts).repeat(n_ears * n_cf)
        self.nfft = [fgn_sizes(g.n_noise)[2] for g in self.geoms]

    @property
    def n_rows(self) -> int:
        return self.samp.shape[0]

    def nfft_of_row(self, r: int) -> int:
        return self.nfft[self.cf_of_row[r]]

    def noise(self, normals: torch.Tensor, start: int = 0) -> torch.Tensor:
        """fGn of rows start.. from their normals (rows, 2, >= nfft of the row's CF)."""
        out = torch.zeros(normals.shape[0], self.samp.shape[1], dtype=torch.float64, device=normals.device)
        cfs = torch.tensor(self.cf_of_row[start:start + normals.shape[0]])
        for c in sorted(set(cfs.tolist())):
            sel = torch.nonzero(cfs == c)[:, 0].to(normals.device)
            g = self.geoms[c]
            sp = self.spont_of_row[start + sel][:, None]
            y = fractional_gaussian_noise(normals[sel, :, : self.nfft[c]], g.n_noise, sp)
            out[sel, : min(g.n_noise, out.shape[1])] = y[:, : out.shape[1]]
        return out

    def adapted(self, rows: slice, noise: torch.Tensor | None) -> torch.Tensor:
        """10 kHz synapse output (sout1 + sout2) of ``rows`` (steps of the longest row among them)."""
        lengths = [self.geoms[c].n_read for c in self.cf_of_row[rows]]
        samp = self.samp[rows, : max(lengths)]
        noise = torch.zeros_like(samp) if noise is None else noise[:, : samp.shape[1]]
        return power_law_adaptation(samp, noise, lengths)

    def synout(self, rows: slice, adapted: torch.Tensor) -> torch.Tensor:
        """100 kHz synapse output of ``rows`` from their `adapted` 10 kHz output."""
        out = torch.empty(adapted.shape[0], self.n, dtype=torch.float64, device=adapted.device)
        cfs = torch.tensor(self.cf_of_row[rows])
        for c in sorted(set(cfs.tolist())):
            sel = torch.nonzero(cfs == c)[:, 0].to(adapted.device)
            g = self.geoms[c]
            out[sel] = upsample_delayed(adapted[sel], g.n_pla, self.q, g.delaypoint, self.n)
        return out
