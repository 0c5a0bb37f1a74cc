"""build_network: arch.json layer list -> Network (torch module with the authors' layer names)."""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from .layers import LAYER_TYPES, ArchArgs, ArchLayer, ClassificationHeads, Shape
from .shapes import output_shape

_LAYER_KEYS = {"layer_type", "args"}


class Network(nn.Module):
    """Feed-forward CNN built from an arch.json list.

    Layers are registered under their arch.json names (state_dict keys "conv_0.weight",
    "fc_top.label_word_int.weight", ...). Input (batch, channels, freq, time) float32;
    the last layer is the classification heads, so forward returns {head: logits}.
    Activations are channels first: (batch, channels, freq, time) or (batch, features).

    forward runs the layers one by one (the numerical reference); the fused, streamed form
    of the same layers is `phaselocknet.fast.network.FastNetwork`."""

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
        """The forward loop: returns (output of the last layer run, {name: activation})."""
        self._check_input(x)
        x = x.to(self.parameter_dtype())  # e.g. a bfloat16 CNN fed float32 spike counts
        keep = set(keep)
        activations = {}
        for name in self.layer_names:
            x = self._modules[name](x)
            if name in keep:
                activations[name] = x
                if stop_early and len(activations) == len(keep):
                    break
        return x, activations

    def parameter_dtype(self) -> torch.dtype:
        for parameter in self.parameters():
            return parameter.dtype
        return torch.float32

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
            shape = output_shape(layer, shape)
        except ValueError as err:
            raise reader.error(None, f"input of per-example shape {shape}: {err}") from None
        layers.append((name, layer_type, layer))
        output_shapes[name] = shape
    return Network(layers, input_shape, output_shapes, arch)
