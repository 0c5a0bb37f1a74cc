"""The auditory-nerve front end built from a published config's `kwargs_cochlea`."""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import numpy as np
import torch

from ..backend import FRONT_END_FFT_DTYPE, TwoPath
from .filterbank import GammatoneFilterbank, erbspace
from .hair_cell import HairCellLowpass
from .rate_level import SigmoidRateLevel
from .spikes import BinomialSpikeGenerator

# Defaults of the original cochlea() / fir_gammatone_filterbank() signatures.
DEFAULT_SR_INPUT = 20000.0
DEFAULT_MIN_CF = 125.0
DEFAULT_MAX_CF = 8000.0
DEFAULT_NUM_CF = 50
# Every published nervegram has 50 CFs; nervegram input is not checked against it.
NERVEGRAM_N_FREQ = 50
# Work sizes of the fast path (see Cochlea._waveform_to_rates_fast).
FAST_CHUNK_BYTES = 32 * 2**20
FAST_BLOCK_BYTES = 4 * 2**20

_TOP_LEVEL_KEYS = {
    "sr_input",
    "sr_cochlea",
    "sr_output",
    "config_filterbank",
    "config_subband_processing",
    "kwargs_fir_lowpass_filter_input",
    "kwargs_fir_lowpass_filter_output",
    "kwargs_custom_slice",
    "kwargs_sigmoid_rate_level_function",
    "kwargs_spike_rate_noise",
    "kwargs_spike_generator_binomial",
    "kwargs_autocorrelation_correlogram",
}
_FILTERBANK_KEYS = {"mode", "fir_dur", "cfs", "min_cf", "max_cf", "num_cf", "kwargs_filter_coefs"}
_FILTER_COEF_KEYS = {"EarQ", "minBW", "order"}
_SUBBAND_PROCESSING_KEYS = {"rectify"}
_IHC_LOWPASS_KEYS = {"cutoff", "fir_dur", "ihc_filter", "order"}
_RATE_LEVEL_KEYS = {
    "rate_spont",
    "rate_max",
    "threshold",
    "dynamic_range",
    "dynamic_range_interval",
    "envelope_mode",
}
_SPIKE_GENERATOR_KEYS = {"n_per_channel", "mode", "n_per_step"}
_CUSTOM_SLICE_KEYS = {"args", "axis", "expand_dims"}
# TF's NHWC channel axis; our channel axis is dim 1 (dim 2 with an ear axis).
_TF_CHANNEL_AXES = (3, -1)


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


class Cochlea(TwoPath):
    """Waveform (Pa) or user nervegram -> auditory-nerve firing rates (spikes/s).

    forward: waveform (batch, time) or (batch, ears, time) -> (batch, ears*3, freq, time_out);
    nervegram (batch, C, freq, time) or (batch, ears, C, freq, time) -> custom-sliced rates.
    Spike counts are drawn separately with `self.spike_generator`.

    reference: the stages one after the other, each by direct convolution. fast: per chunk of
    waveforms, the filterbank's inverse FFTs land in one zero-tailed buffer that is rectified
    in place and transformed again by the IHC lowpass (no copy or re-padding in between).
    """

    def __init__(self, kwargs_cochlea: Mapping[str, Any]):
        super().__init__()
        # Work on a private copy: the caller's config must stay as it was.
        kw = _check_keys("", copy.deepcopy(dict(kwargs_cochlea)), _TOP_LEVEL_KEYS)

        self.sr_input = float(kw.get("sr_input") or DEFAULT_SR_INPUT)
        sr_cochlea = float(kw.get("sr_cochlea") or self.sr_input)
        self.sr_output = float(kw.get("sr_output") or self.sr_input)
        if sr_cochlea != self.sr_input:
            raise _unsupported("sr_cochlea", kw["sr_cochlea"], f"input resampling from sr_input={self.sr_input:g}")
        self.sr_cochlea = sr_cochlea
        for key in ("kwargs_fir_lowpass_filter_input", "kwargs_spike_rate_noise", "kwargs_autocorrelation_correlogram"):
            if kw.get(key):
                raise _unsupported(key, kw[key])

        config_filterbank = _check_keys("config_filterbank", kw.get("config_filterbank"), _FILTERBANK_KEYS)
        mode = config_filterbank.get("mode")
        self.filterbank = None
        self.hair_cell = None
        self.rate_level = None
        self.custom_slice = None
        if mode is None:
            if config_filterbank:
                key = sorted(config_filterbank)[0]
                raise _unsupported(f"config_filterbank.{key}", config_filterbank[key], "filterbank options without a mode")
            self.input_kind = "nervegram"
            n_channels = self._build_nervegram_path(kw)
            self.n_freq = NERVEGRAM_N_FREQ
        elif mode == "fir_gammatone_filterbank":
            self.input_kind = "waveform"
            n_channels = self._build_waveform_path(kw, config_filterbank)
            self.n_freq = self.filterbank.n_cf
        else:
            raise _unsupported("config_filterbank.mode", mode)

        self.spike_generator = self._build_spike_generator(kw, n_channels)
        # Without an explicit slice the channel count is implied by the spike generator.
        self.n_channels = n_channels if n_channels is not None else len(self.spike_generator.n_per_channel)

    # ---------------------------------------------------------------- builders

    def _build_waveform_path(self, kw: dict, config_filterbank: dict) -> int:
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
        self.filterbank = GammatoneFilterbank(self.sr_cochlea, fir_dur, cfs, **coef_kwargs)

        processing = _check_keys(
            "config_subband_processing", kw.get("config_subband_processing"), _SUBBAND_PROCESSING_KEYS
        )
        self.rectify = bool(processing.get("rectify", False))

        lowpass = _check_keys(
            "kwargs_fir_lowpass_filter_output", kw.get("kwargs_fir_lowpass_filter_output"), _IHC_LOWPASS_KEYS
        )
        if not lowpass:
            raise _unsupported(
                "kwargs_fir_lowpass_filter_output", lowpass, "every published waveform model has the IHC lowpass"
            )
        if not lowpass.get("ihc_filter", False):
            raise _unsupported(
                "kwargs_fir_lowpass_filter_output.ihc_filter", lowpass.get("ihc_filter"), "only the IHC lowpass is used"
            )
        down_up_gcd = math.gcd(int(self.sr_cochlea), int(self.sr_output))
        if int(self.sr_output) // down_up_gcd != 1:
            raise _unsupported("sr_output", self.sr_output, f"must divide sr_cochlea={self.sr_cochlea:g}")
        self.hair_cell = HairCellLowpass(
            self.sr_cochlea,
            self.sr_output,
            cutoff=_require("kwargs_fir_lowpass_filter_output", lowpass, "cutoff"),
            order=_require("kwargs_fir_lowpass_filter_output", lowpass, "order"),
            fir_dur=_require("kwargs_fir_lowpass_filter_output", lowpass, "fir_dur"),
        )

        if kw.get("kwargs_custom_slice"):
            raise _unsupported("kwargs_custom_slice", kw["kwargs_custom_slice"], "only nervegram models slice")
        rate_level = _check_keys(
            "kwargs_sigmoid_rate_level_function", kw.get("kwargs_sigmoid_rate_level_function"), _RATE_LEVEL_KEYS
        )
        if not rate_level:
            raise _unsupported(
                "kwargs_sigmoid_rate_level_function", rate_level, "every published waveform model has one"
            )
        self.rate_level = SigmoidRateLevel(
            rate_spont=_require("kwargs_sigmoid_rate_level_function", rate_level, "rate_spont"),
            rate_max=_require("kwargs_sigmoid_rate_level_function", rate_level, "rate_max"),
            threshold=_require("kwargs_sigmoid_rate_level_function", rate_level, "threshold"),
            dynamic_range=_require("kwargs_sigmoid_rate_level_function", rate_level, "dynamic_range"),
            dynamic_range_interval=rate_level.get("dynamic_range_interval", 0.95),
            envelope_mode=bool(rate_level.get("envelope_mode", False)),
        )
        return self.rate_level.n_channels

    def _build_nervegram_path(self, kw: dict) -> int | None:
        self.rectify = False
        for key in ("config_subband_processing", "kwargs_fir_lowpass_filter_output", "kwargs_sigmoid_rate_level_function"):
            if kw.get(key):
                raise _unsupported(key, kw[key], "nervegram models feed the given rates straight through")
        if self.sr_output != self.sr_cochlea:
            raise _unsupported("sr_output", self.sr_output, "nervegram models do not resample")
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
        self.custom_slice = slice(*args)
        start, stop, step = self.custom_slice.start, self.custom_slice.stop, self.custom_slice.step
        if stop is not None and stop >= 0 and (start is None or start >= 0):
            return len(range(start or 0, stop, step or 1))
        return None

    def _build_spike_generator(self, kw: dict, n_channels: int | None) -> BinomialSpikeGenerator:
        gen = _check_keys(
            "kwargs_spike_generator_binomial", kw.get("kwargs_spike_generator_binomial"), _SPIKE_GENERATOR_KEYS
        )
        if not gen:
            raise _unsupported("kwargs_spike_generator_binomial", gen, "every published model has one")
        n_per_channel = np.asarray(_require("kwargs_spike_generator_binomial", gen, "n_per_channel")).reshape(-1)
        if n_per_channel.size == 0 or not np.all(n_per_channel == np.round(n_per_channel)):
            raise ValueError(f"kwargs_cochlea: kwargs_spike_generator_binomial.n_per_channel={gen['n_per_channel']!r}")
        n_per_channel = [int(n) for n in n_per_channel]
        if "n_per_step" in gen:
            if "mode" in gen:
                raise _unsupported("kwargs_spike_generator_binomial.mode", gen["mode"], "together with n_per_step")
            n_per_step = np.asarray(gen["n_per_step"]).reshape(-1)
            if n_per_step.size != len(n_per_channel) or not all(
                npc == 0 or (nps > 0 and npc % nps == 0) for npc, nps in zip(n_per_channel, n_per_step)
            ):
                raise ValueError(
                    f"kwargs_cochlea: kwargs_spike_generator_binomial.n_per_step={gen['n_per_step']!r} "
                    f"is not compatible with n_per_channel={n_per_channel}"
                )
            # Summed Bernoulli draws: exactly Binomial(n, p).
            method = "exact"
        else:
            method = gen.get("mode", "exact")
            if method not in ("approx", "exact"):
                raise _unsupported("kwargs_spike_generator_binomial.mode", method)
        if n_channels is not None and len(n_per_channel) not in (1, n_channels):
            raise ValueError(
                f"kwargs_cochlea: kwargs_spike_generator_binomial.n_per_channel={n_per_channel} "
                f"does not match the {n_channels} nerve channels"
            )
        return BinomialSpikeGenerator(n_per_channel, self.sr_output, method=method)

    # ---------------------------------------------------------------- forward

    def output_length(self, n_in: int) -> int:
        """Time samples out for `n_in` samples in."""
        return self.hair_cell.output_length(n_in) if self.hair_cell is not None else int(n_in)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_kind == "waveform":
            return self._waveform_to_rates(x)
        return self._nervegram_to_rates(x)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_kind == "waveform":
            return self._waveform_to_rates_fast(x)
        return self._nervegram_to_rates(x)

    @staticmethod
    def _check_waveform(x: torch.Tensor) -> None:
        if x.dim() not in (2, 3):
            raise ValueError(
                f"expected a waveform of shape (batch, time) or (batch, ears, time), got {tuple(x.shape)}"
            )

    def _waveform_to_rates_fast(self, x: torch.Tensor) -> torch.Tensor:
        self._check_waveform(x)
        batch, n_time = x.shape[0], x.shape[-1]
        rows = x.reshape(-1, n_time)
        n_fft = self.hair_cell.fft_length(n_time + max(self.filterbank.n_taps, self.hair_cell.n_taps) - 1)
        # Blocks of channels keep each FFT buffer small (cache-resident, and under glibc's
        # largest mmap threshold, 32 MB: larger buffers are fresh pages on every call, and
        # first-touch page faults then cost as much as the FFTs).
        per_channel = n_fft * FRONT_END_FFT_DTYPE.itemsize
        # A GPU has no page-fault or cache concern at these sizes, only launch overhead.
        scale = 1 if x.device.type == "cpu" else 64
        rows_per_chunk = max(1, scale * FAST_CHUNK_BYTES // (self.n_freq * per_channel))
        channels_per_block = max(1, min(self.n_freq, scale * FAST_BLOCK_BYTES // per_channel))
        rates = []
        for start in range(0, rows.shape[0], rows_per_chunk):
            spectrum = self.filterbank.input_spectrum(rows[start : start + rows_per_chunk], n_fft)
            blocks = []
            for first in range(0, self.n_freq, channels_per_block):
                channels = slice(first, first + channels_per_block)
                subbands = self.filterbank.subbands_from_spectrum(spectrum, n_fft, channels)
                # The samples past n_time are circular-convolution tail, not signal: zeroed,
                # the buffer is the zero-padded subband the lowpass's FFT needs.
                subbands[..., n_time:] = 0
                if self.rectify:
                    subbands = subbands.relu_()
                blocks.append(self.hair_cell.fft_lowpass(subbands, n_fft, n_time).to(x.dtype))
            subbands = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
            if self.rectify:
                subbands = subbands.relu_()
            rates.append(self.rate_level(subbands))
        rates = rates[0] if len(rates) == 1 else torch.cat(rates)
        return rates.reshape(batch, -1, *rates.shape[-2:])

    def _waveform_to_rates(self, x: torch.Tensor) -> torch.Tensor:
        self._check_waveform(x)
        batch = x.shape[0]
        # Ears are independent cochleae: fold them into the batch, then stack their channels ear-major.
        x = x.reshape(-1, x.shape[-1])
        subbands = self.filterbank(x)
        if self.rectify:
            subbands = torch.relu(subbands)
        subbands = self.hair_cell(subbands)
        if self.rectify:
            subbands = torch.relu(subbands)
        rates = self.rate_level(subbands)
        return rates.reshape(batch, -1, *rates.shape[-2:])

    def _nervegram_to_rates(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (4, 5):
            raise ValueError(
                "expected a nervegram of shape (batch, channels, freq, time) or "
                f"(batch, ears, channels, freq, time), got {tuple(x.shape)}"
            )
        if self.custom_slice is not None:
            x = x[(slice(None),) * (x.dim() - 3) + (self.custom_slice,)]
        return x.reshape(x.shape[0], -1, *x.shape[-2:])

    def extra_repr(self) -> str:
        return (
            f"input_kind={self.input_kind!r}, sr_input={self.sr_input:g}, sr_output={self.sr_output:g}, "
            f"rectify={self.rectify}, custom_slice={self.custom_slice}"
        )
