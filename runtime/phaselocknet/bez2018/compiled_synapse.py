"""The synapse side's sequential recurrences as compiled CPU loops (numba), one fibre at a time.

On the CPU these stages are bound by memory traffic and per-op overhead when written as tensor
ops (each 100 kHz fibre array is a few MB, passed over a dozen times); one compiled pass per
fibre keeps a fibre's working set in cache and follows the C model's own step order, so the
arithmetic is the C model's operation for operation (the torch versions in synapse.py and
spike_generator.py, which other devices use, reorder sums). Compiled once per machine: numba
caches the machine code beside this file, or in its user cache directory where that is not
writable (``NUMBA_CACHE_DIR`` overrides both).

* ``power_law_adaptation_rows``: ``Synapse``'s approximate power-law adaptation (``implnt=0``).
* ``fir_filtfilt_decimate_rows``: the wrapper's decimation callback (``filtfilt`` of an FIR, every
  q-th sample) at the outputs read only.
* ``mean_rate_rows``: upsampled synapse output -> ``SpikeGenerator``'s redocking time -> the
  wrapper's analytic mean rate -> ``resample_poly`` to 10 kHz, fused, negatives clipped.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .spike_generator import N_SITES, T_RD_JUMP, T_RD_REST, TAU_RD

# status of a fibre in ``mean_rate_rows``: the C code's error exit (spike or random buffer full)
OVERFLOW = -1


@njit(cache=True, nogil=True, error_model="numpy")
def _adapt_one(samp, noise, n_steps, out):
    """One row of ``Synapse``'s implnt=0 loop: the slow (m1..m5, with fGn) and fast (n1..n3)
    power-law kernels inside their rectifying feedback; out[k] = sout1 + sout2."""
    alpha1, alpha2 = 1.5e-6 * 100e3, 1e-2 * 100e3
    i1 = 0.0
    i2 = 0.0
    # histories at k-1 and k-2 (the C code keeps whole arrays; only two lags are read)
    s1a = s1b = s2a = s2b = 0.0
    m1a = m1b = m2a = m2b = m3a = m3b = m4a = m4b = m5a = m5b = 0.0
    n1a = n1b = n2a = n2b = n3a = n3b = 0.0
    for k in range(n_steps):
        sout1 = max(0.0, samp[k] + noise[k] - alpha1 * i1)
        sout2 = max(0.0, samp[k] - alpha2 * i2)
        if k == 0:
            n1 = 1.0e-3 * sout2
            n2 = n1
            n3 = n2
            m1 = 0.2 * sout1
            m2 = m1
            m3 = m2
            m4 = m3
            m5 = m4
        elif k == 1:
            n1 = 1.992127932802320 * n1a + 1.0e-3 * (sout2 - 0.994466986569624 * s2a)
            n2 = 1.999195329360981 * n2a + n1 - 1.997855276593802 * n1a
            n3 = -0.798261718183851 * n3a + n2 + 0.798261718184977 * n2a
            m1 = 0.491115852967412 * m1a + 0.2 * (sout1 - 0.173492003319319 * s1a)
            m2 = 1.084520302502860 * m2a + m1 - 0.803462163297112 * m1a
            m3 = 1.588427084535629 * m3a + m2 - 1.416084732997016 * m2a
            m4 = 1.886287488516458 * m4a + m3 - 1.830362725074550 * m3a
            m5 = 1.989549282714008 * m5a + m4 - 1.983165053215032 * m4a
        else:
            n1 = (1.992127932802320 * n1a - 0.992140616993846 * n1b
                  + 1.0e-3 * (sout2 - 0.994466986569624 * s2a + 0.000000000002347 * s2b))
            n2 = 1.999195329360981 * n2a - 0.999195402928777 * n2b + n1 - 1.997855276593802 * n1a + 0.997855827934345 * n1b
            n3 = -0.798261718183851 * n3a - 0.199131619873480 * n3b + n2 + 0.798261718184977 * n2a + 0.199131619874064 * n2b
            m1 = (0.491115852967412 * m1a - 0.055050209956838 * m1b
                  + 0.2 * (sout1 - 0.173492003319319 * s1a + 0.000000172983796 * s1b))
            m2 = 1.084520302502860 * m2a - 0.288760329320566 * m2b + m1 - 0.803462163297112 * m1a + 0.154962026341513 * m1b
            m3 = 1.588427084535629 * m3a - 0.628138993662508 * m3b + m2 - 1.416084732997016 * m2a + 0.496615555008723 * m2b
            m4 = 1.886287488516458 * m4a - 0.888972875389923 * m4b + m3 - 1.830362725074550 * m3a + 0.836399964176882 * m3b
            m5 = 1.989549282714008 * m5a - 0.989558985673023 * m5b + m4 - 1.983165053215032 * m4a + 0.983193027347456 * m4b
        i2 = n3
        i1 = m5
        out[k] = sout1 + sout2
        s1b, s1a, s2b, s2a = s1a, sout1, s2a, sout2
        n1b, n1a, n2b, n2a, n3b, n3a = n1a, n1, n2a, n2, n3a, n3
        m1b, m1a, m2b, m2a, m3b, m3a, m4b, m4a, m5b, m5a = m1a, m1, m2a, m2, m3a, m3, m4a, m4, m5a, m5


@njit(cache=True, nogil=True, error_model="numpy")
def power_law_adaptation_rows(samp, noise, lengths, out):
    """samp, noise, out (R, K) float64; lengths (R,) steps per row (the rest of ``out`` is 0)."""
    for r in range(samp.shape[0]):
        out[r, :] = 0.0
        _adapt_one(samp[r], noise[r], min(lengths[r], samp.shape[1]), out[r])


@njit(cache=True, nogil=True, error_model="numpy")
def fir_filtfilt_decimate_rows(x, b, q, n_keep, out):
    """``scipy.signal.filtfilt(b, [1], x)[..., ::q][..., :n_keep]`` per row of x (R, n).

    filtfilt's defaults: odd extension by 3 * len(b) samples at both ends, each pass started in
    the steady state of its first input (for an FIR: that sample repeated into the past). The
    forward pass is computed in full, the backward pass at the kept outputs only; taps are summed
    from the oldest input to the newest, the order of lfilter's transposed direct form."""
    rows, n = x.shape
    nb = b.shape[0]
    pad = 3 * nb
    m = n + 2 * pad
    ext = np.empty(m)
    fwd = np.empty(m)
    for r in range(rows):
        row = x[r]
        for i in range(pad):
            ext[i] = 2.0 * row[0] - row[pad - i]
            ext[pad + n + i] = 2.0 * row[n - 1] - row[n - 2 - i]
        ext[pad:pad + n] = row
        # tap by tap over the whole row (each pass vectorises); every output still sums its taps
        # in lfilter's order, oldest input first
        fwd[:] = 0.0
        for k in range(nb - 1, -1, -1):
            bk = b[k]
            for i in range(min(k, m)):
                fwd[i] += bk * ext[0]
            for i in range(k, m):
                fwd[i] += bk * ext[i - k]
        # backward pass on the reversed forward output: reversed index t reads fwd[m - 1 - t];
        # output j (at ext index pad + j * q) is reversed index m - 1 - pad - j * q.
        for j in range(n_keep):
            t = m - 1 - pad - j * q
            acc = 0.0
            for k in range(nb - 1, -1, -1):
                u = t - k
                acc += b[k] * fwd[m - 1 - (u if u > 0 else 0)]
            out[r, j] = acc


@njit(cache=True, nogil=True, error_model="numpy")
def _upsample_delayed(syn10k, n_pla, resamp, dp, out):
    """``Synapse``'s linear interpolation to 100 kHz with the delay removed (0 past its range)."""
    n = out.shape[0]
    for i in range(n):
        p = i + dp
        z = p // resamp
        if z < n_pla - 1:
            incr = (syn10k[z + 1] - syn10k[z]) / resamp
            out[i] = syn10k[z] + (p % resamp) * incr
        else:
            out[i] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def _redocking_times(synout, rand, rand_len, t_rd_init, tdres, tabs, trel, max_spikes, elapsed_steps, trd):
    """``SpikeGenerator`` as far as the mean rate needs it: trd (n,) after each step; returns
    (random numbers drawn, spikes at t >= 0), or (OVERFLOW, spikes) where the C code gives up.

    A site's elapsed time is the C code's running sum of tdres since its last release; after m
    steps ``floor(elapsed / tdres)`` is ``elapsed_steps[m]`` (a table of that for the same
    sums), so the loop looks it up instead of dividing, as far as the table reaches (a site's
    first wait can start millions of steps before 0, see the __max comment)."""
    n = synout.shape[0]
    one_site_redock = np.empty(N_SITES)
    redock_steps = np.empty(N_SITES, dtype=np.int64)
    pre_release = np.empty(N_SITES)
    unit_rate = np.zeros(N_SITES, dtype=np.int64)
    elapsed = np.zeros(N_SITES)
    since_release = np.zeros(N_SITES, dtype=np.int64)
    table = elapsed_steps.shape[0]
    prev_release = np.empty(N_SITES)
    xsum = np.zeros(N_SITES)
    idx = 0
    # Where a buffer runs out the C code reads past its end (up to two numbers in the step that
    # overflows it); that fibre is reported as OVERFLOW, so what is read there does not matter.
    last = rand.shape[0] - 1
    for i in range(N_SITES):
        one_site_redock[i] = -t_rd_init * math.log(rand[min(idx, last)])
        redock_steps[i] = math.floor(one_site_redock[i] / tdres)
        idx += 1
    scale = N_SITES / max(synout[0], 0.1) + t_rd_init
    for i in range(N_SITES):
        guess = math.ceil(scale * math.log(rand[min(idx, last)]) / tdres)
        idx += 1
        if -float(n) > guess:
            pre_release[i] = -float(n)
        else:
            # the C code's __max macro evaluates its winning argument again: a second draw
            guess = math.ceil(scale * math.log(rand[min(idx, last)]) / tdres)
            idx += 1
            pre_release[i] = guess
    pre_release.sort()
    starts = np.empty(N_SITES, dtype=np.int64)  # whole numbers of steps, as ints for the loop's compares
    for i in range(N_SITES):
        prev_release[i] = pre_release[i] * tdres
        starts[i] = int(pre_release[i])
    k = starts[0]
    idx += 1  # the initial refractory period, drawn and never used
    refractory_end = k * tdres
    spikes = 0
    trd_prev = t_rd_init
    trd_now = trd_prev
    decay = True
    rd_first = False
    if spikes + 1 > max_spikes or idx + 1 > rand_len:
        return OVERFLOW, spikes
    while k < n:
        syn_k = synout[k if k > 0 else 0]
        quarter = syn_k / N_SITES
        for site in range(N_SITES):
            if k > starts[site]:
                m = since_release[site]
                floor_elapsed = elapsed_steps[m] if m < table else math.floor(elapsed[site] / tdres)
                if redock_steps[site] == floor_elapsed:
                    trd_now = trd_prev + T_RD_JUMP
                    trd_prev = trd_now
                    decay = False
                    rd_first = True
                elapsed[site] = elapsed[site] + tdres
                since_release[site] += 1
            if elapsed[site] >= one_site_redock[site]:
                xsum[site] = xsum[site] + quarter
            if xsum[site] >= unit_rate[site] and k >= starts[site]:
                one_site_redock[site] = -trd_now * math.log(rand[min(idx, last)])
                redock_steps[site] = math.floor(one_site_redock[site] / tdres)
                idx += 1
                release = prev_release[site] + elapsed[site]
                elapsed[site] = 0.0
                since_release[site] = 0
                if release >= refractory_end:
                    if release >= 0:
                        spikes += 1
                    trel_k = min(trel * 100 / syn_k, trel)
                    refractory_end = release + (tabs - trel_k * math.log(rand[min(idx, last)]))
                    idx += 1
                prev_release[site] = release
                xsum[site] = 0.0
                unit_rate[site] = int(-math.log(rand[min(idx, last)]) / tdres)
                idx += 1
                # the C code checks after every site's step; only a release changes the counts
                if spikes + 1 > max_spikes or idx + 1 > rand_len:
                    return OVERFLOW, spikes
        if decay and rd_first:
            trd_now = trd_prev - (tdres / TAU_RD) * (trd_prev - T_RD_REST)
            trd_prev = trd_now
        else:
            decay = True
        if k >= 0:
            trd[k] = trd_now
        k += 1
    return idx, spikes


@njit(cache=True, nogil=True, error_model="numpy")
def mean_rate_rows(adapted, n_pla, delay, resamp, n, rand, rand_len, spont, tdres, tabs, trel, max_spikes,
                   elapsed_steps, taps, half_len, down, out, draws, spikes):
    """Per row r: the n-sample 100 kHz synapse output from its 10 kHz ``adapted[r]`` (``n_pla[r]``
    steps, delay ``delay[r]``), its redocking times (uniforms ``rand[r, :rand_len[r]]``), the
    analytic mean rate synout / (synout (tabs + trd / 4 + trel_i) + 1) (0 where synout <= 0),
    decimated as ``resample_poly(rate, 1, down)`` (taps h: y[m] = sum_i rate[i] h[m down +
    half_len - i]) into out[r], negatives clipped. draws[r]: numbers drawn, or OVERFLOW."""
    synout = np.empty(n)
    rate = np.empty(n)
    n_taps = taps.shape[0]
    n_out = out.shape[1]
    # the rate split into its ``down`` phases, zero-padded by ``margin`` on both sides: the
    # decimation is then one contiguous multiply-add pass per tap (vectorised)
    margin = half_len // down + 2
    n_phase = n // down + 1
    phases = np.zeros((down, n_phase + 2 * margin))
    acc = np.empty(n_out)
    for r in range(adapted.shape[0]):
        _upsample_delayed(adapted[r], n_pla[r], resamp, delay[r], synout)
        t_rd_init = T_RD_REST + 0.02e-3 * spont[r] - T_RD_JUMP
        draws[r], spikes[r] = _redocking_times(synout, rand[r], rand_len[r], t_rd_init, tdres, tabs, trel,
                                               max_spikes, elapsed_steps, rate)
        if draws[r] == OVERFLOW:
            out[r, :] = 0.0
            continue
        for i in range(n):
            s = synout[i]
            if s > 0:
                trel_i = min(trel * 100 / s, trel)
                rate[i] = s / (s * (tabs + rate[i] / N_SITES + trel_i) + 1)
            else:
                rate[i] = 0.0
        for q in range(n_phase):
            for p in range(down):
                i = q * down + p
                if i < n:
                    phases[p, q + margin] = rate[i]
        acc[:] = 0.0
        for j in range(n_taps):  # y[m] += h[j] rate[m down + half_len - j]
            offset = half_len - j
            p, b = offset % down, offset // down + margin
            hj, src = taps[j], phases[p]
            for m in range(n_out):
                acc[m] += hj * src[m + b]
        for m in range(n_out):
            out[r, m] = acc[m] if acc[m] > 0 else 0.0
