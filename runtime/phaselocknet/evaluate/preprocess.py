"""Making stored examples fit a model, as the authors' evaluation did.

Waveforms: channels checked (a mono sound goes to a binaural model only with
``diotic``), polyphase resampling to the model's rate (scipy ``resample_poly``, Kaiser
window beta 5; the authors' PyTorch evaluation used torchaudio's windowed-sinc
resampler, whose output differs from ours by far less than the models' own noise),
optional level in dB SPL, then centre zero-padding or trimming to the model's input
length (``strict_length`` turns a length mismatch into an error instead).
Nervegrams: the spontaneous-rate groups the model's ``kwargs_custom_slice`` selects,
then centre pad/trim along time, except that a localization model gets a longer nervegram
whole and takes its excerpt itself (``excerpt``: uniform over the whole nervegram, as the
authors' evaluation of their 13000-sample localization nervegrams did, or a fixed start);
values are spikes/s and are never rescaled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import centre_pad_or_trim, pcm_to_float, prepare_waveform, resample
from .sources import RawExample


@dataclass(frozen=True)
class InputSpec:
    """What one group of models takes; examples are prepared once per spec."""

    kind: str  # "waveform" or "nervegram"
    sample_rate: float
    length: int
    binaural: bool
    shape: tuple  # without batch axis
    spont_slice: tuple | None = None  # (start, stop) of stored spont groups, nervegram only

    @classmethod
    def of(cls, model) -> "InputSpec":
        spont = None
        if model.input_kind == "nervegram":
            args = (model.config["kwargs_cochlea"].get("kwargs_custom_slice") or {}).get("args")
            spont = tuple(int(a) for a in args) if args else None
        return cls(
            kind=model.input_kind,
            sample_rate=float(model.sample_rate),
            length=int(model.input_length),
            binaural=bool(model.binaural),
            shape=tuple(int(s) for s in model.expected_input_shape()),
            spont_slice=spont,
        )

    def describe(self) -> str:
        ears = "binaural" if self.binaural else "mono"
        return f"{ears} {self.kind} {self.shape} at {self.sample_rate:g} Hz"


@dataclass(frozen=True)
class Preprocessing:
    level_db: float | None = None
    diotic: bool = False
    strict_length: bool = False


def prepare(raw: RawExample, spec: InputSpec, options: Preprocessing) -> np.ndarray:
    """The model input for one example (float32, ``spec.shape``), or a ValueError saying why not."""
    if raw.error is not None:
        raise ValueError(raw.error)
    if spec.kind == "waveform":
        return _prepare_waveform(raw, spec, options)
    return _prepare_nervegram(raw.array, spec, options)


def _prepare_waveform(raw: RawExample, spec: InputSpec, options: Preprocessing) -> np.ndarray:
    x = pcm_to_float(raw.array)  # integer samples scaled as in WAV files (full scale = 1 Pa)
    if x.shape[-1] == 0:
        raise ValueError("empty sound (0 samples)")
    if not np.all(np.isfinite(x)):
        raise ValueError("sound has NaN or Inf samples")
    if raw.rate is None or not np.isfinite(raw.rate) or raw.rate <= 0:
        raise ValueError(f"invalid sample rate {raw.rate}")
    x = resample(x, raw.rate, spec.sample_rate)
    if options.strict_length and x.shape[-1] != spec.length:
        raise ValueError(
            f"{x.shape[-1]} samples at {spec.sample_rate:g} Hz; the model takes {spec.length} "
            "(without --strict-length sounds are centre padded or trimmed)"
        )
    prepared = prepare_waveform(
        x, spec.sample_rate, sample_rate=spec.sample_rate, length=spec.length,
        binaural=spec.binaural, level_db=options.level_db, diotic=options.diotic,
    )
    if not np.all(np.isfinite(prepared)):
        raise ValueError("sound overflows float32 after level scaling")
    return prepared


def _prepare_nervegram(array: np.ndarray, spec: InputSpec, options: Preprocessing) -> np.ndarray:
    x = np.asarray(array, dtype=np.float32)
    if x.ndim == 1:  # raw TFRecord bytes without a description: shaped by the model's layout
        from .tfrecord_source import flat_nervegram

        x = flat_nervegram(x, spec)
    spont_axis = 1 if spec.binaural else 0
    want_spont = spec.shape[spont_axis]
    if x.ndim != len(spec.shape):
        raise ValueError(f"nervegram has {x.ndim} axes, the model takes {spec.describe()}")
    if x.shape[spont_axis] != want_spont and spec.spont_slice is not None:
        wanted = range(*spec.spont_slice)
        if len(wanted) and max(wanted) >= x.shape[spont_axis]:
            raise ValueError(f"nervegram has {x.shape[spont_axis]} spont-rate groups; the model takes "
                             f"groups {list(wanted)} of {spec.describe()}")
        x = np.take(x, wanted, axis=spont_axis)
    if x.shape[:-1] != spec.shape[:-1]:
        raise ValueError(f"nervegram of shape {x.shape} (ours, time last) does not fit {spec.describe()}")
    if options.strict_length and x.shape[-1] != spec.length:
        raise ValueError(f"nervegram has {x.shape[-1]} time bins; the model takes {spec.length}")
    if not np.all(np.isfinite(x)):
        raise ValueError("nervegram has NaN or Inf values")
    if x.shape[-1] < spec.length or not spec.binaural:
        x = centre_pad_or_trim(x, spec.length)
    return np.ascontiguousarray(x, dtype=np.float32)
