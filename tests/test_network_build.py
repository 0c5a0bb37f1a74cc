"""build_network / Network: structure of all published archs, the forward API, errors, and
(when TensorFlow is installed) a whole network against a Keras 2 model on the same weights."""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch

from conftest import needs_shared, published_model_dirs, read_model_dir, tiny_localization_arch, tiny_word_arch
from phaselocknet.network import Network, build_network
from phaselocknet_convert.keras_layout import tf_dense_names, tf_to_torch_param

LOCALIZATION_INPUT = (6, 50, 10000)
RECOGNITION_INPUT = (3, 50, 20000)
TINY_WORD_INPUT = (3, 50, 200)
TINY_LOC_INPUT = (6, 50, 200)
TWO_HEADS = {"label_word_int": 11, "label_speaker_int": 7}

# Keras 2 seeds its initialisers with random.randint(1, 1e9), a float bound Python 3.11 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:non-integer arguments to randrange:DeprecationWarning")


def published_input_shape(model_dir) -> tuple[int, int, int]:
    return LOCALIZATION_INPUT if model_dir.parts[-3] == "sound_localization" else RECOGNITION_INPUT


def expected_state_keys(arch, n_classes_dict) -> set[str]:
    """State-dict names implied by arch.json alone (the bundle contract)."""
    keys = set()
    for layer in arch:
        kind, args = layer["layer_type"], layer["args"]
        name = args["name"]
        if kind in ("conv2d", "tf.layers.conv2d", "tf.layers.dense"):
            keys |= {f"{name}.weight", f"{name}.bias"}
        elif kind == "tf.layers.batch_normalization":
            keys |= {f"{name}.{t}" for t in ("weight", "bias", "running_mean", "running_var")}
        elif kind == "tf.keras.layers.LayerNormalization":
            keys |= {f"{name}.weight"} if args.get("scale", True) else set()
            keys |= {f"{name}.bias"} if args.get("center", True) else set()
        elif kind in ("fc_top", "multi_fc_top_classification"):
            keys |= {f"{name}.{head}.{t}" for head in n_classes_dict for t in ("weight", "bias")}
    return keys


# ------------------------------------------------------- published archs
MODEL_DIRS = published_model_dirs()


@needs_shared
def test_all_published_archs_found():
    assert len(MODEL_DIRS) == 260


@needs_shared
@pytest.mark.parametrize("model_dir", MODEL_DIRS, ids=lambda p: "/".join(p.parts[-3:]))
def test_published_arch_builds_with_right_heads_and_tensors(model_dir):
    config, arch = read_model_dir(model_dir)
    n_classes = config["n_classes_dict"]
    net = build_network(arch, published_input_shape(model_dir), n_classes, device="meta")
    assert net.layer_names == [layer["args"]["name"] for layer in arch]
    assert net.heads == {head: n_classes[head] for head in sorted(n_classes)}
    assert net.output_shapes[net.layer_names[-1]] == {head: (n,) for head, n in sorted(n_classes.items())}
    state = net.state_dict()
    assert set(state) == expected_state_keys(arch, n_classes)
    for layer in arch:
        args = layer["args"]
        module = getattr(net, args["name"])
        if layer["layer_type"] in ("conv2d", "tf.layers.conv2d"):
            groups = args.get("groups", 1)
            assert tuple(module.weight.shape) == (args["filters"], module.in_channels // groups, *args["kernel_size"])
        if layer["layer_type"] == "tf.layers.dense":
            assert module.out_features == args["units"]
    # the dense layer consumes exactly the flattened conv output
    flatten = next(l["args"]["name"] for l in arch if l["layer_type"] == "tf.layers.flatten")
    dense = next(l["args"]["name"] for l in arch if l["layer_type"] == "tf.layers.dense")
    assert getattr(net, dense).in_features == net.output_shapes[flatten][0]


def _published(task_variant_arch):
    path = MODEL_DIRS[0].parents[2] / task_variant_arch if MODEL_DIRS else None
    if path is None or not path.is_dir():
        pytest.skip(f"published model {task_variant_arch} not available")
    return read_model_dir(path)


@needs_shared
def test_published_word_arch_shapes_by_hand():
    config, arch = _published("word_recognition/IHC3000/arch0_0000")
    net = build_network(arch, RECOGNITION_INPUT, config["n_classes_dict"], device="meta")
    shapes = net.output_shapes
    assert shapes["input_reshape"] == (3, 50, 20000)
    # conv [2, 42] VALID_TIME: freq 50 kept (pad 0 before, 1 after), time 20000 - 41
    assert shapes["block0_conv"] == (32, 50, 19959)
    # hpool [8, 16] / [2, 4]: freq pad 8 - 2 = 6 -> (56 - 8) // 2 + 1; time (19959 - 16) // 4 + 1
    assert shapes["block0_pool"] == (32, 25, 4986)
    # odd freq 25: pad 8 - 25 % 2 = 7 -> (32 - 8) // 2 + 1 = 13; time (4969 - 16) // 4 + 1
    assert shapes["block1_conv"] == (64, 25, 4969)
    assert shapes["block1_pool"] == (64, 13, 1239)
    final_conv = [n for n in net.layer_names if n.endswith("_norm") and n.startswith("block")][-1]
    assert shapes["fc_flatten"] == (math.prod(shapes[final_conv]),)


@needs_shared
def test_published_localization_arch_shapes_by_hand():
    config, arch = _published("sound_localization/IHC3000_delayed_integration/arch01")
    net = build_network(arch, LOCALIZATION_INPUT, config["n_classes_dict"], device="meta")
    # grouped conv [1, 8], 32 filters over 2 ears: each filter sees 3 channels
    assert net.conv_0.weight.shape == (32, 3, 1, 8)
    assert net.output_shapes["conv_0"] == (32, 50, 9993)
    # conv_2 [1, 64] then maxpool [1, 8] (floor): ((9993 - 63 - 63) // 8)
    assert net.output_shapes["pool_2"] == (32, 50, (9993 - 63 - 63) // 8)


@needs_shared
@pytest.mark.parametrize("model_id", ["sound_localization/IHC3000/arch01", "spkr_word_recognition/simplified_IHC3000/arch0_0000"])
def test_published_arch_runs_on_meta_device(model_id):
    config, arch = _published(model_id)
    input_shape = LOCALIZATION_INPUT if model_id.startswith("sound") else RECOGNITION_INPUT
    net = build_network(arch, input_shape, config["n_classes_dict"], device="meta").eval()
    logits = net(torch.empty(2, *input_shape, device="meta"))
    assert {head: tuple(t.shape) for head, t in logits.items()} == {h: (2, n) for h, n in net.heads.items()}


# -------------------------------------------------------------- tiny nets
@pytest.fixture
def word_net():
    torch.manual_seed(0)
    return build_network(tiny_word_arch(200), TINY_WORD_INPUT, TWO_HEADS).eval()


@pytest.fixture
def loc_net():
    torch.manual_seed(0)
    return build_network(tiny_localization_arch(), TINY_LOC_INPUT, {"label_loc_int": 504}).eval()


def test_state_dict_names_follow_arch(word_net, loc_net):
    loc_keys = set(loc_net.state_dict())
    assert {"conv_0.weight", "conv_0.bias", "batch_norm_0.running_mean", "batch_norm_0.running_var",
            "fc_intermediate.weight", "fc_top.label_loc_int.weight", "fc_top.label_loc_int.bias"} <= loc_keys
    assert not any("num_batches_tracked" in k or "window" in k for k in loc_keys)
    assert loc_keys == expected_state_keys(tiny_localization_arch(), {"label_loc_int": 504})
    word_keys = list(word_net.state_dict())
    assert "block0_norm.weight" in word_keys and "fc_intermediate_dense.weight" in word_keys
    assert [k for k in word_keys if k.startswith("fc_top.")] == [
        "fc_top.label_speaker_int.weight", "fc_top.label_speaker_int.bias",
        "fc_top.label_word_int.weight", "fc_top.label_word_int.bias",
    ]
    assert all(t.dtype == torch.float32 for t in word_net.state_dict().values())


def test_forward_logits_sorted_and_shaped(word_net):
    logits = word_net(torch.rand(2, *TINY_WORD_INPUT))
    assert list(logits) == ["label_speaker_int", "label_word_int"]
    assert logits["label_word_int"].shape == (2, 11) and logits["label_speaker_int"].shape == (2, 7)
    assert all(torch.isfinite(t).all() for t in logits.values())


def test_forward_with_activations_single_pass(loc_net):
    x = torch.rand(2, *TINY_LOC_INPUT)
    names = ["relu_0", "flatten_end_conv", "fc_top", "conv_1"]
    logits, acts = loc_net.forward_with_activations(x, names)
    assert list(acts) == names
    reference = loc_net(x)
    assert torch.equal(logits["label_loc_int"], reference["label_loc_int"])
    assert torch.equal(acts["fc_top"]["label_loc_int"], reference["label_loc_int"])
    for name in names[:2] + names[3:]:
        assert tuple(acts[name].shape) == (2, *loc_net.output_shapes[name])
    assert torch.equal(acts["relu_0"], torch.relu(acts["relu_0"]))


def test_activations_stop_after_deepest_requested_layer(loc_net):
    calls = []
    for name in loc_net.layer_names:
        getattr(loc_net, name).register_forward_hook(lambda m, i, o, n=name: calls.append(n))
    acts = loc_net.activations(torch.rand(1, *TINY_LOC_INPUT), ["pool_1", "conv_0"])
    assert list(acts) == ["pool_1", "conv_0"]
    assert calls == loc_net.layer_names[: loc_net.layer_names.index("pool_1") + 1]


def test_unknown_activation_name_lists_valid_names(loc_net):
    with pytest.raises(ValueError, match=r"unknown layer name.*'nope'.*valid names.*conv_0"):
        loc_net.forward_with_activations(torch.rand(1, *TINY_LOC_INPUT), ["conv_0", "nope"])


def test_input_shape_is_checked(loc_net):
    with pytest.raises(ValueError, match=r"\(batch, 6, 50, 200\)"):
        loc_net(torch.rand(1, 3, 50, 200))


def test_gradients_flow_to_input_and_weights(word_net):
    x = torch.rand(2, *TINY_WORD_INPUT, requires_grad=True)
    loss = sum(t.logsumexp(-1).sum() for t in word_net(x).values())
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert word_net.block0_conv.weight.grad.abs().sum() > 0


def test_eval_is_deterministic_and_train_mode_uses_dropout(loc_net):
    x = torch.rand(4, *TINY_LOC_INPUT)
    a, b = loc_net(x)["label_loc_int"], loc_net(x)["label_loc_int"]
    assert torch.equal(a, b)
    loc_net.train()
    torch.manual_seed(1)
    assert not torch.equal(loc_net(x)["label_loc_int"], a)


def test_state_dict_round_trip_reproduces_outputs(word_net):
    torch.manual_seed(5)
    other = build_network(tiny_word_arch(200), TINY_WORD_INPUT, TWO_HEADS).eval()
    x = torch.rand(1, *TINY_WORD_INPUT)
    assert not torch.equal(other(x)["label_word_int"], word_net(x)["label_word_int"])
    other.load_state_dict(word_net.state_dict(), strict=True)
    assert torch.equal(other(x)["label_word_int"], word_net(x)["label_word_int"])


def test_meta_build_matches_real_build():
    real = build_network(tiny_localization_arch(), TINY_LOC_INPUT, {"label_loc_int": 504})
    meta = build_network(tiny_localization_arch(), TINY_LOC_INPUT, {"label_loc_int": 504}, device="meta")
    assert {k: tuple(v.shape) for k, v in real.state_dict().items()} == {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    assert real.output_shapes == meta.output_shapes


def test_parameters_are_float32_under_float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        net = build_network(tiny_word_arch(200), TINY_WORD_INPUT, TWO_HEADS)
    finally:
        torch.set_default_dtype(previous)
    assert {t.dtype for t in net.state_dict().values()} == {torch.float32}
    assert net.block0_pool.window.dtype == torch.float32


def test_random_init_is_sane(loc_net):
    bn = loc_net.batch_norm_0
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    w = loc_net.conv_1.weight
    bound = 1 / math.sqrt(w[0].numel())  # torch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert w.abs().max() <= bound and w.std() > bound / 4


# ----------------------------------------------------------------- errors
def _mutated(edit):
    arch = tiny_localization_arch()
    edit(arch)
    return arch


ERROR_CASES = {
    "unknown type": (lambda a: a[2].update(layer_type="tf.nn.gelu"), r"'relu_0'.*unknown layer_type 'tf.nn.gelu'"),
    "duplicate name": (lambda a: a[2]["args"].update(name="conv_0"), r"duplicate layer name 'conv_0'"),
    "dilation": (lambda a: a[0]["args"].update(dilation_rate=[2, 2]), r"'conv_0'.*'conv2d'.*'dilation_rate'"),
    "activation": (lambda a: a[0]["args"].update(activation="relu"), r"'conv_0'.*'activation'='relu'"),
    "unknown arg": (lambda a: a[0]["args"].update(kernel_regularizer="l2"), r"'conv_0'.*'kernel_regularizer'.*not supported"),
    "padding": (lambda a: a[0]["args"].update(padding="CAUSAL"), r"'conv_0'.*'padding'='CAUSAL'"),
    "groups": (lambda a: a[0]["args"].update(groups=4), r"'conv_0'.*'groups'.*must divide"),
    "maxpool padding": (lambda a: a[1]["args"].update(padding="VALID_TIME"), r"'pool_0'.*'padding'"),
    "window too big": (lambda a: a[5]["args"].update(pool_size=[40, 16]), r"'pool_1'.*does not fit"),
    "heads not last": (lambda a: a.append({"layer_type": "tf.nn.relu", "args": {"name": "late"}}), r"'late'.*must be last"),
    "no heads": (lambda a: a.pop(), r"last layer must be the classification heads"),
    "dense on 4D": (lambda a: a.pop(8), r"'fc_intermediate'.*flattened"),
    "dropout rate": (lambda a: a[12]["args"].update(rate=1.5), r"'dropout'.*'rate'"),
    "attribute name": (lambda a: a[2]["args"].update(name="output_shapes"), r"'output_shapes' cannot be used"),
    "method name": (lambda a: a[2]["args"].update(name="forward"), r"'forward' cannot be used"),
    "missing name": (lambda a: a[2]["args"].pop("name"), r"arch\[2\].*name"),
    "ln axes": (lambda a: a.insert(1, {"layer_type": "tf.keras.layers.LayerNormalization",
                                        "args": {"name": "n", "axis": [3, 1]}}), r"'n'.*'axis'.*increasing"),
    "reshape": (lambda a: a.insert(0, {"layer_type": "reshape", "args": {"name": "r", "target_shape": [7, 7, -1]}}),
                r"'r'.*cannot reshape"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_build_errors_name_layer_type_and_arg(case):
    edit, pattern = ERROR_CASES[case]
    with pytest.raises(ValueError, match=pattern):
        build_network(_mutated(edit), TINY_LOC_INPUT, {"label_loc_int": 504}, device="meta")


@pytest.mark.parametrize(
    "input_shape, n_classes, pattern",
    [((50, 200), {"a": 2}, "input_shape"), ((6, 50, 0), {"a": 2}, "input_shape"), (TINY_LOC_INPUT, {}, "n_classes_dict"),
     (TINY_LOC_INPUT, {"a": 0}, "n_classes")],
)
def test_build_rejects_bad_shapes_and_heads(input_shape, n_classes, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_network(tiny_localization_arch(), input_shape, n_classes, device="meta")


# ------------------------------------------------------------- Keras 2
@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow
    except Exception as err:
        pytest.skip(f"TensorFlow not importable ({type(err).__name__}: {err}); install the 'convert' extra "
                    "to compare against a Keras 2 model")
    return tensorflow


def all_features_arch(time: int) -> list:
    """Every layer type and mode: strided/grouped/SAME conv, SAME maxpool, scaled multi-axis
    layer norm, 2D batch norm, two heads."""
    return [
        {"layer_type": "reshape", "args": {"name": "input_reshape", "target_shape": [9, time, -1]}},
        {"layer_type": "tf.keras.layers.LayerNormalization", "args": {"name": "input_norm", "axis": [1, 2, 3]}},
        {"layer_type": "tf.layers.conv2d", "args": {"name": "c0", "filters": 4, "kernel_size": [3, 5], "strides": [2, 1],
                                                    "padding": "VALID_TIME", "activation": None, "dilation_rate": [1, 1]}},
        {"layer_type": "tf.nn.relu", "args": {"name": "r0"}},
        {"layer_type": "hpool", "args": {"name": "p0", "pool_size": [4, 8], "strides": [2, 2], "padding": "VALID_TIME",
                                         "sqrt_window": True}},
        {"layer_type": "tf.layers.batch_normalization", "args": {"name": "bn0"}},
        {"layer_type": "conv2d", "args": {"name": "c1", "filters": 6, "kernel_size": [2, 3], "groups": 2, "padding": "SAME"}},
        {"layer_type": "maxpool", "args": {"name": "m1", "pool_size": [2, 3], "strides": [1, 2], "padding": "SAME"}},
        {"layer_type": "hpool", "args": {"name": "p1", "pool_size": [3, 4], "strides": [1, 2], "padding": "SAME",
                                         "normalize": True}},
        {"layer_type": "tf.keras.layers.LayerNormalization", "args": {"name": "n1", "axis": -1}},
        {"layer_type": "tf.layers.flatten", "args": {"name": "flat"}},
        {"layer_type": "tf.layers.dense", "args": {"name": "fc", "units": 10, "activation": None}},
        {"layer_type": "tf.nn.relu", "args": {"name": "fc_relu"}},
        {"layer_type": "tf.layers.batch_normalization", "args": {"name": "fc_bn"}},
        {"layer_type": "tf.keras.layers.LayerNormalization", "args": {"name": "fc_norm", "axis": -1}},
        {"layer_type": "tf.layers.dropout", "args": {"name": "drop", "rate": 0.5}},
        {"layer_type": "multi_fc_top_classification", "args": {"name": "fc_top", "activation": None}},
    ]


def keras_model(tf, arch, input_shape_nhwc, n_classes_dict):
    """A Keras 2 model with the authors' semantics, written for this test from the notes."""
    from test_network_layers import doc_same_pads, np_hann

    x = inputs = tf.keras.Input(input_shape_nhwc)
    for layer in arch:
        kind, args = layer["layer_type"], dict(layer["args"])
        name = args.pop("name")
        args.pop("activation", None)
        args.pop("dilation_rate", None)
        if kind in ("conv2d", "tf.layers.conv2d"):
            if args["padding"] == "VALID_TIME":
                pads = doc_same_pads(x.shape[1], args["kernel_size"][0], args.get("strides", [1, 1])[0])
                x = tf.pad(x, [(0, 0), pads, (0, 0), (0, 0)])
                args["padding"] = "VALID"
            x = tf.keras.layers.Conv2D(name=name, **{**args, "padding": args["padding"].lower()})(x)
        elif kind == "hpool":
            window = np.outer(np_hann(args["pool_size"][0]), np_hann(args["pool_size"][1]))
            window = np.sqrt(window) if args.get("sqrt_window") else window
            window = window / window.sum() if args.get("normalize") else window
            kernel = tf.constant(window[:, :, None, None] * np.eye(x.shape[-1])[None, None], dtype=tf.float32)
            padding = args["padding"]
            if padding == "VALID_TIME":
                x = tf.pad(x, [(0, 0), doc_same_pads(x.shape[1], args["pool_size"][0], args["strides"][0]), (0, 0), (0, 0)])
                padding = "VALID"
            x = tf.nn.convolution(x, kernel, strides=args["strides"], padding=padding)
        elif kind == "maxpool":
            x = tf.keras.layers.MaxPool2D(args["pool_size"], args["strides"], args["padding"].lower(), name=name)(x)
        elif kind == "tf.layers.batch_normalization":
            x = tf.keras.layers.BatchNormalization(name=name)(x)
        elif kind == "tf.keras.layers.LayerNormalization":
            x = tf.keras.layers.LayerNormalization(name=name, **args)(x)
        elif kind == "tf.nn.relu":
            x = tf.keras.layers.ReLU(name=name)(x)
        elif kind == "tf.layers.dropout":
            x = tf.keras.layers.Dropout(name=name, **args)(x)
        elif kind == "tf.layers.flatten":
            x = tf.keras.layers.Flatten(name=name)(x)
        elif kind == "reshape":
            x = tf.keras.layers.Reshape(name=name, **args)(x)
        elif kind == "tf.layers.dense":
            x = tf.keras.layers.Dense(name=name, **args)(x)
        elif kind in ("fc_top", "multi_fc_top_classification"):
            heads = sorted(n_classes_dict)
            x = {h: tf.keras.layers.Dense(n_classes_dict[h], name=name if len(heads) == 1 else f"{name}_{h}")(x)
                 for h in heads}
        else:
            raise AssertionError(kind)
    return tf.keras.Model(inputs, x)


def transfer_keras_weights(model, net: Network) -> int:
    """Copy every Keras variable into the network through tf_to_torch_param; returns the count."""
    head_layer = net.layer_names[-1]
    dense_to_head = {v: k for k, v in tf_dense_names(getattr(net, head_layer), head_layer).items()}
    state = {}
    for var in model.weights:
        layer_name, short = var.name.split(":")[0].split("/")[-2:]
        if layer_name in dense_to_head:
            torch_name, array = tf_to_torch_param(getattr(net, head_layer), f"{dense_to_head[layer_name]}/{short}", var.numpy())
            state[f"{head_layer}.{torch_name}"] = torch.from_numpy(array)
        else:
            torch_name, array = tf_to_torch_param(getattr(net, layer_name), short, var.numpy())
            state[f"{layer_name}.{torch_name}"] = torch.from_numpy(array)
    net.load_state_dict(state, strict=True)
    return len(state)


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    "which", ["all_features", "tiny_word", "tiny_localization"],
)
def test_whole_network_matches_keras_model(tf, which):
    if which == "all_features":
        arch, input_shape, heads = all_features_arch(40), (3, 9, 40), TWO_HEADS
    elif which == "tiny_word":
        arch, input_shape, heads = tiny_word_arch(200), TINY_WORD_INPUT, TWO_HEADS
    else:
        arch, input_shape, heads = tiny_localization_arch(), TINY_LOC_INPUT, {"label_loc_int": 504}
    c, h, w = input_shape
    tf.keras.utils.set_random_seed(0)
    model = keras_model(tf, copy.deepcopy(arch), (h, w, c), heads)
    r = np.random.default_rng(0)
    for var in model.weights:  # make every variable matter (Keras inits BN/LN to identity)
        if any(s in var.name for s in ("gamma", "beta", "moving_mean")):
            var.assign(r.uniform(-1, 1, var.shape).astype(np.float32) + (1 if "gamma" in var.name else 0))
        elif "moving_variance" in var.name:
            var.assign(r.uniform(0.5, 2, var.shape).astype(np.float32))
        elif "bias" in var.name:
            var.assign(r.uniform(-0.1, 0.1, var.shape).astype(np.float32))
    net = build_network(arch, input_shape, heads).eval()
    assert transfer_keras_weights(model, net) == len(net.state_dict())
    x = r.uniform(0, 3, (2, h, w, c)).astype(np.float32)
    expected = model(x, training=False)
    got = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    assert list(got) == sorted(heads)
    for head in heads:
        # float32 in different summation orders. Measured: ~2e-7 (all_features, tiny_localization)
        # and ~6e-5 (tiny_word), where Keras' fused input layer norm over 30000 values is itself
        # ~6e-6 from the float64 value (ours ~3e-7) and the next channel layer norm can amplify
        # that up to 1/sqrt(eps) = 32x. Hence 5e-4 on O(1) logits.
        np.testing.assert_allclose(got[head].detach().numpy(), expected[head].numpy(), rtol=5e-4, atol=5e-4)
