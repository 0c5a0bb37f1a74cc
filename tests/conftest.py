"""Shared fixtures: small hand-written model configurations and the published tree."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from phaselocknet.periphery.presets import simplified_cochlea_config

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PUBLISHED = SHARED / "phaselocknet_models"
WORD_LABELS_CSV = SHARED / "labels" / "word_int_encoding.csv"
SPEECH_WAV = SHARED / "sounds" / "022_animals.wav"

needs_shared = pytest.mark.skipif(
    not PUBLISHED.is_dir(),
    reason=f"published model configurations not found at {PUBLISHED} (../shared beside the repo)",
)


@pytest.fixture(params=["numba", "torch"])
def bez2018_implementation(request, monkeypatch):
    """Each BEZ2018 test that takes this runs twice: the compiled CPU loops (what the CPU uses)
    and the tensor ops (what CUDA uses), selected by PHASELOCKNET_BEZ2018_KERNELS."""
    monkeypatch.setenv("PHASELOCKNET_BEZ2018_KERNELS", request.param)
    return request.param


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread (bit-reproducible float sums whatever the machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def published_model_dirs() -> list[Path]:
    if not PUBLISHED.is_dir():
        return []
    return sorted(path.parent for path in PUBLISHED.glob("*/*/*/config.json"))


def read_model_dir(model_dir: Path) -> tuple[dict, list]:
    return json.loads((model_dir / "config.json").read_text()), json.loads((model_dir / "arch.json").read_text())


def simplified_cochlea(sr_input: float, cutoff: float = 3000.0, max_cf: float = 8000.0) -> dict:
    """The paper's simplified front end (as in the published simplified_* configs)."""
    return simplified_cochlea_config(cutoff, sr_input, max_cf)


NERVEGRAM_COCHLEA = {
    "kwargs_custom_slice": {"args": [0, 3], "axis": 3, "expand_dims": True},
    "kwargs_spike_generator_binomial": {"mode": "approx", "n_per_channel": [384, 160, 96]},
    "kwargs_spike_rate_noise": {},
    "sr_cochlea": 10000.0, "sr_input": 10000.0, "sr_output": 10000.0,
}


def tiny_word_arch(time: int, n_freq: int = 50) -> list:
    """A small word/speaker-style CNN (reshape, layer norms, conv, hpool, two heads)."""
    return [
        {"layer_type": "reshape", "args": {"name": "input_reshape", "target_shape": [n_freq, time, -1]}},
        {"layer_type": "tf.keras.layers.LayerNormalization", "args": {"axis": [1, 2, 3], "center": False, "name": "input_norm", "scale": False}},
        {"layer_type": "tf.layers.conv2d", "args": {"activation": None, "dilation_rate": [1, 1], "filters": 4, "kernel_size": [2, 8],
                                                    "name": "block0_conv", "padding": "VALID_TIME", "strides": [1, 1]}},
        {"layer_type": "tf.nn.relu", "args": {"name": "block0_relu"}},
        {"layer_type": "hpool", "args": {"name": "block0_pool", "padding": "VALID_TIME", "pool_size": [8, 16], "sqrt_window": True, "strides": [2, 4]}},
        {"layer_type": "tf.keras.layers.LayerNormalization", "args": {"axis": -1, "center": True, "name": "block0_norm", "scale": True}},
        {"layer_type": "tf.layers.flatten", "args": {"name": "fc_flatten"}},
        {"layer_type": "tf.layers.dense", "args": {"activation": None, "name": "fc_intermediate_dense", "units": 16}},
        {"layer_type": "tf.nn.relu", "args": {"name": "fc_intermediate_relu"}},
        {"layer_type": "tf.keras.layers.LayerNormalization", "args": {"axis": -1, "center": True, "name": "fc_intermediate_norm", "scale": True}},
        {"layer_type": "tf.layers.dropout", "args": {"name": "fc_dropout", "rate": 0.5}},
        {"layer_type": "multi_fc_top_classification", "args": {"activation": None, "name": "fc_top"}},
    ]


def tiny_localization_arch() -> list:
    """A small localization-style CNN (conv, maxpool, batch norm, dense, one head)."""
    return [
        {"layer_type": "conv2d", "args": {"activation": None, "dilation_rate": [1, 1], "filters": 4, "groups": 2, "kernel_size": [1, 8],
                                          "name": "conv_0", "padding": "VALID_TIME", "strides": [1, 1]}},
        {"layer_type": "maxpool", "args": {"name": "pool_0", "padding": "VALID", "pool_size": [2, 8], "strides": None}},
        {"layer_type": "tf.nn.relu", "args": {"name": "relu_0"}},
        {"layer_type": "tf.layers.batch_normalization", "args": {"name": "batch_norm_0"}},
        {"layer_type": "conv2d", "args": {"activation": None, "dilation_rate": [1, 1], "filters": 8, "kernel_size": [3, 4],
                                          "name": "conv_1", "padding": "VALID_TIME", "strides": [1, 1]}},
        {"layer_type": "maxpool", "args": {"name": "pool_1", "padding": "VALID", "pool_size": [4, 16], "strides": None}},
        {"layer_type": "tf.nn.relu", "args": {"name": "relu_1"}},
        {"layer_type": "tf.layers.batch_normalization", "args": {"name": "batch_norm_1"}},
        {"layer_type": "tf.layers.flatten", "args": {"name": "flatten_end_conv"}},
        {"layer_type": "tf.layers.dense", "args": {"activation": None, "name": "fc_intermediate", "units": 16}},
        {"layer_type": "tf.nn.relu", "args": {"name": "relu_fc_intermediate"}},
        {"layer_type": "tf.layers.batch_normalization", "args": {"name": "batch_norm_fc_intermediate"}},
        {"layer_type": "tf.layers.dropout", "args": {"name": "dropout", "rate": 0.5}},
        {"layer_type": "fc_top", "args": {"activation": None, "name": "fc_top"}},
    ]


def config_with(kwargs_cochlea: dict, n_classes_dict: dict) -> dict:
    return {"kwargs_cochlea": copy.deepcopy(kwargs_cochlea), "n_classes_dict": dict(n_classes_dict)}


@pytest.fixture
def tiny_word_nervegram():
    """Nervegram-input word+speaker model on 200-sample nervegrams (fast)."""
    return config_with(NERVEGRAM_COCHLEA, {"label_word_int": 11, "label_speaker_int": 7}), tiny_word_arch(200)


@pytest.fixture
def tiny_word_waveform():
    """Waveform-input word model: 0.04 s at 20 kHz -> 400 nerve samples."""
    return config_with(simplified_cochlea(20000.0), {"label_word_int": 11}), tiny_word_arch(400)


@pytest.fixture
def localization_waveform():
    """Binaural waveform localization model (real 1.2 s input at 50 kHz, small CNN)."""
    return config_with(simplified_cochlea(50000.0, max_cf=16000.0), {"label_loc_int": 504}), tiny_localization_arch()


@pytest.fixture
def localization_nervegram():
    return config_with(NERVEGRAM_COCHLEA, {"label_loc_int": 504}), tiny_localization_arch()
