"""Building a model from a bundle without trusting the bundle: meta device first.

`hub.load` builds the model's structure on torch's meta device (shapes and dtypes, no
memory, no random initialisation), checks the file's tensors against it by name, shape
and dtype, and only then makes the model real: the file's tensors become the weights
(``load_state_dict(assign=True)``: no second copy), and the hpool windows (pure functions of the arch, not stored in bundles) are computed
on the CPU.
So a bundle whose arch asks for a 40000-unit layer costs nothing before it is refused.
"""

from __future__ import annotations

import torch

from .errors import BundleError, DeviceError
from .model import PhaselocknetModel

# The bundle format stores float32 only (docs/bundle_format.md).
BUNDLE_DTYPE = torch.float32


def build_on_meta(config: dict, arch: list, **options) -> PhaselocknetModel:
    """The model with its CNN on the meta device (validates config and arch); the front end,
    a pure function of the config, is built on the CPU as usual."""
    return PhaselocknetModel(config, arch, network_device="meta", **options)


def check_tensors(path, expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> None:
    """Names, shapes and dtypes of the file's tensors against the structure built from its arch."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise BundleError(
            f"{path}: tensors do not match its arch.json (missing: {missing[:8]}, unexpected: {unexpected[:8]}); "
            "re-convert the model"
        )
    wrong = [
        f"{name} {tuple(tensors[name].shape)} vs {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if tuple(tensors[name].shape) != tuple(tensor.shape)
    ]
    if wrong:
        raise BundleError(f"{path}: tensor shapes do not match its arch.json: {wrong[:8]}; re-convert the model")
    dtypes = [f"{name} {tensor.dtype}" for name, tensor in tensors.items() if tensor.dtype != BUNDLE_DTYPE]
    if dtypes:
        raise BundleError(f"{path}: tensors must be float32, found {dtypes[:8]}; re-convert the model")


def materialize(model: PhaselocknetModel, tensors: dict[str, torch.Tensor]) -> PhaselocknetModel:
    """Make a meta-built model real on the CPU, with exactly ``tensors`` as its weights
    (the dict is emptied: each tensor is replaced by its aligned copy as it is moved in)."""
    # The reader's tensors are not 64-byte aligned; vectorised kernels then round differently
    # from a freshly allocated model. Clone each (aligned) and let the unaligned one go.
    aligned = {name: tensors.pop(name).clone() for name in list(tensors)}
    model.network.load_state_dict(aligned, assign=True, strict=True)
    _rebuild_meta_layers(model.network)
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a layer kind with derived buffers that _rebuild_meta_layers does not know
        raise BundleError(f"internal error: {leftover[:4]} were not materialised")
    model.set_backend(model.backend)
    return model


def _rebuild_meta_layers(network) -> None:
    """Layers whose derived (non-persistent) buffers are still on meta are built again on the
    CPU from their arch.json entry; they hold no weights, so nothing from the file is lost."""
    from .network.layers import LAYER_TYPES, ArchArgs

    previous = network.input_shape
    by_name = {entry["args"]["name"]: entry for entry in network.arch}
    for name in network.layer_names:
        module = network.get_submodule(name)
        if any(buffer.is_meta for buffer in module.buffers()):
            if any(True for _ in module.parameters()):
                raise BundleError(f"internal error: layer {name!r} has weights and derived buffers")
            entry = by_name[name]
            cls = LAYER_TYPES[entry["layer_type"].lower()]
            args = ArchArgs(name, entry["layer_type"], entry.get("args", {}))
            fresh = cls.from_arch(args, previous, network.heads, {"device": torch.device("cpu"), "dtype": BUNDLE_DTYPE})
            for buffer_name, buffer in fresh.named_buffers():
                module.get_submodule(buffer_name.rpartition(".")[0]).register_buffer(
                    buffer_name.rpartition(".")[2], buffer, persistent=False
                )
        previous = network.output_shapes[name]


def check_device(map_location) -> torch.device:
    """The device to load onto, refused up front (not as torch's AssertionError) when absent."""
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError, ValueError) as error:
        raise DeviceError(f"map_location={map_location!r} is not a torch device ({error}); use 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"map_location={map_location!r}: this torch has no CUDA device available; use 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"map_location={map_location!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"map_location={map_location!r}: MPS is not available here; use 'cpu'")
    return device
