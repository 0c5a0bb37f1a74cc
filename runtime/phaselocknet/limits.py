"""Bounds on config.json / arch.json values, checked before anything is allocated.

A bundle's config and arch are data from a file, and a crafted file can ask for a layer
of 10**12 units or an IHC filter of order 10**6. Every number that sizes an allocation,
a loop or a filter is checked here, by pure functions over the parsed dicts, before a
single tensor exists. The bounds are generous multiples of what the 260 published models
use (docs/limits.md gives each bound and its reason; tests/test_limits.py checks that all
published configs pass). Structure (which keys and layer types exist) is still checked by
the builders; this module only refuses values no model could need.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .errors import ConfigError

# Sample rates (Hz): published 10 kHz .. 50 kHz; 192 kHz is the highest common audio rate.
MAX_SAMPLE_RATE = 192_000.0
MIN_SAMPLE_RATE = 1_000.0
# FIR lengths (s): published 0.05 s. With MAX_NUM_CF the filterbank's impulse responses
# stay under 100 MB (float64) at the highest rate.
MAX_FIR_SECONDS = 0.25
# Shortest FIR (s): at least a few taps at the lowest rate.
MIN_FIR_SECONDS = 0.001
# Lowest CF / IHC cutoff (Hz): published 50 Hz and up; below 1 Hz the filters are all-zero.
MIN_FREQUENCY = 1.0
# Characteristic frequencies: published 50.
MAX_NUM_CF = 256
# Gammatone / IHC lowpass orders: published 4 (gammatone) and 7 (IHC; a Python loop of
# order x taps iterations builds that filter, so the order bounds the load time).
MAX_FILTER_ORDER = 16
# Spont-rate groups per fibre type: published 3.
MAX_NERVE_CHANNELS = 16
# Fibres per group: published at most 384.
MAX_FIBRES = 100_000
# Rates (spikes/s): published 250; a fibre cannot fire above ~1000/s.
MAX_RATE = 10_000.0
# dB quantities (thresholds, dynamic ranges): published 0..80 dB.
MAX_DB = 300.0
# Heads and classes: published 1-2 heads, at most 794 classes.
MAX_HEADS = 16
MAX_CLASSES = 1_000_000
# CNN: published at most 30 layers, 512 filters, kernels up to 84 taps, 503 M parameters
# (the largest dense layer), 32 M activation elements per example.
MAX_LAYERS = 512
MAX_FILTERS = 16_384
MAX_UNITS = 1_000_000
MAX_WINDOW = 1_024
MAX_PARAMETERS = 2_000_000_000
MAX_ACTIVATION_ELEMENTS = 1 << 29
# Time axis of a reshape (the input length): published 20000 samples.
MAX_RESHAPE_ELEMENTS = 1 << 29


def _where(path: str) -> str:
    return path or "config"


def number(value: Any, path: str, *, low: float, high: float, low_open: bool = False) -> float:
    """A finite real in [low, high] (or (low, high] with low_open); else ConfigError naming ``path``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{_where(path)}={value!r} must be a number")
    if not math.isfinite(value):
        raise ConfigError(f"{_where(path)}={value!r} must be finite")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise ConfigError(
            f"{_where(path)}={value!r} is outside {bracket}{low:g}, {high:g}] (see docs/limits.md); "
            "fix the config or re-convert the model"
        )
    return float(value)


def integer(value: Any, path: str, *, low: int, high: int) -> int:
    """An int (or a float with an integer value, as JSON writers produce) in [low, high]."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_where(path)}={value!r} must be an integer")
    if not low <= value <= high:
        raise ConfigError(f"{_where(path)}={value!r} is outside [{low}, {high}] (see docs/limits.md)")
    return value


def numbers(value: Any, path: str, *, max_len: int, **bounds) -> list[float]:
    """A scalar or a non-empty list of numbers, each within ``bounds``."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not 1 <= len(items) <= max_len:
        raise ConfigError(f"{_where(path)} has {len(items)} values; give 1 to {max_len}")
    return [number(v, f"{path}[{i}]", **bounds) for i, v in enumerate(items)]


def section(parent: Mapping, key: str, path: str) -> Mapping:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}.{key} must be a JSON object, got {type(value).__name__}")
    return value


def check_config(config: Any) -> None:
    """Bounds of every value of config.json that sizes the front end or the heads."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"config.json must be a JSON object, got {type(config).__name__}")
    heads = config.get("n_classes_dict")
    if not isinstance(heads, Mapping) or not 1 <= len(heads) <= MAX_HEADS:
        raise ConfigError(f"config.n_classes_dict must map 1 to {MAX_HEADS} head names to class counts, got {heads!r:.80}")
    for head, n in heads.items():
        if not isinstance(head, str) or not head:
            raise ConfigError(f"config.n_classes_dict: head name {head!r} must be a non-empty string")
        integer(n, f"config.n_classes_dict.{head}", low=1, high=MAX_CLASSES)
    cochlea = section(config, "kwargs_cochlea", "config")
    if "kwargs_cochlea" not in config:
        raise ConfigError("config lacks 'kwargs_cochlea'; pass the model's config.json")
    _check_cochlea(cochlea, "config.kwargs_cochlea")


def _check_cochlea(kw: Mapping, path: str) -> None:
    rates = {}
    for key in ("sr_input", "sr_cochlea", "sr_output"):
        if kw.get(key) is not None:
            rates[key] = number(kw[key], f"{path}.{key}", low=MIN_SAMPLE_RATE, high=MAX_SAMPLE_RATE)
            if rates[key] != int(rates[key]):
                raise ConfigError(f"{path}.{key}={kw[key]!r} must be a whole number of Hz")
    sr = rates.get("sr_cochlea") or rates.get("sr_input") or 20000.0
    sr_out = rates.get("sr_output") or rates.get("sr_input") or 20000.0
    fb = section(kw, "config_filterbank", path)
    if fb.get("mode") is not None:  # nervegram models have no filterbank
        _check_filterbank(fb, sr, f"{path}.config_filterbank")
    low = section(kw, "kwargs_fir_lowpass_filter_output", path)
    lp = f"{path}.kwargs_fir_lowpass_filter_output"
    if "cutoff" in low:
        number(low["cutoff"], f"{lp}.cutoff", low=MIN_FREQUENCY, high=sr_out / 2)
    if "order" in low:
        integer(low["order"], f"{lp}.order", low=1, high=MAX_FILTER_ORDER)
    if "fir_dur" in low:
        number(low["fir_dur"], f"{lp}.fir_dur", low=MIN_FIR_SECONDS, high=MAX_FIR_SECONDS)
    _check_rate_level(section(kw, "kwargs_sigmoid_rate_level_function", path), f"{path}.kwargs_sigmoid_rate_level_function")
    _check_spikes(section(kw, "kwargs_spike_generator_binomial", path), f"{path}.kwargs_spike_generator_binomial")
    cut = section(kw, "kwargs_custom_slice", path)
    args = cut.get("args")
    if isinstance(args, (list, tuple)):
        for i, a in enumerate(args[:3]):
            if a is not None:
                integer(a, f"{path}.kwargs_custom_slice.args[{i}]", low=-MAX_NERVE_CHANNELS, high=MAX_NERVE_CHANNELS)


def _check_filterbank(fb: Mapping, sr: float, path: str) -> None:
    nyquist = sr / 2
    if "fir_dur" in fb:
        number(fb["fir_dur"], f"{path}.fir_dur", low=MIN_FIR_SECONDS, high=MAX_FIR_SECONDS)
    if fb.get("cfs") is not None:
        cfs = fb["cfs"]
        if not isinstance(cfs, (list, tuple)):
            raise ConfigError(f"{path}.cfs must be null or a list of frequencies in Hz")
        numbers(cfs, f"{path}.cfs", max_len=MAX_NUM_CF, low=MIN_FREQUENCY, high=nyquist)
    else:
        min_cf = number(fb.get("min_cf", 125.0), f"{path}.min_cf", low=MIN_FREQUENCY, high=nyquist)
        max_cf = number(fb.get("max_cf", 8000.0), f"{path}.max_cf", low=MIN_FREQUENCY, high=nyquist)
        if min_cf > max_cf:
            raise ConfigError(f"{path}: min_cf={min_cf:g} exceeds max_cf={max_cf:g}")
        integer(fb.get("num_cf", 50), f"{path}.num_cf", low=1, high=MAX_NUM_CF)
    coefs = section(fb, "kwargs_filter_coefs", path)
    for key in ("EarQ", "minBW"):
        if key in coefs:
            number(coefs[key], f"{path}.kwargs_filter_coefs.{key}", low=0.0, high=1e4, low_open=True)
    if "order" in coefs:
        integer(coefs["order"], f"{path}.kwargs_filter_coefs.order", low=1, high=MAX_FILTER_ORDER)


def _check_rate_level(rl: Mapping, path: str) -> None:
    per = {"max_len": MAX_NERVE_CHANNELS}
    if "rate_spont" in rl:
        numbers(rl["rate_spont"], f"{path}.rate_spont", low=0.0, high=MAX_RATE, **per)
    if "rate_max" in rl:
        numbers(rl["rate_max"], f"{path}.rate_max", low=0.0, high=MAX_RATE, low_open=True, **per)
    if "threshold" in rl:
        numbers(rl["threshold"], f"{path}.threshold", low=-MAX_DB, high=MAX_DB, **per)
    if "dynamic_range" in rl:
        # 0 dB would make the sigmoid's slope infinite (NaN rates).
        numbers(rl["dynamic_range"], f"{path}.dynamic_range", low=0.0, high=MAX_DB, low_open=True, **per)
    if "dynamic_range_interval" in rl:
        # The sigmoid's slope is log-odds of (1 - interval) / 2: 0 at interval 0, infinite at 1.
        number(rl["dynamic_range_interval"], f"{path}.dynamic_range_interval", low=0.01, high=0.9999)


def _check_spikes(gen: Mapping, path: str) -> None:
    for key in ("n_per_channel", "n_per_step"):
        if key in gen:
            values = gen[key] if isinstance(gen[key], (list, tuple)) else [gen[key]]
            if not 1 <= len(values) <= MAX_NERVE_CHANNELS:
                raise ConfigError(f"{path}.{key} has {len(values)} values; give 1 to {MAX_NERVE_CHANNELS}")
            for i, v in enumerate(values):
                integer(v, f"{path}.{key}[{i}]", low=0, high=MAX_FIBRES)


# ------------------------------------------------------------------------- arch.json

# arch args that size an allocation, with their bounds: key -> (low, high)
_ARCH_INTS = {"filters": (1, MAX_FILTERS), "units": (1, MAX_UNITS), "groups": (1, MAX_FILTERS)}
_ARCH_WINDOWS = ("kernel_size", "strides", "pool_size", "dilation_rate")
_ARCH_EPSILONS = ("epsilon",)


def check_arch(arch: Any) -> None:
    """Bounds of every arch.json value that sizes a layer (before any layer is built)."""
    if not isinstance(arch, Sequence) or isinstance(arch, (str, bytes)) or not arch:
        raise ConfigError(f"arch.json must be a non-empty list of layers, got {type(arch).__name__}")
    if len(arch) > MAX_LAYERS:
        raise ConfigError(f"arch.json has {len(arch)} layers; at most {MAX_LAYERS} are accepted")
    for index, layer in enumerate(arch):
        if not isinstance(layer, Mapping) or not isinstance(layer.get("args", {}), Mapping):
            raise ConfigError(f"arch[{index}] must be an object with 'layer_type' and 'args'")
        args = layer.get("args") or {}
        where = f"arch[{index}] ({args.get('name', '?')!s:.40})"
        for key, (low, high) in _ARCH_INTS.items():
            if key in args:
                integer(args[key], f"{where}.{key}", low=low, high=high)
        for key in _ARCH_WINDOWS:
            value = args.get(key)
            if value is None:
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            if len(values) > 2:
                raise ConfigError(f"{where}.{key}={value!r:.60} must be an integer or a pair")
            for i, v in enumerate(values):
                integer(v, f"{where}.{key}[{i}]", low=1, high=MAX_WINDOW)
        for key in _ARCH_EPSILONS:
            if key in args:
                number(args[key], f"{where}.{key}", low=0.0, high=1.0, low_open=True)
        if "rate" in args:
            number(args["rate"], f"{where}.rate", low=0.0, high=1.0)
        target = args.get("target_shape")
        if isinstance(target, (list, tuple)):
            if len(target) > 3:
                raise ConfigError(f"{where}.target_shape={target!r:.60} must have 1 or 3 entries")
            for i, v in enumerate(target):
                integer(v, f"{where}.target_shape[{i}]", low=-1, high=MAX_RESHAPE_ELEMENTS)


def check_network_size(network) -> None:
    """Totals of a network built on the meta device: parameters and largest activation."""
    parameters = sum(p.numel() for p in network.parameters())
    if parameters > MAX_PARAMETERS:
        raise ConfigError(f"arch.json asks for {parameters:,} parameters; at most {MAX_PARAMETERS:,} are accepted")
    shapes = [network.input_shape, *network.output_shapes.values()]
    largest = max(math.prod(s) for s in shapes if isinstance(s, tuple))
    if largest > MAX_ACTIVATION_ELEMENTS:
        raise ConfigError(
            f"arch.json asks for a layer output of {largest:,} values per example; at most "
            f"{MAX_ACTIVATION_ELEMENTS:,} are accepted"
        )


def check_model_config(config: Any, arch: Any) -> None:
    """Everything above, in the order a model is built."""
    check_config(config)
    check_arch(arch)


@contextlib.contextmanager
def config_errors(what: str) -> Iterator[None]:
    """Report the builders' ValueErrors (and arithmetic faults on odd values) as ConfigError."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError) as error:
        raise ConfigError(f"{what}: {error}") from error
