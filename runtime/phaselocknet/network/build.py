"""build_network: arch.json layer list -> Network (torch module with the authors' layer names)."""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from ..backend import TwoPath
from .layers import LAYER_TYPES, ArchArgs, ArchLayer, ClassificationHeads, Shape
from .plan import build_plan

_LAYER_KEYS = {"layer_type", "args"}


class _Plans(dict):
    """Execution plans of the fast backend; a copied network builds its own."""

    def __deepcopy__(self, memo):
        return _Plans()

    def __getstate__(self):
        return {}


class Network(TwoPath):
    """Feed-forward CNN built from an arch.json list.

    Layers are registered under their arch.json names (state_dict keys "conv_0.weight",
    "fc_top.label_word_int.weight", ...). Input (batch, channels, freq, time) float32;
    the last layer is the classification heads, so forward returns {head: logits}.
    Activations are channels first: (batch, channels, freq, time) or (batch, features).

    The fast backend (default; eval mode) runs a fused, streamed plan of the same layers
    (see `plan`); the reference backend, and train mode, run the layers one by one."""

    def __init__(
        self,
        layers: Sequence[tuple[str, str, ArchLayer]],
        input_shape: Shape,
        output_shapes: Mapping[str, Any],
        arch: Sequence[Mapping[str, Any]] | None = None,
    ):
        super().__init__()
        # Plain attributes first, so a layer named like one of them is refused by add_module.
        self.input_shape: Shape = tuple(input_shape)
        self.layer_names: list[str] = []
        self.layer_types: dict[str, str] = {}
        # name -> per-example output shape; the heads layer maps to {head: (n_classes,)}
        self.output_shapes: dict[str, Any] = dict(output_shapes)
        self.arch = copy.deepcopy(list(arch)) if arch is not None else None
        self._plans = _Plans()
        for name, layer_type, layer in layers:
            try:
                self.add_module(name, layer)
            except KeyError as err:
                raise ValueError(f"layer name {name!r} cannot be used (it is a Network attribute): {err}") from None
            self.layer_names.append(name)
            self.layer_types[name] = layer_type
        heads = self._modules[self.layer_names[-1]] if self.layer_names else None
        if not isinstance(heads, ClassificationHeads):
            raise ValueError("the last layer must be the classification heads (fc_top / multi_fc_top_classification)")

    @property
    def heads(self) -> dict[str, int]:
        """head name -> number of classes, in sorted head order."""
        return self._modules[self.layer_names[-1]].n_classes_dict

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            expected = ", ".join(map(str, self.input_shape))
            raise ValueError(f"network input must have shape (batch, {expected}), got {got}")

    def _check_layer_names(self, layers: Iterable[str]) -> list[str]:
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        unknown = [name for name in layers if name not in self.layer_types]
        if unknown:
            raise ValueError(f"unknown layer name(s) {unknown}; valid names: {self.layer_names}")
        return layers

    def _run(self, x: torch.Tensor, keep: Iterable[str], stop_early: bool):
        """The single forward loop: returns (output of the last layer run, {name: activation})."""
        self._check_input(x)
        dtype = self._parameter_dtype()
        if x.dtype != dtype:
            x = x.to(dtype)  # e.g. a bfloat16 CNN fed float32 spike counts
        keep = set(keep)
        activations = {}
        for step in self._steps(frozenset(keep), x.device.type):
            x = step.run(x)
            for name in step.names:
                if name in keep:
                    activations[name] = x
            if stop_early and keep and len(activations) == len(keep):
                break
        return x, activations

    def _hooked(self) -> bool:
        """Hooks on a layer must see that layer run: then no layer is fused away."""
        return any(
            module._forward_hooks or module._forward_pre_hooks
            for name in self.layer_names
            for module in self._modules[name].modules()
        )

    def _parameter_dtype(self) -> torch.dtype:
        for parameter in self.parameters():
            return parameter.dtype
        return torch.float32

    def _steps(self, keep: frozenset, device_type: str) -> list:
        """The one place where the backend is chosen: the layers themselves, or the fast plan."""
        if self.backend != "fast" or self.training or self._hooked():
            return [_LayerStep(self._modules[name], name) for name in self.layer_names]
        key = (keep, device_type)
        if key not in self._plans:
            self._plans[key] = build_plan(self, keep, device_type)
        return self._plans[key]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, _ = self._run(x, (), stop_early=False)
        return logits

    def forward_with_activations(self, x: torch.Tensor, layers: Iterable[str]):
        """(logits dict, {layer name: activation}) from one pass."""
        layers = self._check_layer_names(layers)
        logits, activations = self._run(x, layers, stop_early=False)
        return logits, {name: activations[name] for name in layers}

    def activations(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """{layer name: activation}, stopping after the deepest requested layer."""
        layers = self._check_layer_names(layers)
        if not layers:
            return {}
        _, activations = self._run(x, layers, stop_early=True)
        return {name: activations[name] for name in layers}


class _LayerStep:
    __slots__ = ("run", "names")

    def __init__(self, module: nn.Module, name: str):
        self.run = module
        self.names = (name,)


def _check_input_shape(input_shape: Any) -> Shape:
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_shape)
    ):
        raise ValueError(f"input_shape must be (channels, freq, time) positive integers, got {input_shape!r}")
    return tuple(input_shape)


def build_network(
    arch: Sequence[Mapping[str, Any]],
    input_shape: tuple[int, int, int],
    n_classes_dict: Mapping[str, int],
    *,
    device: Any = None,
) -> Network:
    """Build the authors' network from its arch.json list.

    input_shape: (channels, freq, time) of one CNN input example, e.g. (6, 50, 10000) for
    localization and (3, 50, 20000) for word/speaker recognition. n_classes_dict: head ->
    n_classes (config.json). Parameters are float32 with torch's default random init
    (BatchNorm: running_var 1). device="meta" builds the structure and shapes without
    allocating or initialising weights (cheap validation of an architecture).
    Raises ValueError for anything the authors' builder would not produce identically."""
    shape: Any = _check_input_shape(input_shape)
    if not isinstance(n_classes_dict, Mapping) or not n_classes_dict:
        raise ValueError(f"n_classes_dict must be a non-empty dict head -> n_classes, got {n_classes_dict!r}")
    if not isinstance(arch, Sequence) or isinstance(arch, (str, bytes)) or not arch:
        raise ValueError("arch must be a non-empty list of layer dicts")
    factory = {"device": device, "dtype": torch.float32}
    layers: list[tuple[str, str, ArchLayer]] = []
    output_shapes: dict[str, Any] = {}
    for index, layer_dict in enumerate(arch):
        if not isinstance(layer_dict, Mapping) or "layer_type" not in layer_dict:
            raise ValueError(f"arch[{index}] must be a dict with 'layer_type' and 'args', got {layer_dict!r}")
        extra = sorted(set(layer_dict) - _LAYER_KEYS)
        if extra:
            raise ValueError(f"arch[{index}] has unexpected keys {extra}")
        layer_type = layer_dict["layer_type"]
        args = layer_dict.get("args", {})
        if not isinstance(args, Mapping):
            raise ValueError(f"arch[{index}] ('{layer_type}'): args must be a dict")
        name = args.get("name")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(
                f"arch[{index}] (type {layer_type!r}): args.name {name!r} must be a non-empty string without '.'"
            )
        if name in output_shapes:
            raise ValueError(f"duplicate layer name {name!r} (arch[{index}], type {layer_type!r})")
        cls = LAYER_TYPES.get(layer_type.lower()) if isinstance(layer_type, str) else None
        if cls is None:
            raise ValueError(
                f"layer {name!r}: unknown layer_type {layer_type!r}; supported: {sorted(LAYER_TYPES)}"
            )
        if layers and isinstance(layers[-1][2], ClassificationHeads):
            raise ValueError(
                f"layer {name!r} (type {layer_type!r}) follows the classification heads, which must be last"
            )
        reader = ArchArgs(name, layer_type, args)
        layer = cls.from_arch(reader, shape, n_classes_dict, factory)
        try:
            shape = layer.output_shape(shape)
        except ValueError as err:
            raise reader.error(None, f"input of per-example shape {shape}: {err}") from None
        layers.append((name, layer_type, layer))
        output_shapes[name] = shape
    return Network(layers, input_shape, output_shapes, arch)
