"""Checkpoint variables -> the runtime network's state_dict.

What each arch.json layer owns, what its Keras variables are called and how their
layouts change is the table in ``keras_layout``; this module only matches the
checkpoint against it and refuses anything that does not fit exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from phaselocknet.network import ClassificationHeads, Network

from .checkpoint import Checkpoint, CheckpointVariable
from .errors import ConversionError
from .keras_layout import tf_dense_names, tf_params, tf_to_torch_param


@dataclass(frozen=True)
class KerasLayer:
    """One layer with variables in the authors' Keras graph."""

    keras_name: str  # e.g. "conv_0", "fc_top_label_word_int"
    arch_name: str  # the arch.json layer (torch module) it belongs to, e.g. "fc_top"
    layer_type: str
    head: str | None  # task head of a classification Dense, else None
    variables: tuple[str, ...]  # Keras variable names it must hold, e.g. ("kernel", "bias")

    def describe(self) -> str:
        owner = f"head {self.head!r} of " if self.head else ""
        return f"{owner}arch.json layer {self.arch_name!r} (type {self.layer_type!r})"


def keras_layers(network: Network) -> list[KerasLayer]:
    """The layers with variables, in the order Keras numbers them (layer_with_weights-N).

    That order is the arch.json order, the heads expanded in sorted head order (the
    authors' DenseTaskHeads creates one Dense per head, iterating sorted keys); layers
    whose variables are all switched off (a LayerNormalization with center and scale
    false) own none and take no number.
    """
    layers = []
    for name in network.layer_names:
        module = network.get_submodule(name)
        layer_type = network.layer_types[name]
        if isinstance(module, ClassificationHeads):
            dense_names = tf_dense_names(module, name)
            for head in sorted(dense_names):
                variables = _owned(tf_params(module), module[head].state_dict(), f"{name}.{head}")
                layers.append(KerasLayer(dense_names[head], name, layer_type, head, variables))
            continue
        params = module.state_dict()
        if params:
            layers.append(KerasLayer(name, name, layer_type, None, _owned(tf_params(module), params, name)))
    return layers


def _owned(tf_params: dict[str, str], state: dict, where: str) -> tuple[str, ...]:
    variables = tuple(tf_name for tf_name, torch_name in tf_params.items() if torch_name in state)
    unmapped = sorted(set(state) - {tf_params[v] for v in variables})
    if unmapped:
        raise ConversionError(f"runtime layer {where!r} has tensors {unmapped} that no Keras variable maps to")
    return variables


def checkpoint_state_dict(network: Network, checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The network's full state_dict (float32, torch layout) from the checkpoint.

    Raises ConversionError naming the layer for: a checkpoint layer arch.json does
    not have (an unused model variable), an arch.json layer or variable the
    checkpoint lacks, a layer whose name disagrees with its layer_with_weights-N
    position, a shape that does not match, or a non-float variable.
    """
    expected = keras_layers(network)
    by_name = {layer.keras_name: layer for layer in expected}
    groups = _group_by_layer(checkpoint.variables, expected)

    unknown = sorted(set(groups) - set(by_name))
    if unknown:
        name = unknown[0]
        held = ", ".join(v.full_name or v.key for v in groups[name].values())
        raise ConversionError(
            f"checkpoint layer {name!r} ({held}) is not in arch.json (its layers with variables: "
            f"{[layer.keras_name for layer in expected]}); is this the checkpoint of another model?"
        )
    missing = [layer for layer in expected if layer.keras_name not in groups]
    if missing:
        layer = missing[0]
        raise ConversionError(
            f"the checkpoint has no variables for Keras layer {layer.keras_name!r} ({layer.describe()}, "
            f"expects {list(layer.variables)}); is this the checkpoint of another model?"
        )

    state: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(expected):
        variables = groups[layer.keras_name]
        lacking = [v for v in layer.variables if v not in variables]
        if lacking:
            raise ConversionError(
                f"layer {layer.keras_name!r} ({layer.describe()}): the checkpoint lacks "
                f"{', '.join(f'{layer.keras_name}/{v}' for v in lacking)}"
            )
        extra = sorted(set(variables) - set(layer.variables))
        if extra:
            raise ConversionError(
                f"layer {layer.keras_name!r} ({layer.describe()}): checkpoint variable(s) "
                f"{', '.join(variables[v].describe() for v in extra)} would be unused (the layer's args "
                f"give it only {list(layer.variables)}); is arch.json the one this checkpoint was trained with?"
            )
        _check_position(layer, index, variables)
        _convert_layer(network.get_submodule(layer.arch_name), layer, variables, checkpoint, state)

    return covering_state(network, state)


def covering_state(network, state: dict, where: str = "") -> dict:
    """``state`` sorted by name, once its names are exactly the network's (else ConversionError)."""
    wanted = set(network.state_dict())
    if set(state) != wanted:
        raise ConversionError(
            f"{where}converted tensors do not cover the network: missing {sorted(wanted - set(state))[:8]}, "
            f"unexpected {sorted(set(state) - wanted)[:8]}"
        )
    return {name: state[name] for name in sorted(state)}


def _convert_layer(module, layer: KerasLayer, variables: dict, checkpoint: Checkpoint, state: dict) -> None:
    """Add the converted tensors of one Keras layer to `state`."""
    for tf_name in layer.variables:
        variable = variables[tf_name]
        array = checkpoint.arrays[variable.key]
        if not np.issubdtype(array.dtype, np.floating):
            raise ConversionError(
                f"layer {layer.keras_name!r}: {variable.describe()} has dtype {array.dtype}, expected float"
            )
        qualified = f"{layer.head}/{tf_name}" if layer.head else tf_name
        try:
            relative, converted = tf_to_torch_param(module, qualified, array.astype(np.float32, copy=False))
        except ValueError as error:
            raise ConversionError(
                f"layer {layer.keras_name!r} ({layer.describe()}): {variable.describe()} of shape "
                f"{list(array.shape)}: {error}; is this the checkpoint of another architecture?"
            ) from error
        torch_name = f"{layer.arch_name}.{relative}"
        if torch_name in state:
            raise ConversionError(f"layer {layer.keras_name!r}: two checkpoint variables map to {torch_name}")
        state[torch_name] = torch.from_numpy(np.ascontiguousarray(converted, dtype=np.float32))


def _group_by_layer(
    variables: list[CheckpointVariable], expected: list[KerasLayer]
) -> dict[str, dict[str, CheckpointVariable]]:
    """Checkpoint variables by Keras layer name (from full_name; by position when absent)."""
    groups: dict[str, dict[str, CheckpointVariable]] = {}
    for variable in variables:
        layer = variable.layer
        if layer is None:
            # Checkpoints without full names: fall back on Keras' own positional matching.
            if variable.position is None or variable.position >= len(expected):
                raise ConversionError(
                    f"checkpoint variable {variable.key} has no full name and no layer_with_weights position "
                    f"within arch.json's {len(expected)} layers with variables; cannot tell which layer it belongs to"
                )
            layer = expected[variable.position].keras_name
        held = groups.setdefault(layer, {})
        if variable.name in held:
            raise ConversionError(
                f"layer {layer!r}: the checkpoint holds {variable.name!r} twice "
                f"({held[variable.name].key} and {variable.key})"
            )
        held[variable.name] = variable
    return groups


def _check_position(layer: KerasLayer, index: int, variables: dict[str, CheckpointVariable]) -> None:
    found = sorted({v.position for v in variables.values()}, key=lambda p: -1 if p is None else p)
    if found != [index]:
        where = ", ".join("no layer_with_weights entry" if p is None else f"layer_with_weights-{p}" for p in found)
        raise ConversionError(
            f"layer {layer.keras_name!r} ({layer.describe()}) is {where} in the checkpoint, but it is weighted "
            f"layer number {index} of arch.json; the checkpoint's layer order disagrees with arch.json"
        )
