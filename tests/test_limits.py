"""Config/arch bounds (docs/limits.md): every published model passes, absurd values are refused
by name before anything is allocated."""

from __future__ import annotations

import copy
import time

import pytest
import torch

from phaselocknet.errors import ConfigError
from phaselocknet.limits import check_model_config
from phaselocknet.model import PhaselocknetModel

from conftest import config_with, needs_shared, published_model_dirs, read_model_dir, simplified_cochlea, tiny_word_arch


@needs_shared
def test_all_published_configs_are_within_the_limits():
    dirs = published_model_dirs()
    assert len(dirs) == 260
    for model_dir in dirs:
        config, arch = read_model_dir(model_dir)
        check_model_config(config, arch)  # raises ConfigError naming the value otherwise


@needs_shared
def test_published_models_build_on_meta_within_the_size_limits():
    # The meta build totals parameters and activations (check_network_size) for each model.
    for model_dir in published_model_dirs()[::13]:
        config, arch = read_model_dir(model_dir)
        PhaselocknetModel(config, arch, spikes="mean", network_device="meta")


def _waveform_model():
    return config_with(simplified_cochlea(20000.0), {"label_word_int": 11}), tiny_word_arch(400)


LP = ("kwargs_cochlea", "kwargs_fir_lowpass_filter_output")
RL = ("kwargs_cochlea", "kwargs_sigmoid_rate_level_function")
FB = ("kwargs_cochlea", "config_filterbank")


@pytest.mark.parametrize(
    "where, path, value, words",
    [
        ("arch", (7, "args", "units"), 10**12, "units"),
        ("arch", (2, "args", "filters"), 10**9, "filters"),
        ("arch", (4, "args", "pool_size"), [10**6, 10**6], "pool_size"),
        ("arch", (5, "args", "epsilon"), float("nan"), "epsilon"),
        ("config", FB + ("num_cf",), 10**6, "num_cf"),
        ("config", FB + ("cfs",), [float("nan")] * 50, "cfs"),
        ("config", ("kwargs_cochlea", "sr_input"), 1e12, "sr_input"),
        ("config", LP + ("order",), 10**6, "order"),
        ("config", LP + ("cutoff",), -3000.0, "cutoff"),
        ("config", RL + ("dynamic_range",), [0.0, 40.0, 80.0], "dynamic_range"),
        ("config", ("n_classes_dict", "label_word_int"), 10**12, "label_word_int"),
    ],
)
def test_absurd_values_are_refused_quickly_by_name(where, path, value, words):
    config, arch = _waveform_model()
    doc = config if where == "config" else arch
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = copy.deepcopy(value)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=words):
        PhaselocknetModel(config, arch, spikes="mean")
    # Before the fix, units=10**12 was a MemoryError and order 10**6 a hang: now instant.
    assert time.perf_counter() - started < 2.0


def test_a_too_large_network_is_refused_on_the_meta_device():
    # 3 x 50 x 400 inputs flattened into 900000 units: 10**10 parameters, never allocated.
    config, arch = _waveform_model()
    arch[7]["args"]["units"] = 900_000
    with pytest.raises(ConfigError, match="parameters"):
        PhaselocknetModel(config, arch, spikes="mean")


def test_structural_faults_are_config_errors():
    config, arch = _waveform_model()
    arch[3]["layer_type"] = "no_such_layer"
    with pytest.raises(ConfigError, match="unknown layer_type"):
        PhaselocknetModel(config, arch)
    with pytest.raises(ConfigError, match="must be a JSON object"):
        PhaselocknetModel([], arch)
    with pytest.raises(ConfigError, match="non-empty list"):
        PhaselocknetModel(config, {})
