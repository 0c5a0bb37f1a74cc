"""A whole phaselocknet model: auditory-nerve front end, excerpt, then the CNN."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .constants import BACKENDS, NERVEGRAM_N_FREQ, SPIKE_MODES
from .fast import FastExecutor, stamps_equal, weights_stamp
from .errors import InputError
from .finite import refuse_nonfinite
from .labels import LOCALIZATION_HEAD, head_labels
from .limits import check_model_config, check_network_size, config_errors
from .network import build_network
from .periphery import Cochlea

DEFAULT_BACKEND = "fast"

# Localization models were trained on 1.2 s binaural excerpts whose nerve output
# (12000 samples at 10 kHz) was cut to a 10000-sample excerpt starting uniformly in
# [500, 1500] (phaselocknet_run.py: random_slice with buffer=500).
LOCALIZATION_SIGNAL_SECONDS = 1.2
EXCERPT_LENGTH = 10000
EXCERPT_MARGIN = 500


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: use 'fast' (default) or 'reference' (direct convolutions)")
    return backend


class PhaselocknetModel(nn.Module):
    """Front end + CNN, with the facts a caller needs to feed it.

    Attributes: ``sample_rate`` (Hz of the input), ``input_kind`` ("waveform" or
    "nervegram"), ``binaural``, ``input_length`` (time samples expected),
    ``heads`` ({head: n_classes}), ``config``, ``arch``, ``model_id``,
    ``backend`` ("fast" or "reference", see `set_backend`), ``cnn_dtype``.
    """

    def __init__(
        self,
        config: dict,
        arch: list,
        *,
        spikes: str = "sample",
        excerpt: str | int = "random",
        seed: int | None = None,
        labels: dict[str, list] | None = None,
        model_id: str | None = None,
        backend: str = DEFAULT_BACKEND,
        dtype: torch.dtype | None = None,
        network_device: torch.device | str | None = None,
    ):
        """``network_device="meta"`` builds the CNN's structure only (no memory, no random
        init; the front end is built for real): `hub.load` then moves the file's weights in."""
        super().__init__()
        check_backend(backend)
        if spikes not in SPIKE_MODES:
            raise ValueError(f"spikes={spikes!r}: use 'sample' (stochastic, as in the paper) or 'mean' (expected counts)")
        if not (excerpt == "random" or (isinstance(excerpt, (int, np.integer)) and not isinstance(excerpt, bool))):
            raise ValueError(f"excerpt={excerpt!r}: use 'random' or an int start offset in nerve samples")
        # Bounds first: nothing below may allocate or loop on an unchecked value.
        check_model_config(config, arch)
        self.config = copy.deepcopy(config)
        self.arch = copy.deepcopy(arch)
        self.model_id = model_id
        self.heads = {head: int(n) for head, n in sorted(config["n_classes_dict"].items())}
        self.label_names = copy.deepcopy(labels) if labels else None
        self.binaural = LOCALIZATION_HEAD in self.heads
        self.spikes = spikes
        self.seed = seed
        self._generator = None if seed is None else torch.Generator().manual_seed(int(seed))

        with config_errors("kwargs_cochlea"):
            self.front_end = Cochlea(self.config["kwargs_cochlea"])
        self.input_kind = self.front_end.input_kind
        waveform = self.input_kind == "waveform"
        self.sample_rate = float(self.front_end.sr_input if waveform else self.front_end.sr_output)
        self.n_freq = self.front_end.n_freq if waveform else NERVEGRAM_N_FREQ
        with config_errors("arch.json"):
            self.nerve_length, self.input_length = self._lengths()

        self.excerpt_length = EXCERPT_LENGTH if self.binaural and self.nerve_length > EXCERPT_LENGTH else None
        self.excerpt = self._checked_excerpt(excerpt)

        channels = self.front_end.n_channels * (2 if self.binaural else 1)
        time = self.excerpt_length or self.nerve_length
        with config_errors("arch.json"):
            # Sizes are totalled on the meta device (no memory) before the real build.
            check_network_size(build_network(self.arch, (channels, self.n_freq, time), self.heads, device="meta"))
            self.network = build_network(self.arch, (channels, self.n_freq, time), self.heads, device=network_device)
        self.backend = backend
        self._fast: FastExecutor | None = None  # see _executor
        if dtype is not None:
            self.to_cnn_dtype(dtype)
        self.eval()

    def _checked_excerpt(self, excerpt: str | int) -> str | int:
        if self.excerpt_length is not None and excerpt != "random":
            latest = self.nerve_length - self.excerpt_length
            if not 0 <= int(excerpt) <= latest:
                raise ValueError(f"excerpt={excerpt} is outside the nerve output: use 0..{latest} (trained on {EXCERPT_MARGIN}..{latest - EXCERPT_MARGIN})")
        return excerpt if excerpt == "random" else int(excerpt)

    def set_backend(self, backend: str) -> "PhaselocknetModel":
        """"fast" (default: FFT filtering, folded batch norms, streamed layers; `phaselocknet.fast`)
        or "reference" (the modules themselves: direct convolutions, layer by layer; the
        numerical reference). Same answers within float32 rounding (tests/test_fast_path.py)."""
        self.backend = check_backend(backend)
        return self

    @property
    def cnn_dtype(self) -> torch.dtype:
        """The CNN's dtype, read from its weights (so it follows `.to(dtype)` too)."""
        return self.network.parameter_dtype()

    def to_cnn_dtype(self, dtype: torch.dtype) -> "PhaselocknetModel":
        """Run the CNN in `dtype` (e.g. torch.bfloat16, torch.float16); the front end stays
        float32 and logits are returned as float32."""
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype={dtype!r}: use a floating-point torch.dtype such as torch.bfloat16")
        self.network.to(dtype)
        return self

    def _executor(self, x: torch.Tensor) -> FastExecutor | None:
        """The one place that chooses what runs: None for the reference modules, else the fast
        executor, rebuilt here whenever the weights, device or dtype have changed.

        The reference modules run for backend="reference", in training mode, when a module has
        hooks (they must see their layer run) and when autograd must record a graph (the input
        or any weight requires grad with grad mode on): the executor's derived tensors are
        constants, and gradients come from the plain modules."""
        if self.backend != "fast" or self.training or self._has_hooks():
            return None
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            return None
        stamp = weights_stamp(self)
        if self._fast is None or not stamps_equal(self._fast.stamp, stamp):
            self._fast = FastExecutor(self.front_end, self.network, stamp)
        return self._fast

    def _has_hooks(self) -> bool:
        return any(m._forward_hooks or m._forward_pre_hooks for m in self.modules())

    # ------------------------------------------------------------------ facts
    def _lengths(self) -> tuple[int, int]:
        """(nerve samples before any excerpt, input samples) implied by the config and arch."""
        sr_in, sr_out = self.front_end.sr_input, self.front_end.sr_output
        if self.binaural:
            if self.input_kind == "nervegram":
                return EXCERPT_LENGTH, EXCERPT_LENGTH
            n_in = int(round(LOCALIZATION_SIGNAL_SECONDS * sr_in))
            return math.ceil(n_in * sr_out / sr_in), n_in
        reshapes = [layer for layer in self.arch if layer["layer_type"] == "reshape"]
        if not reshapes:
            raise ValueError("cannot infer the input length: the arch has no 'reshape' layer fixing the time axis")
        n_nerve = int(reshapes[0]["args"]["target_shape"][1])
        if self.input_kind == "nervegram":
            return n_nerve, n_nerve
        return n_nerve, int(round(n_nerve * sr_in / sr_out))

    def expected_input_shape(self) -> tuple:
        """Input shape without the batch axis, e.g. (2, 60000) or (3, 50, 20000)."""
        if self.input_kind == "waveform":
            core: tuple = (self.input_length,)
        else:
            core = (self.front_end.n_channels, self.n_freq, self.input_length)
        return ((2,) if self.binaural else ()) + core

    def labels(self, head: str) -> list:
        if head not in self.heads:
            raise KeyError(f"no head {head!r}; this model has {sorted(self.heads)}")
        return head_labels(head, self.heads[head], self.label_names)

    # ---------------------------------------------------------------- forward
    def forward(self, x, example_seeds: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Logits per head for a batch of inputs (see ``expected_input_shape``), float32."""
        logits, _ = self._run(x, (), example_seeds)
        if not logits[next(iter(logits))].is_meta:
            refuse_nonfinite(self, logits, x, example_seeds)  # NonFiniteOutputError naming the layer
        return logits

    @property
    def deterministic(self) -> bool:
        """Whether the nerve representation of an input of ``input_length`` samples involves no
        random draw (mean spikes and no random excerpt). Binaural models count as random with
        ``excerpt="random"`` even without an excerpt of their own, since longer inputs (the
        authors' 13000-sample nervegrams) are excerpted at random."""
        return self.spikes == "mean" and (self.excerpt != "random" or (self.excerpt_length is None and not self.binaural))

    def front_end_key(self) -> str:
        """Equal for two models exactly when ``nerve_representation`` computes the same function
        of (input, example seeds): same front-end configuration, spike mode, excerpt rule and
        backend. Without example seeds the draws also depend on each model's own random
        stream, so only `deterministic` models may then share a representation."""
        facts = {"kwargs_cochlea": self.config["kwargs_cochlea"], "spikes": self.spikes, "excerpt": self.excerpt,
                 "excerpt_length": self.excerpt_length, "nerve_length": self.nerve_length,
                 "binaural": self.binaural, "backend": self.backend}
        return json.dumps(facts, sort_keys=True, default=str)

    def activations(
        self, x, layers: Sequence[str], example_seeds: Sequence[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """Named activations; ``"nerve"`` is the spike-count input of the CNN."""
        layers = list(layers)
        _, found = self._run(x, layers, example_seeds)
        return {name: found[name] for name in layers}

    def cnn(self, nerve: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head (float32) of the CNN alone, for spike counts as returned by
        `nerve_representation`; runs the same implementation as ``model(x)`` would."""
        logits, _ = self._cnn(nerve, [], self._executor(nerve))
        return logits

    def cnn_with_activations(self, nerve: torch.Tensor, layers: Sequence[str]) -> tuple[dict, dict]:
        """(logits, {layer: activation}) of the CNN alone, from one pass (see `cnn`)."""
        logits, found = self._cnn(nerve, list(layers), self._executor(nerve))
        return logits, {name: found[name] for name in layers}

    def _run(self, x, layers: Sequence[str], example_seeds) -> tuple[dict, dict]:
        x = self.check_input(x)
        executor = self._executor(x)
        nerve = self._nerve(x, example_seeds, executor)
        logits, found = self._cnn(nerve, [name for name in layers if name != "nerve"], executor)
        if "nerve" in layers:
            found["nerve"] = nerve
        return logits, found

    def _cnn(self, nerve: torch.Tensor, layers: list[str], executor: FastExecutor | None) -> tuple[dict, dict]:
        wanted = self.network._check_layer_names(layers)
        if executor is None:
            logits, found = self.network._run(nerve, wanted, stop_early=False)
        else:
            logits, found = executor.network.run(nerve, wanted)
        return {head: value.float() for head, value in logits.items()}, found

    def nerve_representation(self, x, example_seeds: Sequence[int] | None = None) -> torch.Tensor:
        """Spike counts (batch, channels, freq, time) as fed to the CNN."""
        x = self.check_input(x)
        return self._nerve(x, example_seeds, self._executor(x))

    def _nerve(self, x: torch.Tensor, example_seeds, executor: FastExecutor | None) -> torch.Tensor:
        if self.spikes == "sample" and x.requires_grad and torch.is_grad_enabled():
            # Binomial draws have no gradient; torch would silently return None for x.grad.
            raise InputError(
                "the input requires grad, but spikes='sample' draws spike counts, which have no gradient: "
                "load the model with spikes='mean' (expected counts, differentiable end to end)"
            )
        longer = x.shape[-1] > self.input_length
        generators = self._generators(x.shape[0], x.device, example_seeds, longer)
        if longer:
            x = self._input_excerpt(x, generators)
        # A binaural input (batch, 2, ...) gives ear 0's channels then ear 1's.
        rates = self.front_end(x) if executor is None else executor.front_end(x)
        if self.excerpt_length is not None:
            rates = self._take_excerpt(rates, generators)
        return self.front_end.spike_generator(rates, self.spikes, generators)

    def check_input(self, x) -> torch.Tensor:
        """The input as a float tensor, or a ValueError saying what was expected."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor or numpy array, got {type(x).__name__}")
        if x.is_complex():
            raise InputError("input is complex: the model takes real pressures (pascals) or rates; pass the real part explicitly if that is what you mean")
        if not x.is_floating_point():
            raise InputError(
                f"input has dtype {x.dtype}: integer samples are not pascals. Convert to float pascals "
                "first, e.g. x / 32768 for int16 PCM (full scale = 1 Pa, as read_audio does), then set the level"
            )
        expected = self.expected_input_shape()
        longer = x.ndim == len(expected) + 1 and x.shape[-1] > expected[-1]
        if tuple(x.shape[1:-1]) != expected[:-1] or x.ndim != len(expected) + 1 or (x.shape[-1] < expected[-1]):
            what = ("binaural " if self.binaural else "mono ") + self.input_kind
            unit = "pascals" if self.input_kind == "waveform" else "spikes/s"
            layout = "(batch, " + ", ".join(map(str, expected)) + ")"
            hint = ""
            if self.input_kind == "waveform" and x.ndim >= 1 and x.shape[-1] != self.input_length:
                hint = (f"; resample to {self.sample_rate:g} Hz and centre pad/trim to {self.input_length} samples "
                        "(phaselocknet.audio.prepare_waveform)")
            raise ValueError(f"expected a {what} of shape {layout} (or longer along time) in {unit}, got {tuple(x.shape)}{hint}")
        if longer and self.excerpt != "random" and self.excerpt_length is None:
            latest = x.shape[-1] - expected[-1]
            if not 0 <= self.excerpt <= latest:
                raise ValueError(f"excerpt={self.excerpt} does not fit a {x.shape[-1]}-sample input: use 0..{latest}")
        # Checked after the cast: a float64 1e300 is finite, its float32 value is not.
        x = x.to(torch.float32)
        # Meta tensors (shape-only dry runs) have no values to check.
        if x.device.type != "meta" and not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).flatten(1).any(dim=1).nonzero().flatten().tolist()
            raise InputError(f"input has NaN or Inf values (as float32, max ~3.4e38) in batch examples {bad[:10]}: clean or drop them")
        return x

    def _generators(self, batch: int, device, example_seeds, longer: bool = False) -> list[torch.Generator] | None:
        """One random stream per example, on the input's device; None when nothing is random.

        Streams are seeded from ``example_seeds`` when given (an example then gets the
        same draw whatever batch it is in), else from the model's ``seed`` stream, else
        from torch's global RNG (so ``torch.manual_seed`` applies).
        """
        if self.spikes == "mean" and (self.excerpt != "random" or (self.excerpt_length is None and not longer)):
            return None
        if example_seeds is None:
            example_seeds = torch.randint(0, 2**62, (batch,), generator=self._generator).tolist()
        elif len(example_seeds) != batch:
            raise ValueError(f"example_seeds has {len(example_seeds)} entries for a batch of {batch}")
        return [torch.Generator(device=device).manual_seed(int(s)) for s in example_seeds]

    def _input_excerpt(self, x: torch.Tensor, generators) -> torch.Tensor:
        """``input_length`` samples of a longer input, as the authors' evaluation cut them.

        "random": a start drawn uniformly over the whole input (their random_slice with no
        buffer, e.g. 10000 of the 13000 samples of their localization nervegrams). An int
        ``excerpt`` fixes the start, except in binaural waveform models, where it is the
        nerve excerpt's offset and a longer waveform is centre trimmed (as ``run`` does).
        """
        length, total = self.input_length, x.shape[-1]
        if self.excerpt == "random":
            starts = [int(torch.randint(0, total - length + 1, (1,), generator=g, device=g.device)) for g in generators]
            return torch.stack([x[i, ..., s : s + length] for i, s in enumerate(starts)])
        start = (total - length) // 2 if self.excerpt_length is not None else self.excerpt
        return x[..., start : start + length]

    def _take_excerpt(self, rates: torch.Tensor, generators) -> torch.Tensor:
        length = self.excerpt_length
        if self.excerpt != "random":
            return rates[..., self.excerpt : self.excerpt + length]
        first, last = EXCERPT_MARGIN, self.nerve_length - length - EXCERPT_MARGIN
        starts = [int(torch.randint(first, last + 1, (1,), generator=g, device=g.device)) for g in generators]
        return torch.stack([rates[i, ..., s : s + length] for i, s in enumerate(starts)])


def from_config(
    config: dict,
    arch: list,
    *,
    spikes: str = "sample",
    excerpt: str | int = "random",
    seed: int | None = None,
    labels: dict[str, list] | None = None,
    model_id: str | None = None,
    backend: str = DEFAULT_BACKEND,
    dtype: torch.dtype | None = None,
) -> PhaselocknetModel:
    """A model with random weights, in eval mode. ``backend``: "fast" (default) or
    "reference"; ``dtype``: the CNN's dtype (default float32; the front end is float32)."""
    return PhaselocknetModel(
        config, arch, spikes=spikes, excerpt=excerpt, seed=seed, labels=labels, model_id=model_id,
        backend=backend, dtype=dtype,
    )
