"""The authors' PyTorch checkpoints (``ckpt_BEST.pt``) -> the runtime network's state_dict.

``msaddler/phaselocknet_torch`` publishes, for the localization and word+speaker models,
``ckpt_BEST.pt``: ``torch.save(module.state_dict())`` of their port's ``PerceptualModel``
(their evaluation loads it into ``model.perceptual_model`` with ``strict=True``), or of the
whole ``Model`` (the same names under ``perceptual_model.``, plus ``peripheral_model.``).
Their names, for an arch.json layer ``L`` and a head ``H``:

  body.L.weight / body.L.bias                 conv (OIHW), dense ((out, in)), norms (1-D)
  body.L.running_mean / running_var           batch norm statistics
  body.L.num_batches_tracked                  batch norm step counter (int64; unused in eval)
  body.L.weight  (L an hpool)                 the fixed Hann window (a buffer made from arch.json)
  head.H.fc_output.weight / .bias             the classification Dense of head H
  peripheral_model.*                          front-end buffers made from config.json

Their layouts are TF's transposed exactly as their ``util.load_tf_model_checkpoint`` does
(4-D: HWIO -> OIHW, 2-D: transposed, else unchanged), so each tensor is put back in Keras
layout and converted by the converter's own table (``keras_layout.tf_to_torch_param``), the same code the
TensorFlow path uses: both sources give the same bundle tensors for the same weights.

Reading: ``torch.load(weights_only=True)`` only, which unpickles nothing but tensors and
plain containers (anything else is refused before it can run); then only a flat mapping
of names to tensors is accepted.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from phaselocknet.network import Network
from phaselocknet.network.layers import BatchNorm, HanningPool2d

from .errors import ConversionError
from .keras_layout import tf_params, tf_to_torch_param
from .mapping import covering_state, keras_layers

PT_NAME = "ckpt_BEST.pt"
WHOLE_MODEL_PREFIX = "perceptual_model."
FRONT_END_PREFIX = "peripheral_model."
HEAD_DENSE = "fc_output"


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The flat ``{name: tensor}`` state dict in ``path``, read without running any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses every global that is not a tensor or a plain container.
        raise ConversionError(
            f"{path}: refused: the file holds objects other than tensors and plain containers "
            f"({_first_line(error)}); expected torch.save(model.state_dict()) of the authors' port"
        ) from error
    except Exception as error:  # zip/pickle damage surfaces as many exception types
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({_first_line(error)}); re-download it") from error
    if not isinstance(payload, dict):
        raise ConversionError(
            f"{path}: holds a {type(payload).__name__}, not a state dict (a mapping of parameter names to tensors)"
        )
    bad = [repr(k) for k, v in payload.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(
            f"{path}: not a flat state dict: entries {', '.join(bad[:5])} are not name -> tensor "
            "(a training checkpoint with optimizer state? save model.state_dict() alone)"
        )
    return dict(payload)


def _expected_names(network: Network) -> dict[str, tuple[str, str, str]]:
    """Port name (perceptual model) -> (arch layer, qualified Keras variable, runtime state name)."""
    expected = {}
    for layer in keras_layers(network):
        module = network.get_submodule(layer.arch_name)
        for tf_name in layer.variables:
            torch_name = tf_params(module)[tf_name]
            if layer.head is not None:
                port = f"head.{layer.head}.{HEAD_DENSE}.{torch_name}"
                ours = f"{layer.arch_name}.{layer.head}.{torch_name}"
                expected[port] = (layer.arch_name, f"{layer.head}/{tf_name}", ours)
            else:
                expected[f"body.{layer.arch_name}.{torch_name}"] = (layer.arch_name, tf_name, f"{layer.arch_name}.{torch_name}")
    return expected


def _derived_names(network: Network) -> dict[str, str]:
    """Port names that hold no learned value (rebuilt from config.json/arch.json): name -> why."""
    derived = {}
    for name in network.layer_names:
        module = network.get_submodule(name)
        if isinstance(module, BatchNorm):
            derived[f"body.{name}.num_batches_tracked"] = "int"
        elif isinstance(module, HanningPool2d):
            derived[f"body.{name}.weight"] = "float"
    return derived


def _perceptual_entries(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The perceptual model's entries, with the whole-model prefix removed where present."""
    if not any(name.startswith(WHOLE_MODEL_PREFIX) for name in state):
        return state
    entries, foreign = {}, []
    for name, tensor in state.items():
        if name.startswith(WHOLE_MODEL_PREFIX):
            entries[name[len(WHOLE_MODEL_PREFIX):]] = tensor
        elif name.startswith(FRONT_END_PREFIX):
            if not tensor.is_floating_point():
                raise ConversionError(f"{path}: front-end buffer {name!r} has dtype {tensor.dtype}, expected float")
        else:
            foreign.append(name)
    if foreign:
        raise ConversionError(
            f"{path}: entries {foreign[:8]} belong to neither perceptual_model nor peripheral_model; "
            "is this a checkpoint of the authors' phaselocknet_model.Model?"
        )
    return entries


def torch_state_dict(network: Network, state: dict[str, torch.Tensor], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The network's full state_dict (float32, runtime layout) from the port's ``state``.

    Raises ConversionError naming the entries for missing, unexpected, non-float or
    mis-shaped tensors.
    """
    path = Path(path)
    entries = _perceptual_entries(state, path)
    expected = _expected_names(network)
    derived = _derived_names(network)
    missing = sorted(set(expected) - set(entries))
    extra = sorted(set(entries) - set(expected) - set(derived))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing[:8]}" + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""))
        if extra:
            parts.append(f"unexpected {extra[:8]}" + (f" and {len(extra) - 8} more" if len(extra) > 8 else ""))
        raise ConversionError(
            f"{path}: the state dict does not match arch.json/config.json: {'; '.join(parts)}; "
            "is this the checkpoint of another model?"
        )
    for name, kind in derived.items():
        tensor = entries.get(name)
        if tensor is not None and (kind == "int") == tensor.is_floating_point():
            raise ConversionError(f"{path}: entry {name!r} has dtype {tensor.dtype}, expected {kind}")

    out: dict[str, torch.Tensor] = {}
    for port, (arch_name, tf_name, ours) in expected.items():
        tensor = entries[port]
        if not tensor.is_floating_point():
            raise ConversionError(f"{path}: entry {port!r} has dtype {tensor.dtype}, expected a float tensor")
        array = _port_to_keras_layout(tensor.detach().to(torch.float32).numpy())
        module = network.get_submodule(arch_name)
        try:
            relative, converted = tf_to_torch_param(module, tf_name, array)
        except ValueError as error:
            raise ConversionError(
                f"{path}: entry {port!r} of shape {list(tensor.shape)} does not fit arch.json layer "
                f"{arch_name!r}: {error}; is this the checkpoint of another architecture?"
            ) from error
        if f"{arch_name}.{relative}" != ours:  # the runtime's table and ours disagree: a bug, not bad input
            raise ConversionError(f"{path}: entry {port!r} maps to {arch_name}.{relative}, expected {ours}")
        out[ours] = torch.from_numpy(np.ascontiguousarray(converted, dtype=np.float32))
    return covering_state(network, out, where=f"{path}: ")


def _port_to_keras_layout(array: np.ndarray) -> np.ndarray:
    """Undo the port's TF -> torch transposes (util.load_tf_model_checkpoint)."""
    if array.ndim == 4:  # (out, in, h, w) <- transpose(HWIO, [3, 2, 0, 1])
        return np.transpose(array, (2, 3, 1, 0))
    if array.ndim == 2:
        return array.T
    return array


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
