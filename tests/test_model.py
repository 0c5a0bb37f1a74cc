"""The public model API: facts, input checks, stochastic controls, activations, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import phaselocknet
from phaselocknet.labels import localization_label


def _speechlike(n: int, sample_rate: float, seed: int = 0, level_db: float = 60.0) -> np.ndarray:
    from phaselocknet.audio import set_dbspl

    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in (180, 360, 540, 1200, 2500))
    return set_dbspl(x + 0.3 * rng.standard_normal(n), level_db)


def test_facts_of_waveform_word_model(tiny_word_waveform):
    config, arch = tiny_word_waveform
    model = phaselocknet.from_config(config, arch, spikes="mean")
    assert model.input_kind == "waveform"
    assert model.sample_rate == 20000.0
    assert model.input_length == 800  # 400 nerve samples at 10 kHz = 0.04 s at 20 kHz
    assert model.binaural is False
    assert model.heads == {"label_word_int": 11}
    assert not model.training
    x = torch.from_numpy(_speechlike(800, 20000.0)).float()[None].repeat(3, 1)
    logits = model(x)
    assert set(logits) == {"label_word_int"} and logits["label_word_int"].shape == (3, 11)


def test_facts_of_binaural_localization_model(localization_waveform):
    config, arch = localization_waveform
    model = phaselocknet.from_config(config, arch, spikes="mean", excerpt=1000)
    assert (model.input_kind, model.binaural, model.sample_rate, model.input_length) == ("waveform", True, 50000.0, 60000)
    assert model.expected_input_shape() == (2, 60000)
    nerve = model.nerve_representation(torch.zeros(1, 2, 60000))
    # 12000 nerve samples per ear, excerpt of 10000; ear 0's three channels then ear 1's.
    assert nerve.shape == (1, 6, 50, 10000)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 60000), "binaural waveform of shape (batch, 2, 60000)"),
        ((2, 3, 60000), "binaural waveform of shape (batch, 2, 60000)"),
        ((2, 2, 44100), "resample to 50000 Hz"),
    ],
)
def test_wrong_input_shape_names_what_was_expected(localization_waveform, shape, message):
    config, arch = localization_waveform
    model = phaselocknet.from_config(config, arch, spikes="mean", excerpt=1000)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model(torch.zeros(shape))


def test_nan_input_is_refused_with_example_index(tiny_word_nervegram):
    config, arch = tiny_word_nervegram
    model = phaselocknet.from_config(config, arch, spikes="mean")
    x = torch.rand(3, 3, 50, 200) * 100
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf.*\[1\]"):
        model(x)


def test_mean_spikes_with_fixed_excerpt_is_bit_identical(localization_waveform):
    config, arch = localization_waveform
    model = phaselocknet.from_config(config, arch, spikes="mean", excerpt=700)
    x = torch.from_numpy(np.stack([_speechlike(60000, 50000.0, seed=s) for s in (1, 2)])).float()[:, None].repeat(1, 2, 1)
    first = model(x)["label_loc_int"]
    second = model(x)["label_loc_int"]
    assert torch.equal(first, second)


def test_excerpt_offset_selects_the_nerve_samples(localization_waveform):
    config, arch = localization_waveform
    x = torch.from_numpy(_speechlike(60000, 50000.0)).float()[None, None].repeat(1, 2, 1)
    full = phaselocknet.from_config(config, arch, spikes="mean", excerpt=0)
    late = phaselocknet.from_config(config, arch, spikes="mean", excerpt=1500)
    rates = torch.cat([full.front_end(x[:, ear]) for ear in range(2)], dim=1)
    counts = full.front_end.spike_generator(rates, "mean", None)
    assert torch.equal(late.nerve_representation(x), counts[..., 1500:11500])
    with pytest.raises(ValueError, match="excerpt=2001"):
        phaselocknet.from_config(config, arch, spikes="mean", excerpt=2001)


def test_nervegram_localization_needs_no_excerpt(localization_nervegram):
    config, arch = localization_nervegram
    model = phaselocknet.from_config(config, arch, spikes="mean")
    assert model.excerpt_length is None and model.input_length == 10000


def test_random_excerpt_starts_cover_the_trained_range(localization_waveform):
    config, arch = localization_waveform
    model = phaselocknet.from_config(config, arch, spikes="mean")
    # A ramp along time reveals where each excerpt starts.
    ramp = torch.arange(12000, dtype=torch.float32).expand(400, 1, 1, 12000)
    generators = model._generators(400, "cpu", example_seeds=list(range(400)))
    starts = model._take_excerpt(ramp, generators)[:, 0, 0, 0]
    assert starts.min() >= 500 and starts.max() <= 1500
    assert starts.min() < 560 and starts.max() > 1440  # uniform over 1001 values: both ends reached
    again = model._take_excerpt(ramp[:1], model._generators(1, "cpu", example_seeds=[7]))[0, 0, 0, 0]
    assert again == starts[7]


def test_sampled_spikes_reproducible_with_seed(tiny_word_nervegram):
    config, arch = tiny_word_nervegram
    x = torch.rand(2, 3, 50, 200) * 200
    a = phaselocknet.from_config(config, arch, seed=5)
    b = phaselocknet.from_config(config, arch, seed=5)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.nerve_representation(x), b.nerve_representation(x))
    assert not torch.equal(a.nerve_representation(x), a.nerve_representation(x))  # the stream advances
    counts = a.nerve_representation(x)
    assert torch.equal(counts, counts.round()) and counts.min() >= 0


def test_example_seeds_make_draws_independent_of_batch(tiny_word_nervegram):
    config, arch = tiny_word_nervegram
    model = phaselocknet.from_config(config, arch)
    x = torch.rand(4, 3, 50, 200) * 200
    together = model.nerve_representation(x, example_seeds=[10, 11, 12, 13])
    alone = model.nerve_representation(x[2:3], example_seeds=[12])
    assert torch.equal(together[2:3], alone)


def test_activations_match_forward(tiny_word_nervegram):
    config, arch = tiny_word_nervegram
    model = phaselocknet.from_config(config, arch, spikes="mean")
    x = torch.rand(2, 3, 50, 200) * 200
    acts = model.activations(x, ["nerve", "block0_conv", "fc_top"])
    assert list(acts) == ["nerve", "block0_conv", "fc_top"]
    assert acts["nerve"].shape == (2, 3, 50, 200)
    assert acts["block0_conv"].shape[:2] == (2, 4)
    logits = model(x)
    for head in logits:
        assert torch.allclose(acts["fc_top"][head], logits[head])
    with pytest.raises(ValueError, match="no_such_layer"):
        model.activations(x, ["no_such_layer"])


def test_gradients_reach_the_waveform(tiny_word_waveform):
    config, arch = tiny_word_waveform
    model = phaselocknet.from_config(config, arch, spikes="mean")
    x = torch.from_numpy(_speechlike(800, 20000.0)).float()[None].requires_grad_(True)
    model(x)["label_word_int"][0, 3].backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_silence_gives_finite_gradients(tiny_word_waveform):
    config, arch = tiny_word_waveform
    model = phaselocknet.from_config(config, arch, spikes="mean")
    x = torch.zeros(1, 800, requires_grad=True)
    model(x)["label_word_int"].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_labels(localization_nervegram, tiny_word_nervegram):
    model = phaselocknet.from_config(*localization_nervegram, spikes="mean")
    labels = model.labels("label_loc_int")
    assert len(labels) == 504
    assert labels[0] == (0, 0) and labels[71] == (355, 0) and labels[72] == (0, 10) and labels[503] == (355, 60)
    assert localization_label(7 * 72 - 1) == (355, 60)
    config, arch = tiny_word_nervegram
    names = {"label_word_int": [""] + [f"w{k}" for k in range(1, 11)]}
    word = phaselocknet.from_config(config, arch, labels=names)
    assert word.labels("label_word_int")[3] == "w3"
    assert word.labels("label_speaker_int") == list(range(7))
    with pytest.raises(KeyError, match="label_loc_int"):
        word.labels("label_loc_int")


def test_bad_options_are_refused(tiny_word_nervegram):
    config, arch = tiny_word_nervegram
    with pytest.raises(ValueError, match="spikes='exact'"):
        phaselocknet.from_config(config, arch, spikes="exact")
    with pytest.raises(ValueError, match="excerpt='middle'"):
        phaselocknet.from_config(config, arch, excerpt="middle")
