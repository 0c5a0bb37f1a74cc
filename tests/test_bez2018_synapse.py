"""BEZ2018 synapse and spike-generator stages against independent references.

- decimation: scipy.signal.filtfilt + firwin (the wrapper's decimate callback);
- the fGn's Fourier resampling: scipy.signal.resample;
- power-law adaptation without rectification: the same kernels as one rational transfer
  function run by scipy.signal.lfilter;
- the event-driven redocking simulation: a plain per-sample stepping of the published spike
  generator (Bruce et al. 2018) written here, on random synapse outputs.
- the compiled CPU loops (compiled_synapse) against the same references: the per-sample
  spike generator above, the wrapper's mean-rate formula, scipy.signal.resample_poly.
Tolerances: float64 rounding of different operation orders (1e-12 relative), except the
redocking state, which must agree to 1e-12 at every sample (same random numbers, same events).
Stages with two implementations (compiled loops on the CPU, tensor ops elsewhere) run both
(the ``bez2018_implementation`` fixture).
"""
import math

import numpy as np
import pytest
import scipy.signal
import torch

from phaselocknet.bez2018 import spike_generator as sg
from phaselocknet.bez2018 import fgn
from phaselocknet.bez2018 import synapse as syn
from phaselocknet.bez2018.resample import decimation_taps


def test_decimate_equals_scipy_filtfilt(bez2018_implementation):
    x = torch.as_tensor(np.random.RandomState(0).randn(3, 1234).cumsum(-1))
    b = scipy.signal.firwin(11, 0.1, window="hamming")
    want = scipy.signal.filtfilt(b, [1.0], x.numpy())[:, ::10]
    got = syn.decimate(x, 10).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_decimate_refuses_short_input(bez2018_implementation):
    with pytest.raises(syn.SynapseError, match="more than 33 samples"):
        syn.decimate(torch.zeros(1, 20, dtype=torch.float64), 10)


@pytest.mark.parametrize("cf", [4000.0, 20000.0])
def test_windowed_decimation_of_the_padded_input_equals_scipy_on_the_full_input(cf, bez2018_implementation):
    # The port decimates only a short window of the delay-padded power-law input; the reference
    # is scipy's filtfilt over the whole padded input (head, signal, ramp tail), every 10th
    # sample, up to the last one the 100 kHz output reads.
    n = 500
    g = syn.fibre_geometry(cf, n, 1e-5)
    vihc = torch.as_tensor(np.random.RandomState(1).randn(2, 1, n) * 1e-3)
    sp = torch.tensor([[70.0], [0.1]], dtype=torch.float64)
    consts = torch.tensor([syn.mapping_constants(cf, 70.0), syn.mapping_constants(cf, 0.1)], dtype=torch.float64)
    full = syn.power_law_input(vihc, sp, consts[:, :1], consts[:, 1:], g.delaypoint).numpy()
    assert full.shape[-1] == g.n_in
    want = scipy.signal.filtfilt(scipy.signal.firwin(11, 0.1, window="hamming"), [1.0], full)[..., ::10][..., : g.n_read]
    got = syn.decimated_power_law_input(vihc, sp, consts[:, :1], consts[:, 1:], g.delaypoint, 10, g.n_read).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_adaptation_rows_stop_at_their_length(bez2018_implementation):
    # lengths: rows run only their own steps (the rest is 0); on their part they equal a full
    # run (rounding of a narrower matrix product: 1e-9 relative covers the loop's conditioning)
    rs = np.random.RandomState(2)
    samp = torch.as_tensor(100 + 300 * rs.rand(4, 300))
    noise = torch.as_tensor(20 * rs.randn(4, 300))
    lengths = [300, 120, 7, 250]
    full = syn.power_law_adaptation(samp, noise)
    part = syn.power_law_adaptation(samp, noise, lengths)
    for r, k in enumerate(lengths):
        np.testing.assert_allclose(part[r, :k].numpy(), full[r, :k].numpy(), rtol=1e-9)
        assert bool((part[r, k:] == 0).all())


@pytest.mark.parametrize("n", [10, 13])
def test_fourier_resample_equals_scipy(n):
    y = np.random.RandomState(n).randn(2, n)
    want = scipy.signal.resample(y, 1000 * n, axis=-1)
    got = fgn._fourier_resample(torch.as_tensor(y), 1000 * n).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_fgn_sizes_follow_the_wrapper():
    # ffGn(N, 1e-4, ...): resamp = ceil(0.1 / 1e-4) = 1000, N' = max(10, ceil(N / 1000) + 1),
    # nfft = 2 ** ceil(log2(2 (N' - 1)))
    assert fgn.fgn_sizes(1301) == (1000, 10, 32)
    assert fgn.fgn_sizes(23456) == (1000, 25, 64)


def _cascade_polynomials(sections):
    num, den = np.array([1.0]), np.array([1.0])
    for gain, b1, b2, a1, a2 in sections:
        g = 1.0 if gain is None else gain
        num = np.polymul(num, g * np.array([1.0, b1, b2]))
        den = np.polymul(den, np.array([1.0, -a1, -a2]))
    return num, den


def test_power_law_adaptation_is_the_linear_feedback_system_when_not_rectified(bez2018_implementation):
    # sout = u - alpha * z^-1 H(z) sout  =>  sout = D / (D + alpha z^-1 N) u, per branch.
    k = 400
    u = 200.0 + 0.01 * np.arange(k)  # the fast branch touches 0 at step 1, then stays positive
    got = syn.power_law_adaptation(torch.as_tensor(u)[None], torch.zeros(1, k, dtype=torch.float64))[0].numpy()
    want = np.zeros(k)
    for sections, alpha in ((syn._SLOW_SECTIONS, syn._ALPHA1), (syn._FAST_SECTIONS, syn._ALPHA2)):
        num, den = _cascade_polynomials(sections)
        den = np.concatenate([den, [0.0]])  # coefficients of z^0, z^-1, ...
        denom = den + alpha * np.concatenate([[0.0], num])
        out = scipy.signal.lfilter(den, denom, u)
        assert out.min() > -1e-9, "test input must keep the branch unrectified"
        want += out
    # rtol 1e-4: the expanded degree-11 polynomials (poles clustered near z = 1) lose ~1e-6 in
    # lfilter's direct form; a wrong coefficient or delay shows as O(1) differences.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-9)


def _stepped_redocking(synout, rand, t_init, tdres, tabs, trel):
    """Per-sample spike generator (Bruce et al. 2018, as the wrapper's C code steps it)."""
    n, idx = len(synout), 0
    redock, elapsed, xsum, unit = [0.0] * 4, [0.0] * 4, [0.0] * 4, [0] * 4
    for i in range(4):
        redock[i] = -t_init * math.log(rand[idx]); idx += 1
    pre = []
    wait = 4 / max(synout[0], 0.1) + t_init
    for _ in range(4):  # the C macro __max(a, b) evaluates a winning b twice (a second draw)
        first = math.ceil(wait * math.log(rand[idx]) / tdres); idx += 1
        if -n > first:
            pre.append(-n)
        else:
            pre.append(math.ceil(wait * math.log(rand[idx]) / tdres)); idx += 1
    pre.sort()
    prev_rel = [p * tdres for p in pre]
    idx += 1
    refr, k = pre[0] * tdres, int(pre[0])
    prev = cur = t_init
    decay, first_jump = True, False
    trd = np.zeros(n)
    while k < n:
        for s in range(4):
            if k > pre[s]:
                if math.floor(redock[s] / tdres) == math.floor(elapsed[s] / tdres):
                    cur = prev = prev + sg.T_RD_JUMP
                    decay, first_jump = False, True
                elapsed[s] += tdres
            if elapsed[s] >= redock[s]:
                xsum[s] += synout[max(0, k)] / 4
            if xsum[s] >= unit[s] and k >= pre[s]:
                redock[s] = -cur * math.log(rand[idx]); idx += 1
                rel = prev_rel[s] + elapsed[s]
                elapsed[s] = 0.0
                if rel >= refr:
                    trel_k = min(trel * 100 / synout[max(0, k)], trel)
                    refr = rel + tabs - trel_k * math.log(rand[idx]); idx += 1
                prev_rel[s], xsum[s] = rel, 0.0
                unit[s] = int(-math.log(rand[idx]) / tdres); idx += 1
        if decay and first_jump:
            cur = prev = prev - (tdres / sg.TAU_RD) * (prev - sg.T_RD_REST)
        else:
            decay = True
        if 0 <= k < n:
            trd[k] = cur
        k += 1
    return trd, idx


@pytest.mark.parametrize("spont", [70.0, 4.0, 0.1])
def test_event_driven_redocking_equals_per_sample_stepping(spont):
    rng = np.random.RandomState(int(spont * 10))
    n, tdres, f = 4000, 1e-5, 3
    t = np.arange(n) * tdres
    synout = np.stack([np.maximum(0.0, 150 + 300 * rng.rand() * np.sin(2 * np.pi * 300 * (i + 1) * t)) + spont
                       for i in range(f)])
    rand = rng.rand(f, 3000)
    res = sg.redocking_times(torch.as_tensor(synout), torch.as_tensor(rand),
                             torch.full((f,), spont, dtype=torch.float64), tdres=tdres, tabs=6e-4, trel=6e-4)
    for i in range(f):
        want, used = _stepped_redocking(synout[i], rand[i], sg.t_rd_init(spont), tdres, 6e-4, 6e-4)
        np.testing.assert_allclose(res.trd[i].numpy(), want, rtol=1e-12)
        assert int(res.draws[i]) == used


def test_analytic_mean_rate_closed_form():
    s = torch.tensor([[0.0, 10.0, 1000.0]], dtype=torch.float64)
    trd = torch.full_like(s, 0.015)
    got = sg.analytic_mean_rate(s, trd, tabs=6e-4, trel=6e-4)[0].numpy()
    trel_i = np.minimum(6e-4 * 100 / np.array([1.0, 10.0, 1000.0]), 6e-4)
    want = np.array([0.0, 10 / (10 * (6e-4 + 0.015 / 4 + trel_i[1]) + 1), 1000 / (1000 * (6e-4 + 0.015 / 4 + trel_i[2]) + 1)])
    np.testing.assert_allclose(got, want, rtol=1e-14)


def _compiled_mean_rates(adapted, n_pla, delay, n, rand, spont, max_spikes=1000):
    from phaselocknet.bez2018 import compiled_synapse

    rows = adapted.shape[0]
    taps, half_len = decimation_taps(10)
    out = np.empty((rows, -(-n // 10)))
    draws, spikes = np.empty(rows, dtype=np.int64), np.empty(rows, dtype=np.int64)
    _, steps = sg.elapsed_tables(1 << 18, 1e-5)
    compiled_synapse.mean_rate_rows(adapted, np.asarray(n_pla), np.asarray(delay), 10, n, rand,
                                    np.full(rows, rand.shape[1] - 2), np.asarray(spont, dtype=np.float64), 1e-5,
                                    6e-4, 6e-4, max_spikes, steps, taps, half_len, 10, out, draws, spikes)
    return out, draws, spikes


@pytest.mark.parametrize("spont", [70.0, 4.0, 0.1])
def test_compiled_mean_rate_equals_stepping_formula_and_scipy(spont):
    # 10 kHz synapse outputs -> (linear interpolation, delay removed) -> redocking (reference:
    # the per-sample stepping above) -> the wrapper's mean-rate formula -> scipy's resample_poly.
    rng = np.random.RandomState(int(spont * 10) + 1)
    n, resamp, f = 3000, 10, 2
    delay, n_pla = [7, 30], [320, 340]
    adapted = np.maximum(0.0, 200 + 150 * rng.randn(f, 400)) + spont
    rand = rng.rand(f, 3002)
    got, draws, _ = _compiled_mean_rates(adapted, n_pla, delay, n, rand, [spont] * f)
    for i in range(f):
        p = np.arange(delay[i], delay[i] + n)
        z, b = p // resamp, p % resamp
        ok = z < n_pla[i] - 1
        zc = np.minimum(z, n_pla[i] - 2)
        synout = np.where(ok, adapted[i, zc] + b * ((adapted[i, zc + 1] - adapted[i, zc]) / resamp), 0.0)
        trd, used = _stepped_redocking(synout, rand[i], sg.t_rd_init(spont), 1e-5, 6e-4, 6e-4)
        assert int(draws[i]) == used
        pos = synout > 0
        safe = np.where(pos, synout, 1.0)
        trel_i = np.minimum(6e-4 * 100 / safe, 6e-4)
        rate = np.where(pos, safe / (safe * (6e-4 + trd / 4 + trel_i) + 1), 0.0)
        want = np.maximum(scipy.signal.resample_poly(rate, 1, 10), 0.0)
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_compiled_spike_generator_reports_a_full_buffer():
    # a buffer far too short for the releases: the C code gives up (spCount = -1); so must the loop
    rng = np.random.RandomState(9)
    adapted = np.full((1, 400), 3000.0)
    _, draws, _ = _compiled_mean_rates(adapted, [340], [10], 3000, rng.rand(1, 40), [70.0])
    from phaselocknet.bez2018 import compiled_synapse

    assert int(draws[0]) == compiled_synapse.OVERFLOW
