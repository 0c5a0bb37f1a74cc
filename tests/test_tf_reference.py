"""Sanity checks of tests/tf_reference.py, the TensorFlow reference of the converter's parity tests.

Small handwritten configurations and short inputs keep this file fast; parity at the real input
lengths belongs to the converter's tests.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import copy  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.signal  # noqa: E402

tf = pytest.importorskip("tensorflow", reason="needs the convert extra (TensorFlow)")
import tf_reference as ref  # noqa: E402

pytestmark = pytest.mark.tensorflow

RATE_LEVEL = {
    "dynamic_range": [20.0, 40.0, 80.0],
    "dynamic_range_interval": 0.95,
    "envelope_mode": True,
    "rate_max": [250.0, 250.0, 250.0],
    "rate_spont": [0.0, 0.0, 0.0],
    "threshold": [0.0, 12.0, 28.0],
}
N_PER_CHANNEL = [384, 160, 96]


def conv(name, filters, kernel, **extra):
    args = {"activation": None, "dilation_rate": [1, 1], "filters": filters, "kernel_size": kernel,
            "name": name, "padding": "VALID_TIME", "strides": [1, 1], **extra}  # fmt: skip
    return {"layer_type": "conv2d", "args": args}


def layer(layer_type, name, **args):
    return {"layer_type": layer_type, "args": {"name": name, **args}}


def waveform_cochlea(sr_input=20000.0):
    return {
        "config_filterbank": {"cfs": None, "fir_dur": 0.01, "kwargs_filter_coefs": {}, "max_cf": 5000.0,
                              "min_cf": 100.0, "mode": "fir_gammatone_filterbank", "num_cf": 8},
        "config_subband_processing": {"rectify": True},
        "kwargs_custom_slice": {},
        "kwargs_fir_lowpass_filter_input": {},
        "kwargs_fir_lowpass_filter_output": {"cutoff": 3000, "fir_dur": 0.005, "ihc_filter": True, "order": 7},
        "kwargs_sigmoid_rate_level_function": RATE_LEVEL,
        "kwargs_spike_generator_binomial": {"mode": "approx", "n_per_channel": N_PER_CHANNEL},
        "kwargs_spike_rate_noise": {},
        "sr_cochlea": sr_input,
        "sr_input": sr_input,
        "sr_output": 10000.0,
    }  # fmt: skip


NERVEGRAM_COCHLEA = {
    "kwargs_custom_slice": {"args": [0, 3], "axis": 3, "expand_dims": True},
    "kwargs_spike_generator_binomial": {"n_per_channel": N_PER_CHANNEL, "n_per_step": [48, 40, 48]},
    "kwargs_spike_rate_noise": {},
    "sr_cochlea": 10000.0,
    "sr_input": 10000.0,
    "sr_output": 10000.0,
}
ADAM = {"amsgrad": False, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "learning_rate": 1e-4, "name": "Adam"}
LOSS = {"from_logits": True, "name": "SparseCategoricalCrossentropy", "weight": 1.0}

# Binaural waveform localization: conv, grouped conv, maxpool, BN after conv and dense, one head.
# 22000 samples at 20 kHz -> 11000 nerve samples, so the 10000-sample excerpt is taken.
LOC_CONFIG = {
    "kwargs_cochlea": waveform_cochlea(),
    "kwargs_optimize": {"key_outputs": "label_loc_int", "kwargs_loss": LOSS, "kwargs_optimizer": ADAM},
    "n_classes_dict": {"label_loc_int": 7},
}
LOC_ARCH = [
    conv("conv_0", 4, [2, 8]),
    layer("maxpool", "pool_0", padding="VALID", pool_size=[1, 4], strides=None),
    layer("tf.nn.relu", "relu_0"),
    layer("tf.layers.batch_normalization", "batch_norm_0"),
    conv("conv_1", 4, [3, 4], groups=2),
    layer("maxpool", "pool_1", padding="VALID", pool_size=[2, 8], strides=None),
    layer("tf.nn.relu", "relu_1"),
    layer("tf.layers.batch_normalization", "batch_norm_1"),
    layer("tf.layers.flatten", "flatten_end_conv"),
    layer("tf.layers.dense", "fc_intermediate", activation=None, units=16),
    layer("tf.nn.relu", "relu_fc_intermediate"),
    layer("tf.layers.batch_normalization", "batch_norm_fc_intermediate"),
    layer("tf.layers.dropout", "dropout", rate=0.5),
    layer("fc_top", "fc_top", activation=None),
]
LOC_INPUT = (22000, 2)

# Mono waveform word + speaker: reshape, layer norms over [1, 2, 3] and -1, hpool, two heads.
WORD_HEADS = {"label_speaker_int": 3, "label_word_int": 5}
WORD_CONFIG = {
    "kwargs_cochlea": waveform_cochlea(),
    "kwargs_optimize": {"key_outputs": sorted(WORD_HEADS), "kwargs_loss": {k: LOSS for k in WORD_HEADS},
                        "kwargs_optimizer": ADAM},
    "n_classes_dict": WORD_HEADS,
}  # fmt: skip
WORD_ARCH = [
    layer("reshape", "input_reshape", target_shape=[8, 2000, -1]),
    layer("tf.keras.layers.LayerNormalization", "input_norm", axis=[1, 2, 3], center=False, scale=False),
    {"layer_type": "tf.layers.conv2d", "args": conv("block0_conv", 4, [2, 16])["args"]},
    layer("tf.nn.relu", "block0_relu"),
    layer("hpool", "block0_pool", padding="VALID_TIME", pool_size=[8, 16], sqrt_window=True, strides=[2, 4]),
    layer("tf.keras.layers.LayerNormalization", "block0_norm", axis=-1, center=True, scale=True),
    {"layer_type": "tf.layers.conv2d", "args": conv("block1_conv", 6, [3, 6])["args"]},
    layer("tf.nn.relu", "block1_relu"),
    layer("hpool", "block1_pool", padding="VALID_TIME", pool_size=[1, 16], sqrt_window=True, strides=[1, 4]),
    layer("tf.keras.layers.LayerNormalization", "block1_norm", axis=-1, center=True, scale=True),
    layer("tf.layers.flatten", "fc_flatten"),
    layer("tf.layers.dense", "fc_intermediate_dense", activation=None, units=16),
    layer("tf.nn.relu", "fc_intermediate_relu"),
    layer("tf.keras.layers.LayerNormalization", "fc_intermediate_norm", axis=-1, center=True, scale=True),
    layer("tf.layers.dropout", "fc_dropout", rate=0.5),
    layer("multi_fc_top_classification", "fc_top", activation=None),
]
WORD_INPUT = (4000,)

# Nervegram single-head word model (legacy n_per_step spike generator), same network.
NERVE_CONFIG = {
    "kwargs_cochlea": NERVEGRAM_COCHLEA,
    "kwargs_optimize": {"key_outputs": ["label_word_int"], "kwargs_loss": {"label_word_int": LOSS},
                        "kwargs_optimizer": ADAM},
    "n_classes_dict": {"label_word_int": 5},
}  # fmt: skip
NERVE_INPUT = (8, 2000, 3)

CASES = {
    "loc": (LOC_CONFIG, LOC_ARCH, LOC_INPUT),
    "word": (WORD_CONFIG, WORD_ARCH, WORD_INPUT),
    "nerve": (NERVE_CONFIG, WORD_ARCH, NERVE_INPUT),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Checkpoint directory per case, written once for the module."""
    root = tmp_path_factory.mktemp("tf_reference")
    return {
        name: ref.make_checkpoint(config, arch, root / name, seed=3, input_shape=shape)
        for name, (config, arch, shape) in CASES.items()
    }


def read_checkpoint(model_dir):
    reader = tf.train.load_checkpoint(str(model_dir / "ckpt_BEST"))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


def model_variables(model_dir):
    """full name -> value of the model (not optimizer) variables in a checkpoint."""
    values = read_checkpoint(model_dir)
    names = ref.checkpoint_full_names(model_dir / "ckpt_BEST")
    return {
        name: values[key]
        for key, name in names.items()
        if not key.startswith("optimizer/") and ".OPTIMIZER_SLOT" not in key
    }


# ------------------------------------------------------------------------------------------------
# Checkpoint format
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["loc", "word"])
def test_checkpoint_holds_adam_slots_iteration_and_loss_scale(checkpoints, case):
    shapes = dict(tf.train.list_variables(str(checkpoints[case] / "ckpt_BEST")))
    values = read_checkpoint(checkpoints[case])
    # One optimizer step under a dynamic loss scale (legacy Adam wrapped by Keras'
    # LossScaleOptimizer), exactly the entries a training run's checkpoint carries.
    assert values["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"] == 1
    assert values["optimizer/loss_scale/current_loss_scale/.ATTRIBUTES/VARIABLE_VALUE"] == 2.0**15
    assert values["optimizer/loss_scale/good_steps/.ATTRIBUTES/VARIABLE_VALUE"] == 1
    for hyper in ("beta_1", "beta_2", "decay", "learning_rate"):
        assert f"optimizer/{hyper}/.ATTRIBUTES/VARIABLE_VALUE" in shapes
    weights = [k for k in shapes if k.startswith("layer_with_weights-") and "OPTIMIZER_SLOT" not in k]
    assert weights
    for key in weights:
        base = key.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE")
        slots = [f"{base}/.OPTIMIZER_SLOT/optimizer/{s}/.ATTRIBUTES/VARIABLE_VALUE" for s in ("m", "v")]
        if "/moving_" in key:  # BN statistics are not trained
            assert not any(s in shapes for s in slots), key
        else:
            assert all(shapes[s] == shapes[key] for s in slots), key
            assert np.any(values[slots[0]] != 0), f"{key}: Adam's first moment was never updated"


def test_new_keras_optimizer_layout_is_available(tmp_path):
    config, arch, shape = CASES["nerve"]
    model_dir = ref.make_checkpoint(config, arch, tmp_path, seed=0, input_shape=shape, legacy_optimizer=False)
    keys = set(dict(tf.train.list_variables(str(model_dir / "ckpt_BEST"))))
    assert "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE" in keys
    assert not any("OPTIMIZER_SLOT" in k for k in keys)


@pytest.mark.parametrize("case", ["loc", "word", "nerve"])
def test_object_graph_full_names_are_the_arch_names(checkpoints, case):
    config, arch, _ = CASES[case]
    names = set(model_variables(checkpoints[case]))
    assert names == ref.expected_variable_names(config, arch)
    spot_checks = {
        "loc": {"conv_0/kernel", "conv_1/bias", "batch_norm_fc_intermediate/moving_variance", "fc_top/kernel"},
        "word": {"block0_norm/gamma", "fc_top_label_word_int/bias", "fc_top_label_speaker_int/kernel"},
        "nerve": {"fc_top/bias", "fc_intermediate_norm/beta"},
    }[case]
    assert spot_checks <= names
    assert not any(n.startswith("input_norm/") for n in names)  # center=False, scale=False


def test_kernel_shapes_are_tf_layout(checkpoints):
    v = model_variables(checkpoints["loc"])
    assert v["conv_0/kernel"].shape == (2, 8, 3 * 2, 4)  # HWIO; 6 input channels = 2 ears x 3
    assert v["conv_1/kernel"].shape == (3, 4, 4 // 2, 4)  # groups=2 halves the input channels
    assert v["fc_top/kernel"].shape == (16, 7)  # (in, out)
    # the arithmetic behind PARITY_MODELS' cost agrees with what Keras built
    assert sum(x.size for x in v.values()) == ref.count_params(LOC_CONFIG, LOC_ARCH, (8, 10000, 6))
    word = model_variables(checkpoints["word"])
    assert sum(x.size for x in word.values()) == ref.count_params(WORD_CONFIG, WORD_ARCH, (8, 2000, 3))


# ------------------------------------------------------------------------------------------------
# Random weights
# ------------------------------------------------------------------------------------------------


def test_weights_are_randomized_not_keras_initial_values(checkpoints):
    for case in ("loc", "word"):
        for name, value in model_variables(checkpoints[case]).items():
            # Keras initialises biases and betas to 0, gammas and moving variances to 1 and
            # moving means to 0: every one of them must have been replaced.
            assert np.ptp(value) > 0, f"{case}: {name} is constant"
        for name, value in model_variables(checkpoints[case]).items():
            if name.endswith("/kernel") and not name.startswith("fc_top"):
                receptive = int(np.prod(value.shape[:-2]))
                fan_in, fan_out = receptive * value.shape[-2], receptive * value.shape[-1]
                # He-normal, not Keras' initial Glorot-uniform kernel (bounded by this limit)
                assert abs(value.std() / np.sqrt(2 / fan_in) - 1) < 0.25, name
                assert np.abs(value).max() > np.sqrt(6 / (fan_in + fan_out)), name
    loc = model_variables(checkpoints["loc"])
    assert all(loc[f"{bn}/moving_variance"].min() > 0 for bn in ("batch_norm_0", "batch_norm_1"))


def test_same_seed_same_weights_other_seed_other_weights(checkpoints, tmp_path):
    config, arch, shape = CASES["nerve"]
    again = ref.make_checkpoint(config, arch, tmp_path / "again", seed=3, input_shape=shape)
    other = ref.make_checkpoint(config, arch, tmp_path / "other", seed=4, input_shape=shape)
    first = model_variables(checkpoints["nerve"])
    for name, value in model_variables(again).items():
        np.testing.assert_array_equal(value, first[name], err_msg=name)
    for name, value in model_variables(other).items():
        assert not np.array_equal(value, first[name]), name


@pytest.mark.parametrize("case", ["loc", "word"])
def test_float32_model_reloads_the_checkpoint_exactly(checkpoints, case):
    config, arch, shape = CASES[case]
    model = ref.load_reference_model(checkpoints[case], shape, excerpt_offset=ref._default_excerpt(config, shape))
    saved = model_variables(checkpoints[case])
    loaded = {v.name.removesuffix(":0"): v.numpy() for v in model.weights}
    assert set(loaded) == set(saved)
    for name, value in loaded.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, saved[name], err_msg=name)


@pytest.mark.parametrize("case", ["loc", "word"])
def test_logits_are_order_one_and_every_parameter_matters(checkpoints, case):
    """Each parameter, zeroed (or BN variance doubled), moves the logits by > 1% of their spread."""
    config, arch, shape = CASES[case]
    offset = ref._default_excerpt(config, shape)
    x = ref.example_input(config, arch, batch=1, seed=11, input_shape=shape)
    model = ref.load_reference_model(checkpoints[case], shape, excerpt_offset=offset)
    base = {k: v.numpy() for k, v in model(x, training=False).items()}
    logits = np.concatenate(list(base.values()), axis=1)
    assert np.all(np.isfinite(logits))
    assert 0.1 < logits.std() < 10
    spread = logits.std()
    for variable in model.weights:
        original = variable.numpy()
        if "moving_variance" in variable.name:
            variable.assign(2 * original)
        else:
            variable.assign(np.zeros_like(original))
        moved = {k: v.numpy() for k, v in model(x, training=False).items()}
        variable.assign(original)
        change = max(np.abs(moved[k] - base[k]).max() for k in base)
        assert change > 1e-2 * spread, f"{variable.name} barely matters ({change:.2e})"


# ------------------------------------------------------------------------------------------------
# Front end
# ------------------------------------------------------------------------------------------------


def test_gammatone_stage_equals_lfilter_of_the_biquads():
    """The FIR filterbank (causal convolution with the truncated impulse response) against the
    biquad cascade run directly on the signal: identical for inputs no longer than the FIR."""
    sr, fir_dur = 20000, 0.05
    cfs = ref.erbspace(60.0, 8000.0, 6)
    config = {"cfs": list(cfs), "fir_dur": fir_dur, "kwargs_filter_coefs": {}}
    x = np.random.default_rng(0).standard_normal((2, int(fir_dur * sr))).astype(np.float32)
    got = ref._filterbank_fn(sr, config)(tf.constant(x)).numpy()
    want = np.repeat(x[:, np.newaxis, :].astype(np.float64), len(cfs), axis=1)
    for b, a in ref.gammatone_biquads(sr, cfs):
        for i in range(len(cfs)):
            want[:, i] = scipy.signal.lfilter(b[:, i], a[:, i], want[:, i], axis=-1)
    # float32 accumulation over 1000 taps
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())


def test_gammatone_biquads_have_unit_gain_at_cf():
    """Slaney's gain normalisation: |H| = 1 at each CF, and the response peaks near the CF."""
    sr = 50000
    cfs = ref.erbspace(60.0, 16000.0, 5)
    biquads = ref.gammatone_biquads(sr, cfs)
    freqs = np.linspace(10, sr / 2 - 10, 20000)
    for i, cf in enumerate(cfs):
        h_cf, h = np.ones(1, complex), np.ones(freqs.size, complex)
        for b, a in biquads:
            h_cf *= scipy.signal.freqz(b[:, i], a[:, i], worN=[cf], fs=sr)[1]
            h *= scipy.signal.freqz(b[:, i], a[:, i], worN=freqs, fs=sr)[1]
        assert abs(np.abs(h_cf[0]) - 1) < 1e-6
        erb = 24.7 + cf / 9.2644
        assert abs(freqs[np.argmax(np.abs(h))] - cf) < 0.5 * erb


def test_ihc_lowpass_taps_are_the_aliased_recursion():
    """The authors' loop aliases its two state arrays after n = 0, so for n >= 1 each stage is
    y[n] = c1 y[n-1] + 2 c2 u[n] (u = the previous stage), and at n = 0 y[0] = c2 u[0]."""
    sr, cutoff, order, fir_dur = 20000, 3000, 7, 0.05
    got, down = ref.ihc_lowpass_fir(sr, 10000, cutoff=cutoff, fir_dur=fir_dur, order=order)
    assert down == 2
    numtaps = 1001
    c1 = (sr - 2 * np.pi * cutoff) / (sr + 2 * np.pi * cutoff)
    c2 = (np.pi * cutoff) / (sr + 2 * np.pi * cutoff)
    n = np.arange(numtaps)
    u = (n == 0).astype(float)
    textbook = u.copy()
    for _ in range(order):
        u = scipy.signal.lfilter([2 * c2], [1, -c1], u) - c2 * u[0] * c1**n
        textbook = scipy.signal.lfilter([c2, c2], [1, -c1], textbook)
    window = scipy.signal.windows.hann(numtaps)
    want = u * window / np.sum(u * window)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    textbook = textbook * window / np.sum(textbook * window)
    assert np.abs(textbook - got).max() > 0.05 * got.max()  # the quirk is not the textbook filter


def test_ihc_lowpass_stage_is_a_causal_strided_convolution():
    kwargs = {"cutoff": 1000, "fir_dur": 0.005, "ihc_filter": True, "order": 7}
    filt, down = ref.ihc_lowpass_fir(50000, 10000, cutoff=1000, fir_dur=0.005, order=7)
    x = np.random.default_rng(1).standard_normal((2, 3, 1003)).astype(np.float32)
    got = ref._ihc_lowpass_fn(50000, 10000, kwargs)(tf.constant(x)).numpy()
    full = np.stack([[np.convolve(row.astype(np.float64), filt) for row in ex] for ex in x])
    want = full[..., : x.shape[-1] : down]  # out[m] = sum_k filt[k] x[m * down - k]
    assert got.shape == (2, 3, -(-1003 // down))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_hilbert_envelope_matches_scipy_in_float64_accuracy():
    rng = np.random.default_rng(2)
    for n in (12000, 1001):
        x = rng.standard_normal((1, 3, n, 1)).astype(np.float32)
        got = ref.hilbert_envelope(tf.constant(x), axis=2).numpy()
        want = np.abs(scipy.signal.hilbert(x.astype(np.float64), axis=2))
        # float32 output of a complex128 FFT: ~1e-7 relative, far below complex64's ~3e-4
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * want.max())


def test_rate_level_stage_matches_the_closed_form():
    rng = np.random.default_rng(3)
    x = (0.02 * rng.standard_normal((1, 4, 2000))).astype(np.float32)  # ~60 dB SPL subbands
    x[0, 0] = 0.0  # silence must give the spontaneous rate, not NaN
    got = ref._rate_level_fn(RATE_LEVEL)(tf.constant(x)).numpy()
    env = np.abs(scipy.signal.hilbert(x.astype(np.float64), axis=-1))[..., np.newaxis]
    tfs = np.divide(x[..., np.newaxis], env, out=np.zeros_like(env), where=env > 0)
    y_thr = (1 - 0.95) / 2
    dr, thr = np.array(RATE_LEVEL["dynamic_range"]), np.array(RATE_LEVEL["threshold"])
    k = np.log(1 / y_thr - 1) / (dr / 2)
    x0 = thr + np.log(1 / y_thr - 1) / k
    with np.errstate(divide="ignore", over="ignore"):
        db = 20 * np.log10(env / 20e-6)
        want = 250.0 / (1 + np.exp(-k * (db - x0))) * tfs
    assert got.shape == (1, 4, 2000, 3)
    np.testing.assert_allclose(got, want, atol=1e-3 * 250)
    assert np.all(got[0, 0] == 0.0)


def test_localization_front_end_orders_ears_and_takes_the_excerpt():
    config = {"kwargs_cochlea": NERVEGRAM_COCHLEA, "n_classes_dict": {"label_loc_int": 7}}
    x = ref.example_input(config, [], batch=1, seed=4, input_shape=(8, 12000, 3, 2))
    got = ref.tf_front_end(config, x, excerpt_offset=700)
    n = np.array(N_PER_CHANNEL, np.float32)
    ears = [n * (x[..., ear] * np.float32(1 / 10000)) for ear in (0, 1)]
    want = np.concatenate(ears, axis=-1)[:, :, 700:10700]
    assert got.shape == (1, 8, 10000, 6)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match="excerpt_offset"):
        ref.tf_front_end(config, x, excerpt_offset=None)
    with pytest.raises(ValueError, match="no excerpt"):
        ref.tf_front_end(config, x[:, :, :10000], excerpt_offset=0)


def test_waveform_front_end_shapes_and_silence():
    config, arch, _ = CASES["word"]
    x = np.zeros((2, 4000), np.float32)
    x[1] = ref.example_input(config, arch, batch=1, seed=5, input_shape=(4000,))[0]
    out = ref.tf_front_end(config, x, excerpt_offset=None)
    assert out.shape == (2, 8, 2000, 3)
    assert np.all(out[0] == 0.0)  # silence -> spontaneous rate 0, no NaN from log(0)
    assert np.all(np.isfinite(out))
    # expected counts never exceed n * rate_max / sr
    assert np.all(out[1] <= np.array(N_PER_CHANNEL) * 250.0 / 10000 + 1e-6)
    assert out[1].max() > 0


def test_unused_features_are_refused():
    config = copy.deepcopy(WORD_CONFIG)
    config["kwargs_cochlea"]["kwargs_spike_rate_noise"] = {"gaussian_noise_stddev": 1.0}
    with pytest.raises(ValueError, match="kwargs_spike_rate_noise"):
        ref.tf_front_end(config, np.zeros((1, 4000), np.float32), excerpt_offset=None)
    with pytest.raises(ValueError, match="roex"):
        ref._network_steps([layer("roex", "roex")], {"a": 2})


# ------------------------------------------------------------------------------------------------
# Network layers
# ------------------------------------------------------------------------------------------------


def test_conv_and_hpool_output_shapes(checkpoints):
    config, arch, shape = CASES["word"]
    model = ref.load_reference_model(checkpoints["word"], shape)
    got = {l.name: tuple(l.output.shape[1:]) for l in model.layers if l.name in ref.infer_shapes(arch, (8, 2000, 3))}
    # by hand: VALID_TIME pads freq TF-SAME-style (ceil(F / stride)), time is VALID
    assert got["block0_conv"] == (8, 2000 - 16 + 1, 4)
    assert got["block0_pool"] == (4, (1985 - 16) // 4 + 1, 4)
    assert got["block1_conv"] == (4, 493 - 6 + 1, 6)
    assert got["block1_pool"] == (4, (488 - 16) // 4 + 1, 6)
    assert got["fc_flatten"] == (4 * 119 * 6,)
    for name, out_shape in ref.infer_shapes(arch, (8, 2000, 3)).items():
        if name in got:
            assert got[name] == out_shape, name


def test_hpool_is_a_per_channel_hanning_weighted_sum():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 9, 40, 3)).astype(np.float32)
    got = ref._hpool_layer(strides=[2, 4], pool_size=[4, 8], padding="VALID_TIME", sqrt_window=True)(x).numpy()
    win = np.sqrt(np.outer(np.hanning(4), np.hanning(8)))  # numpy's hanning: (1 - cos(2 pi n / (N-1))) / 2
    # freq 9, stride 2 -> TF SAME total pad 4 - (9 % 2) = 3: one row before, two after
    xp = np.pad(x.astype(np.float64), [(0, 0), (1, 2), (0, 0), (0, 0)])
    want = np.zeros((2, 5, (40 - 8) // 4 + 1, 3))
    for i in range(want.shape[1]):
        for j in range(want.shape[2]):
            patch = xp[:, 2 * i : 2 * i + 4, 4 * j : 4 * j + 8, :]
            want[:, i, j, :] = np.einsum("bhwc,hw->bc", patch, win)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_keras_grouped_conv_groups_channels_in_contiguous_halves():
    """Group g sees input channels [g*Cin/G, (g+1)*Cin/G) and makes outputs [g*Cout/G, ...), the
    layout the converter relies on when it maps HWIO kernels to torch's grouped weights."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 5, 12, 6)).astype(np.float32)
    layer_ = tf.keras.layers.Conv2D(4, (2, 3), groups=2)
    layer_.build(x.shape)
    kernel = rng.standard_normal((2, 3, 3, 4)).astype(np.float32)
    layer_.set_weights([kernel, np.zeros(4, np.float32)])
    got = layer_(x).numpy()
    want = np.zeros_like(got)
    for g in range(2):
        xg, kg = x[..., 3 * g : 3 * g + 3], kernel[..., 2 * g : 2 * g + 2]
        for i in range(got.shape[1]):
            for j in range(got.shape[2]):
                want[0, i, j, 2 * g : 2 * g + 2] = np.einsum("hwc,hwco->o", xg[0, i : i + 2, j : j + 3], kg)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Layouts and published models
# ------------------------------------------------------------------------------------------------


def test_layout_conversion():
    cases = {"waveform": [(2, 7), (2, 2, 7)], "nervegram": [(2, 3, 4, 7), (2, 2, 3, 4, 7)], "cnn": [(2, 6, 4, 7)]}
    for kind, shapes in cases.items():
        for shape in shapes:
            x = np.arange(np.prod(shape)).reshape(shape)
            np.testing.assert_array_equal(ref.tf_to_runtime(ref.runtime_to_tf(x, kind), kind), x)
    x = np.arange(2 * 2 * 3 * 4 * 7).reshape(2, 2, 3, 4, 7)  # (batch, ear, spont, freq, time)
    assert ref.runtime_to_tf(x, "nervegram")[1, 3, 6, 2, 1] == x[1, 1, 2, 3, 6]
    x = np.arange(2 * 6 * 4 * 7).reshape(2, 6, 4, 7)  # (batch, C, freq, time)
    assert ref.runtime_to_tf(x, "cnn")[1, 3, 6, 5] == x[1, 5, 3, 6]
    assert ref.runtime_to_tf(np.zeros((1, 2, 9)), "waveform").shape == (1, 9, 2)
    with pytest.raises(ValueError):
        ref.runtime_to_tf(np.zeros((1, 2, 3)), "cnn")


@pytest.mark.shared
@pytest.mark.skipif(not ref.PUBLISHED_MODELS.is_dir(), reason="../shared/phaselocknet_models not present")
def test_parity_models_are_the_cheapest_of_their_families():
    for model in ref.PARITY_MODELS:
        task_variant, arch_name = model.rsplit("/", 1)
        costs = {
            a: ref.parity_cost(*ref.load_published(f"{task_variant}/{a}"))
            for a in sorted(os.listdir(ref.PUBLISHED_MODELS / task_variant))
        }
        assert min(costs, key=costs.get) == arch_name, model


@pytest.mark.shared
@pytest.mark.skipif(not ref.PUBLISHED_MODELS.is_dir(), reason="../shared/phaselocknet_models not present")
def test_real_input_shapes_of_published_models():
    expected = {
        "sound_localization/simplified_IHC3000/arch03": ((60000, 2), (50, 10000, 6)),
        "sound_localization/IHC1000/arch03": ((50, 10000, 3, 2), (50, 10000, 6)),
        "spkr_word_recognition/simplified_IHC0050/arch0_0016": ((40000,), (50, 20000, 3)),
        "word_recognition/IHC0320/arch0_0016": ((50, 20000, 3), (50, 20000, 3)),
    }
    for model, (tf_shape, network_shape) in expected.items():
        config, arch = ref.load_published(model)
        assert ref.tf_input_shape(config, arch) == tf_shape
        assert ref.network_input_shape(config, arch) == network_shape
