"""Analytic signal vs scipy.signal.hilbert; sigmoid rate-level function vs its closed form."""
import numpy as np
import pytest
import scipy.signal
import torch

from phaselocknet.periphery import SigmoidRateLevel, analytic_signal, hilbert_envelope

PUBLISHED = dict(
    rate_spont=[0.0, 0.0, 0.0],
    rate_max=[250.0, 250.0, 250.0],
    threshold=[0.0, 12.0, 28.0],
    dynamic_range=[20.0, 40.0, 80.0],
    dynamic_range_interval=0.95,
)


def _subbands(n_time, seed=0, n_freq=4):
    """Rectified lowpass noise spanning roughly 0-100 dB SPL across frequency rows."""
    rng = np.random.default_rng(seed)
    x = scipy.signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal((2, n_freq, n_time)), axis=-1)
    levels = 20e-6 * 10 ** (np.linspace(0, 100, n_freq) / 20)
    return np.maximum(x / x.std() * levels[:, None], 0.0)


@pytest.mark.parametrize("n_time", [12000, 12001])
def test_analytic_signal_matches_scipy(n_time):
    x = _subbands(n_time, n_freq=3)
    x /= np.abs(x).max(axis=-1, keepdims=True)
    ref = scipy.signal.hilbert(x, axis=-1)  # float64
    got = analytic_signal(torch.tensor(x, dtype=torch.float32), dim=-1).numpy()
    assert got.shape == ref.shape and got.dtype == np.complex64
    # float32 FFT of length 12000: error ~ eps32 * log2(n) * max|x| ~ 1e-6; 1e-5 of the max.
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-5 * scale
    env = hilbert_envelope(torch.tensor(x, dtype=torch.float32)).numpy()
    assert np.abs(env - np.abs(ref)).max() <= 1e-5 * scale


def test_analytic_signal_other_dim():
    x = np.random.default_rng(3).standard_normal((5, 101, 2))
    got = analytic_signal(torch.tensor(x), dim=1).numpy()  # float64 path
    np.testing.assert_allclose(got, scipy.signal.hilbert(x, axis=1), rtol=0, atol=1e-12)


def _closed_form(pa_subbands, envelope_mode, p):
    """Rate-level function evaluated in numpy float64 from the published formulas."""
    if envelope_mode:
        env = np.abs(scipy.signal.hilbert(pa_subbands, axis=-1))
        tfs = np.divide(pa_subbands, env, out=np.zeros_like(env), where=env > 0)
        pa = env
    else:
        pa = pa_subbands
    y_thr = (1 - p["dynamic_range_interval"]) / 2
    k = np.log(1 / y_thr - 1) / (np.array(p["dynamic_range"]) / 2)
    x0 = np.array(p["threshold"]) - np.log(1 / y_thr - 1) / (-k)
    rs, rm = np.array(p["rate_spont"]), np.array(p["rate_max"])
    with np.errstate(divide="ignore"):
        db = 20 * np.log10(pa / 20e-6)
    db = db[:, None]
    y = 1 / (1 + np.exp(-k[:, None, None] * (db - x0[:, None, None])))
    if envelope_mode:
        y = y * tfs[:, None]
    return rs[:, None, None] + (rm - rs)[:, None, None] * y


@pytest.mark.parametrize("envelope_mode", [True, False])
def test_rate_level_matches_closed_form(envelope_mode):
    params = dict(PUBLISHED, rate_spont=[0.0, 5.0, 70.0])
    x = _subbands(4000, seed=1, n_freq=6)
    module = SigmoidRateLevel(**params, envelope_mode=envelope_mode)
    got = module(torch.tensor(x, dtype=torch.float32)).numpy()
    ref = _closed_form(x, envelope_mode, params)
    assert got.shape == (2, 3, 6, 4000)
    # Rates span 0-250 spikes/s; float32 log/exp rounding gives ~1e-4 spikes/s (atol 1e-3).
    # In envelope mode the float32 FFT's error (~1e-6 of a row's peak) becomes a relative
    # error ~1e-6 * peak/env in tfs = x/env where the envelope dips; measured <= 8.4e-5
    # relative on this input, so rtol 5e-4.
    np.testing.assert_allclose(got, ref, rtol=5e-4 if envelope_mode else 0, atol=1e-3)
    assert np.ptp(ref) > 100  # the test input actually exercises the sigmoid's range


def test_closed_form_points():
    # At threshold the normalised rate is (1 - interval)/2; at threshold + dynamic range it
    # is 1 - that; definitions of the published parameterisation.
    module = SigmoidRateLevel(**PUBLISHED, envelope_mode=False)
    thr = np.array(PUBLISHED["threshold"])
    dr = np.array(PUBLISHED["dynamic_range"])
    for db, expected in ((thr, 0.025), (thr + dr, 0.975)):
        pa = torch.tensor(20e-6 * 10 ** (db / 20), dtype=torch.float64)
        for c in range(3):
            rate = module(pa[c].view(1, 1, 1))[0, c, 0, 0].item()
            assert rate == pytest.approx(250 * expected, rel=1e-4)


@pytest.mark.parametrize("envelope_mode", [True, False])
def test_silence_gives_spontaneous_rate_and_finite_gradients(envelope_mode):
    params = dict(PUBLISHED, rate_spont=[0.0, 5.0, 70.0])
    module = SigmoidRateLevel(**params, envelope_mode=envelope_mode)
    x = torch.zeros(2, 5, 64, requires_grad=True)
    rates = module(x)
    expected = torch.tensor(params["rate_spont"]).view(1, 3, 1, 1).expand_as(rates)
    assert torch.equal(rates, expected)
    rates.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gradient_flows_through_envelope():
    module = SigmoidRateLevel(**PUBLISHED, envelope_mode=True)
    x = torch.tensor(_subbands(256, seed=2, n_freq=3), dtype=torch.float32, requires_grad=True)
    x.data[:, :, :50] = 0.0  # partial silence must not poison gradients elsewhere
    module(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_parameter_validation():
    with pytest.raises(ValueError, match="rate_max"):
        SigmoidRateLevel(rate_spont=300, rate_max=250, threshold=0, dynamic_range=20)
    with pytest.raises(ValueError, match="threshold"):
        SigmoidRateLevel(rate_spont=0, rate_max=250, threshold=[0, 1], dynamic_range=[20, 30, 40])
    scalar = SigmoidRateLevel(rate_spont=0, rate_max=250, threshold=0, dynamic_range=20)
    assert scalar(torch.ones(1, 2, 8)).shape == (1, 1, 2, 8)
    assert SigmoidRateLevel(**PUBLISHED).state_dict() == {}
