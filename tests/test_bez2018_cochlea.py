"""BEZ2018 periphery up to the IHC potential: stages against scipy, the whole against the C model.

References: scipy's bilinear transform / sosfilt for the linear stages, and the IHC potentials
(``vihcs``) computed by the authors' C model in ../shared/reference/bez2018. The whole-path tests
run both implementations (compiled CPU loops, tensor ops: the ``bez2018_implementation`` fixture).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.signal
import torch

from conftest import SHARED
from phaselocknet.bez2018.cochlea import CochleaParameterError, lowpass_coefficients
from phaselocknet.bez2018.hair_cell import ihc_lowpass_filter, ihc_potential
from phaselocknet.bez2018.middle_ear import middle_ear_filter, middle_ear_sos
from phaselocknet.bez2018.resample import resample_poly
from phaselocknet.bez2018.timeloop import IHCStream

REFERENCE = SHARED / "reference" / "bez2018"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"C-model reference outputs not found at {REFERENCE}")
VIHC_CASES = ["clicks_75dB_localization_noclip_IHC1000_seed4", "silence_speech_IHC3000_seed6",
              "speech_65dB_IHC0320_seed3", "tone1k_60dB_speech_IHC3000_seed1", "tone500_80dB_speech_noise0_IHC0050_seed2"]
FS = 100e3


def test_middle_ear_coefficients_are_the_prewarped_bilinear_transform():
    # Pascal et al. (1998) analog sections, bilinear-transformed with 1 kHz prewarping (scipy).
    analog = [([1, 5.6665e3, 0], [1, 5.9761e3, 2.5255e7]), ([1, 5.8934e3, 1.7926e8], [1, 6.4255e3, 1.3975e8]),
              ([3.1137e3, 6.9768e8], [1, 2.4891e4, 1.2700e9])]
    c = 2 * math.pi * 1e3 / math.tan(math.pi * 1e3 / FS)
    sos = middle_ear_sos(FS)
    for k, (b, a) in enumerate(analog):
        bz, az = scipy.signal.bilinear(b, a, fs=c / 2)
        bz = np.pad(bz, (3 - len(bz), 0)) / (2.0 if k == 2 else 1.0)  # the model divides by its max gain 2
        # The C model's 2*pi is truncated at 1e-14: relative differences ~1e-15.
        np.testing.assert_allclose(sos[k, :3], bz, rtol=1e-12, atol=1e-12 * np.abs(bz).max())
        np.testing.assert_allclose(sos[k, 3:], az, rtol=1e-12, atol=1e-12)


def test_middle_ear_filter_equals_direct_form_one_recurrence():
    # The C model's difference equation, written out here (direct form I, one section after another).
    x = np.random.default_rng(1).standard_normal((2, 600))
    ref = x.copy()
    for b0, b1, b2, _, a1, a2 in middle_ear_sos(FS):
        inp, ref = ref, np.zeros_like(ref)
        for n in range(x.shape[-1]):
            ref[:, n] = (b0 * inp[:, n] + b1 * inp[:, n - 1] * (n > 0) + b2 * inp[:, n - 2] * (n > 1)
                         - a1 * ref[:, n - 1] * (n > 0) - a2 * ref[:, n - 2] * (n > 1))
    out = middle_ear_filter(torch.from_numpy(x), FS).numpy()
    assert np.abs(out - ref).max() <= 1e-12 * np.abs(ref).max()  # same recurrence: rounding only


@pytest.mark.parametrize("cutoff", [50.0, 320.0, 1000.0, 3000.0])
def test_ihc_lowpass_equals_seven_bilinear_one_poles(cutoff):
    wc = 2 * math.pi * cutoff
    b, a = scipy.signal.bilinear([wc], [1, wc], fs=FS)  # analog one-pole lowpass, bilinear at pin_fs
    c1, c2 = lowpass_coefficients(cutoff, 1 / FS)
    np.testing.assert_allclose([c2, c2, -c1], [b[0], b[1], a[1]], rtol=1e-12)
    x = np.random.default_rng(2).standard_normal((3, 800))
    ref = x
    for _ in range(7):  # seven one-poles in cascade, each by lfilter
        ref = scipy.signal.lfilter(b, a, ref, axis=-1)
    out = ihc_lowpass_filter(torch.from_numpy(x), FS, cutoff, order=7).numpy()
    assert np.abs(out - ref).max() <= 1e-10 * np.abs(ref).max()


def _load(case):
    data = np.load(REFERENCE / f"{case}.npz")
    return data, json.loads(str(data["kwargs_json"]))


def _check_against_c_model(case, n_pin=None):
    data, kwargs = _load(case)
    assert kwargs["species"] == 2 and kwargs["IhcLowPass_order"] == 7 and kwargs["pin_fs"] == FS
    # the wrapper's own resampling of the sound (this package's differs by ~1e-15, see nervegram.py)
    pin = torch.from_numpy(scipy.signal.resample_poly(data["signal"].astype(np.float64), int(FS), int(data["signal_fs"])))
    ref = data["vihcs"]
    n_out = ref.shape[-1]
    if n_pin is not None and n_pin < pin.shape[-1]:
        # The model is causal, so a prefix of pin gives a prefix of vihc; decimated samples whose
        # 201-tap filter (centre +- 100) reaches past the prefix are left out.
        pin = pin[..., :n_pin]
        n_out = (n_pin - 100) // 10
    vihc = ihc_potential(pin, torch.from_numpy(data["cf_list"]), ihc_lowpass_cutoff=float(kwargs["IhcLowPass_cutoff"]))
    out = resample_poly(vihc, 10000, int(FS)).to(torch.float32).numpy()[:, :n_out]
    ref = ref[:, :n_out]
    err = np.abs(out - ref).max()
    scale = np.abs(ref).max()
    if scale == 0:  # silence: the C model gives exact zeros, so must we
        assert err == 0
    else:
        # The tolerance: float32 rounding of the wrapper's output (measured <= 2.1e-6).
        assert err <= 1e-5 * scale, (case, err / scale)


@needs_reference
@pytest.mark.parametrize("case", VIHC_CASES)
def test_ihc_potential_matches_c_model_prefix(case, bez2018_implementation):
    _check_against_c_model(case, n_pin=3000)


@needs_reference
@pytest.mark.parametrize("case", VIHC_CASES)
def test_ihc_potential_matches_c_model_full(case):
    # compiled loops only: the tensor ops need ~40 CPU-s for these (their prefixes are above)
    _check_against_c_model(case)


def test_compiled_loop_equals_tensor_ops(monkeypatch):
    # Two independent implementations of the same recurrences; on a moderate sound (no group
    # delay sits on a floor() boundary) they agree to float64 rounding of different operation
    # orders (measured 2.6e-13 relative between the tensor ops and the C model at 70 dB).
    cf = torch.tensor([125.0, 600.0, 2500.0, 8000.0, 16000.0], dtype=torch.float64)
    pin = 0.06 * torch.randn(2, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    runs = {}
    for name in ("numba", "torch"):
        monkeypatch.setenv("PHASELOCKNET_BEZ2018_KERNELS", name)
        runs[name] = ihc_potential(pin, cf, ihc_lowpass_cutoff=1000.0, cohc=0.5)
    err = (runs["numba"] - runs["torch"]).abs().max() / runs["torch"].abs().max()
    assert float(err) <= 1e-9, float(err)
    assert float(runs["torch"].abs().max()) > 0


def test_stream_in_chunks_equals_one_call(bez2018_implementation):
    cf = torch.tensor([125.0, 1000.0, 9000.0])
    pin = 0.05 * torch.randn(2, 700, dtype=torch.float64)
    whole = ihc_potential(pin, cf, ihc_lowpass_cutoff=1000.0)
    stream = IHCStream(cf, (2,), ihc_lowpass_cutoff=1000.0)
    parts = [stream(pin[:, a:b]) for a, b in [(0, 5), (5, 300), (300, 333), (333, 700)]]
    assert whole.shape == (2, 3, 700)
    # The same arithmetic in the same order: bitwise equal (the gain schedule and delay lines carry over).
    assert torch.equal(torch.cat(parts, dim=-1), whole)


@pytest.mark.parametrize("kwargs,match", [
    (dict(cf=[100.0]), "125 Hz"), (dict(cf=[30000.0]), "125 Hz"), (dict(pin_fs=44100.0), "pin_fs"),
    (dict(species=1), "species"), (dict(cohc=1.5), "cohc"), (dict(cihc=-0.1), "cihc"),
    (dict(ihc_lowpass_cutoff=0.0), "cutoff"), (dict(ihc_lowpass_order=2.5), "order"), (dict(ihc_lowpass_order=8), "1..7"),
    (dict(bandwidth_scale_factor=0.0), "bandwidth"), (dict(pin=torch.full((50,), math.nan)), "NaN"),
    (dict(pin=torch.full((50,), math.inf)), "NaN or Inf"),
])
def test_bad_parameters(kwargs, match, bez2018_implementation):
    kwargs = dict(kwargs)  # the parameter set is shared by both implementations' runs
    cf = kwargs.pop("cf", [1000.0])
    pin = kwargs.pop("pin", torch.zeros(50, dtype=torch.float64))
    with pytest.raises(CochleaParameterError, match=match):
        ihc_potential(pin, torch.tensor(cf), **kwargs)
