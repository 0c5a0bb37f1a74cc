"""Each arch.json layer against an independent reference.

References: numpy (float64, direct loops/einsum on channels-last TF-layout arrays and
TF-layout weights, never the torch code path), closed forms, scipy, and - when TensorFlow is
installed - the real Keras 2 layers on the same weights (the strongest reference).

Tolerances: the port computes in float32. Unless stated otherwise outputs are O(1) and each
output sums at most ~200 products, so float32 rounding (eps 1.2e-7) stays below ~1e-5;
we use atol = rtol = 1e-5 (measured: <= 3e-6, up to 5e-6 for hpool sums of 128 terms whose
outputs reach ~20). Keras runs the same float32 arithmetic in a different summation order, so
the same tolerance applies there.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import scipy.signal
import torch

from phaselocknet.network import (
    BatchNorm,
    ClassificationHeads,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    HanningPool2d,
    LayerNorm,
    MaxPool2d,
    ReLU,
    Reshape,
    hanning_window,
    tf_same_padding,
)
from phaselocknet_convert.keras_layout import tf_dense_names, tf_to_torch_param

TOL = {"atol": 1e-5, "rtol": 1e-5}

# Keras 2 seeds its initialisers with random.randint(1, 1e9), a float bound Python 3.11 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:non-integer arguments to randrange:DeprecationWarning")


# ----------------------------------------------------------------- helpers
def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def to_torch(x_nhwc: np.ndarray) -> torch.Tensor:
    """TF channels-last example -> the port's channels-first float32 tensor."""
    x = np.asarray(x_nhwc, dtype=np.float32)
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x))


def to_nhwc(y: torch.Tensor) -> np.ndarray:
    y = y.detach().numpy()
    return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y


def load_tf_weights(layer: torch.nn.Module, tf_weights: dict[str, np.ndarray]) -> None:
    """Load Keras-layout arrays through the layer's documented TF -> torch mapping."""
    state = dict(tf_to_torch_param(layer, name, array) for name, array in tf_weights.items())
    layer.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)


def doc_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF documentation's SAME rule, written independently of the port's formula."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def np_pad_nhwc(x, pads_h, pads_w, value=0.0):
    return np.pad(x, ((0, 0), pads_h, pads_w, (0, 0)), constant_values=value)


def mode_pads(mode, h, w, kernel, strides):
    pads_h = doc_same_pads(h, kernel[0], strides[0]) if mode in ("SAME", "VALID_TIME") else (0, 0)
    pads_w = doc_same_pads(w, kernel[1], strides[1]) if mode == "SAME" else (0, 0)
    return pads_h, pads_w


def np_conv2d(x, kernel_hwio, bias, strides, mode, groups=1):
    """Direct TF-semantics grouped convolution on NHWC input and an HWIO kernel."""
    kh, kw, cin_g, cout = kernel_hwio.shape
    pads_h, pads_w = mode_pads(mode, x.shape[1], x.shape[2], (kh, kw), strides)
    xp = np_pad_nhwc(x.astype(np.float64), pads_h, pads_w)
    out_h = (xp.shape[1] - kh) // strides[0] + 1
    out_w = (xp.shape[2] - kw) // strides[1] + 1
    cout_g = cout // groups
    y = np.zeros((x.shape[0], out_h, out_w, cout))
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, i * strides[0]:i * strides[0] + kh, j * strides[1]:j * strides[1] + kw, :]
            for g in range(groups):
                y[:, i, j, g * cout_g:(g + 1) * cout_g] = np.einsum(
                    "bhwc,hwco->bo",
                    patch[..., g * cin_g:(g + 1) * cin_g],
                    kernel_hwio[..., g * cout_g:(g + 1) * cout_g],
                )
    return y + bias


def np_maxpool(x, pool, strides, mode):
    pads_h, pads_w = mode_pads(mode, x.shape[1], x.shape[2], pool, strides)
    xp = np_pad_nhwc(x, pads_h, pads_w, value=-np.inf)
    out_h = (xp.shape[1] - pool[0]) // strides[0] + 1
    out_w = (xp.shape[2] - pool[1]) // strides[1] + 1
    y = np.empty((x.shape[0], out_h, out_w, x.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            window = xp[:, i * strides[0]:i * strides[0] + pool[0], j * strides[1]:j * strides[1] + pool[1], :]
            y[:, i, j, :] = window.max(axis=(1, 2))
    return y


def np_hann(size: int) -> np.ndarray:
    # scipy's symmetric Hann window is the textbook 0.5 - 0.5 cos(2 pi n / (N - 1)).
    return scipy.signal.windows.hann(size, sym=True) if size > 1 else np.ones(1)


def np_hpool(x, pool, strides, mode, sqrt_window, normalize=False):
    window = np.outer(np_hann(pool[0]), np_hann(pool[1]))
    if sqrt_window:
        window = np.sqrt(window)
    if normalize:
        window = window / window.sum()
    pads_h, pads_w = mode_pads(mode, x.shape[1], x.shape[2], pool, strides)
    xp = np_pad_nhwc(x.astype(np.float64), pads_h, pads_w)
    out_h = (xp.shape[1] - pool[0]) // strides[0] + 1
    out_w = (xp.shape[2] - pool[1]) // strides[1] + 1
    y = np.empty((x.shape[0], out_h, out_w, x.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, i * strides[0]:i * strides[0] + pool[0], j * strides[1]:j * strides[1] + pool[1], :]
            y[:, i, j, :] = np.einsum("bhwc,hw->bc", patch, window)
    return y


def np_layer_norm(x, tf_axes, gamma_tf=None, beta_tf=None, eps=1e-3):
    """gamma/beta in TF layout: the sizes of tf_axes, in that order."""
    x = x.astype(np.float64)
    mean = x.mean(axis=tuple(tf_axes), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=tuple(tf_axes), keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    shape = [x.shape[a] if a in tf_axes else 1 for a in range(x.ndim)]
    if gamma_tf is not None:
        y = y * gamma_tf.reshape(shape)
    if beta_tf is not None:
        y = y + beta_tf.reshape(shape)
    return y


def assert_close(actual: np.ndarray, expected: np.ndarray, atol=TOL["atol"], rtol=TOL["rtol"]):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol)


# ------------------------------------------------------------- TF padding
@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (50, 2, 1, (0, 1)),  # even kernel: the extra pad goes after (bottom)
        (50, 3, 1, (1, 1)),
        (50, 8, 2, (3, 3)),  # published hpool [8, 16] / [2, 4] on 50 channels
        (25, 8, 2, (3, 4)),  # odd size: pad = k - size % s
        (13, 1, 1, (0, 0)),
        (5, 1, 3, (0, 0)),  # stride > kernel: never negative
    ],
)
def test_tf_same_padding_hand_cases(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected


def test_tf_same_padding_matches_tf_documentation_rule():
    for size in range(1, 30):
        for kernel in range(1, 10):
            for stride in range(1, 5):
                assert tf_same_padding(size, kernel, stride) == doc_same_pads(size, kernel, stride)


# ------------------------------------------------------------------ conv2d
CONV_CASES = [
    # (H, kh, sh, W, kw, sw, padding, groups)
    (7, 2, 1, 9, 3, 1, "VALID_TIME", 1),  # odd freq size, even kernel height
    (8, 3, 1, 9, 4, 2, "VALID_TIME", 1),  # even freq size, odd kernel height, time stride
    (9, 4, 2, 10, 3, 1, "VALID_TIME", 1),  # freq stride, odd size
    (8, 4, 3, 11, 2, 1, "VALID_TIME", 1),
    (7, 3, 2, 9, 4, 2, "SAME", 1),
    (6, 2, 1, 8, 3, 1, "VALID", 1),
    (5, 1, 1, 12, 4, 1, "VALID_TIME", 2),  # delayed-integration style grouped conv
    (6, 3, 1, 10, 3, 1, "VALID_TIME", 2),
    (7, 2, 2, 9, 3, 2, "SAME", 2),
]


def _conv_case(h, kh, w, kw, groups, seed=0):
    r = rng(seed)
    cin, cout = 4, 6
    x = r.standard_normal((2, h, w, cin))
    kernel = r.standard_normal((kh, kw, cin // groups, cout)) * 0.3
    bias = r.standard_normal(cout)
    return x, kernel, bias


@pytest.mark.parametrize("h, kh, sh, w, kw, sw, padding, groups", CONV_CASES)
def test_conv2d_matches_numpy_on_tf_layout_kernel(h, kh, sh, w, kw, sw, padding, groups):
    x, kernel, bias = _conv_case(h, kh, w, kw, groups)
    layer = Conv2d(4, 6, (kh, kw), (sh, sw), padding, groups)
    load_tf_weights(layer, {"kernel": kernel, "bias": bias})
    expected = np_conv2d(x, kernel, bias, (sh, sw), padding, groups)
    y = layer(to_torch(x))
    assert tuple(y.shape[1:]) == layer.output_shape((4, h, w))
    assert_close(to_nhwc(y), expected)


def test_conv2d_valid_time_pads_frequency_only_with_extra_row_after():
    # Hand case: all-ones input and kernel (2, 1) on 3 freq rows: the padded zero row is at
    # the bottom, so the last output row sees one real row.
    layer = Conv2d(1, 1, (2, 1), padding="VALID_TIME", use_bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    y = layer(torch.ones(1, 1, 3, 4))
    assert y.shape == (1, 1, 3, 4)
    assert y[0, 0, :, 0].tolist() == [2.0, 2.0, 1.0]


def test_conv2d_groups_do_not_mix_ears():
    # Group 0 sees input channels 0..1 only: perturbing channel 3 must leave outputs 0..2 intact.
    layer = Conv2d(4, 6, (1, 3), padding="VALID_TIME", groups=2)
    x = torch.randn(1, 4, 2, 8)
    x2 = x.clone()
    x2[:, 3] += 1.0
    y, y2 = layer(x), layer(x2)
    assert torch.equal(y[:, :3], y2[:, :3])
    assert not torch.equal(y[:, 3:], y2[:, 3:])


def test_conv2d_tf_kernel_mapping_is_hwio_to_oihw():
    layer = Conv2d(4, 6, (2, 3), groups=2)
    kernel = np.arange(2 * 3 * 2 * 6, dtype=np.float32).reshape(2, 3, 2, 6)
    name, array = tf_to_torch_param(layer, "kernel", kernel)
    assert name == "weight" and array.shape == (6, 2, 2, 3)
    assert array[5, 1, 0, 2] == kernel[0, 2, 1, 5]
    with pytest.raises(ValueError, match="shape"):
        tf_to_torch_param(layer, "kernel", kernel.transpose(1, 0, 2, 3))
    with pytest.raises(ValueError, match="kernel"):
        tf_to_torch_param(layer, "gamma", kernel)


# ----------------------------------------------------------------- maxpool
@pytest.mark.parametrize(
    "h, w, pool, strides, padding",
    [
        (6, 9, (2, 4), None, "VALID"),  # floor: the trailing time sample is dropped
        (7, 8, (2, 2), None, "VALID"),
        (5, 17, (1, 8), None, "VALID"),
        (7, 9, (2, 3), (2, 2), "SAME"),
        (6, 10, (3, 4), None, "SAME"),
    ],
)
def test_maxpool_matches_numpy(h, w, pool, strides, padding):
    x = rng(1).standard_normal((2, h, w, 3))
    layer = MaxPool2d(pool, strides, padding)
    y = layer(to_torch(x))
    expected = np_maxpool(x, pool, strides or pool, padding)
    assert tuple(y.shape[1:]) == layer.output_shape((3, h, w))
    # max selects an input value: exact up to the float32 cast
    assert_close(to_nhwc(y), expected.astype(np.float32), atol=0, rtol=0)


def test_maxpool_1x1_is_identity():
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(MaxPool2d((1, 1))(x), x)


# ------------------------------------------------------------------- hpool
@pytest.mark.parametrize("size", [1, 2, 3, 8, 16])
def test_hanning_window_values_closed_form(size):
    window = hanning_window((size, 1))
    n = np.arange(size)
    expected = np.ones(1) if size == 1 else 0.5 - 0.5 * np.cos(2 * np.pi * n / (size - 1))
    np.testing.assert_allclose(window[:, 0], expected, atol=1e-15)
    np.testing.assert_allclose(window[:, 0], np_hann(size), atol=1e-15)


def test_hanning_window_sqrt_normalize_and_outer_product():
    plain = hanning_window((8, 16))
    np.testing.assert_allclose(plain, np.outer(np_hann(8), np_hann(16)), atol=1e-15)
    root = hanning_window((8, 16), sqrt_window=True)
    np.testing.assert_allclose(root, np.sqrt(plain), atol=1e-15)
    # the Hann window is zero at both ends, so sqrt keeps zero edges
    assert root[0].max() == 0 and root[:, -1].max() == 0
    norm = hanning_window((8, 16), sqrt_window=True, normalize=True)
    assert math.isclose(norm.sum(), 1.0, rel_tol=1e-12)
    np.testing.assert_allclose(norm, root / root.sum(), atol=1e-15)


@pytest.mark.parametrize(
    "h, w, pool, strides, padding, sqrt_window, normalize",
    [
        (11, 40, (8, 16), (2, 4), "VALID_TIME", True, False),  # published block pool, odd freq size
        (12, 40, (8, 16), (2, 4), "VALID_TIME", True, False),
        (5, 33, (1, 16), (1, 4), "VALID_TIME", True, False),
        (5, 9, (1, 1), (1, 1), "VALID_TIME", True, False),
        (9, 21, (4, 8), (2, 3), "SAME", False, True),
        (9, 21, (3, 5), (1, 2), "VALID", False, False),
    ],
)
def test_hpool_matches_numpy(h, w, pool, strides, padding, sqrt_window, normalize):
    x = rng(2).standard_normal((2, h, w, 3))
    layer = HanningPool2d(pool, strides, padding, sqrt_window, normalize)
    y = layer(to_torch(x))
    assert tuple(y.shape[1:]) == layer.output_shape((3, h, w))
    assert_close(to_nhwc(y), np_hpool(x, pool, strides, padding, sqrt_window, normalize))


def test_hpool_window_is_not_stored():
    layer = HanningPool2d((8, 16), (2, 4), "VALID_TIME", True)
    assert layer.state_dict() == {} and list(layer.parameters()) == []
    assert layer.window.dtype == torch.float32


# ------------------------------------------------------------- batch norm
@pytest.mark.parametrize("shape_nhwc", [(3, 4, 5, 6), (4, 6)])
def test_batch_norm_inference_formula(shape_nhwc):
    r = rng(3)
    x = r.standard_normal(shape_nhwc) * 3 + 1
    c = shape_nhwc[-1]
    gamma, beta = r.standard_normal(c), r.standard_normal(c)
    mean, var = r.standard_normal(c), r.uniform(0.01, 2.0, c)
    layer = BatchNorm(c).eval()
    load_tf_weights(layer, {"gamma": gamma, "beta": beta, "moving_mean": mean, "moving_variance": var})
    expected = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    assert_close(to_nhwc(layer(to_torch(x))), expected)


def test_batch_norm_has_exactly_four_tensors_and_unit_running_var():
    layer = BatchNorm(5)
    state = layer.state_dict()
    assert sorted(state) == ["bias", "running_mean", "running_var", "weight"]
    assert torch.equal(state["running_var"], torch.ones(5)) and torch.equal(state["running_mean"], torch.zeros(5))


def test_batch_norm_epsilon_matters():
    # var 0: output = (x - mean) / sqrt(1e-3); a torch-default eps (1e-5) would give 10x that.
    layer = BatchNorm(1).eval()
    with torch.no_grad():
        layer.running_var.zero_()
    y = layer(torch.ones(1, 1))
    assert math.isclose(y.item(), 1 / math.sqrt(1e-3), rel_tol=1e-6)


# ------------------------------------------------------------- layer norm
LN_CASES = [
    # (TF shape with batch, axis, center, scale)
    ((2, 5, 7, 4), -1, True, True),
    ((2, 5, 7, 4), -1, False, False),
    ((2, 5, 7, 4), -1, True, False),
    ((2, 5, 7, 4), [1, 2, 3], False, False),  # published input_norm
    ((2, 5, 7, 4), [1, 2, 3], True, True),  # (H, W, C) params, reordered to (C, H, W)
    ((2, 5, 7, 4), [1, 2], False, True),
    ((2, 5, 7, 4), [2, 3], True, True),
    ((3, 9), -1, True, True),  # after a dense layer
    ((3, 9), 1, False, True),
]


@pytest.mark.parametrize("tf_shape, axis, center, scale", LN_CASES)
def test_layer_norm_matches_numpy(tf_shape, axis, center, scale):
    r = rng(4)
    x = r.standard_normal(tf_shape) * 2 + 0.5
    ndim = len(tf_shape)
    tf_axes = sorted(a % ndim for a in ([axis] if isinstance(axis, int) else axis))
    param_shape = tuple(tf_shape[a] for a in tf_axes)
    gamma = r.standard_normal(param_shape) if scale else None
    beta = r.standard_normal(param_shape) if center else None
    torch_shape = (tf_shape[-1], *tf_shape[1:-1]) if ndim == 4 else tf_shape[1:]
    layer = LayerNorm(torch_shape, axis, center=center, scale=scale)
    weights = {k: v for k, v in (("gamma", gamma), ("beta", beta)) if v is not None}
    load_tf_weights(layer, weights)
    expected = np_layer_norm(x, tf_axes, gamma, beta)
    assert_close(to_nhwc(layer(to_torch(x))), expected)


def test_layer_norm_published_input_size_accuracy():
    # input_norm sees 3 x 50 x 20000 = 3e6 values per example; mean/variance must not drift in
    # float32 (Keras' fused CPU kernel is off by ~1.5e-3 here; a float64 reference is the target).
    x = rng(14).uniform(0, 3, (1, 50, 20000, 3))
    layer = LayerNorm((3, 50, 20000), [1, 2, 3], center=False, scale=False)
    assert_close(to_nhwc(layer(to_torch(x))), np_layer_norm(x.astype(np.float32), (1, 2, 3)))


def test_layer_norm_multi_axis_param_reorder():
    layer = LayerNorm((4, 5, 7), [1, 2, 3])
    gamma = np.arange(5 * 7 * 4, dtype=np.float32).reshape(5, 7, 4)  # TF (H, W, C)
    name, array = tf_to_torch_param(layer, "gamma", gamma)
    assert name == "weight" and array.shape == (4, 5, 7)
    assert array[3, 1, 6] == gamma[1, 6, 3]


def test_layer_norm_rejects_unsorted_axes():
    with pytest.raises(ValueError, match="increasing"):
        LayerNorm((4, 5, 7), [3, 1])


# ------------------------------------------------------ flatten / reshape
def test_flatten_is_channels_last_hand_case():
    b, c, h, w = 2, 3, 2, 4
    x = torch.zeros(b, c, h, w)
    for idx in np.ndindex(b, c, h, w):
        x[idx] = 1000 * idx[0] + 100 * idx[1] + 10 * idx[2] + idx[3]
    flat = Flatten()(x)
    assert flat.shape == (b, h * w * c) and Flatten().output_shape((c, h, w)) == (h * w * c,)
    for bi, ci, hi, wi in np.ndindex(b, c, h, w):
        assert flat[bi, (hi * w + wi) * c + ci] == x[bi, ci, hi, wi]


@pytest.mark.parametrize(
    "torch_shape, target",
    [((3, 4, 6), [4, 6, -1]), ((3, 4, 6), [-1]), ((3, 4, 2), [2, 6, -1]), ((24,), [2, 3, 4])],
)
def test_reshape_matches_numpy_channels_last(torch_shape, target):
    x = torch.randn(2, *torch_shape)
    layer = Reshape(target)
    y = layer(x)
    x_tf = to_nhwc(x)
    expected = x_tf.reshape(2, *target)
    assert tuple(y.shape[1:]) == layer.output_shape(torch_shape)
    assert np.array_equal(to_nhwc(y), expected)


def test_reshape_published_target_is_identity():
    x = torch.randn(1, 3, 50, 20)
    assert torch.equal(Reshape([50, 20, -1])(x), x)


def test_reshape_rejects_wrong_element_count():
    with pytest.raises(ValueError, match="cannot reshape"):
        Reshape([5, 5, 2]).output_shape((3, 4, 6))


# --------------------------------------------- dense / heads / relu / dropout
def test_dense_matches_numpy():
    r = rng(5)
    x, kernel, bias = r.standard_normal((3, 10)), r.standard_normal((10, 7)), r.standard_normal(7)
    layer = Dense(10, 7)
    load_tf_weights(layer, {"kernel": kernel, "bias": bias})
    assert_close(layer(to_torch(x)).detach().numpy(), x @ kernel + bias)


def test_heads_sorted_dict_and_values():
    r = rng(6)
    n_classes = {"label_word_int": 5, "label_speaker_int": 3}
    layer = ClassificationHeads(8, n_classes)
    assert list(layer.keys()) == ["label_speaker_int", "label_word_int"]
    assert tf_dense_names(layer, "fc_top") == {
        "label_speaker_int": "fc_top_label_speaker_int", "label_word_int": "fc_top_label_word_int",
    }
    tf_weights = {}
    for head, n in n_classes.items():
        tf_weights[f"{head}/kernel"] = r.standard_normal((8, n))
        tf_weights[f"{head}/bias"] = r.standard_normal(n)
    load_tf_weights(layer, tf_weights)
    x = r.standard_normal((4, 8))
    out = layer(to_torch(x))
    assert list(out) == ["label_speaker_int", "label_word_int"]
    for head, n in n_classes.items():
        assert out[head].shape == (4, n)
        assert_close(out[head].detach().numpy(), x @ tf_weights[f"{head}/kernel"] + tf_weights[f"{head}/bias"])
    assert sorted(layer.state_dict()) == [
        "label_speaker_int.bias", "label_speaker_int.weight", "label_word_int.bias", "label_word_int.weight",
    ]


def test_single_head_keras_name_is_the_layer_name():
    assert tf_dense_names(ClassificationHeads(4, {"label_loc_int": 504}), "fc_top") == {"label_loc_int": "fc_top"}


def test_relu_and_dropout():
    x = torch.randn(64, 32)
    assert torch.equal(ReLU()(x), torch.where(x > 0, x, torch.zeros(())))
    dropout = Dropout(0.5)
    assert torch.equal(dropout.eval()(x), x)
    torch.manual_seed(0)
    y = dropout.train()(x)
    kept = y != 0
    # inverted dropout: kept values scaled by 1 / (1 - rate); about half dropped
    assert torch.allclose(y[kept], 2 * x[kept])
    assert 0.4 < kept.float().mean().item() < 0.6


# ------------------------------------------------------------ Keras 2 (TF)
@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow
    except Exception as err:  # ImportError, or a broken install
        pytest.skip(f"TensorFlow not importable ({type(err).__name__}: {err}); install the 'convert' extra "
                    "to compare against real Keras 2 layers")
    return tensorflow


def keras_call(layer, x, **kwargs) -> np.ndarray:
    return layer(np.asarray(x, dtype=np.float32), **kwargs).numpy()


@pytest.mark.tensorflow
@pytest.mark.parametrize("h, kh, sh, w, kw, sw, padding, groups", [c for c in CONV_CASES if c[6] != "VALID_TIME"])
def test_conv2d_matches_keras(tf, h, kh, sh, w, kw, sw, padding, groups):
    x, kernel, bias = _conv_case(h, kh, w, kw, groups, seed=7)
    keras = tf.keras.layers.Conv2D(6, (kh, kw), strides=(sh, sw), padding=padding.lower(), groups=groups)
    keras.build((None, h, w, 4))
    keras.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    layer = Conv2d(4, 6, (kh, kw), (sh, sw), padding, groups)
    load_tf_weights(layer, {"kernel": kernel, "bias": bias})
    assert_close(to_nhwc(layer(to_torch(x))), keras_call(keras, x))


@pytest.mark.tensorflow
@pytest.mark.parametrize("h, kh, sh, w, kw, groups", [(7, 2, 1, 9, 3, 1), (8, 3, 2, 9, 4, 1), (9, 4, 2, 11, 2, 2)])
def test_conv2d_valid_time_matches_keras_same_cropped_in_time(tf, h, kh, sh, w, kw, groups):
    # With time stride 1, Keras SAME output columns (kw-1)//2 ... are exactly the VALID-in-time
    # columns, while the frequency axis is padded as SAME: an independent VALID_TIME reference.
    x, kernel, bias = _conv_case(h, kh, w, kw, groups, seed=8)
    keras = tf.keras.layers.Conv2D(6, (kh, kw), strides=(sh, 1), padding="same", groups=groups)
    keras.build((None, h, w, 4))
    keras.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    start = (kw - 1) // 2
    expected = keras_call(keras, x)[:, :, start:start + w - kw + 1, :]
    layer = Conv2d(4, 6, (kh, kw), (sh, 1), "VALID_TIME", groups)
    load_tf_weights(layer, {"kernel": kernel, "bias": bias})
    assert_close(to_nhwc(layer(to_torch(x))), expected)


@pytest.mark.tensorflow
@pytest.mark.parametrize("pool, strides, padding", [((2, 4), None, "valid"), ((2, 3), (2, 2), "same"), ((3, 4), None, "same")])
def test_maxpool_matches_keras(tf, pool, strides, padding):
    x = rng(9).standard_normal((2, 7, 10, 3))
    keras = tf.keras.layers.MaxPool2D(pool, strides=strides, padding=padding)
    y = MaxPool2d(pool, strides, padding.upper())(to_torch(x))
    assert_close(to_nhwc(y), keras_call(keras, x), atol=0, rtol=0)


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    "h, pool, strides, padding",
    [(11, (8, 16), (2, 4), "VALID_TIME"), (12, (8, 16), (2, 4), "VALID_TIME"), (9, (4, 8), (2, 3), "SAME"),
     (9, (1, 16), (1, 4), "VALID")],
)
def test_hpool_matches_tf_convolution_with_window_times_identity(tf, h, pool, strides, padding):
    # The authors' construction: full convolution with window[:, :, None, None] * eye(C).
    x = rng(10).standard_normal((2, h, 40, 3)).astype(np.float32)
    window = np.sqrt(np.outer(np_hann(pool[0]), np_hann(pool[1])))
    kernel = tf.constant(window[:, :, None, None] * np.eye(3)[None, None], dtype=tf.float32)
    x_tf = tf.constant(x)
    tf_padding = padding
    if padding == "VALID_TIME":
        x_tf = tf.pad(x_tf, [(0, 0), doc_same_pads(h, pool[0], strides[0]), (0, 0), (0, 0)])
        tf_padding = "VALID"
    expected = tf.nn.convolution(x_tf, kernel, strides=strides, padding=tf_padding).numpy()
    y = HanningPool2d(pool, strides, padding, sqrt_window=True)(to_torch(x))
    assert_close(to_nhwc(y), expected)


@pytest.mark.tensorflow
@pytest.mark.parametrize("shape_nhwc", [(3, 4, 5, 6), (4, 6)])
def test_batch_norm_matches_keras(tf, shape_nhwc):
    r = rng(11)
    x = r.standard_normal(shape_nhwc) * 3 + 1
    c = shape_nhwc[-1]
    weights = {"gamma": r.standard_normal(c), "beta": r.standard_normal(c),
               "moving_mean": r.standard_normal(c), "moving_variance": r.uniform(0.01, 2.0, c)}
    keras = tf.keras.layers.BatchNormalization()
    keras.build((None, *shape_nhwc[1:]))
    keras.set_weights([weights[k].astype(np.float32) for k in ("gamma", "beta", "moving_mean", "moving_variance")])
    layer = BatchNorm(c).eval()
    load_tf_weights(layer, weights)
    assert_close(to_nhwc(layer(to_torch(x))), keras_call(keras, x, training=False))


@pytest.mark.tensorflow
@pytest.mark.parametrize("tf_shape, axis, center, scale", LN_CASES)
def test_layer_norm_matches_keras(tf, tf_shape, axis, center, scale):
    r = rng(12)
    x = r.standard_normal(tf_shape) * 2 + 0.5
    keras = tf.keras.layers.LayerNormalization(axis=axis, center=center, scale=scale)
    keras.build((None, *tf_shape[1:]))
    tf_weights = {}
    for var in keras.weights:
        short = var.name.split("/")[-1].split(":")[0]
        tf_weights[short] = r.standard_normal(tuple(var.shape)).astype(np.float32)
        var.assign(tf_weights[short])
    torch_shape = (tf_shape[-1], *tf_shape[1:-1]) if len(tf_shape) == 4 else tf_shape[1:]
    layer = LayerNorm(torch_shape, axis, center=center, scale=scale)
    load_tf_weights(layer, tf_weights)
    assert_close(to_nhwc(layer(to_torch(x))), keras_call(keras, x))


@pytest.mark.tensorflow
def test_flatten_reshape_dense_relu_dropout_match_keras(tf):
    r = rng(13)
    x = r.standard_normal((2, 3, 4, 5))
    assert np.array_equal(Flatten()(to_torch(x)).numpy(), keras_call(tf.keras.layers.Flatten(), x))
    target = [2, 6, -1]
    assert np.array_equal(to_nhwc(Reshape(target)(to_torch(x))), keras_call(tf.keras.layers.Reshape(target), x))
    assert np.array_equal(to_nhwc(ReLU()(to_torch(x))), keras_call(tf.keras.layers.ReLU(), x))
    assert np.array_equal(to_nhwc(Dropout(0.5).eval()(to_torch(x))),
                          keras_call(tf.keras.layers.Dropout(0.5), x, training=False))
    flat = r.standard_normal((2, 60))
    keras = tf.keras.layers.Dense(7)
    keras.build((None, 60))
    kernel, bias = r.standard_normal((60, 7)), r.standard_normal(7)
    keras.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    layer = Dense(60, 7)
    load_tf_weights(layer, {"kernel": kernel, "bias": bias})
    assert_close(layer(to_torch(flat)).detach().numpy(), keras_call(keras, flat))
