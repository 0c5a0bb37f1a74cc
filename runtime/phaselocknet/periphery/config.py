"""Reading and checking a published config's `kwargs_cochlea`: what the front end must build.

Every key a published model uses is accepted; anything else is refused with an error naming
the key, so a config this port would silently misread cannot get through. The stages
themselves (filterbank, hair_cell, rate_level, spikes) know nothing of the config format.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..constants import NERVEGRAM_N_FREQ
from .filterbank import erbspace

# Defaults of the original cochlea() / fir_gammatone_filterbank() signatures.
DEFAULT_SR_INPUT = 20000.0
DEFAULT_MIN_CF = 125.0
DEFAULT_MAX_CF = 8000.0
DEFAULT_NUM_CF = 50

_TOP_LEVEL_KEYS = {
    "sr_input", "sr_cochlea", "sr_output", "config_filterbank", "config_subband_processing",
    "kwargs_fir_lowpass_filter_input", "kwargs_fir_lowpass_filter_output", "kwargs_custom_slice",
    "kwargs_sigmoid_rate_level_function", "kwargs_spike_rate_noise", "kwargs_spike_generator_binomial",
    "kwargs_autocorrelation_correlogram",
}
_FILTERBANK_KEYS = {"mode", "fir_dur", "cfs", "min_cf", "max_cf", "num_cf", "kwargs_filter_coefs"}
_FILTER_COEF_KEYS = {"EarQ", "minBW", "order"}
_SUBBAND_PROCESSING_KEYS = {"rectify"}
_IHC_LOWPASS_KEYS = {"cutoff", "fir_dur", "ihc_filter", "order"}
_RATE_LEVEL_KEYS = {"rate_spont", "rate_max", "threshold", "dynamic_range", "dynamic_range_interval", "envelope_mode"}
_SPIKE_GENERATOR_KEYS = {"n_per_channel", "mode", "n_per_step"}
_CUSTOM_SLICE_KEYS = {"args", "axis", "expand_dims"}
# TF's NHWC channel axis; our channel axis is dim 1 (dim 2 with an ear axis).
_TF_CHANNEL_AXES = (3, -1)


@dataclass
class CochleaSpec:
    """The front end a `kwargs_cochlea` describes, as constructor arguments of the stages."""

    input_kind: str  # "waveform" or "nervegram"
    sr_input: float
    sr_cochlea: float
    sr_output: float
    n_freq: int
    rectify: bool = False
    filterbank: dict = field(default_factory=dict)  # GammatoneFilterbank(**filterbank)
    hair_cell: dict = field(default_factory=dict)  # HairCellLowpass(**hair_cell)
    rate_level: dict = field(default_factory=dict)  # SigmoidRateLevel(**rate_level)
    custom_slice: slice | None = None
    spike_generator: dict = field(default_factory=dict)  # BinomialSpikeGenerator(**spike_generator)
    n_channels: int = 0


def _unsupported(key: str, value: Any, detail: str = "") -> ValueError:
    msg = f"kwargs_cochlea: {key}={value!r} is not supported: no published model uses it"
    return ValueError(msg + (f" ({detail})" if detail else ""))


def _check_keys(section: str, d: Any, allowed: set) -> dict:
    if d is None:
        return {}
    if not isinstance(d, Mapping):
        raise _unsupported(section, d, "expected a dict")
    for key in d:
        if key not in allowed:
            raise _unsupported(f"{section}.{key}" if section else key, d[key])
    return dict(d)


def _require(section: str, d: Mapping, key: str):
    if key not in d:
        raise ValueError(f"kwargs_cochlea: {section}.{key} is required")
    return d[key]


def parse_kwargs_cochlea(kwargs_cochlea: Mapping[str, Any]) -> CochleaSpec:
    """The checked `CochleaSpec` of a config's `kwargs_cochlea` (which is not modified)."""
    kw = _check_keys("", copy.deepcopy(dict(kwargs_cochlea)), _TOP_LEVEL_KEYS)
    sr_input = float(kw.get("sr_input") or DEFAULT_SR_INPUT)
    sr_cochlea = float(kw.get("sr_cochlea") or sr_input)
    sr_output = float(kw.get("sr_output") or sr_input)
    if sr_cochlea != sr_input:
        raise _unsupported("sr_cochlea", kw["sr_cochlea"], f"input resampling from sr_input={sr_input:g}")
    for key in ("kwargs_fir_lowpass_filter_input", "kwargs_spike_rate_noise", "kwargs_autocorrelation_correlogram"):
        if kw.get(key):
            raise _unsupported(key, kw[key])
    config_filterbank = _check_keys("config_filterbank", kw.get("config_filterbank"), _FILTERBANK_KEYS)
    mode = config_filterbank.get("mode")
    if mode is None:
        if config_filterbank:
            key = sorted(config_filterbank)[0]
            raise _unsupported(f"config_filterbank.{key}", config_filterbank[key], "filterbank options without a mode")
        spec = CochleaSpec("nervegram", sr_input, sr_cochlea, sr_output, NERVEGRAM_N_FREQ)
        n_channels = _nervegram_path(spec, kw)
    elif mode == "fir_gammatone_filterbank":
        spec = CochleaSpec("waveform", sr_input, sr_cochlea, sr_output, 0)
        n_channels = _waveform_path(spec, kw, config_filterbank)
    else:
        raise _unsupported("config_filterbank.mode", mode)
    spec.spike_generator = _spike_generator(kw, n_channels, sr_output)
    # Without an explicit slice the channel count is implied by the spike generator.
    spec.n_channels = n_channels if n_channels is not None else len(spec.spike_generator["n_per_channel"])
    return spec


def _waveform_path(spec: CochleaSpec, kw: dict, config_filterbank: dict) -> int:
    fir_dur = _require("config_filterbank", config_filterbank, "fir_dur")
    coef_kwargs = _check_keys(
        "config_filterbank.kwargs_filter_coefs", config_filterbank.get("kwargs_filter_coefs"), _FILTER_COEF_KEYS
    )
    cfs = config_filterbank.get("cfs")
    if cfs is None:
        cfs = erbspace(
            config_filterbank.get("min_cf", DEFAULT_MIN_CF),
            config_filterbank.get("max_cf", DEFAULT_MAX_CF),
            config_filterbank.get("num_cf", DEFAULT_NUM_CF),
        )
    cfs = np.asarray(cfs, dtype=np.float64)
    if cfs.ndim != 1 or cfs.size == 0:
        raise ValueError(f"kwargs_cochlea: config_filterbank.cfs must be a non-empty list, got shape {cfs.shape}")
    spec.filterbank = {"sr": spec.sr_cochlea, "fir_dur": fir_dur, "cfs": cfs, **coef_kwargs}
    spec.n_freq = int(cfs.size)
    processing = _check_keys("config_subband_processing", kw.get("config_subband_processing"), _SUBBAND_PROCESSING_KEYS)
    spec.rectify = bool(processing.get("rectify", False))
    spec.hair_cell = _hair_cell(spec, kw)
    if kw.get("kwargs_custom_slice"):
        raise _unsupported("kwargs_custom_slice", kw["kwargs_custom_slice"], "only nervegram models slice")
    spec.rate_level = _rate_level(kw)
    return int(max(np.size(spec.rate_level[key]) for key in ("rate_spont", "rate_max", "threshold", "dynamic_range")))


def _hair_cell(spec: CochleaSpec, kw: dict) -> dict:
    section = "kwargs_fir_lowpass_filter_output"
    lowpass = _check_keys(section, kw.get(section), _IHC_LOWPASS_KEYS)
    if not lowpass:
        raise _unsupported(section, lowpass, "every published waveform model has the IHC lowpass")
    if not lowpass.get("ihc_filter", False):
        raise _unsupported(f"{section}.ihc_filter", lowpass.get("ihc_filter"), "only the IHC lowpass is used")
    down_up_gcd = math.gcd(int(spec.sr_cochlea), int(spec.sr_output))
    if int(spec.sr_output) // down_up_gcd != 1:
        raise _unsupported("sr_output", spec.sr_output, f"must divide sr_cochlea={spec.sr_cochlea:g}")
    return {
        "sr_in": spec.sr_cochlea, "sr_out": spec.sr_output,
        **{key: _require(section, lowpass, key) for key in ("cutoff", "order", "fir_dur")},
    }


def _rate_level(kw: dict) -> dict:
    section = "kwargs_sigmoid_rate_level_function"
    rate_level = _check_keys(section, kw.get(section), _RATE_LEVEL_KEYS)
    if not rate_level:
        raise _unsupported(section, rate_level, "every published waveform model has one")
    args = {key: _require(section, rate_level, key) for key in ("rate_spont", "rate_max", "threshold", "dynamic_range")}
    args["dynamic_range_interval"] = rate_level.get("dynamic_range_interval", 0.95)
    args["envelope_mode"] = bool(rate_level.get("envelope_mode", False))
    return args


def _nervegram_path(spec: CochleaSpec, kw: dict) -> int | None:
    for key in ("config_subband_processing", "kwargs_fir_lowpass_filter_output", "kwargs_sigmoid_rate_level_function"):
        if kw.get(key):
            raise _unsupported(key, kw[key], "nervegram models feed the given rates straight through")
    if spec.sr_output != spec.sr_cochlea:
        raise _unsupported("sr_output", spec.sr_output, "nervegram models do not resample")
    custom = _check_keys("kwargs_custom_slice", kw.get("kwargs_custom_slice"), _CUSTOM_SLICE_KEYS)
    if not custom:
        return None
    axis = custom.get("axis", -1)
    if axis not in _TF_CHANNEL_AXES:
        raise _unsupported("kwargs_custom_slice.axis", axis, "only the channel axis (3) is sliced")
    args = custom.get("args")
    if args is None:
        return None
    if not isinstance(args, (list, tuple)) or not 1 <= len(args) <= 3:
        raise _unsupported("kwargs_custom_slice.args", args, "expected 1 to 3 slice arguments")
    if not all(a is None or isinstance(a, int) for a in args):
        raise _unsupported("kwargs_custom_slice.args", args, "slice arguments must be integers")
    spec.custom_slice = slice(*args)
    start, stop, step = spec.custom_slice.start, spec.custom_slice.stop, spec.custom_slice.step
    if stop is not None and stop >= 0 and (start is None or start >= 0):
        return len(range(start or 0, stop, step or 1))
    return None


def _spike_generator(kw: dict, n_channels: int | None, sr_output: float) -> dict:
    section = "kwargs_spike_generator_binomial"
    gen = _check_keys(section, kw.get(section), _SPIKE_GENERATOR_KEYS)
    if not gen:
        raise _unsupported(section, gen, "every published model has one")
    n_per_channel = np.asarray(_require(section, gen, "n_per_channel")).reshape(-1)
    if n_per_channel.size == 0 or not np.all(n_per_channel == np.round(n_per_channel)):
        raise ValueError(f"kwargs_cochlea: {section}.n_per_channel={gen['n_per_channel']!r}")
    n_per_channel = [int(n) for n in n_per_channel]
    if "n_per_step" in gen:
        if "mode" in gen:
            raise _unsupported(f"{section}.mode", gen["mode"], "together with n_per_step")
        n_per_step = np.asarray(gen["n_per_step"]).reshape(-1)
        if n_per_step.size != len(n_per_channel) or not all(
            npc == 0 or (nps > 0 and npc % nps == 0) for npc, nps in zip(n_per_channel, n_per_step)
        ):
            raise ValueError(
                f"kwargs_cochlea: {section}.n_per_step={gen['n_per_step']!r} "
                f"is not compatible with n_per_channel={n_per_channel}"
            )
        method = "exact"  # summed Bernoulli draws: exactly Binomial(n, p)
    else:
        method = gen.get("mode", "exact")
        if method not in ("approx", "exact"):
            raise _unsupported(f"{section}.mode", method)
    if n_channels is not None and len(n_per_channel) not in (1, n_channels):
        raise ValueError(
            f"kwargs_cochlea: {section}.n_per_channel={n_per_channel} does not match the {n_channels} nerve channels"
        )
    return {"n_per_channel": n_per_channel, "sample_rate": sr_output, "method": method}
