"""Checkpoint variables -> network tensors: layouts and every refusal, on synthetic checkpoints.

The Keras variable shapes here are written out by hand from the Keras documentation
(Conv2D kernel (kh, kw, cin/groups, cout), Dense kernel (in, out), LayerNormalization gamma
of the normalized axes' sizes in TF axis order), and each converted layer is checked by
running it against a numpy computation that uses the TF-layout array directly. No
TensorFlow is needed: the Checkpoint objects are what read_checkpoint would return.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import tiny_localization_arch, tiny_word_arch
from phaselocknet.network import build_network
from phaselocknet_convert.checkpoint import Checkpoint, CheckpointVariable
from phaselocknet_convert.errors import ConversionError
from phaselocknet_convert.mapping import checkpoint_state_dict, keras_layers

LOC_INPUT = (6, 50, 400)  # binaural: 6 channels


def _checkpoint(layers: list[tuple[str, dict[str, np.ndarray]]], seed_positions=True) -> Checkpoint:
    """A Checkpoint with layer_with_weights-N = the N-th (name, {var: array}) entry."""
    variables, arrays = [], {}
    for position, (layer, values) in enumerate(layers):
        for name, array in values.items():
            key = f"layer_with_weights-{position}/{name}/.ATTRIBUTES/VARIABLE_VALUE"
            variables.append(
                CheckpointVariable(key=key, full_name=f"{layer}/{name}", layer=layer, name=name,
                                   position=position if seed_positions else None,
                                   shape=tuple(array.shape), dtype=str(array.dtype))
            )
            arrays[key] = array
    return Checkpoint(prefix=None, variables=variables, arrays=arrays, dropped=["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"])


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _localization_layers(flat: int, rng) -> list[tuple[str, dict]]:
    bn = lambda c: {"gamma": _rand(rng, c), "beta": _rand(rng, c), "moving_mean": _rand(rng, c),  # noqa: E731
                    "moving_variance": rng.uniform(0.5, 2, c).astype(np.float32)}
    return [
        ("conv_0", {"kernel": _rand(rng, 1, 8, 3, 4), "bias": _rand(rng, 4)}),  # groups=2: cin/groups = 3
        ("batch_norm_0", bn(4)),
        ("conv_1", {"kernel": _rand(rng, 3, 4, 4, 8), "bias": _rand(rng, 8)}),
        ("batch_norm_1", bn(8)),
        ("fc_intermediate", {"kernel": _rand(rng, flat, 16), "bias": _rand(rng, 16)}),
        ("batch_norm_fc_intermediate", bn(16)),
        ("fc_top", {"kernel": _rand(rng, 16, 504), "bias": _rand(rng, 504)}),
    ]


@pytest.fixture
def localization():
    network = build_network(tiny_localization_arch(), LOC_INPUT, {"label_loc_int": 504})
    flat = network.output_shapes["flatten_end_conv"][0]
    return network, _localization_layers(flat, np.random.default_rng(0))


def _numpy_grouped_conv_valid(x, kernel, bias, groups):
    """x (B, C, H, W), kernel TF HWIO (kh, kw, C/groups, cout): VALID cross-correlation."""
    kh, kw, cin_g, cout = kernel.shape
    b, _, h, w = x.shape
    out = np.zeros((b, cout, h - kh + 1, w - kw + 1))
    per_group = cout // groups
    for o in range(cout):
        g = o // per_group
        for i in range(cin_g):
            for dh in range(kh):
                for dw in range(kw):
                    out[:, o] += kernel[dh, dw, i, o] * x[:, g * cin_g + i, dh : dh + out.shape[2], dw : dw + out.shape[3]]
    return out + bias[None, :, None, None]


def test_grouped_conv_dense_bn_and_single_head(localization):
    network, layers = localization
    state = checkpoint_state_dict(network, _checkpoint(layers))
    network.load_state_dict(state)
    network.eval()  # batch norm with the moving statistics
    values = dict(layers)
    rng = np.random.default_rng(1)

    x = rng.standard_normal((2, 6, 5, 20))
    conv = network.get_submodule("conv_0")  # kernel height 1: VALID_TIME pads nothing
    got = conv(torch.from_numpy(x).float()).detach().numpy()
    want = _numpy_grouped_conv_valid(x, values["conv_0"]["kernel"], values["conv_0"]["bias"], groups=2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    bn = values["batch_norm_1"]
    x = rng.standard_normal((2, 8, 3, 5))
    got = network.get_submodule("batch_norm_1")(torch.from_numpy(x).float()).detach().numpy()
    c = (slice(None), None, None)
    want = (x - bn["moving_mean"][c]) / np.sqrt(bn["moving_variance"][c] + 1e-3) * bn["gamma"][c] + bn["beta"][c]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    for name, module in (("fc_intermediate", network.get_submodule("fc_intermediate")),
                         ("fc_top", network.get_submodule("fc_top")["label_loc_int"])):
        kernel, bias = values[name]["kernel"], values[name]["bias"]
        x = rng.standard_normal((3, kernel.shape[0]))
        got = module(torch.from_numpy(x).float()).detach().numpy()
        np.testing.assert_allclose(got, x @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_state_dict_is_exactly_the_networks(localization):
    network, layers = localization
    state = checkpoint_state_dict(network, _checkpoint(layers))
    assert list(state) == sorted(network.state_dict())
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in state.values())
    assert "fc_top.label_loc_int.weight" in state and "batch_norm_0.running_var" in state
    assert not any("num_batches_tracked" in name for name in state)


def test_layer_norm_over_freq_time_channels_and_two_heads():
    arch = [
        {"layer_type": "tf.keras.layers.LayerNormalization", "args": {"axis": [1, 2, 3], "name": "input_norm"}},
        {"layer_type": "tf.keras.layers.LayerNormalization", "args": {"axis": -1, "name": "norm_c", "center": False}},
        {"layer_type": "tf.layers.flatten", "args": {"name": "flatten"}},
        {"layer_type": "multi_fc_top_classification", "args": {"name": "fc_top"}},
    ]
    network = build_network(arch, (3, 4, 5), {"label_word_int": 6, "label_speaker_int": 2})
    rng = np.random.default_rng(2)
    gamma, beta = _rand(rng, 4, 5, 3), _rand(rng, 4, 5, 3)  # TF: (freq, time, channels)
    gamma_c = _rand(rng, 3)
    heads = {k: (_rand(rng, 60, n), _rand(rng, n)) for k, n in (("label_speaker_int", 2), ("label_word_int", 6))}
    layers = [
        ("input_norm", {"gamma": gamma, "beta": beta}),
        ("norm_c", {"gamma": gamma_c}),  # center=False: no beta
        # Keras numbers the heads in sorted order and names them <layer>_<head>.
        ("fc_top_label_speaker_int", dict(zip(("kernel", "bias"), heads["label_speaker_int"]))),
        ("fc_top_label_word_int", dict(zip(("kernel", "bias"), heads["label_word_int"]))),
    ]
    network.load_state_dict(checkpoint_state_dict(network, _checkpoint(layers)))

    x_tf = rng.standard_normal((2, 4, 5, 3))  # NHWC
    mean = x_tf.mean(axis=(1, 2, 3), keepdims=True)
    var = x_tf.var(axis=(1, 2, 3), keepdims=True)
    y = (x_tf - mean) / np.sqrt(var + 1e-3) * gamma + beta
    m2 = y.mean(axis=-1, keepdims=True)
    y = (y - m2) / np.sqrt(y.var(axis=-1, keepdims=True) + 1e-3) * gamma_c
    flat = y.reshape(2, -1)  # Keras flattens channels last
    out = network(torch.from_numpy(np.transpose(x_tf, (0, 3, 1, 2))).float())
    for head, (kernel, bias) in heads.items():
        np.testing.assert_allclose(out[head].detach().numpy(), flat @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_keras_layer_order_and_names():
    network = build_network(tiny_word_arch(200), (3, 50, 200), {"label_word_int": 11, "label_speaker_int": 7})
    layers = [(layer.keras_name, layer.variables) for layer in keras_layers(network)]
    assert layers == [
        ("block0_conv", ("kernel", "bias")),
        ("block0_norm", ("gamma", "beta")),
        ("fc_intermediate_dense", ("kernel", "bias")),
        ("fc_intermediate_norm", ("gamma", "beta")),
        ("fc_top_label_speaker_int", ("kernel", "bias")),
        ("fc_top_label_word_int", ("kernel", "bias")),
    ]  # input_norm (center and scale false) owns nothing and takes no number


def test_missing_full_names_fall_back_on_positions(localization):
    network, layers = localization
    checkpoint = _checkpoint(layers)
    checkpoint.variables = [dataclasses.replace(v, full_name="", layer=None) for v in checkpoint.variables]
    state = checkpoint_state_dict(network, checkpoint)
    np.testing.assert_array_equal(state["fc_top.label_loc_int.bias"].numpy(), dict(layers)["fc_top"]["bias"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda ls: [l for l in ls if l[0] != "conv_1"], r"no variables for Keras layer 'conv_1'"),
        (lambda ls: ls + [("conv_9", {"kernel": np.zeros((1, 1, 8, 8), np.float32)})], r"checkpoint layer 'conv_9'.*not in arch.json"),
        (lambda ls: [(n, {k: v for k, v in d.items() if (n, k) != ("conv_1", "bias")}) for n, d in ls], r"'conv_1'.*lacks conv_1/bias"),
        (lambda ls: [(n, {**d, "extra": d["bias"]} if n == "conv_1" else d) for n, d in ls], r"'conv_1'.*conv_1/extra.*unused"),
        (lambda ls: [(n, {**d, "kernel": np.zeros((3, 4, 4, 9), np.float32)} if n == "conv_1" else d) for n, d in ls],
         r"'conv_1'.*shape \[3, 4, 4, 9\]"),
        (lambda ls: [(n, {**d, "kernel": np.zeros((1, 8, 6, 4), np.float32)} if n == "conv_0" else d) for n, d in ls],
         r"'conv_0'.*\(4, 6, 1, 8\).*expected \(4, 3, 1, 8\)"),  # a checkpoint of an ungrouped conv
        (lambda ls: [ls[1], ls[0], *ls[2:]], r"'conv_0'.*layer_with_weights-1.*weighted layer number 0"),
        (lambda ls: [(n, {k: v.astype(np.int32) for k, v in d.items()} if n == "batch_norm_0" else d) for n, d in ls],
         r"'batch_norm_0'.*dtype int32"),
    ],
    ids=["missing-layer", "unknown-layer", "missing-variable", "unused-variable", "shape", "grouping", "order", "dtype"],
)
def test_refusals_name_the_layer(localization, damage, message):
    network, layers = localization
    with pytest.raises(ConversionError, match=message):
        checkpoint_state_dict(network, _checkpoint(damage(layers)))


def test_single_head_named_like_a_multi_head_layer_is_refused(localization):
    network, layers = localization
    layers = [("fc_top_label_loc_int", d) if n == "fc_top" else (n, d) for n, d in layers]
    with pytest.raises(ConversionError, match="fc_top_label_loc_int"):
        checkpoint_state_dict(network, _checkpoint(layers))
