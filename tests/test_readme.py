"""The README's Python examples run as written.

Every ```python block of README.md is executed in order, in one namespace, in a temporary
directory that holds what the examples name: a bundle at the README's path (a small random-
weights model with the published localization front end: the real 50 kHz, 1.2 s binaural
input) and that model's config.json and arch.json. The comments stating values are checked
where they are facts of the model (sample rate, lengths, heads, dtype)."""

from __future__ import annotations

import json
import re

import torch

import phaselocknet
from conftest import REPO, simplified_cochlea, tiny_localization_arch

README = REPO / "README.md"
BUNDLE = "bundles/sound_localization/simplified_IHC3000/arch01.safetensors"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch):
    text = README.read_text()
    blocks = python_blocks(text)
    assert blocks and BUNDLE in blocks[0]
    config = {"kwargs_cochlea": simplified_cochlea(50000.0, max_cf=16000.0), "n_classes_dict": {"label_loc_int": 504}}
    arch = tiny_localization_arch()
    torch.manual_seed(0)
    phaselocknet.save(phaselocknet.from_config(config, arch), tmp_path / BUNDLE,
                      model_id="sound_localization/simplified_IHC3000/arch01")
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    # The facts the first example states in its comments.
    loaded = phaselocknet.load(BUNDLE, spikes="mean", excerpt=1000)
    assert (loaded.sample_rate, loaded.input_kind, loaded.binaural, loaded.input_length) == (50000.0, "waveform", True, 60000)
    assert loaded.heads == {"label_loc_int": 504}
    assert set(namespace["logits"]) == {"label_loc_int"} and namespace["logits"]["label_loc_int"].shape == (2, 504)
    assert set(namespace["acts"]) == {"nerve", "conv_1", "fc_intermediate"}
    azimuth, elevation = namespace["model"].labels("label_loc_int")[namespace["k"]]
    assert -180 <= azimuth <= 360 and -90 <= elevation <= 90
    assert namespace["model"].cnn_dtype == torch.float64
    assert (tmp_path / "out.safetensors").is_file()
