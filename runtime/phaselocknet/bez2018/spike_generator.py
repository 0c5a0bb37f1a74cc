"""BEZ2018 spike generator (Bruce et al. 2018) as far as the mean rate needs it.

The analytic mean rate of the wrapper uses the *mean redocking time* of one simulated spike
train: four release sites, each redocking after an exponential time of mean ``trd`` and then
releasing after a unit-rate interval of the synapse output; every redocking event raises
``trd`` by 0.4 ms, which otherwise relaxes to 14 ms with a 60 ms time constant; releases
outside the refractory period are spikes and draw a new refractory period. The C code steps
this at 100 kHz; here it is simulated event by event (releases and redocking jumps; at most one
event per fibre per iteration, all fibres in parallel), with the C code's step arithmetic:
the same random number for the same purpose, the same integer step of each event (its
accumulated elapsed time, ``floor`` of redocking time / step, integer unit-rate intervals), and
the same order of events within a step (site 0..3; a site's jump before its release).
Between events ``trd`` decays geometrically, evaluated in closed form.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .synapse import sequential_loop_threads

N_SITES = 4
T_RD_REST = 14.0e-3
T_RD_JUMP = 0.4e-3
TAU_RD = 60.0e-3
_NEVER = torch.iinfo(torch.int64).max // 4


def t_rd_init(spont: float) -> float:
    return T_RD_REST + 0.02e-3 * spont - T_RD_JUMP


@lru_cache(maxsize=8)
def elapsed_tables(n_steps: int, tdres: float) -> tuple[np.ndarray, np.ndarray]:
    """Elapsed time after m steps of ``elapsed += tdres`` (sequential sums, as in C), and the
    C code's ``floor(elapsed / tdres)`` of each."""
    elapsed = np.concatenate([[0.0], np.cumsum(np.full(n_steps, tdres))])
    return elapsed, np.floor(elapsed / tdres).astype(np.int64)


@dataclass
class SpikeGeneratorResult:
    trd: torch.Tensor        # (F, N) mean redocking time after each step (s)
    draws: torch.Tensor      # (F,) random numbers consumed
    spikes: torch.Tensor     # (F,) spikes at t >= 0


def _unit_rate_release(cpos, quarter0, a, units, n):
    """First step j >= a at which the synapse output summed from step a reaches ``units``.

    Steps before 0 see synout[0] (``quarter0`` = synout[0] / 4 per step); cpos (F, N) is the
    cumulative sum of synout / 4 from step 0."""
    f = cpos.shape[0]
    u = units.to(cpos.dtype)
    n_need = torch.where(quarter0 > 0, torch.ceil(u / quarter0), torch.full_like(u, float("inf")))
    in_negative = (a < 0) & (a.to(u.dtype) + n_need - 1 < 0)
    j_negative = a + torch.where(in_negative, n_need, torch.zeros_like(n_need)).to(torch.int64) - 1
    before = torch.where(a > 0, cpos.gather(1, (a - 1).clamp(0, n - 1)[:, None])[:, 0], torch.zeros_like(u))
    target = torch.where(a < 0, u - (-a).to(u.dtype) * quarter0, before + u)
    j_positive = torch.searchsorted(cpos, target[:, None].contiguous())[:, 0]
    j = torch.where(in_negative, j_negative, j_positive)
    j = torch.where(units == 0, torch.full_like(j, -1), j)  # filled in by the caller (release at k + 1)
    return torch.where((j >= n) | (a >= n), torch.full((f,), _NEVER, dtype=j.dtype, device=j.device), j)


class _Fibres:
    """Event state of F fibres x 4 sites."""

    def __init__(self, synout, rand, t_init, tdres, tabs, trel):
        f, n = synout.shape
        dev, dt = synout.device, synout.dtype
        self.synout, self.rand, self.n, self.tdres, self.tabs, self.trel = synout, rand, n, tdres, tabs, trel
        self.t_init = t_init
        self.cpos = torch.cumsum(synout / N_SITES, dim=1)
        self.quarter0 = synout[:, 0] / N_SITES
        elapsed, floors = elapsed_tables(max(2 * n, 1 << 18) + 4, tdres)
        self.elapsed = torch.as_tensor(elapsed, dtype=dt, device=dev)
        self.floors = torch.as_tensor(floors, device=dev)
        pre, ptr = self._initial_releases(synout, rand, t_init, tdres)
        self.r_prev = pre.to(torch.int64)                 # step of each site's last release
        self.prev_rel = pre * tdres                       # its time (s)
        self.refractory_end = pre[:, 0] * tdres
        self.keys = torch.full((f, N_SITES, 3), _NEVER, dtype=torch.int64, device=dev)
        self.keys[:, :, 2] = self._key(self.r_prev, torch.arange(N_SITES, device=dev), 1)  # forced first releases
        self.ptr = ptr + 1  # one more draw: the initial refractory period, which nothing uses
        self.v_last = t_init.clone()
        self.s_last = torch.zeros(f, dtype=torch.int64, device=dev)
        self.rd_first = torch.zeros(f, dtype=torch.bool, device=dev)
        self.spikes = torch.zeros(f, dtype=torch.int64, device=dev)
        self.decay = 1.0 - tdres / TAU_RD

    @staticmethod
    def _initial_releases(synout, rand, t_init, tdres):
        """Sorted initial release steps and the buffer position after them.

        The C code takes ``__max(-N, ceil(...log(rand[i++])...))`` through a macro that evaluates
        its winning argument twice: when the draw gives a step after -N, a *second* random number
        is drawn and its step is used (unclamped). Reproduced as such."""
        n = synout.shape[1]
        mean_wait = N_SITES / torch.clamp_min(synout[:, 0], 0.1) + t_init
        ptr = torch.full_like(synout[:, 0], N_SITES, dtype=torch.int64)
        steps = []
        for _ in range(N_SITES):
            r = rand.gather(1, torch.stack([ptr, ptr + 1], 1).clamp(max=rand.shape[1] - 1))
            first, second = (torch.ceil(mean_wait[:, None] * torch.log(r) / tdres)).unbind(1)
            clamped = -float(n) > first
            steps.append(torch.where(clamped, torch.full_like(first, -float(n)), second))
            ptr = ptr + torch.where(clamped, 1, 2)
        return torch.sort(torch.stack(steps, 1), dim=1).values, ptr

    @staticmethod
    def _key(step, site, kind):
        return torch.where(step >= _NEVER, torch.full_like(step, _NEVER), step * 8 + site * 2 + kind)

    def trd_before(self, step):
        n_decays = torch.clamp_min(step - 1 - self.s_last, 0).to(self.v_last.dtype)
        decayed = T_RD_REST + (self.v_last - T_RD_REST) * torch.pow(self.decay, n_decays)
        return torch.where(self.rd_first, decayed, self.t_init)

    def jump(self, mask, step, trd_now):
        self.v_last = torch.where(mask, trd_now + T_RD_JUMP, self.v_last)
        self.s_last = torch.where(mask, step, self.s_last)
        self.rd_first = self.rd_first | mask

    def release(self, mask, site, step, trd_now):
        rows = torch.arange(step.shape[0], device=step.device)
        r = self.rand.gather(1, torch.clamp(self.ptr[:, None] + torch.arange(3, device=step.device), max=self.rand.shape[1] - 1))
        osr = -trd_now * torch.log(r[:, 0])
        gap = step - self.r_prev[rows, site]
        # Initial releases may lie far before -N (see _initial_releases); past the table the
        # accumulated elapsed time is taken as gap * tdres (it only places that one release time).
        in_table = gap < self.elapsed.numel()
        elapsed = torch.where(in_table, self.elapsed[gap.clamp(0, self.elapsed.numel() - 1)], gap.to(osr.dtype) * self.tdres)
        rel = self.prev_rel[rows, site] + elapsed
        spike = mask & (rel >= self.refractory_end)
        syn_k = self.synout[rows, step.clamp(0, self.n - 1)]
        trel_k = torch.clamp_max(self.trel * 100 / syn_k, self.trel)
        self.refractory_end = torch.where(spike, rel + (self.tabs - trel_k * torch.log(r[:, 1])), self.refractory_end)
        self.spikes += (spike & (rel >= 0)).to(torch.int64)
        units = torch.trunc(-torch.log(torch.where(spike, r[:, 2], r[:, 1])) / self.tdres).to(torch.int64)
        self.ptr = torch.where(mask, self.ptr + 2 + spike.to(torch.int64), self.ptr)
        sel = mask[:, None] & (torch.arange(N_SITES, device=step.device) == site[:, None])
        self.prev_rel = torch.where(sel, rel[:, None], self.prev_rel)
        self.r_prev = torch.where(sel, step[:, None], self.r_prev)
        self._schedule(sel, site, step, osr, units)

    def _schedule(self, sel, site, step, osr, units):
        top = self.floors.numel() - 2
        red = torch.clamp(torch.floor(osr / self.tdres), -1, top).to(torch.int64)
        jumps = []
        for m in (red, red + 1):
            hit = (red >= 0) & (self.floors[m.clamp(0, top + 1)] == red)
            jumps.append(torch.where(hit & (step + 1 + m < self.n), step + 1 + m, torch.full_like(m, _NEVER)))
        first_full = torch.searchsorted(self.elapsed, osr.contiguous())
        a = step + torch.clamp_min(first_full, 1)  # step + 1 + (first_full - 1)
        nxt = _unit_rate_release(self.cpos, self.quarter0, a, units, self.n)
        nxt = torch.where(units == 0, torch.where(step + 1 < self.n, step + 1, _NEVER), nxt)
        new = torch.stack([self._key(jumps[0], site, 0), self._key(jumps[1], site, 0), self._key(nxt, site, 1)], 1)
        self.keys = torch.where(sel[:, :, None], new[:, None, :], self.keys)


def redocking_times(synout: torch.Tensor, rand: torch.Tensor, spont: torch.Tensor, *, tdres: float,
                    tabs: float, trel: float) -> SpikeGeneratorResult:
    """Mean redocking time of one spike train per fibre: synout (F, N) /s, rand (F, L) in [0, 1)
    (the spike generator's random buffer, in draw order), spont (F,). float64."""
    f, n = synout.shape
    fib = _Fibres(synout, rand, t_rd_init_tensor(spont), tdres, tabs, trel)
    rec_step, rec_val = [], []
    anchors = [fib.t_init.clone(), torch.zeros(f, dtype=torch.int64, device=synout.device),
               torch.zeros(f, dtype=torch.bool, device=synout.device)]
    with sequential_loop_threads():
        _run_events(fib, rec_step, rec_val, anchors)
    anchor_v, anchor_s, anchor_on = anchors
    trd = _fill_trd(rec_step, rec_val, (anchor_v, anchor_s, anchor_on), fib, n)
    return SpikeGeneratorResult(trd, fib.ptr, fib.spikes)


def _run_events(fib, rec_step, rec_val, anchors):
    """Process every fibre's events in time order, one per fibre per iteration."""
    f = fib.keys.shape[0]
    while True:
        flat = fib.keys.view(f, -1)
        key, idx = flat.min(dim=1)
        active = key < _NEVER
        if not bool(active.any()):
            break
        step = torch.div(key, 8, rounding_mode="floor")
        site, kind = torch.div(idx, 3, rounding_mode="floor"), idx % 3
        trd_now = fib.trd_before(step)
        is_jump, is_rel = active & (kind < 2), active & (kind == 2)
        fib.jump(is_jump, step, trd_now)
        clear = (torch.arange(3 * N_SITES, device=idx.device) == idx[:, None]) & is_jump[:, None]
        fib.keys = torch.where(clear.view(f, N_SITES, 3), _NEVER, fib.keys)
        rec_step.append(torch.where(is_jump & (step >= 0), step, -1))
        rec_val.append(fib.v_last)
        early = is_jump & (step < 0)  # state entering step 0 (the last jump before it)
        anchors[0] = torch.where(early, fib.v_last, anchors[0])
        anchors[1] = torch.where(early, step, anchors[1])
        anchors[2] = anchors[2] | early
        fib.release(is_rel, site, step, trd_now)


def t_rd_init_tensor(spont: torch.Tensor) -> torch.Tensor:
    return T_RD_REST + 0.02e-3 * spont - T_RD_JUMP


def _fill_trd(rec_step, rec_val, anchor, fib, n):
    """trd after every step 0..N-1 from the jump records (time-ordered per fibre)."""
    f, dev, dt = fib.v_last.shape[0], fib.v_last.device, fib.v_last.dtype
    k = torch.arange(n, device=dev)
    if rec_step:
        steps = torch.stack(rec_step, 1)
        vals = torch.stack(rec_val, 1)
        # keep the last record of each step (several sites may jump in one step)
        steps_sorted = torch.cummax(steps, dim=1).values
        pos = torch.searchsorted(steps_sorted, k.expand(f, n).contiguous(), right=True).sub_(1)
        have = pos >= 0
        pos.clamp_min_(0)
        last_step = steps_sorted.gather(1, pos)
        last_val = vals.gather(1, pos)
        del pos
        have &= last_step >= 0
    else:
        have = torch.zeros(f, n, dtype=torch.bool, device=dev)
        last_step = torch.zeros(f, n, dtype=torch.int64, device=dev)
        last_val = torch.zeros(f, n, dtype=dt, device=dev)
    anchor_v, anchor_s, anchor_on = anchor
    # in place on the (F, N) buffers, the same operations as
    # where(on, REST + (v - REST) * decay ** (k - s), t_init)
    v = torch.where(have, last_val, anchor_v[:, None], out=last_val)
    s = torch.where(have, last_step, anchor_s[:, None], out=last_step)
    decay_pow = torch.pow(fib.decay, torch.sub(k, s, out=s).to(dt))
    del s, last_step
    decayed = v.sub_(T_RD_REST).mul_(decay_pow).add_(T_RD_REST)
    del decay_pow
    have |= anchor_on[:, None]
    return torch.where(have, decayed, fib.t_init[:, None], out=decayed)


def analytic_mean_rate(synout: torch.Tensor, trd: torch.Tensor, *, tabs: float, trel: float) -> torch.Tensor:
    """The wrapper's instantaneous mean rate: synout / (synout * (tabs + trd/4 + trel_i) + 1)."""
    # in place on three (F, N) buffers (these arrays are large: allocation and passes dominate);
    # the same operations as the formula above, so the same rounding
    pos = synout > 0
    safe = torch.where(pos, synout, 1.0)
    trel_i = safe.reciprocal().mul_(trel * 100).clamp_max_(trel)  # as Python's trel * 100 / safe
    den = (trd / N_SITES).add_(tabs).add_(trel_i).mul_(safe).add_(1.0)
    return safe.div_(den).masked_fill_(~pos, 0.0)


def random_buffer_length(spont: float, n: int, tdres: float, max_spikes: int = 1000) -> int:
    """How many uniforms the wrapper's SpikeGenerator draws (``randBufLen``), C arithmetic.

    ``run_anf`` divides the summed synapse output by the value ``Synapse`` returns, but the
    header it compiles against declares no ``Synapse``, so the call is implicitly declared as
    returning int and the double result is lost: the divisor reads as 0, the mean rate is inf
    (numpy's "divide by zero" warning on every call), and the buffer length depends only on
    spont, n and max_spikes. The reference nervegrams were made so (they are reproduced only
    with this length). max_spikes: the wrapper's ``max_spikes_per_train``."""
    mean_inter_events = 0.0 + t_rd_init(spont) / N_SITES  # 1 / inf + ...
    expected = (n * tdres) / mean_inter_events
    max_events = int(expected + 3 * np.sqrt(expected)) + N_SITES
    return 2 * N_SITES + 1 + max_spikes + 2 * max_events + max_spikes + 3 * N_SITES
