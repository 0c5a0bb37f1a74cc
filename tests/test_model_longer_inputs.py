"""Inputs longer than a model needs along time (issue 9): the authors' 13000-sample localization
nervegrams, and any longer input, are excerpted instead of refused.

The reference is plain slicing: the model given a long input with excerpt=s must give exactly
what it gives for input[..., s:s + input_length] (spikes="mean": deterministic, tolerance 0);
with excerpt="random" the start is drawn uniformly over the whole input (the authors'
random_slice with no buffer), which a time-ramp input makes visible in the nerve output.
"""

from __future__ import annotations

import pytest
import torch

import phaselocknet


@pytest.fixture
def loc_nervegram(localization_nervegram):
    config, arch = localization_nervegram
    torch.manual_seed(0)
    return phaselocknet.from_config(config, arch, spikes="mean", excerpt=1234)


def test_fixed_excerpt_of_a_13000_sample_nervegram_is_that_slice(loc_nervegram):
    x = torch.rand(2, 2, 3, 50, 13000) * 200
    with torch.no_grad():
        long = loc_nervegram(x)["label_loc_int"]
        sliced = loc_nervegram(x[..., 1234:11234])["label_loc_int"]
        other = loc_nervegram(x[..., 0:10000])["label_loc_int"]
    assert torch.equal(long, sliced)
    assert not torch.equal(long, other)


def test_random_excerpt_is_uniform_over_the_whole_nervegram(localization_nervegram):
    config, arch = localization_nervegram
    model = phaselocknet.from_config(config, arch, spikes="mean", excerpt="random")
    # Rate = time index: the first nerve sample of the excerpt says where it starts.
    ramp = torch.arange(13000, dtype=torch.float32).expand(2, 3, 50, 13000)
    starts = []
    for first in range(0, 32, 16):
        x = ramp.expand(16, 2, 3, 50, 13000)
        nerve = model.nerve_representation(x, example_seeds=list(range(first, first + 16)))
        scale = model.front_end.spike_generator(torch.ones(1, 6, 50, 1), "mean", None)[0, :, :, 0]
        starts += [int(round(float(n[:, :, 0].flatten()[0] / scale.flatten()[0]))) for n in nerve]
    assert all(0 <= s <= 3000 for s in starts)
    # Beyond the [500, 2500] training window on both sides: the whole nervegram is used.
    assert min(starts) < 500 and max(starts) > 2500
    assert len(set(starts)) > 25


def test_longer_word_nervegram_and_waveform_use_the_fixed_start(tiny_word_nervegram, tiny_word_waveform):
    for (config, arch), shape in ((tiny_word_nervegram, (1, 3, 50, 260)), (tiny_word_waveform, (1, 860))):
        model = phaselocknet.from_config(config, arch, spikes="mean", excerpt=7)
        n = model.input_length
        x = torch.rand(*shape[:-1], n + 60) * (100 if len(shape) > 2 else 0.02)
        with torch.no_grad():
            assert torch.equal(model(x)["label_word_int"], model(x[..., 7 : 7 + n])["label_word_int"])


def test_out_of_range_start_and_short_inputs_are_refused(loc_nervegram):
    with pytest.raises(ValueError, match=r"excerpt=1234 does not fit a 11000-sample input: use 0..1000"):
        loc_nervegram(torch.rand(1, 2, 3, 50, 11000))
    with pytest.raises(ValueError, match=r"\(batch, 2, 3, 50, 10000\) \(or longer along time\)"):
        loc_nervegram(torch.rand(1, 2, 3, 50, 9999))


def test_binaural_waveform_longer_input_is_centre_trimmed_with_a_fixed_nerve_excerpt(localization_waveform):
    config, arch = localization_waveform
    model = phaselocknet.from_config(config, arch, spikes="mean", excerpt=1000)
    n = model.input_length
    x = torch.randn(1, 2, n + 400) * 0.02
    with torch.no_grad():
        assert torch.equal(model(x)["label_loc_int"], model(x[..., 200 : 200 + n])["label_loc_int"])
