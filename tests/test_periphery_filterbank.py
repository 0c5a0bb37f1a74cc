"""Gammatone filterbank vs scipy IIR filtering and closed-form properties of Slaney's filters."""
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.signal
import torch

from phaselocknet.fast.front_end import FastFrontEnd
from phaselocknet.periphery import (
    GammatoneFilterbank,
    erb2freq,
    erbspace,
    freq2erb,
    gammatone_biquads,
    gammatone_impulse_responses,
)

SR = 50000.0
# np.trapz was renamed np.trapezoid in NumPy 2.0 (and removed in 2.4).
TRAPEZOID = getattr(np, "trapezoid", None) or np.trapz
FIR_DUR = 0.05
N_TAPS = int(FIR_DUR * SR)


@pytest.fixture(scope="module")
def cfs():
    return erbspace(60.0, 16000.0, 50)


@pytest.fixture(scope="module")
def filterbank(cfs):
    return GammatoneFilterbank(SR, FIR_DUR, cfs)


def _sos(biquads, i):
    """scipy second-order-section matrix of channel i."""
    return np.stack([np.concatenate([b[:, i], a[:, i]]) for b, a in biquads])


def test_erb_scale_closed_form():
    # Glasberg & Moore (1990): 1 kHz is 21.4*log10(5.37) Cams.
    assert freq2erb(1000.0) == pytest.approx(21.4 * np.log10(5.37), rel=1e-12)
    f = np.array([20.0, 60.0, 1000.0, 16000.0])
    np.testing.assert_allclose(erb2freq(freq2erb(f)), f, rtol=1e-12)
    cfs = erbspace(60.0, 16000.0, 50)
    assert cfs.shape == (50,)
    np.testing.assert_allclose(cfs[[0, -1]], [60.0, 16000.0], rtol=1e-12)
    steps = np.diff(freq2erb(cfs))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-10)  # uniform on the ERB-number scale


def test_biquad_layout(cfs):
    biquads = gammatone_biquads(SR, cfs)
    assert len(biquads) == 4
    for b, a in biquads:
        assert b.shape == a.shape == (3, cfs.size)
        assert b.dtype == a.dtype == np.float64
        np.testing.assert_array_equal(a[0], 1.0)


def test_fir_output_matches_iir_lfilter(filterbank, cfs):
    # Within the first N_TAPS samples the truncated FIR and the IIR cascade are the same
    # linear filter, so any difference is float32 rounding of the kernel and the 2500-term
    # sums: ~1e-7 relative per term; 1e-5 of each channel's peak leaves >4x headroom
    # over the measured 2.2e-6.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, N_TAPS + 500))
    y = filterbank(torch.tensor(x, dtype=torch.float32)).numpy()
    assert y.shape == (2, cfs.size, x.shape[1])

    biquads = gammatone_biquads(SR, cfs)
    ref = np.repeat(x[:, None, :], cfs.size, axis=1)
    for b, a in biquads:
        for i in range(cfs.size):
            ref[:, i] = scipy.signal.lfilter(b[:, i], a[:, i], ref[:, i], axis=-1)
    err = np.abs(y[..., :N_TAPS] - ref[..., :N_TAPS]).max(axis=(0, 2))
    peak = np.abs(ref[..., :N_TAPS]).max(axis=(0, 2))
    assert np.all(err <= 1e-5 * peak), (err / peak).max()


def test_impulse_responses_match_lfilter_cascade(cfs):
    fir = gammatone_impulse_responses(SR, FIR_DUR, cfs)
    assert fir.shape == (cfs.size, N_TAPS) and fir.dtype == np.float64
    biquads = gammatone_biquads(SR, cfs)
    impulse = np.zeros(N_TAPS)
    impulse[0] = 1.0
    for i in (0, 17, 49):
        np.testing.assert_allclose(fir[i], scipy.signal.sosfilt(_sos(biquads, i), impulse), rtol=0, atol=1e-12)


def test_filter_is_causal(filterbank):
    x = torch.zeros(1, 400)
    x[0, 300] = 1.0
    y = filterbank(x)  # the direct convolution: exact zeros and taps
    assert torch.all(y[..., :300] == 0)
    assert torch.equal(y[0, :, 300:], filterbank.fir[:, :100])  # a delayed unit impulse
    # The fast path (float64 FFT) is causal up to its rounding: ~1e-18 of the peak tap.
    y = FastFrontEnd(SimpleNamespace(filterbank=filterbank)).filterbank(x)
    peak = filterbank.fir.abs().max()
    assert y[..., :300].abs().max() < 1e-12 * peak
    torch.testing.assert_close(y[0, :, 300:], filterbank.fir[:, :100], rtol=0, atol=1e-12 * peak)


def test_unit_gain_at_cf(cfs):
    biquads = gammatone_biquads(SR, cfs)
    # IIR: Slaney's closed-form gain makes |H(cf)| exactly 1 (up to float64 rounding).
    gains_iir = np.array(
        [np.abs(scipy.signal.sosfreqz(_sos(biquads, i), worN=[cf], fs=SR)[1][0]) for i, cf in enumerate(cfs)]
    )
    np.testing.assert_allclose(gains_iir, 1.0, atol=1e-9)
    # Truncated FIR: |H_fir(cf) - H_iir(cf)| <= sum of |h[n]| beyond the cut, measured from a
    # 10x longer response (whose own tail is negligible); lowest cfs ring longest (-0.09 dB).
    fir = gammatone_impulse_responses(SR, FIR_DUR, cfs)
    n = np.arange(N_TAPS)
    gains_fir = np.abs((fir * np.exp(-2j * np.pi * cfs[:, None] * n / SR)).sum(axis=1))
    tail = np.abs(gammatone_impulse_responses(SR, 10 * FIR_DUR, cfs)[:, N_TAPS:]).sum(axis=1)
    assert np.all(np.abs(gains_fir - 1.0) <= tail + 1e-9)
    assert np.all(np.abs(20 * np.log10(gains_fir)) < 0.15)


def test_bandwidth_is_the_erb(cfs):
    # Slaney's b = 1.019*2*pi*ERB makes the 4th-order gammatone's equivalent rectangular
    # bandwidth equal ERB(cf) = cf/EarQ + minBW. The digital (impulse-invariant) filter
    # deviates slightly near Nyquist (0.4% at 16 kHz); 1% tolerance.
    biquads = gammatone_biquads(SR, cfs)
    for i in (0, 10, 25, 40, 49):
        f, h = scipy.signal.sosfreqz(_sos(biquads, i), worN=200000, fs=SR)
        erb_measured = TRAPEZOID(np.abs(h) ** 2, f)
        assert erb_measured == pytest.approx(cfs[i] / 9.2644 + 24.7, rel=0.01)
        assert f[np.argmax(np.abs(h))] == pytest.approx(cfs[i], abs=1.0)


def test_buffer_is_not_persistent(filterbank):
    assert "fir" not in filterbank.state_dict()
    assert filterbank.fir.dtype == torch.float32
    assert isinstance(filterbank.cfs, np.ndarray) and filterbank.cfs.dtype == np.float64


def test_gradient_reaches_waveform(filterbank):
    x = torch.randn(1, 600, requires_grad=True)
    filterbank(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
