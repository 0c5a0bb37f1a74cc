"""Every one of the 260 published configurations builds and runs at its real input length.

Each model is built from its own config.json/arch.json and run through its own forward
code on the 'meta' device (shapes without arithmetic), so all 260 are exercised quickly;
then one model per distinct CNN (same arch.json, same input shape) and per distinct front
end runs for real, with numbers, at batch 2.
"""

from __future__ import annotations

import json

import pytest
import torch

import phaselocknet
from conftest import needs_shared, published_model_dirs, read_model_dir

pytestmark = needs_shared

MODEL_DIRS = published_model_dirs()
EXPECTED = {
    "sound_localization": ({"label_loc_int": 504}, True),
    "word_recognition": ({"label_word_int": 794}, False),
    "spkr_recognition": ({"label_speaker_int": 433}, False),
    "spkr_word_recognition": ({"label_speaker_int": 433, "label_word_int": 794}, False),
}


def _model_id(model_dir) -> str:
    return "/".join(model_dir.parts[-3:])


def test_all_260_published_models_are_present():
    assert len(MODEL_DIRS) == 260


@pytest.mark.parametrize("model_dir", MODEL_DIRS, ids=_model_id)
def test_builds_and_gives_logits_of_the_right_shape(model_dir):
    config, arch = read_model_dir(model_dir)
    task = model_dir.parts[-3]
    heads, binaural = EXPECTED[task]
    with torch.device("meta"):
        model = phaselocknet.from_config(config, arch, spikes="mean", excerpt=1000)
        x = torch.empty((2, *model.expected_input_shape()))
        logits = model(x)
    assert model.heads == heads and model.binaural == binaural
    assert {head: tuple(v.shape) for head, v in logits.items()} == {head: (2, n) for head, n in heads.items()}
    if model.input_kind == "waveform":
        assert model.input_length == (60000 if binaural else 40000)
    else:
        assert model.input_length == (10000 if binaural else 20000)


def _representatives():
    """One model per distinct front end and one per distinct CNN (arch.json + input shape)."""
    chosen, fronts, cnns = [], set(), set()
    for model_dir in MODEL_DIRS:
        config, arch = read_model_dir(model_dir)
        front = json.dumps(config["kwargs_cochlea"], sort_keys=True)
        cnn = (json.dumps(arch, sort_keys=True), model_dir.parts[-3] == "sound_localization")
        if front not in fronts or cnn not in cnns:
            chosen.append(model_dir)
            fronts.add(front)
            cnns.add(cnn)
    return chosen


@pytest.mark.slow
@pytest.mark.parametrize("model_dir", _representatives(), ids=_model_id)
def test_runs_for_real_at_batch_two(model_dir):
    config, arch = read_model_dir(model_dir)
    torch.manual_seed(0)
    model = phaselocknet.from_config(config, arch, spikes="mean", excerpt=1000)
    generator = torch.Generator().manual_seed(1)
    if model.input_kind == "waveform":
        x = 0.02 * torch.randn((2, *model.expected_input_shape()), generator=generator)  # ~60 dB SPL noise
    else:
        x = 250 * torch.rand((2, *model.expected_input_shape()), generator=generator)
    with torch.no_grad():
        logits = model(x)
    for head, n in model.heads.items():
        assert logits[head].shape == (2, n)
        assert torch.isfinite(logits[head]).all()
