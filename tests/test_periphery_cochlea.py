"""Cochlea: builds every published front end, real input shapes, end-to-end numpy reference."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from phaselocknet.periphery import (
    BinomialSpikeGenerator,
    Cochlea,
    gammatone_impulse_responses,
    ihc_lowpass_impulse_response,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "phaselocknet_models"

# Published front ends, written out so that validation tests run without ../shared.
WAVEFORM_50K = {
    "config_filterbank": {
        "cfs": None, "fir_dur": 0.05, "kwargs_filter_coefs": {}, "max_cf": 16000.0,
        "min_cf": 60.0, "mode": "fir_gammatone_filterbank", "num_cf": 50,
    },
    "config_subband_processing": {"rectify": True},
    "kwargs_custom_slice": {},
    "kwargs_fir_lowpass_filter_input": {},
    "kwargs_fir_lowpass_filter_output": {"cutoff": 3000, "fir_dur": 0.05, "ihc_filter": True, "order": 7},
    "kwargs_sigmoid_rate_level_function": {
        "dynamic_range": [20.0, 40.0, 80.0], "dynamic_range_interval": 0.95, "envelope_mode": True,
        "rate_max": [250.0, 250.0, 250.0], "rate_spont": [0.0, 0.0, 0.0], "threshold": [0.0, 12.0, 28.0],
    },
    "kwargs_spike_generator_binomial": {"mode": "approx", "n_per_channel": [384, 160, 96]},
    "kwargs_spike_rate_noise": {},
    "sr_cochlea": 50000.0,
    "sr_input": 50000.0,
    "sr_output": 10000.0,
}
NERVEGRAM = {
    "kwargs_custom_slice": {"args": [0, 3], "axis": 3, "expand_dims": True},
    "kwargs_spike_generator_binomial": {"n_per_channel": [384, 160, 96], "n_per_step": [48, 40, 48]},
    "kwargs_spike_rate_noise": {},
    "sr_cochlea": 10000.0,
    "sr_input": 10000.0,
    "sr_output": 10000.0,
}


def _published_configs():
    if not MODELS.is_dir():
        pytest.skip(f"published configs not found at {MODELS} (../shared beside the repo)")
    paths = sorted(MODELS.glob("*/*/*/config.json"))
    if not paths:
        pytest.skip(f"no config.json under {MODELS}")
    return {p: json.loads(p.read_text())["kwargs_cochlea"] for p in paths}


@pytest.fixture(scope="module")
def published():
    """(path -> kwargs_cochlea, canonical JSON -> Cochlea) with each distinct front end built once."""
    configs = _published_configs()
    built = {}
    for kw in configs.values():
        key = json.dumps(kw, sort_keys=True)
        if key not in built:
            built[key] = Cochlea(kw)
    return configs, built


def _cochlea_for(built, predicate):
    for key, cochlea in built.items():
        if predicate(json.loads(key)):
            return cochlea
    pytest.skip("no published config of that kind")


def test_every_published_config_builds(published):
    configs, built = published
    assert len(configs) == 260 and len(built) == 10
    for path, kw in configs.items():
        cochlea = built[json.dumps(kw, sort_keys=True)]
        gen_kwargs = kw["kwargs_spike_generator_binomial"]
        assert cochlea.n_channels == 3 and cochlea.n_freq == 50, path
        assert cochlea.sr_output == 10000.0 and cochlea.sr_input == kw["sr_input"], path
        assert isinstance(cochlea.spike_generator, BinomialSpikeGenerator)
        assert cochlea.spike_generator.n_per_channel == [384, 160, 96]
        expected_method = "exact" if "n_per_step" in gen_kwargs else gen_kwargs.get("mode", "exact")
        assert cochlea.spike_generator.method == expected_method, path
        if "mode" in kw.get("config_filterbank", {}):
            assert cochlea.input_kind == "waveform", path
            lowpass = kw["kwargs_fir_lowpass_filter_output"]
            assert cochlea.hair_cell.cutoff == lowpass["cutoff"]
            assert cochlea.filterbank.cfs.max() == pytest.approx(kw["config_filterbank"]["max_cf"])
        else:
            assert cochlea.input_kind == "nervegram", path
            assert cochlea.filterbank is None and cochlea.rate_level is None
        # Derived filters are not weights: nothing of the front end goes into a bundle.
        assert cochlea.state_dict() == {}


def test_caller_config_is_not_mutated():
    for kw in (WAVEFORM_50K, NERVEGRAM):
        before = copy.deepcopy(kw)
        Cochlea(kw)
        assert kw == before


@torch.no_grad()
def test_real_input_lengths(published):
    _, built = published
    loc = _cochlea_for(built, lambda kw: kw.get("sr_input") == 50000.0)
    assert loc(torch.zeros(1, 60000)).shape == (1, 3, 50, 12000)
    word = _cochlea_for(built, lambda kw: kw.get("sr_input") == 20000.0)
    x = torch.randn(1, 40000) * 0.02  # ~60 dB SPL noise
    rates = word(x)
    assert rates.shape == (1, 3, 50, 20000) and torch.isfinite(rates).all()
    assert 0 <= rates.min() and rates.max() <= 250
    nervegram = _cochlea_for(built, lambda kw: "config_filterbank" not in kw)
    x = torch.rand(1, 3, 50, 10000) * 250
    assert torch.equal(nervegram(x), x)
    # The published slice keeps channels 0..2 of a wider nervegram.
    wide = torch.rand(2, 5, 50, 100)
    assert torch.equal(nervegram(wide), wide[:, :3])


def test_buffers_follow_the_device_context():
    # Shape-only dry runs build models inside `with torch.device("meta")`; a buffer left on
    # the CPU there fails at the first op mixing devices. (Running on meta is covered by
    # test_published_configs; its first call costs seconds of lazy imports.)
    with torch.device("meta"):
        cochlea = Cochlea(WAVEFORM_50K)
    devices = {name: b.device.type for name, b in cochlea.named_buffers()}
    assert len(devices) == 6 and set(devices.values()) == {"meta"}, devices


def test_matches_numpy_float64_pipeline():
    # End to end against numpy/scipy float64: FIR convolution, rectification, strided IHC
    # lowpass, scipy Hilbert envelope and the closed-form sigmoid.
    cochlea = Cochlea(WAVEFORM_50K)
    rng = np.random.default_rng(0)
    n_time = 6000
    x = rng.standard_normal(n_time) * 20e-6 * 10 ** (70 / 20)  # 70 dB SPL noise
    got = cochlea(torch.tensor(x[None], dtype=torch.float32))[0].numpy()

    fb = WAVEFORM_50K["config_filterbank"]
    fir = gammatone_impulse_responses(50000.0, fb["fir_dur"], cochlea.filterbank.cfs)
    sub = np.maximum(np.stack([np.convolve(x, h)[:n_time] for h in fir]), 0)
    filt, down = ihc_lowpass_impulse_response(50000.0, 10000.0, 3000, 7, 0.05)
    sub = np.maximum(np.stack([np.convolve(row, filt)[:n_time][::down] for row in sub]), 0)
    env = np.abs(scipy.signal.hilbert(sub, axis=-1))
    tfs = np.divide(sub, env, out=np.zeros_like(env), where=env > 0)
    rl = WAVEFORM_50K["kwargs_sigmoid_rate_level_function"]
    y_thr = (1 - rl["dynamic_range_interval"]) / 2
    k = np.log(1 / y_thr - 1) / (np.array(rl["dynamic_range"]) / 2)
    x0 = np.array(rl["threshold"]) + np.log(1 / y_thr - 1) / k
    with np.errstate(divide="ignore"):
        db = 20 * np.log10(env / 20e-6)
    y = 1 / (1 + np.exp(-k[:, None, None] * (db[None] - x0[:, None, None])))
    ref = 250.0 * y * tfs[None]

    assert got.shape == ref.shape == (3, 50, n_time // 5)
    # float32 rounding accumulates over two long FIRs and the FFT; where the envelope dips
    # the tfs = x/env ratio amplifies it (see the rate-level test). Rates are 0-250 spikes/s;
    # measured max error 1.5e-3 spikes/s, so 1e-2 absolute plus 1e-4 relative.
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-2)
    assert ref.max() > 100


def test_silence_gives_spontaneous_rate_and_finite_gradient():
    cochlea = Cochlea(WAVEFORM_50K)
    x = torch.zeros(1, 1500, requires_grad=True)
    rates = cochlea(x)
    assert torch.equal(rates, torch.zeros_like(rates))  # rate_spont is 0 for all channels
    rates.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gradient_reaches_waveform():
    cochlea = Cochlea(WAVEFORM_50K)
    x = (torch.randn(1, 1500) * 0.02).requires_grad_()
    counts = cochlea.spike_generator(cochlea(x), spikes="mean")
    counts.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@torch.no_grad()
def test_binaural_input_is_two_cochleae():
    cochlea = Cochlea(WAVEFORM_50K)
    x = torch.randn(2, 2, 1000) * 0.02
    both = cochlea(x)
    assert both.shape == (2, 6, 50, 200)
    # Batching ears may change float32 summation order only; rates are 0-250 spikes/s.
    assert (both[:, :3] - cochlea(x[:, 0])).abs().max() <= 1e-4
    assert (both[:, 3:] - cochlea(x[:, 1])).abs().max() <= 1e-4
    nervegram = Cochlea(NERVEGRAM)
    y = torch.rand(2, 2, 4, 50, 30)
    assert torch.equal(nervegram(y), y[:, :, :3].reshape(2, 6, 50, 30))


def _with(base, path, value):
    kw = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    d = kw
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value
    return kw


@pytest.mark.parametrize(
    "base,path,value",
    [
        (WAVEFORM_50K, "dtype", "float16"),
        (WAVEFORM_50K, "config_filterbank.mode", "roex_filterbank"),
        (WAVEFORM_50K, "config_filterbank.bandwidth_scale_factor", 2.0),
        (WAVEFORM_50K, "config_filterbank.kwargs_filter_coefs.species", 1),
        (WAVEFORM_50K, "config_subband_processing.power_compression", 0.3),
        (WAVEFORM_50K, "sr_cochlea", 40000.0),
        (WAVEFORM_50K, "kwargs_fir_lowpass_filter_input", {"cutoff": 10000}),
        (WAVEFORM_50K, "kwargs_fir_lowpass_filter_output.ihc_filter", False),
        (WAVEFORM_50K, "kwargs_fir_lowpass_filter_output.window", ["kaiser", 5.0]),
        (WAVEFORM_50K, "kwargs_custom_slice", {"args": [0, 1], "axis": 3}),
        (WAVEFORM_50K, "kwargs_sigmoid_rate_level_function.gain", 2.0),
        (WAVEFORM_50K, "kwargs_spike_rate_noise", {"gaussian_noise_stddev": 1.0}),
        (WAVEFORM_50K, "kwargs_spike_generator_binomial.p_noise_stddev", 0.1),
        (WAVEFORM_50K, "kwargs_spike_generator_binomial.channels_to_manipulate", [0]),
        (WAVEFORM_50K, "kwargs_spike_generator_binomial.mode", "poisson"),
        (WAVEFORM_50K, "kwargs_autocorrelation_correlogram", {"dur_frame": 0.05}),
        (NERVEGRAM, "kwargs_custom_slice.axis", 1),
        (NERVEGRAM, "config_subband_processing", {"rectify": True}),
        (NERVEGRAM, "kwargs_sigmoid_rate_level_function", {"rate_max": 250.0}),
        (NERVEGRAM, "sr_output", 5000.0),
    ],
)
def test_unsupported_options_are_named(base, path, value):
    with pytest.raises(ValueError, match="no published model") as info:
        Cochlea(_with(base, path, value))
    assert path in str(info.value)


def test_input_shape_errors():
    with pytest.raises(ValueError, match="waveform"):
        Cochlea(WAVEFORM_50K)(torch.zeros(1, 1, 1, 100))
    with pytest.raises(ValueError, match="nervegram"):
        Cochlea(NERVEGRAM)(torch.zeros(1, 100))
