"""Nervegram-input models heard from sound: BEZ2018 as their front end.

``phaselocknet.load(bundle, front_end="bez2018")`` wraps a model that takes the authors'
nervegrams (every IHC0050/0320/1000/3000 and IHC3000_delayed_integration model) in
`BEZ2018FrontEnd`, which takes a sound in pascals, makes its nervegram with
`phaselocknet.bez2018.nervegram` as the authors did for that task, and feeds it to the model.

The sounds are the authors' stimuli (configure_bez2018model_nervegram_generation.ipynb in
msaddler/phaselocknet):
- word / speaker tasks: 2 s at 20 kHz (40000 samples), preset "speech" (CFs 125..8000 Hz,
  fresh fractional Gaussian noise, noiseType 1); the whole 2 s nervegram (20000 samples at
  10 kHz) is the model's input.
- localization: binaural, 44.1 kHz. Training sounds were cut to samples
  int(0.28 * 44e3)..int(1.68 * 44e3) (the notebook's 44e3, not 44.1e3): 61600 samples, 1.397 s.
  Preset "localization" (CFs 125..16000 Hz, noiseType 0) keeps a 1.3 s clip starting uniformly
  in [0.07 s, end - 1.31 s] (13000 samples at 10 kHz); the model then sees a 10000-sample
  excerpt starting uniformly in [0, 3000], as phaselocknet_run.py's
  ``random_slice(nervegram, 10000, buffer=None)`` drew it.

Randomness: each example gets one seed (``example_seeds``, or drawn from ``load(seed=)``'s
stream, or from torch's global RNG); it fixes that example's nervegram noise and clip
(`example_streams`), its excerpt and its spike counts, whatever batch it is in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..finite import refuse_nonfinite

FRONT_ENDS = ("bez2018",)
NERVE_SAMPLE_RATE = 10000.0
SPEECH_SAMPLE_RATE = 20000.0
LOCALIZATION_SAMPLE_RATE = 44100.0
# int(1.68 * 44e3) - int(0.28 * 44e3): the authors' training sounds (see the module docstring).
LOCALIZATION_INPUT_LENGTH = 61600
# The 1.3 s clip of the localization preset at 10 kHz, and the model's excerpt of it.
LOCALIZATION_CLIP_LENGTH = 13000
NERVEGRAM_SEED_LIMIT = 2**32  # numpy.random.RandomState (rng="numpy") takes seeds below 2**32
SPIKE_SEED_LIMIT = 2**62
RNGS = ("torch", "numpy")
_IHC_VARIANT = re.compile(r"(?:^|/)(?:[^/]*_)?IHC(\d{4})(?:_[^/]*)?(?:/|$)")


class FrontEndError(ValueError):
    """A model cannot take this front end, or the input does not fit it."""


@dataclass(frozen=True)
class ExampleStreams:
    """What one example seed fixes: the nervegram's seed, the spike counts' seed, and a
    uniform variate in [0, 1) placing the localization excerpt."""

    nervegram_seed: int
    spike_seed: int
    excerpt_u: float


def example_streams(seed: int) -> ExampleStreams:
    """The independent streams of one example, derived from its seed.

    Separate seeds, not the example seed reused, so that the nervegram's noise and the
    spike counts do not draw the same random numbers.
    """
    generator = torch.Generator().manual_seed(int(seed))
    nervegram_seed = int(torch.randint(0, NERVEGRAM_SEED_LIMIT, (1,), generator=generator))
    spike_seed = int(torch.randint(0, SPIKE_SEED_LIMIT, (1,), generator=generator))
    excerpt_u = float(torch.rand((1,), generator=generator, dtype=torch.float64))
    return ExampleStreams(nervegram_seed, spike_seed, excerpt_u)


def ihc_cutoff_of(model_id: str | None) -> float:
    """The IHC lowpass cutoff (Hz) named by a model id's variant, e.g.
    "word_recognition/IHC0320/arch0_0000" -> 320, ".../IHC3000_delayed_integration/..." -> 3000."""
    match = _IHC_VARIANT.search(model_id or "")
    if match is None:
        raise FrontEndError(
            f"cannot tell the IHC lowpass cutoff of model {model_id!r} (its id names no IHC0050/0320/1000/3000 "
            "variant): pass ihc_cutoff= to phaselocknet.bez2018.front_end.with_front_end"
        )
    return float(match.group(1))


def with_front_end(model, front_end: str = "bez2018", *, ihc_cutoff: float | None = None, rng: str = "torch"):
    """``model`` (a nervegram-input `PhaselocknetModel`) as a waveform model with ``front_end``."""
    if front_end not in FRONT_ENDS:
        raise FrontEndError(f"front_end={front_end!r}: the only front end is 'bez2018' (or None for the model as stored)")
    if model.input_kind != "nervegram":
        raise FrontEndError(
            f"{model.model_id or 'this model'} already takes sounds (its own front end); front_end= is for "
            "nervegram-input models: load it without front_end"
        )
    return BEZ2018FrontEnd(model, ihc_cutoff=ihc_cutoff, rng=rng)


class BEZ2018FrontEnd(nn.Module):
    """Sound (Pa) -> BEZ2018 nervegram -> a nervegram-input model's CNN.

    Has the facts of a waveform `PhaselocknetModel`: ``input_kind`` ("waveform"),
    ``sample_rate``, ``input_length``, ``binaural``, ``heads``, ``labels()``,
    ``activations()``, ``expected_input_shape()``; ``nervegram_model`` is the wrapped model,
    ``preset``, ``ihc_cutoff`` and ``rng`` ("torch" or "numpy") the nervegram's settings.
    """

    def __init__(self, model, *, ihc_cutoff: float | None = None, rng: str = "torch"):
        super().__init__()
        if rng not in RNGS:
            raise FrontEndError(f"rng={rng!r}: use 'torch' (on the model's device) or 'numpy' (the authors' wrapper's stream)")
        self.nervegram_model = model
        self.rng = rng
        self.ihc_cutoff = float(ihc_cutoff) if ihc_cutoff is not None else ihc_cutoff_of(model.model_id)
        self.input_kind = "waveform"
        self.binaural = model.binaural
        self.preset = "localization" if self.binaural else "speech"
        for name in ("config", "arch", "model_id", "heads", "label_names", "spikes", "seed"):
            setattr(self, name, getattr(model, name))
        self._generator = None if self.seed is None else torch.Generator().manual_seed(int(self.seed))
        # The CNN's spont-rate groups (every published config keeps all three).
        self._spont = model.front_end.custom_slice or slice(None)
        if self.binaural:
            self.sample_rate = LOCALIZATION_SAMPLE_RATE
            self.input_length = LOCALIZATION_INPUT_LENGTH
            self.excerpt_length = model.input_length
            self.nerve_length = LOCALIZATION_CLIP_LENGTH
            self.excerpt = _check_excerpt(model.excerpt, self.nerve_length - self.excerpt_length)
        else:
            self.sample_rate = SPEECH_SAMPLE_RATE
            self.input_length = int(round(model.input_length * SPEECH_SAMPLE_RATE / NERVE_SAMPLE_RATE))
            self.excerpt_length = None
            self.nerve_length = model.input_length
            self.excerpt = None

    # ------------------------------------------------------------------ facts
    @property
    def network(self) -> nn.Module:
        """The wrapped model's CNN (one module, not a copy)."""
        return self.nervegram_model.network

    @property
    def backend(self) -> str:
        return self.nervegram_model.backend

    @property
    def cnn_dtype(self) -> torch.dtype:
        return self.nervegram_model.cnn_dtype

    def set_backend(self, backend: str) -> "BEZ2018FrontEnd":
        self.nervegram_model.set_backend(backend)
        return self

    def expected_input_shape(self) -> tuple:
        return ((2,) if self.binaural else ()) + (self.input_length,)

    def labels(self, head: str) -> list:
        return self.nervegram_model.labels(head)

    # ---------------------------------------------------------------- forward
    # Nothing here is deterministic: BEZ2018's spike generator (and the speech preset's
    # fractional Gaussian noise) draw random numbers, so models share a nervegram only when
    # they are given the same example seeds (see phaselocknet.sharing).
    deterministic = False

    def front_end_key(self) -> str:
        """Equal for two wrapped models exactly when `nerve_representation` is the same function."""
        return json.dumps({"bez2018": self.preset, "ihc_cutoff": self.ihc_cutoff, "rng": self.rng,
                           "spikes": self.nervegram_model.front_end_key()}, sort_keys=True)

    def forward(self, x, example_seeds: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Logits per head for a batch of sounds (see ``expected_input_shape``), float32."""
        rates, streams = self._rates_and_streams(x, example_seeds)
        spike_seeds = [s.spike_seed for s in streams]
        logits = self.cnn(self.nervegram_model.nerve_representation(rates, spike_seeds))
        refuse_nonfinite(self.nervegram_model, logits, rates, spike_seeds)  # NonFiniteOutputError naming the layer
        return logits

    def cnn(self, nerve: torch.Tensor) -> dict[str, torch.Tensor]:
        """The wrapped model's CNN alone on spike counts (`PhaselocknetModel.cnn`)."""
        return self.nervegram_model.cnn(nerve)

    def cnn_with_activations(self, nerve: torch.Tensor, layers: Sequence[str]) -> tuple[dict, dict]:
        return self.nervegram_model.cnn_with_activations(nerve, layers)

    def activations(self, x, layers: Sequence[str], example_seeds: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Named activations; ``"nerve"`` is the spike-count input of the CNN."""
        layers = list(layers)
        nerve = self.nerve_representation(x, example_seeds)
        _, found = self.cnn_with_activations(nerve, [name for name in layers if name != "nerve"])
        found = dict(found)
        if "nerve" in layers:
            found["nerve"] = nerve
        return {name: found[name] for name in layers}

    def nerve_representation(self, x, example_seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Spike counts (batch, channels, freq, time) as fed to the CNN."""
        rates, streams = self._rates_and_streams(x, example_seeds)
        return self.nervegram_model.nerve_representation(rates, [s.spike_seed for s in streams])

    def nervegram(self, x, example_seeds: Sequence[int] | None = None) -> torch.Tensor:
        """The mean rates (spikes/s) the wrapped model gets: the BEZ2018 nervegram, its spont-rate
        groups, and for localization the excerpt; (batch, [2,] 3, 50, time) float32."""
        return self._rates_and_streams(x, example_seeds)[0]

    def _rates_and_streams(self, x, example_seeds) -> tuple[torch.Tensor, list[ExampleStreams]]:
        x = self.check_input(x)
        streams = [example_streams(s) for s in self._example_seeds(x.shape[0], example_seeds)]
        rates = self._meanrates(x, [s.nervegram_seed for s in streams])
        rates = rates[(Ellipsis, self._spont, slice(None), slice(None))]
        if self.excerpt_length is not None:
            rates = self._take_excerpt(rates, streams)
        return rates, streams

    def _meanrates(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """The BEZ2018 nervegram of the batch, each example with its own seed."""
        # Looked up on the package at call time (the public `bez2018.nervegram`).
        import phaselocknet.bez2018 as bez2018

        # One seed per example: each example's noise and clip depend on its own seed alone.
        out = bez2018.nervegram(x, self.sample_rate, ihc_cutoff=self.ihc_cutoff, preset=self.preset, seed=seeds,
                                rng=self.rng)
        rates = torch.as_tensor(out["meanrates"])
        if rates.shape[-1] != self.nerve_length:
            raise FrontEndError(
                f"bez2018.nervegram gave {rates.shape[-1]} time samples, {self.nerve_length} expected for "
                f"{self.input_length} samples at {self.sample_rate:g} Hz (preset {self.preset!r})"
            )
        return rates.to(device=x.device, dtype=torch.float32)

    def _take_excerpt(self, rates: torch.Tensor, streams: list[ExampleStreams]) -> torch.Tensor:
        length, latest = self.excerpt_length, self.nerve_length - self.excerpt_length
        if self.excerpt != "random":
            return rates[..., self.excerpt : self.excerpt + length]
        starts = [min(int(s.excerpt_u * (latest + 1)), latest) for s in streams]
        return torch.stack([rates[i, ..., start : start + length] for i, start in enumerate(starts)])

    def _example_seeds(self, batch: int, example_seeds) -> list[int]:
        if example_seeds is None:
            return torch.randint(0, SPIKE_SEED_LIMIT, (batch,), generator=self._generator).tolist()
        if len(example_seeds) != batch:
            raise FrontEndError(f"example_seeds has {len(example_seeds)} entries for a batch of {batch}")
        return [int(s) for s in example_seeds]

    def check_input(self, x) -> torch.Tensor:
        """The sound batch as a float tensor, or a FrontEndError saying what was expected."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor or numpy array, got {type(x).__name__}")
        if x.is_complex() or not x.is_floating_point():
            # As PhaselocknetModel.check_input: integer samples are not pascals, complex ones not pressures.
            raise InputError(f"input has dtype {x.dtype}: pass real float pascals (e.g. x / 32768 for int16 PCM, "
                             "full scale = 1 Pa as read_audio does)")
        expected = self.expected_input_shape()
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            layout = "(batch, " + ", ".join(map(str, expected)) + ")"
            what = "binaural sound" if self.binaural else "mono sound"
            raise FrontEndError(
                f"expected a {what} of shape {layout} in pascals at {self.sample_rate:g} Hz, got {tuple(x.shape)}; "
                f"resample and centre pad/trim to {self.input_length} samples (phaselocknet.audio.prepare_waveform)"
            )
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).flatten(1).any(dim=1).nonzero().flatten().tolist()
            raise FrontEndError(f"input has NaN or Inf values in batch examples {bad[:10]}: clean or drop them")
        return x

    def extra_repr(self) -> str:
        return (f"preset={self.preset!r}, ihc_cutoff={self.ihc_cutoff:g}, rng={self.rng!r}, "
                f"sample_rate={self.sample_rate:g}, input_length={self.input_length}")


def _check_excerpt(excerpt, latest: int):
    if excerpt == "random":
        return excerpt
    if not 0 <= int(excerpt) <= latest:
        raise FrontEndError(f"excerpt={excerpt} is outside the nervegram clip: use 0..{latest} (or 'random')")
    return int(excerpt)


FRONT_END_CHOICES = ("auto", "bez2018", "none")


def resolve_front_end(model, choice: str, *, sounds: bool):
    """The command line's ``--front-end``: "auto" (default) gives a nervegram-input model BEZ2018
    when it is given sounds, "bez2018" always (an error for a waveform model), "none" never."""
    if choice not in FRONT_END_CHOICES:
        raise FrontEndError(f"--front-end {choice}: use one of {', '.join(FRONT_END_CHOICES)}")
    if choice == "none" or (choice == "auto" and not (sounds and model.input_kind == "nervegram")):
        return model
    if model.input_kind == "nervegram" and _IHC_VARIANT.search(model.model_id or "") is None:
        raise FrontEndError(
            f"{model.model_id or 'the model'} takes nervegrams, and its id names no IHC0050/0320/1000/3000 variant, so "
            "the BEZ2018 front end cannot choose its IHC lowpass cutoff: give stored nervegrams (HDF5 "
            "'nervegram_meanrates'), or in Python phaselocknet.bez2018.front_end.with_front_end(model, ihc_cutoff=...)"
        )
    return with_front_end(model, "bez2018")
