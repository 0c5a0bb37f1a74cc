"""Trained models in and out: `load` a bundle into a model, `save` a model into a bundle.

The bundle format itself (reading, writing, checking files) lives in `bundle`; the model
(front end + CNN) in `model`. This module joins the two.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .bundle import read_bundle, write_bundle
from .errors import ConfigError
from .materialize import build_on_meta, check_device, check_tensors, materialize
from .model import PhaselocknetModel
from .store import resolve_bundle


def load(
    path: str | os.PathLike,
    *,
    spikes: str = "sample",
    excerpt: str | int = "random",
    seed: int | None = None,
    map_location: str | torch.device = "cpu",
    backend: str = "fast",
    dtype: torch.dtype | None = None,
    front_end: str | None = None,
) -> PhaselocknetModel:
    """Rebuild a model from its bundle alone, in eval mode.

    ``spikes``: "sample" (binomial spike counts, as in the paper; reproducible with
    ``seed``) or "mean" (expected counts). ``excerpt``: "random" or an int start
    offset (localization models). ``spikes="mean"`` with an int excerpt makes the
    model deterministic. ``backend``: "fast" (default) or "reference" (direct
    convolutions; the numerical reference). ``dtype``: the CNN's dtype (e.g.
    torch.bfloat16); the front end stays float32. ``front_end="bez2018"``: a nervegram-input
    model as a waveform model, its nervegram made from the sound by BEZ2018
    (`phaselocknet.bez2018.front_end`).

    ``path``: a bundle file, or a model id such as
    "sound_localization/simplified_IHC3000/arch01" looked up in the model store
    (``phaselocknet.store``: ``$PHASELOCKNET_HOME/<task>/<variant>/<arch>.safetensors``).
    """
    map_location = check_device(map_location)
    path = resolve_bundle(path)
    bundle = read_bundle(path)
    # Structure on the meta device first: config, arch and tensors are checked before any
    # memory is allocated for them (see materialize).
    try:
        model = build_on_meta(
            bundle.config, bundle.arch, spikes=spikes, excerpt=excerpt, seed=seed,
            labels=bundle.labels, model_id=bundle.model_id, backend=backend,
        )
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error
    check_tensors(path, model.network.state_dict(), bundle.tensors)
    model = materialize(model, bundle.tensors)
    if dtype is not None:
        model.to_cnn_dtype(dtype)
    model = model.to(map_location)
    if front_end is not None:
        from .bez2018.front_end import with_front_end

        model = with_front_end(model, front_end)
    return model


def save(
    model: PhaselocknetModel,
    path: str | os.PathLike,
    *,
    model_id: str | None = None,
    source_sha256: dict[str, str] | None = None,
    converter_version: str = "",
) -> Path:
    """Write ``model`` (weights, config, arch, labels) to a bundle, atomically."""
    model_id = model_id or model.model_id
    if not model_id:
        raise ValueError("save() needs a model_id (e.g. 'sound_localization/simplified_IHC3000/arch01')")
    tensors = {name: tensor.detach().to("cpu", torch.float32) for name, tensor in model.network.state_dict().items()}
    return write_bundle(
        path,
        tensors=tensors,
        model_id=model_id,
        config=model.config,
        arch=model.arch,
        labels=model.label_names,
        source_sha256=source_sha256,
        converter_version=converter_version,
    )
