"""TensorFlow / Keras-2 reference of the authors' models, for the converter's parity tests.

Builds a configuration's model the way the authors' training code does (phaselocknet_run.py,
util_cochlea.cochlea, util_network.build_network, util_optimize.optimize in msaddler/phaselocknet,
TF 2.13 / Keras 2), so that checkpoints written here have the format, object graph and variable
names of the published ``ckpt_BEST`` files; and computes reference logits with the spike
generator replaced by its expected value.

This is a test helper: it imports TensorFlow, which is allowed in tests/ and convert/ but never in
runtime/.  Layouts are TF's (channels last):
  waveform   mono [batch, time]; binaural [batch, time, 2]
  nervegram  mono [batch, freq, time, spont]; binaural [batch, freq, time, spont, 2]
  front end / CNN input [batch, freq, time, channels]
``runtime_to_tf`` / ``tf_to_runtime`` convert to and from the runtime's channels-first layouts.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Callable, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import trackable_object_graph_pb2  # noqa: E402

# Keras' mixed-precision and loss-scale warnings go through the TF logger, not the C++ one.
tf.get_logger().setLevel("ERROR")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PUBLISHED_MODELS = SHARED / "phaselocknet_models"

LOCALIZATION_HEAD = "label_loc_int"
EXCERPT_LENGTH = 10000  # nerve-representation samples the localization networks see
EXCERPT_BUFFER = 500  # the authors' random_slice keeps this many samples clear at each end
LOCALIZATION_WAVEFORM_SECONDS = 1.2
NERVEGRAM_FREQS = 50  # every published nervegram has 50 CFs

# The cheapest published architecture of each family at the real input size.  All variants of a
# task share one set of arch.json files, so the variant only picks the front end.  Cost is
# `parity_cost`: conv MACs (kernel_h * kernel_w * cin / groups * cout * out_h * out_w, `conv_macs`)
# + hpool MACs + 2000 x parameters.  The parameter term matters: the archs with the fewest conv
# MACs (localization arch10) flatten ~1e6 features into a 512-unit Dense, 503 M parameters, a 6 GB
# checkpoint with Adam slots and ~2 minutes to write.  Per arch: conv GMAC / M params
#   localization (simplified and nervegram share archs; network input 50 x 10000 x 6):
#     arch01 81.6/96  arch02 42.2/68  arch03 65.6/26 <-  arch04 62.2/499  arch05 31.6/468
#     arch06 22.4/228  arch07 77.2/495  arch08 58.3/94  arch09 73.6/400  arch10 5.1/503 (min conv)
#   delayed-integration localization (groups=2 convs; 50 x 10000 x 6):
#     arch01 48.7/96  arch02 27.2/68  arch03 40.9/26 <-  arch04 34.6/499  arch05 27.5/468
#     arch06 19.4/228  arch07 39.8/495  arch08 47.1/94  arch09 60.8/400  arch10 4.2/503 (min conv)
#   word / speaker / word+speaker (one set of archs; 50 x 20000 x 3; hpool adds ~29.5 GMAC each):
#     0000 52.5/55  0001 52.0/55  0002 52.6/55  0004 52.6/55  0006 52.6/55  0007 51.6/53
#     0008 52.6/55  0009 48.9/51 (min conv)  0016 52.6/46 <-  0017 52.8/57
PARITY_MODELS = [
    # simplified localization: binaural waveform 60000 @ 50 kHz, conv + maxpool + BN
    "sound_localization/simplified_IHC3000/arch03",
    # delayed-integration localization: groups=2 convs (nervegram input keeps it cheap)
    "sound_localization/IHC3000_delayed_integration/arch03",
    # simplified word/speaker: waveform 40000 @ 20 kHz, reshape, LN axis [1,2,3], hpool, 2 heads
    "spkr_word_recognition/simplified_IHC0050/arch0_0016",
    # nervegram-input localization: binaural nervegram 50 x 10000 x 3
    "sound_localization/IHC1000/arch03",
    # nervegram-input word/speaker: 2 heads, legacy (n_per_step) spike generator
    "spkr_word_recognition/IHC3000/arch0_0016",
    # single head: its Dense is named plain `fc_top`
    "word_recognition/IHC0320/arch0_0016",
]


# --------------------------------------------------------------------------------------------
# Published configurations and input shapes
# --------------------------------------------------------------------------------------------


def load_published(model: str) -> tuple[dict, list]:
    """(config, arch) of a published model, e.g. "word_recognition/IHC3000/arch0_0009"."""
    model_dir = PUBLISHED_MODELS / model
    with open(model_dir / "config.json") as f:
        config = json.load(f)
    with open(model_dir / "arch.json") as f:
        arch = json.load(f)
    return config, arch


def is_localization(config: dict) -> bool:
    # The authors' run script keys binaural processing on this head, nothing else.
    return LOCALIZATION_HEAD in config.get("n_classes_dict", {})


def is_waveform_input(config: dict) -> bool:
    return bool(config.get("kwargs_cochlea", {}).get("config_filterbank"))


def tf_input_shape(config: dict, arch: list) -> tuple[int, ...]:
    """The real TF-layout input shape (no batch axis) of a published-style configuration."""
    kw = config["kwargs_cochlea"]
    if is_localization(config):
        if is_waveform_input(config):
            return (int(LOCALIZATION_WAVEFORM_SECONDS * kw["sr_input"]), 2)
        return (NERVEGRAM_FREQS, EXCERPT_LENGTH, 3, 2)
    reshapes = [l for l in arch if "reshape" in l["layer_type"].lower()]
    if not reshapes:
        raise ValueError("cannot infer the input length: arch has no reshape layer")
    n_time = int(reshapes[0]["args"]["target_shape"][1])
    if is_waveform_input(config):
        return (int(round(n_time * kw["sr_input"] / kw["sr_output"])),)
    return (NERVEGRAM_FREQS, n_time, 3)


def example_input(
    config: dict, arch: list, *, batch: int = 1, seed: int = 0, input_shape=None
) -> np.ndarray:
    """A TF-layout float32 input: Gaussian noise at 60 dB SPL, or random rates in [0, 250] sp/s."""
    shape = tuple(input_shape) if input_shape is not None else tf_input_shape(config, arch)
    rng = np.random.default_rng(seed)
    if is_waveform_input(config):
        x = rng.standard_normal((batch, *shape))
        rms_60db = 20e-6 * 10 ** (60 / 20)
        x *= rms_60db / np.sqrt(np.mean(x**2, axis=1, keepdims=True))
        return x.astype(np.float32)
    return (250.0 * rng.uniform(size=(batch, *shape)) ** 2).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Layout conversion (runtime is channels first)
# --------------------------------------------------------------------------------------------

_TO_TF = {
    ("waveform", 2): (0, 1),
    ("waveform", 3): (0, 2, 1),  # (batch, ear, time) -> [batch, time, ear]
    ("nervegram", 4): (0, 2, 3, 1),  # (batch, spont, freq, time) -> [batch, freq, time, spont]
    ("nervegram", 5): (0, 3, 4, 2, 1),  # (batch, ear, spont, freq, time) -> [b, f, t, spont, ear]
    ("cnn", 4): (0, 2, 3, 1),  # (batch, C, freq, time) -> [batch, freq, time, C]
}


def runtime_to_tf(x: np.ndarray, kind: str) -> np.ndarray:
    """Runtime layout -> TF layout. kind: "waveform", "nervegram" or "cnn" (front-end output)."""
    x = np.asarray(x)
    if (kind, x.ndim) not in _TO_TF:
        raise ValueError(f"no {kind!r} layout with {x.ndim} dimensions")
    return np.ascontiguousarray(np.transpose(x, _TO_TF[(kind, x.ndim)]))


def tf_to_runtime(x: np.ndarray, kind: str) -> np.ndarray:
    """TF layout -> runtime layout (inverse of `runtime_to_tf`)."""
    x = np.asarray(x)
    if (kind, x.ndim) not in _TO_TF:
        raise ValueError(f"no {kind!r} layout with {x.ndim} dimensions")
    return np.ascontiguousarray(np.transpose(x, np.argsort(_TO_TF[(kind, x.ndim)])))


# --------------------------------------------------------------------------------------------
# Front end (util_cochlea.cochlea / util_signal semantics)
# --------------------------------------------------------------------------------------------


def erbspace(freq_min: float, freq_max: float, num: int) -> np.ndarray:
    def freq2erb(f):
        return 21.4 * np.log10(0.00437 * f + 1.0)

    erbs = np.linspace(freq2erb(freq_min), freq2erb(freq_max), num=num)
    return (1.0 / 0.00437) * (np.power(10.0, erbs / 21.4) - 1.0)


def gammatone_biquads(sr, cfs, EarQ=9.2644, minBW=24.7, order=1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Slaney (1998) MakeERBFilters: four (b [3, num_cf], a [3, num_cf]) biquads in cascade."""
    cfs = np.asarray(cfs, dtype=np.float64)
    T = 1.0 / sr
    erb = ((cfs / EarQ) ** order + minBW**order) ** (1 / order)
    B = 1.019 * 2 * np.pi * erb
    arg = 2 * cfs * np.pi * T
    a = np.array([np.ones_like(cfs), -2 * np.cos(arg) / np.exp(B * T), np.exp(-2 * B * T)])
    tmp0 = 2 * T * np.cos(arg) / np.exp(B * T)
    tmp1 = T * np.sin(arg) / np.exp(B * T)
    s_plus, s_minus = np.sqrt(3 + 2**1.5), np.sqrt(3 - 2**1.5)
    a1s = [
        -(tmp0 + 2 * s_plus * tmp1) / 2,
        -(tmp0 - 2 * s_plus * tmp1) / 2,
        -(tmp0 + 2 * s_minus * tmp1) / 2,
        -(tmp0 - 2 * s_minus * tmp1) / 2,
    ]
    tmp2 = np.exp(4j * cfs * np.pi * T)
    tmp3 = 2 * np.exp(-(B * T) + 2j * cfs * np.pi * T) * T
    tmp4, tmp5 = np.cos(arg), np.sin(arg)
    gain = np.abs(
        (-2 * tmp2 * T + tmp3 * (tmp4 - s_minus * tmp5))
        * (-2 * tmp2 * T + tmp3 * (tmp4 + s_minus * tmp5))
        * (-2 * tmp2 * T + tmp3 * (tmp4 - s_plus * tmp5))
        * (-2 * tmp2 * T + tmp3 * (tmp4 + s_plus * tmp5))
        / (-2 / np.exp(2 * B * T) - 2 * tmp2 + 2 * (1 + tmp2) / np.exp(B * T)) ** 4
    )
    zeros = np.zeros_like(cfs)
    biquads = [(np.array([T * np.ones_like(cfs), a1, zeros]), a) for a1 in a1s]
    biquads[0] = (biquads[0][0] / gain, a)
    return biquads


def gammatone_fir(sr, fir_dur, cfs, **kwargs_filter_coefs) -> np.ndarray:
    """Impulse responses [num_cf, int(fir_dur * sr)] (float64) of the biquad cascades."""
    impulse = np.zeros(int(fir_dur * sr))
    impulse[0] = 1.0
    fir = np.tile(impulse, (len(cfs), 1))
    for b, a in gammatone_biquads(sr, cfs, **kwargs_filter_coefs):
        for i in range(len(cfs)):
            fir[i] = scipy.signal.lfilter(b[:, i], a[:, i], fir[i])
    return fir


def ihc_lowpass_fir(sr_input, sr_output, *, cutoff, fir_dur, order) -> tuple[np.ndarray, int]:
    """(filter taps, downsampling factor) of the authors' FIR IHC lowpass (fir_lowpass_filter).

    Reproduces their recursion literally, including ``ihcl = ihc`` aliasing the two state arrays
    after the first sample (the textbook cascade keeps a copy and gives a different filter).
    """
    g = math.gcd(int(sr_input), int(sr_output))
    down, up = int(sr_input) // g, int(sr_output) // g
    if up != 1:
        raise ValueError("upsampling in the IHC lowpass is not used by any published model")
    if cutoff > sr_output / 2:
        raise ValueError("cutoff may not exceed Nyquist")
    sr_filt = sr_input * up
    numtaps = int(2 * (fir_dur * sr_filt // 2)) + 1
    c1 = (sr_filt - 2 * np.pi * cutoff) / (sr_filt + 2 * np.pi * cutoff)
    c2 = (np.pi * cutoff) / (sr_filt + 2 * np.pi * cutoff)
    impulse = np.zeros(numtaps)
    impulse[0] = 1.0
    filt = np.zeros(numtaps)
    ihc = np.zeros(order + 1)
    ihcl = np.zeros(order + 1)
    for n in range(numtaps):
        ihc[0] = impulse[n]
        for i in range(order):
            ihc[i + 1] = c1 * ihcl[i + 1] + c2 * (ihc[i] + ihcl[i])
        ihcl = ihc
        filt[n] = ihc[order]
    filt = filt * scipy.signal.windows.hann(numtaps)
    filt = filt / filt.sum()
    return filt * up, down


def _filterbank_fn(sr, config_filterbank: dict) -> Callable:
    fb = dict(config_filterbank)
    unknown = set(fb) - {"cfs", "min_cf", "max_cf", "num_cf", "fir_dur", "kwargs_filter_coefs"}
    if unknown:
        raise ValueError(f"config_filterbank keys {sorted(unknown)} are not used by any published model")
    cfs = fb.get("cfs")
    if cfs is None:
        cfs = erbspace(fb.get("min_cf", 125.0), fb.get("max_cf", 8e3), fb.get("num_cf", 50))
    fir = gammatone_fir(sr, fb["fir_dur"], np.asarray(cfs), **fb.get("kwargs_filter_coefs", {}))
    # [taps, in=1, out=num_cf], time-reversed so a VALID correlation is a causal convolution
    kernel = tf.constant(np.transpose(fir[:, np.newaxis, ::-1], (2, 1, 0)), tf.float32)

    def filterbank(x):  # [batch, time] -> [batch, num_cf, time]
        x = tf.pad(x[:, :, tf.newaxis], [[0, 0], [kernel.shape[0] - 1, 0], [0, 0]])
        y = tf.nn.convolution(x, tf.cast(kernel, x.dtype), padding="VALID")
        return tf.transpose(y, perm=[0, 2, 1])

    return filterbank


def _ihc_lowpass_fn(sr_input, sr_output, kwargs_lowpass: dict) -> Callable:
    kw = dict(kwargs_lowpass)
    if not kw.pop("ihc_filter", False):
        raise ValueError("kwargs_fir_lowpass_filter_output without ihc_filter is not used by any published model")
    unknown = set(kw) - {"cutoff", "fir_dur", "order"}
    if unknown:
        raise ValueError(f"kwargs_fir_lowpass_filter_output keys {sorted(unknown)} are not used by any published model")
    filt, down = ihc_lowpass_fir(sr_input, sr_output, cutoff=kw["cutoff"], fir_dur=kw["fir_dur"], order=kw["order"])
    kernel = tf.constant(filt[::-1][np.newaxis, :, np.newaxis, np.newaxis], tf.float32)

    def resample(x):  # [batch, freq, time] -> [batch, freq, ceil(time / down)]
        x = tf.pad(x[..., tf.newaxis], [(0, 0), (0, 0), (kernel.shape[1] - 1, 0), (0, 0)])
        y = tf.nn.convolution(x, tf.cast(kernel, x.dtype), strides=[1, down], padding="VALID")
        return y[..., 0]

    return resample


def hilbert_envelope(x, axis: int):
    """|analytic signal| along `axis`, FFT in complex128.

    TF's CPU complex64 FFT is ~3e-4 relative off at length 12000, which moves the rate-level output
    by up to 1% of its max; the originals ran on GPUs with an accurate FFT.
    """
    x = tf.experimental.numpy.swapaxes(x, axis, -1)
    n = x.shape[-1]
    h = np.zeros(n)
    h[0] = 1.0
    if n % 2 == 0:
        h[n // 2] = 1.0
        h[1 : n // 2] = 2.0
    else:
        h[1 : (n + 1) // 2] = 2.0
    xa = tf.signal.ifft(tf.signal.fft(tf.cast(x, tf.complex128)) * tf.constant(h, tf.complex128))
    env = tf.cast(tf.math.abs(xa), x.dtype)
    return tf.experimental.numpy.swapaxes(env, -1, axis)


def _rate_level_fn(kw: dict) -> Callable:
    kw = dict(kw)
    unknown = set(kw) - {"rate_spont", "rate_max", "threshold", "dynamic_range", "dynamic_range_interval", "envelope_mode"}
    if unknown:
        raise ValueError(f"kwargs_sigmoid_rate_level_function keys {sorted(unknown)} are not used by any published model")
    rate_spont = np.array(kw.get("rate_spont", 70.0)).reshape([-1])
    rate_max = np.array(kw.get("rate_max", 250.0)).reshape([-1])
    threshold = np.array(kw.get("threshold", 0.0)).reshape([-1])
    dynamic_range = np.array(kw.get("dynamic_range", 25.0)).reshape([-1])
    interval = kw.get("dynamic_range_interval", 0.95)
    envelope_mode = kw.get("envelope_mode", False)
    y_threshold = (1 - interval) / 2
    k = np.log((1 / y_threshold) - 1) / (dynamic_range / 2)
    x0 = threshold - (np.log((1 / y_threshold) - 1) / (-k))
    n_channels = max(len(rate_spont), len(rate_max), len(threshold), len(dynamic_range))
    shape = [1, 1, 1, n_channels]

    def rate_level(x):  # [batch, freq, time] -> [batch, freq, time, channels] (spikes/s)
        if len(x.shape) == 3:
            x = x[..., tf.newaxis] if n_channels > 1 else x
        if envelope_mode:
            env = hilbert_envelope(x, axis=2)
            tfs = tf.math.divide_no_nan(x, env)
            pa = env
        else:
            pa = x
        c = lambda v: tf.constant(v, dtype=pa.dtype, shape=shape[: len(pa.shape)])  # noqa: E731
        db = 20.0 * tf.math.log(pa / 20e-6) / tf.cast(tf.math.log(10.0), pa.dtype)
        y = 1.0 / (1.0 + tf.math.exp(-c(k) * (db - c(x0))))
        if envelope_mode:
            y = y * tfs
        return c(rate_spont) + (c(rate_max) - c(rate_spont)) * y

    return rate_level


def _custom_slice_fn(axis=-1, args=None, expand_dims=True) -> Callable:
    def custom_slice(x):
        while expand_dims and axis >= len(x.shape):
            x = tf.expand_dims(x, axis=-1)
        idx = [slice(None)] * len(x.shape)
        if args is not None and -len(x.shape) <= axis < len(x.shape):
            idx[axis] = slice(*args)
        return x[tuple(idx)]

    return custom_slice


class SpikeGeneratorBinomial(tf.keras.layers.Layer):
    """Binomial spike counts from rates, n = n_per_channel[c], p = rate / sr.

    sampling "expected" returns n * p (the reference); "approx" (normal approximation), "exact"
    and "legacy" (the n_per_step generator: a sum of Bernoulli draws, i.e. Binomial) sample as the
    authors' layers do during training.  No weights, so its class does not reach the checkpoint.
    """

    def __init__(self, sr, n_per_channel, sampling="expected", name="spike_generator_binomial", **kwargs):
        super().__init__(name=name, **kwargs)
        if sampling not in ("expected", "approx", "exact", "legacy"):
            raise ValueError(f"unknown spike sampling {sampling!r}")
        self.sr = sr
        self.n_per_channel = np.array(n_per_channel, dtype=int).reshape([1, 1, 1, -1])
        self.sampling = sampling

    def call(self, inputs):
        p = tf.multiply(tf.cast(inputs, tf.float32), 1 / self.sr)
        if len(p.shape) < 4:
            p = tf.expand_dims(p, axis=-1)
        n = tf.constant(self.n_per_channel, tf.float32)
        if self.sampling == "expected":
            counts = n * p
        elif self.sampling == "approx":
            counts = tf.math.round(tf.nn.relu(tf.random.normal(tf.shape(p), mean=n * p, stddev=tf.math.sqrt(n * p * (1 - p)))))
        else:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
            counts = tf.random.stateless_binomial(
                tf.shape(p), seed=seed, counts=n, probs=tf.clip_by_value(p, 0.0, 1.0), output_dtype=tf.float32
            )
        return tf.cast(counts, inputs.dtype)


_COCHLEA_KEYS = {
    "sr_input", "sr_cochlea", "sr_output", "config_filterbank", "config_subband_processing",
    "kwargs_fir_lowpass_filter_input", "kwargs_fir_lowpass_filter_output", "kwargs_custom_slice",
    "kwargs_sigmoid_rate_level_function", "kwargs_spike_rate_noise", "kwargs_spike_generator_binomial",
    "kwargs_autocorrelation_correlogram",
}  # fmt: skip


def _cochlea(kwargs_cochlea: dict, *, spikes: str) -> tf.keras.Sequential:
    """The authors' cochlea: a Sequential of float32 Lambda stages and the spike generator.

    spikes: "expected" for the reference, "sample" for the training-time model.
    """
    kw = copy.deepcopy(kwargs_cochlea)
    unknown = set(kw) - _COCHLEA_KEYS
    if unknown:
        raise ValueError(f"kwargs_cochlea keys {sorted(unknown)} are not used by any published model")
    sr_input = kw.get("sr_input", 20e3)
    sr_cochlea = kw.get("sr_cochlea") or sr_input
    sr_output = kw.get("sr_output") or sr_input
    model = tf.keras.Sequential()
    if sr_input != sr_cochlea or kw.get("kwargs_fir_lowpass_filter_input"):
        raise ValueError("input resampling (sr_input != sr_cochlea) is not used by any published model")
    fb = dict(kw.get("config_filterbank", {}))
    mode = fb.pop("mode", None)
    if mode is None and fb:
        raise ValueError("config_filterbank needs a mode")
    if mode is not None:
        if mode != "fir_gammatone_filterbank":
            raise ValueError(f"filterbank mode {mode!r} is not used by any published model")
        model.add(tf.keras.layers.Lambda(_filterbank_fn(sr_cochlea, fb), dtype=tf.float32, name="filterbank"))
    sub = dict(kw.get("config_subband_processing", {}))
    rectify = sub.pop("rectify", False)
    if sub:
        raise ValueError(f"config_subband_processing keys {sorted(sub)} are not used by any published model")
    if rectify:
        model.add(tf.keras.layers.Lambda(tf.nn.relu, dtype=tf.float32, name="relu_subbands"))
    lowpass = kw.get("kwargs_fir_lowpass_filter_output", {})
    if sr_output != sr_cochlea or lowpass:
        model.add(tf.keras.layers.Lambda(_ihc_lowpass_fn(sr_cochlea, sr_output, lowpass), dtype=tf.float32, name="resample_subbands"))
        if rectify:
            model.add(tf.keras.layers.Lambda(tf.nn.relu, dtype=tf.float32, name="relu_resampled_subbands"))
    if kw.get("kwargs_custom_slice"):
        model.add(tf.keras.layers.Lambda(_custom_slice_fn(**kw["kwargs_custom_slice"]), dtype=tf.float32, name="custom_slice"))
    if kw.get("kwargs_sigmoid_rate_level_function"):
        fn = _rate_level_fn(kw["kwargs_sigmoid_rate_level_function"])
        model.add(tf.keras.layers.Lambda(fn, dtype=tf.float32, name="sigmoid_rate_level_function"))
    if kw.get("kwargs_spike_rate_noise"):
        raise ValueError("kwargs_spike_rate_noise is not used by any published model")
    spk = dict(kw.get("kwargs_spike_generator_binomial", {}))
    if spk:
        for key in ("p_noise_stddev", "channels_to_manipulate"):
            if spk.get(key):
                raise ValueError(f"kwargs_spike_generator_binomial {key} is not used by any published model")
        if spikes == "expected":
            sampling = "expected"
        elif "n_per_step" in spk:
            sampling = "legacy"
        else:
            sampling = spk.get("mode", "exact")
        model.add(SpikeGeneratorBinomial(spk.get("sr", sr_output), spk.get("n_per_channel", 1), sampling))
    if kw.get("kwargs_autocorrelation_correlogram"):
        raise ValueError("kwargs_autocorrelation_correlogram is not used by any published model")
    return model


def _front_end(x, config: dict, *, spikes: str, excerpt_offset):
    """Front end on a KerasTensor (builds the model) or an eager tensor (runs it).

    excerpt_offset: an int, "random" (the authors' tf.random.uniform in [500, T - 10500]) or None;
    only localization outputs longer than 10000 samples are excerpted, and only they accept one.
    """
    kw = config.get("kwargs_cochlea", {})
    if not kw:
        if excerpt_offset is not None:
            raise ValueError("this configuration takes no excerpt")
        return x
    if not is_localization(config):
        if excerpt_offset is not None:
            raise ValueError("only localization models take an excerpt")
        return _cochlea(kw, spikes=spikes)(x)
    if len(x.shape) not in (3, 5) or x.shape[-1] != 2:
        raise ValueError(f"expected [batch, time, 2] or [batch, freq, time, spont, 2], got {x.shape}")
    y0 = _cochlea(kw, spikes=spikes)(x[..., 0])
    y1 = _cochlea(kw, spikes=spikes)(x[..., 1])
    y = tf.concat([y0, y1], axis=-1)
    n_time = y.shape[2]
    if n_time <= EXCERPT_LENGTH:
        if excerpt_offset is not None:
            raise ValueError(f"front-end output has {n_time} <= {EXCERPT_LENGTH} samples: no excerpt is taken")
        return y
    if excerpt_offset is None:
        raise ValueError(f"front-end output has {n_time} > {EXCERPT_LENGTH} samples: pass excerpt_offset")
    if isinstance(excerpt_offset, str):
        if excerpt_offset != "random":
            raise ValueError(f"excerpt_offset must be an int, 'random' or None, not {excerpt_offset!r}")
        # Drawn once, eagerly, when the functional model is built (as in the authors' code).
        start = tf.random.uniform((), EXCERPT_BUFFER, n_time + 1 - EXCERPT_BUFFER - EXCERPT_LENGTH, dtype=tf.int64)
    else:
        start = int(excerpt_offset)
        if not 0 <= start <= n_time - EXCERPT_LENGTH:
            raise ValueError(f"excerpt_offset {start} outside [0, {n_time - EXCERPT_LENGTH}]")
    index = [slice(None)] * len(y.shape)
    index[2] = slice(start, start + EXCERPT_LENGTH)
    return y[tuple(index)]


def tf_front_end(config: dict, x_tf_layout: np.ndarray, *, excerpt_offset: int | None) -> np.ndarray:
    """Expected spike counts [batch, freq, time, channels] of the TF front end (float32)."""
    with _policy("float32"):
        y = _front_end(tf.constant(x_tf_layout, tf.float32), config, spikes="expected", excerpt_offset=excerpt_offset)
    return y.numpy()


# --------------------------------------------------------------------------------------------
# Network (util_network.build_network semantics)
# --------------------------------------------------------------------------------------------


class _Step(NamedTuple):
    kind: str  # "conv", "dense", "bn", "ln", "heads" (hold weights) or "op"
    layer: object  # the Keras layer (a dict of Dense per head for "heads"), or None
    apply: Callable


def same_pad(x, kernel: int, stride: int, axis: int):
    """TF SAME padding along one axis only (the authors' same_pad_along_axis)."""
    n = x.shape[axis]
    p = max(kernel - stride if n % stride == 0 else kernel - (n % stride), 0)
    paddings = [(0, 0)] * len(x.shape)
    paddings[axis] = (p // 2, p - p // 2)
    return tf.pad(x, paddings)


def hanning_window(pool_size, sqrt_window=False, normalize=False) -> tuple[np.ndarray, np.ndarray]:
    """The two 1-D factors of the authors' Hanning pooling window (their outer product)."""
    wins = []
    for n in pool_size:
        wins.append(np.ones(1) if n == 1 else (1 - np.cos(2 * np.pi * np.arange(n) / (n - 1))) / 2)
    if sqrt_window:
        wins = [np.sqrt(w) for w in wins]
    if normalize:
        wins = [w / w.sum() for w in wins]
    return wins[0], wins[1]


def _hpool_layer(strides=2, pool_size=8, padding="SAME", sqrt_window=False, normalize=False, name=None):
    """Hanning pooling as the authors build it: a Lambda convolving with window x eye(channels).

    (oneDNN runs this dense C x C kernel about as fast as a per-channel one, and it keeps the
    authors' op; tf.nn.depthwise_conv2d would also refuse their unequal strides.)
    """
    strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
    pool_size = (pool_size, pool_size) if isinstance(pool_size, int) else tuple(pool_size)
    win0, win1 = hanning_window(pool_size, sqrt_window, normalize)
    window = np.outer(win0, win1)[:, :, np.newaxis, np.newaxis]
    padding = padding.upper()
    if padding not in ("VALID", "VALID_TIME", "SAME"):
        raise ValueError(f"hpool padding {padding!r} unknown")

    def hpool(x):
        if padding == "VALID_TIME":
            x = same_pad(x, pool_size[0], strides[0], axis=1)
        kernel = tf.constant(window, dtype=x.dtype) * tf.eye(x.shape[-1], batch_shape=[1, 1], dtype=x.dtype)
        return tf.nn.convolution(x, kernel, strides=strides, padding="SAME" if padding == "SAME" else "VALID")

    return tf.keras.layers.Lambda(hpool, name=name)


_UNUSED_LAYER_TYPES = (
    "branch", "groupnormalization", "group_normalization", "lrn", "local_response_norm",
    "depthwiseconv2d", "autocorrelation", "slice", "tf_fir_resample", "roex", "noise", "lstm",
    "permute", "expandlast", "flattenlast", "leakyrelu", "leaky_relu",
)  # fmt: skip


class AccurateLayerNormalization(tf.keras.layers.LayerNormalization):
    """Keras LayerNormalization with its unfused (tf.nn.moments) kernel.

    Keras picks a fused kernel when the normalised axes are trailing; on CPU it loses about
    7e-3 relative accuracy over the 3 million values of a word model's input_norm (float64
    reference; torch's var_mean is within 2e-7). Like the complex64 FFT, that is an
    inaccuracy of TensorFlow's CPU kernel, not of the model, so the reference avoids it.
    Variables and checkpoint layout are those of the stock layer.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self._fused = False


def _network_steps(arch: list, n_classes_dict: dict, *, top_dtype=None) -> list[_Step]:
    """Keras layers of arch.json, in order, each with the function that applies it."""
    steps = []
    for i, layer_dict in enumerate(arch):
        layer_type = layer_dict["layer_type"].lower()
        args = copy.deepcopy(layer_dict.get("args", {}))
        if any(t in layer_type for t in _UNUSED_LAYER_TYPES):
            raise ValueError(f"layer_type {layer_dict['layer_type']!r} ({args.get('name')}) is not used by any published model")
        if "batchnormalization" in layer_type or "batch_normalization" in layer_type:
            layer = tf.keras.layers.BatchNormalization(**args)
            steps.append(_Step("bn", layer, layer))
        elif "layernormalization" in layer_type or "layer_normalization" in layer_type:
            layer = AccurateLayerNormalization(**args)
            steps.append(_Step("ln", layer, layer))
        elif "conv2d" in layer_type:
            filters, kernel_size = args.pop("filters"), args.pop("kernel_size")
            strides = args.pop("strides", (1, 1))
            padding = args.pop("padding", "VALID")
            if padding.upper() == "VALID_TIME":
                # A separate tf.pad op layer, as in the authors' PaddedConv2D (even when it pads 0).
                steps.append(_Step("op", None, lambda x, k=kernel_size[0], s=strides[0]: same_pad(x, k, s, axis=1)))
                padding = "VALID"
            layer = tf.keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, **args)
            steps.append(_Step("conv", layer, layer))
        elif "dense" in layer_type:
            layer = tf.keras.layers.Dense(**args)
            steps.append(_Step("dense", layer, layer))
        elif "dropout" in layer_type:
            steps.append(_Step("op", None, tf.keras.layers.Dropout(**args)))
        elif "maxpool" in layer_type:
            steps.append(_Step("op", None, tf.keras.layers.MaxPool2D(**args)))
        elif "hpool" in layer_type:
            steps.append(_Step("op", None, _hpool_layer(**args)))
        elif "reshape" in layer_type:
            steps.append(_Step("op", None, tf.keras.layers.Reshape(**args)))
        elif "flatten" in layer_type:
            steps.append(_Step("op", None, tf.keras.layers.Flatten(**args)))
        elif "relu" in layer_type:
            steps.append(_Step("op", None, tf.keras.layers.ReLU(**args)))
        elif "fc_top" in layer_type:
            if top_dtype is not None and i == len(arch) - 1:
                args["dtype"] = top_dtype  # phaselocknet_run.py keeps the logits in float32
            name = args.pop("name", "logits")
            heads = {}
            for key in sorted(n_classes_dict):
                head_name = f"{name}_{key}" if len(n_classes_dict) > 1 else name
                heads[key] = tf.keras.layers.Dense(units=n_classes_dict[key], name=head_name, **args)
            steps.append(_Step("heads", heads, lambda x, heads=heads: {k: d(x) for k, d in heads.items()}))
        else:
            raise ValueError(f"layer_type {layer_dict['layer_type']!r} ({args.get('name')}) not recognized")
    return steps


def _apply_steps(x, steps: list[_Step]):
    for step in steps:
        x = step.apply(x)
    return x


# --------------------------------------------------------------------------------------------
# Whole model, checkpoint writing and reference logits
# --------------------------------------------------------------------------------------------


class _policy:
    """Sets the global Keras dtype policy for a block, restoring the previous one after."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.previous = tf.keras.mixed_precision.global_policy()
        tf.keras.mixed_precision.set_global_policy(self.name)

    def __exit__(self, *exc):
        tf.keras.mixed_precision.set_global_policy(self.previous)


def _build_model(config: dict, arch: list, input_shape, *, spikes: str, excerpt_offset, top_dtype=None):
    """(functional model, network steps) built as phaselocknet_run.py's model_io_function does."""
    inputs = tf.keras.Input(shape=tuple(input_shape), batch_size=None, dtype=tf.float32)
    y = _front_end(inputs, config, spikes=spikes, excerpt_offset=excerpt_offset)
    steps = _network_steps(arch, config["n_classes_dict"], top_dtype=top_dtype)
    return tf.keras.Model(inputs=inputs, outputs=_apply_steps(y, steps)), steps


def _read_model_dir(model_dir: Path) -> tuple[dict, list]:
    with open(Path(model_dir) / "config.json") as f:
        config = json.load(f)
    with open(Path(model_dir) / "arch.json") as f:
        arch = json.load(f)
    return config, arch


def _default_excerpt(config: dict, input_shape) -> int | None:
    """Middle of the authors' random range, when the front end output needs an excerpt."""
    if not is_localization(config):
        return None
    kw = config["kwargs_cochlea"]
    n_time = input_shape[0] if len(input_shape) == 2 else input_shape[1]
    if is_waveform_input(config):
        n_time = math.ceil(n_time * kw["sr_output"] / kw["sr_input"])
    return (n_time - EXCERPT_LENGTH) // 2 if n_time > EXCERPT_LENGTH else None


# Logit scale of the randomized heads: softmax maxima of 0.1-0.9 across examples, like trained models.
HEAD_LOGIT_RMS = 2.0


def random_weights(
    config: dict, arch: list, *, seed: int, input_shape=None, calibration_input=None
) -> dict[str, list[np.ndarray]]:
    """Random weights per layer name (Keras get_weights order), scaled for O(1) activations.

    Kernels are He-normal (heads: scaled so logits have an rms of HEAD_LOGIT_RMS on the
    calibration input, as in trained models); conv/dense biases 0.5 x pre-bias std x N(0, 1);
    gammas U(0.5, 1.5); betas N(0, 0.3^2); so that swapping or dropping any parameter moves the
    logits well beyond float32 noise.  Archs with batch norm run the float32 reference once on a
    calibration input (`calibration_input` in TF layout, default `example_input` at batch 1), layer by layer, to measure the pre-bias stds and
    set the BN moving statistics to the measured ones, perturbed so that batch statistics do not
    reproduce them.  Layer-norm archs normalise their own activations, so they skip that forward
    pass (the slowest part for the word models) and take a nominal pre-bias std of 1.
    """
    input_shape = tuple(input_shape) if input_shape is not None else tf_input_shape(config, arch)
    rng = np.random.default_rng(seed)
    calibrate = any("batch_normalization" in l["layer_type"].lower() for l in arch)
    tf.keras.backend.clear_session()
    weights = {}
    with _policy("float32"):
        if calibrate:
            if calibration_input is None:
                calibration_input = example_input(config, arch, batch=1, seed=seed, input_shape=input_shape)
            x = tf.constant(np.asarray(calibration_input, dtype=np.float32))
        else:
            x = tf.keras.Input(shape=input_shape)
        x = _front_end(x, config, spikes="expected", excerpt_offset=_default_excerpt(config, input_shape))
        for step in _network_steps(arch, config["n_classes_dict"]):
            if step.kind in ("conv", "dense"):
                layer = step.layer
                layer.build(x.shape)
                shape = tuple(layer.kernel.shape)
                fan_in = int(np.prod(shape[:-1]))
                kernel = np.sqrt(2.0 / fan_in, dtype=np.float32) * rng.standard_normal(shape, np.float32)
                bias = np.zeros(shape[-1], np.float32)
                layer.set_weights([kernel, bias])
                y = layer(x)
                if calibrate:
                    y = y.numpy()
                    std = y.reshape(-1, shape[-1]).std(axis=0) + 1e-3
                    if y.ndim == 2:  # one example says nothing about a unit's spread
                        std = np.full(shape[-1], y.std() + 1e-3)
                else:
                    std = np.ones(shape[-1])
                bias = (0.5 * std * rng.standard_normal(shape[-1])).astype(np.float32)
                layer.set_weights([kernel, bias])
                weights[layer.name] = [kernel, bias]
                x = tf.constant(y + bias) if calibrate else layer(x)
            elif step.kind == "bn":
                layer = step.layer
                layer.build(x.shape)
                a = x.numpy().reshape(-1, x.shape[-1]).astype(np.float64)
                mean, var = a.mean(axis=0), a.var(axis=0)
                if len(x.shape) == 2:
                    var = np.full_like(var, a.var())  # as for the dense biases above
                var = np.maximum(var, 1e-2 * var.mean() + 1e-6)
                c = x.shape[-1]
                values = [
                    rng.uniform(0.5, 1.5, c),  # gamma
                    rng.normal(0.0, 0.3, c),  # beta
                    mean + 0.2 * np.sqrt(var) * rng.standard_normal(c),  # moving_mean
                    var * np.exp(rng.uniform(-0.4, 0.4, c)),  # moving_variance
                ]
                values = [v.astype(np.float32) for v in values]
                layer.set_weights(values)
                weights[layer.name] = values
                x = layer(x, training=False)
            elif step.kind == "ln":
                layer = step.layer
                layer.build(x.shape)
                values = []
                for w in layer.weights:  # gamma before beta, whichever exist
                    if "gamma" in w.name:
                        values.append(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
                    else:
                        values.append(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
                if values:
                    layer.set_weights(values)
                    weights[layer.name] = values
                x = layer(x)
            elif step.kind == "heads":
                fan_in = int(x.shape[-1])
                # Trained heads give logits of a few units. Unscaled random heads reach logits of
                # 30-100 on deep batch-norm archs, where float32 rounding in any implementation
                # (TensorFlow's own included, ~5e-6 relative) moves a split softmax by > 1e-5.
                rms = float(np.sqrt(np.mean(np.square(x.numpy())))) if calibrate else 1.0
                scale = np.float32(HEAD_LOGIT_RMS / (np.sqrt(fan_in) * max(rms, 1e-3)))
                for dense in step.layer.values():
                    kernel = scale * rng.standard_normal((fan_in, dense.units), np.float32)
                    bias = rng.normal(0.0, 0.5, dense.units).astype(np.float32)
                    weights[dense.name] = [kernel, bias]
            else:
                x = step.apply(x)
    tf.keras.backend.clear_session()
    return weights


def make_checkpoint(
    config: dict,
    arch: list,
    model_dir: Path,
    *,
    seed: int,
    input_shape=None,
    legacy_optimizer: bool = True,
    calibration_input=None,
) -> Path:
    """Write config.json, arch.json and a TF-format ckpt_BEST like the authors' training run.

    The model is built under the mixed_float16 policy with the last fc_top layer in float32
    (phaselocknet_run.py), compiled with Adam(**kwargs_optimizer) and SparseCategoricalCrossentropy
    (from_logits) per head (util_optimize.optimize; Keras wraps the optimizer in a
    LossScaleOptimizer), and takes one optimizer step with small random gradients so that the
    checkpoint holds Adam slots, the iteration count and the loss-scale state.  Every model weight
    is then replaced by `random_weights(..., seed=seed)` and the weights are saved with
    model.save_weights.  input_shape: TF layout without batch (default: the real input).
    legacy_optimizer: tf.keras.optimizers.legacy.Adam, as in the authors' latest util_optimize (TF
    >= 2.11); False gives the new Keras optimizer's checkpoint layout (optimizer/_variables/N).
       calibration_input: TF-layout batch the random weights are scaled on (see `random_weights`).
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / "config.json", "w") as f:
        json.dump(config, f, indent=4)
    with open(model_dir / "arch.json", "w") as f:
        json.dump(arch, f, indent=4)
    input_shape = tuple(input_shape) if input_shape is not None else tf_input_shape(config, arch)
    weights = random_weights(config, arch, seed=seed, input_shape=input_shape, calibration_input=calibration_input)

    tf.keras.backend.clear_session()
    tf.random.set_seed(seed)
    rng = np.random.default_rng(seed + 1)
    opt_cfg = config.get("kwargs_optimize", {})
    with _policy("mixed_float16"):
        top_dtype = "float32" if "fc_top" in arch[-1]["layer_type"] else None
        excerpt = "random" if _default_excerpt(config, input_shape) is not None else None
        model, _ = _build_model(config, arch, input_shape, spikes="sample", excerpt_offset=excerpt, top_dtype=top_dtype)
        model.compile(optimizer=_optimizer(opt_cfg, legacy_optimizer), **_loss_and_metrics(opt_cfg, config))
        opt = model.optimizer
        variables = model.trainable_variables
        # One training step's worth of optimizer state, without a (slow, float16 on CPU) forward.
        grads = [tf.constant(np.float32(1e-3) * rng.standard_normal(v.shape, np.float32)) for v in variables]
        opt.get_scaled_loss(tf.constant(1.0))
        grads = opt.get_unscaled_gradients([g * tf.cast(opt.loss_scale, tf.float32) for g in grads])
        opt.apply_gradients(zip(grads, variables))

        assigned = set()
        for layer in model.layers:
            if layer.weights:
                if layer.name not in weights:
                    raise RuntimeError(f"no random weights for layer {layer.name}")
                layer.set_weights(weights[layer.name])
                assigned.add(layer.name)
        if assigned != set(weights):
            raise RuntimeError(f"random weights for layers not in the model: {sorted(set(weights) - assigned)}")
        model.save_weights(str(model_dir / "ckpt_BEST"))
    tf.keras.backend.clear_session()
    return model_dir


def _optimizer(opt_cfg: dict, legacy: bool):
    kwargs = dict(opt_cfg.get("kwargs_optimizer", {}))
    name = kwargs.setdefault("name", "Adam")
    if name != "Adam":
        raise ValueError(f"optimizer {name!r} is not used by any published model")
    return (tf.keras.optimizers.legacy.Adam if legacy else tf.keras.optimizers.Adam)(**kwargs)


def _loss_and_metrics(opt_cfg: dict, config: dict) -> dict:
    """compile() arguments as util_optimize builds them (losses and metrics hold no state)."""

    def loss(kwargs_loss):
        kwargs_loss = dict(kwargs_loss)
        kwargs_loss.pop("weight", None)
        name = kwargs_loss.setdefault("name", "SparseCategoricalCrossentropy")
        if name != "SparseCategoricalCrossentropy":
            raise ValueError(f"loss {name!r} is not used by any published model")
        kwargs_loss.setdefault("from_logits", True)
        return tf.keras.losses.SparseCategoricalCrossentropy(**kwargs_loss)

    key_outputs = opt_cfg.get("key_outputs", sorted(config["n_classes_dict"]))
    kwargs_loss = opt_cfg.get("kwargs_loss", {})
    if isinstance(key_outputs, list):
        return dict(
            loss={k: loss(kwargs_loss.get(k, {})) for k in key_outputs},
            loss_weights={k: kwargs_loss.get(k, {}).get("weight") for k in key_outputs},
            metrics={k: ["accuracy"] for k in key_outputs},
            weighted_metrics={k: ["accuracy"] for k in key_outputs},
        )
    return dict(loss=loss(kwargs_loss), loss_weights=kwargs_loss.get("weight"), metrics=["accuracy"], weighted_metrics=["accuracy"])


def load_reference_model(model_dir: Path, input_shape, *, excerpt_offset=None) -> tf.keras.Model:
    """The float32 reference model of model_dir (expected spikes, fixed excerpt), weights loaded."""
    config, arch = _read_model_dir(model_dir)
    tf.keras.backend.clear_session()
    with _policy("float32"):
        model, _ = _build_model(config, arch, input_shape, spikes="expected", excerpt_offset=excerpt_offset)
    status = model.load_weights(str(Path(model_dir) / "ckpt_BEST"))
    status.assert_existing_objects_matched()  # every model variable came from the checkpoint
    status.expect_partial()  # the optimizer's state is not wanted here
    return model


def tf_logits(model_dir: Path, x_tf_layout: np.ndarray, *, excerpt_offset: int | None) -> dict[str, np.ndarray]:
    """Reference logits {head: [batch, n_classes]} of model_dir's checkpoint (float32, eval mode)."""
    x = np.asarray(x_tf_layout, dtype=np.float32)
    model = load_reference_model(model_dir, x.shape[1:], excerpt_offset=excerpt_offset)
    out = model(tf.constant(x), training=False)
    return {k: v.numpy() for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Checkpoint inspection and architecture arithmetic (Keras-independent where it can be)
# --------------------------------------------------------------------------------------------


def checkpoint_full_names(ckpt_prefix) -> dict[str, str]:
    """checkpoint key -> variable full name (e.g. "conv_0/kernel"), from the object graph proto."""
    reader = tf.train.load_checkpoint(str(ckpt_prefix))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return {a.checkpoint_key: a.full_name for node in graph.nodes for a in node.attributes if a.name == "VARIABLE_VALUE"}


def expected_variable_names(config: dict, arch: list) -> set[str]:
    """Full names of the model variables a checkpoint of (config, arch) must hold."""
    names = set()
    heads = sorted(config["n_classes_dict"])
    for layer_dict in arch:
        t, args = layer_dict["layer_type"].lower(), layer_dict.get("args", {})
        name = args.get("name")
        if "batch_normalization" in t or "batchnormalization" in t:
            names |= {f"{name}/{p}" for p in ("gamma", "beta", "moving_mean", "moving_variance")}
        elif "layernormalization" in t:
            names |= {f"{name}/gamma"} if args.get("scale", True) else set()
            names |= {f"{name}/beta"} if args.get("center", True) else set()
        elif "conv2d" in t or "dense" in t:
            names |= {f"{name}/kernel", f"{name}/bias"}
        elif "fc_top" in t:
            for key in heads:
                head = f"{name}_{key}" if len(heads) > 1 else name
                names |= {f"{head}/kernel", f"{head}/bias"}
    return names


def _out_len(n: int, k: int, s: int, same: bool) -> int:
    return math.ceil(n / s) if same else (n - k) // s + 1


def infer_shapes(arch: list, input_shape) -> dict[str, tuple[int, ...]]:
    """Output shape (no batch, TF layout) of every named layer, by arithmetic alone."""
    shape = tuple(input_shape)
    shapes = {}
    for layer_dict in arch:
        t, a = layer_dict["layer_type"].lower(), layer_dict.get("args", {})
        if "conv2d" in t or "maxpool" in t or "hpool" in t:
            h, w, c = shape
            if "maxpool" in t:
                k, s = a["pool_size"], a.get("strides") or a["pool_size"]
            elif "hpool" in t:
                k, s = a.get("pool_size", [8, 8]), a.get("strides", [2, 2])
            else:
                k, s = a["kernel_size"], a.get("strides", [1, 1])
            pad = a.get("padding", "VALID").upper()
            shape = (
                _out_len(h, k[0], s[0], pad in ("SAME", "VALID_TIME")),
                _out_len(w, k[1], s[1], pad == "SAME"),
                a["filters"] if "conv2d" in t else c,
            )
        elif "reshape" in t:
            target = list(a["target_shape"])
            if -1 in target:
                known = int(np.prod([d for d in target if d != -1]))
                target[target.index(-1)] = int(np.prod(shape)) // known
            shape = tuple(target)
        elif "flatten" in t:
            shape = (int(np.prod(shape)),)
        elif "dense" in t:
            shape = (a["units"],)
        shapes[a.get("name")] = shape
    return shapes


def conv_macs(arch: list, input_shape, *, hpool: bool = False) -> int:
    """Sum over conv layers of kernel_h * kernel_w * cin / groups * cout * out_h * out_w.

    hpool: also count the Hanning pooling layers, which the authors (and this reference) run as
    convolutions with a dense C x C kernel.
    """
    shapes = infer_shapes(arch, input_shape)
    previous = tuple(input_shape)
    total = 0
    for layer_dict in arch:
        t, a = layer_dict["layer_type"].lower(), layer_dict.get("args", {})
        out = shapes[a.get("name")]
        if "conv2d" in t:
            kh, kw = a["kernel_size"]
            total += kh * kw * previous[-1] // a.get("groups", 1) * out[2] * out[0] * out[1]
        elif hpool and "hpool" in t:
            kh, kw = a.get("pool_size", [8, 8])
            total += kh * kw * previous[-1] * out[2] * out[0] * out[1]
        previous = out
    return total


def network_input_shape(config: dict, arch: list) -> tuple[int, int, int]:
    """[freq, time, channels] the network sees for the real input."""
    if is_localization(config):
        return (NERVEGRAM_FREQS, EXCERPT_LENGTH, 6)
    shape = tf_input_shape(config, arch)
    if is_waveform_input(config):
        kw = config["kwargs_cochlea"]
        return (NERVEGRAM_FREQS, math.ceil(shape[0] * kw["sr_output"] / kw["sr_input"]), 3)
    return shape


def count_params(config: dict, arch: list, input_shape=None) -> int:
    """Number of model variables' elements (BN moving statistics included) at the real input."""
    shape = tuple(input_shape) if input_shape is not None else network_input_shape(config, arch)
    shapes = infer_shapes(arch, shape)
    total = 0
    previous = shape
    for layer_dict in arch:
        t, a = layer_dict["layer_type"].lower(), layer_dict.get("args", {})
        out = shapes[a.get("name")]
        if "conv2d" in t:
            kh, kw = a["kernel_size"]
            total += kh * kw * previous[-1] // a.get("groups", 1) * out[-1] + out[-1]
        elif "dense" in t:
            total += (previous[-1] + 1) * out[-1]
        elif "batch_normalization" in t or "batchnormalization" in t:
            total += 4 * previous[-1]
        elif "layernormalization" in t:
            axes = a.get("axis", -1)
            n = previous[-1] if axes == -1 else int(np.prod([previous[ax - 1] for ax in axes]))
            total += n * (int(a.get("center", True)) + int(a.get("scale", True)))
        elif "fc_top" in t:
            total += sum((previous[-1] + 1) * n for n in config["n_classes_dict"].values())
        previous = out
    return total


# CPU seconds on the 2-core CI machine go roughly as 0.1 s per conv GMAC of a forward pass and
# 0.2 s per million parameters (two Keras initialisations, Adam slots, a 12-byte-per-parameter
# checkpoint written and read), so one parameter costs about as much as 2000 conv MACs.
MACS_PER_PARAM = 2000


def parity_cost(config: dict, arch: list) -> int:
    """What `PARITY_MODELS` minimises per family: conv (+ hpool) MACs + MACS_PER_PARAM * parameters."""
    return conv_macs(arch, network_input_shape(config, arch), hpool=True) + MACS_PER_PARAM * count_params(config, arch)
